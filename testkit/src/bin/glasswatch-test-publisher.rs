//! `glasswatch-test-publisher`: `gst-launch-1.0` plus the Glasswatch frame
//! stamp, for tests only. It parses its arguments as a launch description
//! (as gst-launch does), finds the element named `stamp` (an `h264parse`
//! with byte-stream/AU output) and, in a probe on its src pad, inserts the
//! SEI stamp before the first slice of every access unit:
//!
//! ```text
//! ... ─▶ h264parse name=stamp ─[probe: insert SEI(tag, seq, capture_us)]─▶ ... ─▶ rtspclientsink
//! ```
//!
//! `seq` counts from 0; `capture_us` is the wall clock when the access unit
//! is stamped (after encoding, so a few milliseconds later than the agent's
//! capture time); the stream tag is that of `--device`/`--stream`. It runs
//! until end of stream (exit 0) or an error (exit 1, the error on stderr),
//! and is stopped by PID like any peer.

use std::{
    io::IsTerminal as _,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{bail, Context as _};
use clap::Parser;
use glasswatch_common::sei;
use glasswatch_testkit::stamps::{insert_stamp_annexb, PATTERN_IDS};
use gstreamer::{self as gst, prelude::*};

#[derive(Debug, Parser)]
#[command(
    name = "glasswatch-test-publisher",
    about = "gst-launch with the Glasswatch SEI stamp on the element named `stamp`"
)]
struct Args {
    /// Device id of the stream tag.
    #[arg(long, default_value = PATTERN_IDS.0)]
    device: String,
    /// Stream id of the stream tag.
    #[arg(long, default_value = PATTERN_IDS.1)]
    stream: String,
    /// The launch description, as for gst-launch-1.0.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    launch: Vec<String>,
}

use glasswatch_testkit::agent::now_us;

fn run(args: Args) -> anyhow::Result<()> {
    gst::init().context("initialising GStreamer")?;
    let description = args.launch.join(" ");
    let pipeline = gst::parse::launch(&description)
        .with_context(|| format!("parsing {description:?}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("the description is not a pipeline"))?;
    let stamp = pipeline
        .by_name("stamp")
        .context("no element named stamp in the description")?;
    let pad = stamp
        .static_pad("src")
        .context("the stamp element has no src pad")?;
    let tag = sei::stream_tag(&args.device, &args.stream);
    let seq = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
            let stamped = buffer.map_readable().ok().and_then(|map| {
                insert_stamp_annexb(&map, tag, seq.load(Ordering::Relaxed), now_us())
            });
            if let Some(bytes) = stamped {
                seq.fetch_add(1, Ordering::Relaxed);
                glasswatch_testkit::stamps::replace_buffer_data(buffer, bytes);
            }
        }
        gst::PadProbeReturn::Ok
    });

    pipeline
        .set_state(gst::State::Playing)
        .context("starting the pipeline")?;
    let bus = pipeline.bus().context("the pipeline has no bus")?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::NONE) else {
            break Ok(());
        };
        match msg.view() {
            gst::MessageView::Eos(..) => break Ok(()),
            gst::MessageView::Error(e) => {
                let source = e
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                break Err(anyhow::anyhow!(
                    "{source}: {} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                ));
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    if let Err(e) = result {
        bail!("pipeline failed: {e}");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
