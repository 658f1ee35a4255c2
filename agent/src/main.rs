//! glasswatch-agent: captures, encodes, stamps every access unit in-band and
//! pushes it over RTSP, one supervised pipeline per configured stream.
//!
//! The main loop owns process concerns only: signals, systemd notification
//! (`READY=1`, readable `STATUS=` lines, watchdog pings) and shutdown. Each
//! stream runs in its own [`supervisor::Supervisor`] task.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;
use tokio::sync::watch;

use glasswatch_agent::config::{self, Config};
use glasswatch_agent::mqtt::MqttReporter;
use glasswatch_agent::state::{Phase, StreamState};
use glasswatch_agent::supervisor::Supervisor;
use glasswatch_agent::watchdog::Watchdog;
use glasswatch_agent::{probe, record, report};

/// The config file used when `--config` is not given, if it exists.
const DEFAULT_CONFIG: &str = "/etc/glasswatch/agent.toml";

/// Glasswatch agent: camera → H.264 → per-frame SEI stamp → RTSP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Default: /etc/glasswatch/agent.toml when it exists,
    /// else built-in defaults with the host name as device id.
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Validate the config and exit (non-zero with file, line and key on error).
    #[arg(long)]
    check_config: bool,
    /// Print the documented default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the configured streams (the default).
    Run,
    /// List V4L2 capture devices, the H.264 encoders GStreamer offers, and
    /// for each configured stream the capture format and encoder the agent would choose and why.
    Probe,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if cli.print_default_config {
        print!("{}", config::SAMPLE);
        return ExitCode::SUCCESS;
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!(
            "config OK: device {} with {} stream(s)",
            config.device_id,
            config.streams.len()
        );
        return ExitCode::SUCCESS;
    }
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Probe => probe_cmd(&config),
        Command::Run => run(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The config from `path`, the default file, or built-in defaults.
fn load_config(path: Option<&Path>) -> Result<Config, config::ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None if Path::new(DEFAULT_CONFIG).exists() => Config::load(Path::new(DEFAULT_CONFIG)),
        None => {
            let host = hostname_id();
            Config::parse(
                &format!("device_id = \"{host}\"\n"),
                Path::new("(built-in defaults)"),
            )
        }
    }
}

/// The host name reduced to the id grammar, `device` when nothing is left.
fn hostname_id() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        "device".into()
    } else {
        id
    }
}

fn probe_cmd(config: &Config) -> anyhow::Result<()> {
    gstreamer::init().context("initialising GStreamer")?;
    print!("{}", probe::report(Some(config)));
    Ok(())
}

fn run(config: Config) -> anyhow::Result<()> {
    gstreamer::init().context("initialising GStreamer")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run_async(config));
    // Dropping a runtime waits for blocking tasks without limit; a pipeline
    // stuck going to NULL must not keep the process from exiting.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn run_async(config: Config) -> anyhow::Result<()> {
    let avail = probe::encoder_availability();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (records_tx, records_rx) = record::hand_off(config.streams().count());
    let states: Vec<Arc<StreamState>> = config
        .streams()
        .map(|s| StreamState::new(s.id.as_str()))
        .collect();
    let mqtt = if config.mqtt.enabled {
        let streams: Vec<(String, u32)> = config
            .streams()
            .map(|s| (s.id.to_string(), s.fps.get()))
            .collect();
        Some(
            MqttReporter::start(&config.mqtt, config.device_id.as_str(), &streams)
                .context("setting up MQTT")?,
        )
    } else {
        None
    };
    let reporter = tokio::spawn(report::run(
        records_rx,
        config.frame_log.clone(),
        states.clone(),
        mqtt,
        shutdown_rx.clone(),
    ));

    let mut tasks = Vec::new();
    for (index, (stream, state)) in config.streams().zip(&states).enumerate() {
        let sup = Supervisor {
            device_id: config.device_id.to_string(),
            stream: stream.clone(),
            retry: config.retry.clone(),
            avail: avail.clone(),
            records: records_tx.for_stream(index),
            state: state.clone(),
        };
        tasks.push(tokio::spawn(sup.run(shutdown_rx.clone())));
    }
    drop(records_tx);
    tracing::info!(
        device = %config.device_id,
        streams = states.len(),
        "glasswatch-agent {} started",
        env!("CARGO_PKG_VERSION")
    );

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let watchdog = sd_notify::watchdog_enabled();
    let mut tick = tokio::time::interval(
        watchdog
            .map(|d| (d / 2).min(Duration::from_secs(1)))
            .unwrap_or(Duration::from_secs(1)),
    );
    // Pings only while every stream publishes or correctly retries (watchdog.rs).
    let stall = Duration::from_millis(u64::from(config.retry.stall_ms.get()));
    let mut dog = watchdog.map(|interval| Watchdog::new(interval, stall));
    let mut ready = false;
    let mut last_status = String::new();
    let mut last_sent: Vec<u64> = vec![0; states.len()];
    let mut last_status_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            // SIGTERM (systemd stop) or Ctrl-C: leave the loop and shut down.
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            // Periodic: readiness, status line, watchdog.
            _ = tick.tick() => {
                if !ready && states.iter().all(|s| s.attempted.load(Ordering::Relaxed)) {
                    ready = true;
                    let _ = sd_notify::notify(&[NotifyState::Ready]);
                }
                let elapsed = last_status_at.elapsed().as_secs_f64();
                if elapsed >= 2.0 {
                    last_status_at = tokio::time::Instant::now();
                    let status = status_line(&states, &mut last_sent, elapsed);
                    if status != last_status {
                        let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
                        last_status = status;
                    }
                }
                if dog.as_mut().is_some_and(|d| d.tick(&states)) {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                }
            }
        }
    }

    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    let _ = shutdown_tx.send(true);
    let all = futures_util::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_millis(1800), all)
        .await
        .is_err()
    {
        tracing::warn!("some pipelines did not stop in time; exiting anyway");
        return Ok(());
    }
    let _ = tokio::time::timeout(Duration::from_millis(150), reporter).await;
    Ok(())
}

/// One line per `systemctl status`: each stream's phase and send rate.
fn status_line(states: &[Arc<StreamState>], last_sent: &mut [u64], elapsed_s: f64) -> String {
    let parts: Vec<String> = states
        .iter()
        .zip(last_sent.iter_mut())
        .map(|(s, last)| {
            let sent = s.counters.sent.load(Ordering::Relaxed);
            let fps = (sent.saturating_sub(*last)) as f64 / elapsed_s.max(0.001);
            *last = sent;
            match s.phase() {
                Phase::Starting => format!("{}: starting", s.id),
                Phase::WaitingForCamera(p) => {
                    format!("{}: waiting for camera {}", s.id, p.display())
                }
                Phase::Publishing { encoder, url } => {
                    format!("{}: publishing {fps:.1} fps ({encoder}) to {url}", s.id)
                }
                Phase::Retrying { reason, in_ms } => {
                    let short: String = reason.chars().take(120).collect();
                    format!(
                        "{}: retrying in {:.1} s after: {short}",
                        s.id,
                        in_ms as f64 / 1000.0
                    )
                }
                Phase::Stopped => format!("{}: stopped", s.id),
            }
        })
        .collect();
    parts.join(" | ")
}
