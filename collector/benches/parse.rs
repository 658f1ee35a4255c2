//! Benchmark: frames parsed per second on one core, from the real MediaMTX v1.16.2 LL-HLS parts
//! and MPEG-TS segments in `testdata/`, against ffmpeg's demuxer on the same bytes in the same
//! run.
//!
//! ```text
//! cargo bench -p glasswatch-collector --bench parse [-- SECONDS]   (default 3 s per measure)
//! ```
//!
//! `bench/collector_parse.sh` runs it. Target: at least 30,000 frames per second per core for
//! the collector (1,000 streams at 30 fps on one core).
//!
//! - The collector: each part is read with `fmp4::frames` and the init section, as the LL-HLS
//!   receiver reads a part it downloaded, and each segment with `ts::frames`. Every frame is
//!   turned into what the receiver hands the hub (`SeenFrame`: the stamp kept only if it carries
//!   the stream's tag, the fingerprint, the keyframe flag). The 30 parts, or the 3 segments, are
//!   read over and over on this one thread. The time is this thread's CPU time (utime + stime of
//!   `/proc/thread-self/stat`), so other work on the machine does not count; wall time is shown
//!   beside it.
//! - The peer: `ffmpeg -v error -i FILE -map 0:v -c copy -f null -` over a file of the same
//!   bytes. For fMP4 that is the init section followed by the 30 parts N times, each copy's
//!   `tfdt` moved on so decode times keep rising as in a long recording; for TS the 3 segments
//!   N times, as they are. ffmpeg's CPU time comes from `/proc/self/stat` (cutime + cstime) once
//!   it has been reaped. A run over one copy is subtracted from the run over N copies, which
//!   takes ffmpeg's start-up (probing, stream set-up) out of the figure. ffmpeg's own frame count
//!   (`-progress`) must equal the frames in the file.
//!
//! Before anything is timed, every frame of the recorded data must carry the fixture's stamp and
//! a fingerprint (asserted), so the loop measures the real work.

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use glasswatch_collector::hls::fmp4::{self, InitSegment};
use glasswatch_collector::hls::ts;
use glasswatch_collector::receiver::SeenFrame;

/// Stream tag of the fixture's stamps (`"fixture/cam0"`), see `testdata/fmp4/README.md`.
const TAG: u32 = 0x6a62_e076;
/// Frames in the recorded data: 30 parts of 57 frames, 3 segments of 30 frames.
const FMP4_FRAMES: usize = 57;
const TS_FRAMES: usize = 90;
/// Largest peer file; beyond it more copies only cost disk.
const MAX_PEER_BYTES: usize = 320 << 20;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The files of `dir` whose name ends with `ext`, sorted by name, read.
fn read_sorted(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    names.sort();
    names.iter().map(|p| read(p)).collect()
}

/// What the receiver hands the hub for one frame (`receiver.rs`, `Io::seen`).
fn seen(
    stamp: Option<glasswatch_common::sei::FrameStamp>,
    fingerprint: Option<u64>,
    keyframe: bool,
) -> SeenFrame {
    SeenFrame {
        stamp: stamp.filter(|s| s.stream_tag == TAG),
        fingerprint,
        keyframe,
    }
}

/// One part as the LL-HLS receiver reads it.
fn read_part(init: &InitSegment, part: &[u8]) -> Vec<SeenFrame> {
    fmp4::frames(init, part)
        .expect("a recorded part parses")
        .iter()
        .map(|f| seen(f.stamp, f.fingerprint, f.keyframe))
        .collect()
}

/// One segment as the classic HLS receiver reads it.
fn read_segment(segment: &[u8]) -> Vec<SeenFrame> {
    ts::frames(segment)
        .expect("a recorded segment parses")
        .frames
        .iter()
        .map(|f| seen(f.stamp, f.fingerprint.filter(|_| !f.damaged), f.keyframe))
        .collect()
}

/// Every frame carries the fixture's stamp and a fingerprint, and the seqs run without a gap.
fn check_all_stamped(what: &str, frames: &[SeenFrame], expected: usize) {
    assert_eq!(frames.len(), expected, "{what}: frame count");
    for (i, f) in frames.iter().enumerate() {
        let stamp = f
            .stamp
            .unwrap_or_else(|| panic!("{what}: frame {i} has no stamp of tag {TAG:#x}"));
        assert!(
            f.fingerprint.is_some(),
            "{what}: frame {i} has no fingerprint"
        );
        if let Some(first) = frames[0].stamp {
            assert_eq!(stamp.seq, first.seq + i as u64, "{what}: frame {i}");
        }
    }
}

/// Clock ticks per second of `/proc` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fields of a `/proc/.../stat` line after the command name: index 0 is field 3 (`state`).
fn stat_fields(path: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let rest = &text[text.rfind(')').map_or(0, |i| i + 1)..];
    rest.split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// utime + stime of this thread, in ticks (fields 14 and 15).
fn thread_ticks() -> u64 {
    let f = stat_fields("/proc/thread-self/stat");
    f[11] + f[12]
}

/// cutime + cstime of this process's reaped children, in ticks (fields 16 and 17).
fn children_ticks() -> u64 {
    let f = stat_fields("/proc/self/stat");
    f[13] + f[14]
}

/// A measure: frames, CPU seconds, wall seconds.
#[derive(Debug, Clone, Copy)]
struct Measure {
    frames: usize,
    cpu_s: f64,
    wall_s: f64,
}

impl Measure {
    fn per_cpu_s(&self) -> f64 {
        self.frames as f64 / self.cpu_s
    }
}

/// Runs `pass` (which reads the whole recorded data once and returns its frame count) until
/// `secs` of this thread's CPU time have gone by.
fn time_collector(secs: f64, ticks: f64, mut pass: impl FnMut() -> usize) -> Measure {
    // Warm up caches and the allocator.
    for _ in 0..50 {
        black_box(pass());
    }
    let (c0, t0) = (thread_ticks(), Instant::now());
    let mut frames = 0;
    while (thread_ticks() - c0) as f64 / ticks < secs {
        for _ in 0..20 {
            frames += black_box(pass());
        }
    }
    Measure {
        frames,
        cpu_s: (thread_ticks() - c0) as f64 / ticks,
        wall_s: t0.elapsed().as_secs_f64(),
    }
}

/// One ffmpeg run over `file`: the frames it counted, its CPU and wall time.
fn ffmpeg_run(file: &Path, ticks: f64) -> Measure {
    let (c0, t0) = (children_ticks(), Instant::now());
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-c", "copy", "-f", "null"])
        .args(["-progress", "pipe:1", "-nostats", "-"])
        .output()
        .expect("running ffmpeg (is it installed?)");
    let (cpu, wall) = (children_ticks() - c0, t0.elapsed());
    assert!(out.status.success(), "ffmpeg failed on {}", file.display());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg complained on {}: {}",
        file.display(),
        stderr.lines().next().unwrap_or_default()
    );
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("frame="))
        .and_then(|n| n.trim().parse().ok())
        .expect("ffmpeg -progress reports frame=N");
    Measure {
        frames,
        cpu_s: cpu as f64 / ticks,
        wall_s: wall.as_secs_f64(),
    }
}

/// ffmpeg's frames per CPU-second with its start-up taken out: a run over `copies` copies less
/// one over a single copy (the smallest of three, to keep a slow start from skewing it).
fn time_ffmpeg(
    dir: &Path,
    name: &str,
    write: impl Fn(&mut dyn Write, usize),
    frames_per_copy: usize,
    copy_bytes: usize,
    secs: f64,
    ticks: f64,
) -> (Measure, usize) {
    let file = |copies: usize| {
        let path = dir.join(format!("{name}-{copies}"));
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&path).expect("creating a peer file"));
        write(&mut out, copies);
        out.flush().expect("writing a peer file");
        path
    };
    let one = file(1);
    let mut small: Vec<Measure> = (0..3).map(|_| ffmpeg_run(&one, ticks)).collect();
    small.sort_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s));
    let small = small[0];
    assert_eq!(small.frames, frames_per_copy, "ffmpeg frames in one copy");
    // Calibrate on a few copies, then size the real run to take about `secs`.
    let probe_copies = 40;
    let probe = ffmpeg_run(&file(probe_copies), ticks);
    let rate = (probe.frames - small.frames) as f64 / (probe.wall_s - small.wall_s).max(1e-3);
    let copies = ((rate * secs / frames_per_copy as f64) as usize)
        .clamp(probe_copies, MAX_PEER_BYTES / copy_bytes);
    let big_path = file(copies);
    let big = ffmpeg_run(&big_path, ticks);
    let _ = std::fs::remove_file(big_path);
    assert_eq!(
        big.frames,
        copies * frames_per_copy,
        "ffmpeg frames in {copies} copies"
    );
    (
        Measure {
            frames: big.frames - small.frames,
            cpu_s: (big.cpu_s - small.cpu_s).max(1.0 / ticks),
            wall_s: big.wall_s - small.wall_s,
        },
        copies,
    )
}

/// Adds `delta` to the `tfdt` base media decode time of a part (one `moof`, then its `mdat`).
fn shift_tfdt(part: &mut [u8], delta: u64) {
    let moof_len = u32::from_be_bytes(part[..4].try_into().expect("4 bytes")) as usize;
    let at = part[..moof_len]
        .windows(4)
        .position(|w| w == b"tfdt")
        .expect("a part has a tfdt");
    let value = at + 8; // type, then version and flags
    if part[at + 4] == 1 {
        let v = u64::from_be_bytes(part[value..value + 8].try_into().expect("8 bytes"));
        part[value..value + 8].copy_from_slice(&(v + delta).to_be_bytes());
    } else {
        let v = u32::from_be_bytes(part[value..value + 4].try_into().expect("4 bytes"));
        let shifted = u32::try_from(u64::from(v) + delta).expect("tfdt fits 32 bits");
        part[value..value + 4].copy_from_slice(&shifted.to_be_bytes());
    }
}

fn main() {
    // `cargo bench` appends `--bench`; a number is the seconds per measure.
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let ticks = clock_ticks();
    let data = testdata();
    let init_bytes = read(&data.join("fmp4/mediamtx-1.16.2-llhls-init.mp4"));
    let init = fmp4::parse_init(&init_bytes).expect("the recorded init section parses");
    let parts = read_sorted(&data.join("fmp4/mediamtx-1.16.2-llhls-parts"), ".mp4");
    let segments = read_sorted(&data.join("ts"), ".ts");
    assert_eq!(
        (parts.len(), segments.len()),
        (30, 3),
        "recorded parts and segments"
    );

    // The loop must measure real work: every recorded frame is stamped and fingerprinted.
    let all: Vec<SeenFrame> = parts.iter().flat_map(|p| read_part(&init, p)).collect();
    check_all_stamped("fMP4 parts", &all, FMP4_FRAMES);
    let all: Vec<SeenFrame> = segments.iter().flat_map(|s| read_segment(s)).collect();
    check_all_stamped("TS segments", &all, TS_FRAMES);

    let fmp4_bytes: usize = parts.iter().map(Vec::len).sum();
    let ts_bytes: usize = segments.iter().map(Vec::len).sum();

    let ours_fmp4 = time_collector(secs, ticks, || {
        parts.iter().map(|p| read_part(&init, p).len()).sum()
    });
    let ours_ts = time_collector(secs, ticks, || {
        segments.iter().map(|s| read_segment(s).len()).sum()
    });

    // The same bytes for ffmpeg, as one long file each.
    let dir = tempfile::Builder::new()
        .prefix("glasswatch-bench-parse-")
        .tempdir()
        .expect("creating a temporary directory");
    let first = fmp4::parse_fragments(&init, &parts[0]).expect("first part");
    let last = fmp4::parse_fragments(&init, &parts[29]).expect("last part");
    let (start, end) = (
        first[0].decode_time,
        last.last()
            .map(|s| s.decode_time + u64::from(s.duration))
            .expect("a sample"),
    );
    let span = end - start;
    let write_fmp4 = |out: &mut dyn Write, copies: usize| {
        out.write_all(&init_bytes).expect("write");
        for k in 0..copies as u64 {
            for part in &parts {
                let mut p = part.clone();
                shift_tfdt(&mut p, k * span);
                out.write_all(&p).expect("write");
            }
        }
    };
    let write_ts = |out: &mut dyn Write, copies: usize| {
        for _ in 0..copies {
            for s in &segments {
                out.write_all(s).expect("write");
            }
        }
    };
    let (ff_fmp4, n_fmp4) = time_ffmpeg(
        dir.path(),
        "llhls.mp4",
        write_fmp4,
        FMP4_FRAMES,
        fmp4_bytes,
        secs,
        ticks,
    );
    let (ff_ts, n_ts) = time_ffmpeg(
        dir.path(),
        "segments.ts",
        write_ts,
        TS_FRAMES,
        ts_bytes,
        secs,
        ticks,
    );

    println!(
        "frames parsed per CPU-second on one thread: real MediaMTX v1.16.2 output, 640x360@30 \
         x264, every frame stamped (checked)"
    );
    println!(
        "{:<42}{:>14}{:>10}{:>12}{:>10}",
        "", "frames/s", "us/frame", "frames", "CPU s"
    );
    let row = |name: &str, m: &Measure| {
        println!(
            "{:<42}{:>14.0}{:>10.2}{:>12}{:>10.2}",
            name,
            m.per_cpu_s(),
            1e6 / m.per_cpu_s(),
            m.frames,
            m.cpu_s
        );
    };
    row("fMP4 parts: collector", &ours_fmp4);
    row(&format!("fMP4 parts: ffmpeg -c copy (x{n_fmp4})"), &ff_fmp4);
    row("MPEG-TS segments: collector", &ours_ts);
    row(
        &format!("MPEG-TS segments: ffmpeg -c copy (x{n_ts})"),
        &ff_ts,
    );
    let mbps = |m: &Measure, bytes: usize, frames: usize| {
        m.per_cpu_s() * bytes as f64 / frames as f64 / 1e6
    };
    println!(
        "collector throughput: fMP4 {:.0} MB/s ({} bytes/frame), TS {:.0} MB/s ({} bytes/frame); \
         wall/CPU {:.2} and {:.2}",
        mbps(&ours_fmp4, fmp4_bytes, FMP4_FRAMES),
        fmp4_bytes / FMP4_FRAMES,
        mbps(&ours_ts, ts_bytes, TS_FRAMES),
        ts_bytes / TS_FRAMES,
        ours_fmp4.wall_s / ours_fmp4.cpu_s,
        ours_ts.wall_s / ours_ts.cpu_s,
    );
    println!(
        "ratio collector/ffmpeg: fMP4 {:.2}x, TS {:.2}x (ffmpeg start-up subtracted; \
         it demuxes only, the collector also reads the stamp and hashes the slices)",
        ours_fmp4.per_cpu_s() / ff_fmp4.per_cpu_s(),
        ours_ts.per_cpu_s() / ff_ts.per_cpu_s()
    );
    let worst = ours_fmp4.per_cpu_s().min(ours_ts.per_cpu_s());
    println!(
        "target: >= 30000 frames/s per core (1000 streams at 30 fps); collector's slower \
         container: {worst:.0} frames/s = {:.1}x the target",
        worst / 30_000.0
    );
}
