//! The `wasmsink` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use wasmsink::guest::GuestEngine;
use wasmsink::supervisor::Supervisor;

/// A WebAssembly-pluggable Kafka-to-HTTP sink.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WASMSINK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the connectors of a configuration file until SIGTERM or SIGINT.
    Run {
        /// The TOML configuration file.
        #[arg(long, short, env = "WASMSINK_CONFIG")]
        config: PathBuf,
    },
    /// Checks a configuration file and exits: 0 when valid, 2 when not.
    Check {
        /// The TOML configuration file.
        #[arg(long, short, env = "WASMSINK_CONFIG")]
        config: PathBuf,
    },
    /// Runs a self-contained demo: an in-memory Kafka, a local HTTP receiver
    /// and a connector with the built-in guest. Needs no external service.
    Quickstart {
        /// How many sample records to produce.
        #[arg(long, default_value_t = 12)]
        records: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    wasmsink::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Check { config } => match wasmsink::config::load_file(&config) {
                Ok(config) => {
                    println!(
                        "configuration is valid: {} connector(s)",
                        config.connectors.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprint!("{error}");
                    ExitCode::from(2)
                }
            },
            Command::Quickstart { records } => match wasmsink::quickstart::run(records).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("quickstart failed: {error:#}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

async fn run(path: PathBuf) -> ExitCode {
    let config = match wasmsink::config::load_file(&path) {
        Ok(config) => config,
        Err(error) => {
            eprint!("{error}");
            return ExitCode::from(2);
        }
    };
    let engine = match GuestEngine::new() {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("cannot start the WebAssembly engine: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let supervisor = Supervisor::new(
        engine,
        config.kafka.clone(),
        config.runtime.clone(),
        shutdown.clone(),
    );
    if let Err(problems) = supervisor.start_all(config.connectors).await {
        eprintln!("cannot start:");
        for problem in problems {
            eprintln!("  - {problem}");
        }
        return ExitCode::from(2);
    }
    tokio::spawn(reload_on_sighup(path, config.kafka, supervisor.clone()));
    wasmsink::wait_for_shutdown_signal().await;
    supervisor.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// On SIGHUP, re-reads the file and applies connector changes live.
async fn reload_on_sighup(
    path: PathBuf,
    kafka: std::collections::BTreeMap<String, String>,
    supervisor: Supervisor,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    while hangup.recv().await.is_some() {
        let config = match wasmsink::config::load_file(&path) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!("reload refused, nothing changed: {error}");
                continue;
            }
        };
        if config.kafka != kafka {
            tracing::warn!("[kafka] changed: it takes effect after a restart of the process");
        }
        for outcome in supervisor.apply(config.connectors).await {
            match outcome {
                Ok(done) => tracing::info!("reload: {done}"),
                Err(error) => tracing::error!("reload: {error}"),
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
