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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Read a password from standard input (its first line) and print its
    /// argon2id hash, for a [[user]] table's password_hash.
    HashPassword,
    /// Manage API bearer tokens (stored hashed in [http] tokens_file).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(clap::Subcommand, Debug)]
enum TokenAction {
    /// Make a token and print it (shown once; only its hash is kept).
    Create {
        /// A name for it, [a-z0-9_-]{1,64} (e.g. "prometheus").
        name: String,
        /// viewer (read) or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Revoke a token by name; the running collector stops accepting it
    /// within a second.
    Revoke { name: String },
    /// List the tokens' names and roles.
    List,
}

/// Runs a subcommand; the exit code.
fn command(cmd: Command, cfg: &Config) -> ExitCode {
    use glasswatch_collector::auth;
    match cmd {
        Command::HashPassword => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("glasswatch-collector: cannot read the password: {e}");
                return ExitCode::from(2);
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("glasswatch-collector: an empty password is not a password");
                return ExitCode::from(2);
            }
            match auth::hash_password(password) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("glasswatch-collector: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token { action } => {
            let path = config::state_path(&cfg.http.tokens_file, cfg.dir.as_deref());
            let result = match action {
                TokenAction::Create { name, role } => {
                    let role = match role.as_str() {
                        "viewer" => auth::Role::Viewer,
                        "admin" => auth::Role::Admin,
                        other => {
                            eprintln!(
                                "glasswatch-collector: role `{other}` is not viewer or admin"
                            );
                            return ExitCode::from(2);
                        }
                    };
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros() as i64)
                        .unwrap_or_default();
                    auth::create_token(&path, &name, role, now).map(|t| println!("{t}"))
                }
                TokenAction::Revoke { name } => {
                    auth::revoke_token(&path, &name).and_then(|found| {
                        if found {
                            Ok(())
                        } else {
                            Err(format!("no token named `{name}` in {}", path.display()))
                        }
                    })
                }
                TokenAction::List => auth::read_tokens(&path).map(|list| {
                    for t in list {
                        println!("{}\t{}", t.name, t.role.as_str());
                    }
                }),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("glasswatch-collector: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn main() -> ExitCode {
    glasswatch_collector::memory::tune();
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
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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
    if let Some(cmd) = cli.command {
        return command(cmd, &cfg);
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
