//! Prometheus: `/metrics` of a collector measuring a live stream is valid
//! text exposition (`promtool check metrics`), its glass-to-HLS histogram
//! agrees with the per-second summaries of the same frames, `/readyz`
//! reports MQTT and storage, and the shipped alerting rules pass
//! `promtool check rules`.

use std::process::{Command, Stdio};
use std::time::Duration;

use glasswatch_collector::metrics::BUCKETS_S;
use glasswatch_testkit::chain::Chain;
use glasswatch_testkit::require::{require_mqtt_stack, require_program};

/// `name{labels} value` lines of one metric family, as (labels, value).
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (n, labels) = head.split_once('{').unwrap_or((head, ""));
            let value: f64 = value.parse().ok()?;
            (n == name).then(|| (labels.trim_end_matches('}').to_owned(), value))
        })
        .collect()
}

/// The cumulative bucket counts of the stream's histogram, by `le` index.
fn buckets(text: &str, device: &str) -> Vec<f64> {
    let mut out = vec![0.0; BUCKETS_S.len() + 1];
    for (labels, v) in samples(text, "glasswatch_glass_to_hls_seconds_bucket") {
        if !labels.contains(&format!("device=\"{device}\"")) {
            continue;
        }
        let le = labels
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        let i = BUCKETS_S
            .iter()
            .position(|b| format!("{b}") == le)
            .unwrap_or(BUCKETS_S.len());
        out[i] = v;
    }
    out
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn shipped_alerting_rules_pass_promtool() {
    if !require_program("promtool") {
        return;
    }
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/alerts.yml"
    );
    let (ok, out) = promtool(&["check", "rules", rules], None);
    assert!(ok, "{out}");
}

#[test]
fn metrics_parse_and_agree_with_the_summaries() {
    if !require_mqtt_stack() || !require_program("promtool") {
        return;
    }
    let chain = Chain::start("prom1", "").unwrap();
    chain.wait_for_frames(3, Duration::from_secs(60)).unwrap();
    let ready = chain.get("/readyz").unwrap();
    assert!(
        ready.contains("\"mqtt_connected\":true") && ready.contains("\"storage_writable\":true"),
        "{ready}"
    );
    let before = chain.get("/metrics").unwrap();
    let seen_before = chain.mqtt().len();
    chain
        .wait_for_frames(3 + 8, Duration::from_secs(60))
        .unwrap();
    // One more summary, so every frame counted by the second scrape's
    // windows is in a summary too (a scrape falls inside a window).
    let after = chain.get("/metrics").unwrap();
    let windows_after = chain.mqtt().len();
    let (ok, out) = promtool(&["check", "metrics"], Some(&after));
    assert!(ok, "promtool check metrics:\n{out}\n{after}");
    for family in [
        "glasswatch_receiver_fps",
        "glasswatch_frames_seen_total",
        "glasswatch_device_online",
        "glasswatch_mqtt_connected",
        "glasswatch_storage_writable",
        "glasswatch_clock_uncertainty_seconds",
    ] {
        assert!(
            !samples(&after, family).is_empty(),
            "{family} missing:\n{after}"
        );
    }
    let (b0, b1) = (buckets(&before, "prom1"), buckets(&after, "prom1"));
    let delta: Vec<f64> = b1.iter().zip(&b0).map(|(a, b)| a - b).collect();
    let total = *delta.last().unwrap();
    let summaries = chain.mqtt();
    // The windows between the scrapes (each scrape falls inside one: allow a
    // window's worth either way).
    let between = &summaries[seen_before.saturating_sub(1)..windows_after.min(summaries.len())];
    let frames: f64 = between.iter().map(|s| s.frames as f64).sum();
    assert!(total > 100.0, "{total} frames between scrapes");
    assert!(
        (total - frames).abs() <= 2.0 * 31.0,
        "histogram {total} vs summaries {frames}"
    );
    // The histogram's median bucket holds the summaries' median p50
    // (a bucket's width either way: windows and scrapes are not aligned).
    let rank = total / 2.0;
    let bucket = delta.iter().position(|c| *c >= rank).unwrap();
    let mut p50s: Vec<f64> = between.iter().filter_map(|s| s.p50_ms).collect();
    p50s.sort_by(f64::total_cmp);
    let median_s = p50s[p50s.len() / 2] / 1000.0;
    let lo = if bucket >= 2 {
        BUCKETS_S[bucket - 2]
    } else {
        0.0
    };
    let hi = BUCKETS_S.get(bucket + 1).copied().unwrap_or(f64::INFINITY);
    assert!(
        (lo..=hi).contains(&median_s),
        "median p50 {median_s} s outside buckets around le={}",
        BUCKETS_S.get(bucket).copied().unwrap_or(f64::INFINITY)
    );
    // The counter of frames seen moved by as much as the histogram (every
    // matched frame is seen; unmatched ones only in the counter).
    let seen = |t: &str| samples(t, "glasswatch_frames_seen_total")[0].1;
    assert!(seen(&after) - seen(&before) >= total - 31.0);
}
