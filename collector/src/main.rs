//! glasswatch-collector: reads every stream back over (LL-)HLS and measures
//! latency per frame. See README.md and docs/ for how to run it.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use glasswatch_collector::config::{self, Config};
use glasswatch_collector::run;

/// Glasswatch collector: per-frame glass-to-HLS latency of every camera.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); the defaults when absent.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the configuration and exit (0 when valid, 2 when not).
    #[arg(long)]
    check_config: bool,
    /// Print the commented default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Print one line per stream and second on stdout.
    #[arg(long)]
    live: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::SAMPLE);
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn")),
        )
        .init();
    let cfg = match &cli.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("glasswatch-collector: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("glasswatch-collector: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = run::Options { live: cli.live };
    let result = runtime.block_on(run::run(
        cfg,
        opts,
        |ready| {
            tracing::info!(
                mqtt = ready.mqtt_url,
                api = %format!("http://{}/api/v1/streams", ready.http),
                "ready"
            );
            // For scripts and tests: one machine-readable line on stdout.
            println!("READY mqtt={} http={}", ready.mqtt_url, ready.http);
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        },
        shutdown_signal(),
    ));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}
