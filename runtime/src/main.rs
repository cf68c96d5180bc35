//! The `wasmsink` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use wasmsink::control::Control;
use wasmsink::guest::GuestEngine;
use wasmsink::messenger::Messengers;
use wasmsink::store::SqliteStore;
use wasmsink::supervisor::Supervisor;

/// mimalloc instead of the system allocator: a record's delivery makes
/// about 40 small allocations, many freed on another thread, and glibc's malloc
/// made them cost about 5% more CPU per record, for 15 MiB less peak RSS
/// (see README, "Benchmarks").
///
/// The `override` feature routes the C libraries' `malloc` (librdkafka,
/// SQLite, OpenSSL) to mimalloc as well. Under a steady load the glibc arena
/// that librdkafka's fetch buffers and per-message ops came from grew by
/// about half a MiB a minute while its live contents stayed flat
/// (fragmentation: heaptrack saw no growing allocation, `/proc/PID/smaps`
/// saw only that arena grow, and a periodic `malloc_trim` did not stop it).
/// Through mimalloc the same memory is reused and returned; the `soak`
/// scenario of `scripts/bench.sh` measures the RSS slope.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// The TOML configuration file. Without one, connectors are managed
        /// over the REST API only.
        #[arg(long, short, env = "WASMSINK_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Checks a configuration file and exits: 0 when valid, 2 when not.
    Check {
        /// The TOML configuration file.
        #[arg(long, short, env = "WASMSINK_CONFIG")]
        config: PathBuf,
    },
    /// Asks a running wasmsink's `/health` endpoint; exits 0 when it
    /// answers 200 (for container health checks).
    Healthcheck {
        /// The address the REST API listens on.
        #[arg(long, env = "WASMSINK_LISTEN", default_value = wasmsink::config::DEFAULT_LISTEN)]
        listen: String,
        /// Ask over HTTPS (set when the API serves TLS). The local API's
        /// certificate is not verified: the probe sends nothing secret and
        /// reads only the status.
        #[arg(long, env = "WASMSINK_TLS_CERT", value_parser = |v: &str| Ok::<bool, String>(!v.is_empty()), default_value = "")]
        https: bool,
    },
    /// Runs a self-contained demo: an in-memory Kafka, a local HTTP receiver
    /// and a connector with the built-in guest. Needs no external service.
    Quickstart {
        /// How many sample records to produce.
        #[arg(long, default_value_t = 12)]
        records: u32,
    },
    /// Tools for guest authors: check a component, run it on a record.
    #[command(subcommand)]
    Guest(GuestCommand),
}

#[derive(Debug, Subcommand)]
enum GuestCommand {
    /// Checks a .wasm file against the wasmsink:plugin@0.1.0 contract and
    /// explains what is wrong.
    Check {
        /// The .wasm component.
        file: PathBuf,
        /// A `guest.config` entry handed to init, as KEY=VALUE (repeatable).
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// Prints the HTTP request a guest would send for a record and, given a
    /// response, its decision. Needs no Kafka and no network.
    Run {
        /// The .wasm component.
        file: PathBuf,
        /// The record as JSON: {"topic","partition","offset","timestamp","key","value","headers"}.
        #[arg(long)]
        record: String,
        /// A response to decide on: STATUS BODY.
        #[arg(long, num_args = 2, value_names = ["STATUS", "BODY"])]
        response: Option<Vec<String>>,
        /// A `guest.config` entry handed to init, as KEY=VALUE (repeatable).
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// The callback URL the path is appended to.
        #[arg(long, default_value = "http://callback.example/")]
        url: String,
    },
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("\"{text}\" is not KEY=VALUE"))
}

async fn guest_tool(command: GuestCommand) -> ExitCode {
    let engine = match GuestEngine::new() {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("cannot start the WebAssembly engine: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        GuestCommand::Check { file, config } => {
            wasmsink::guest::tool::check(&engine, &file, &config).await
        }
        GuestCommand::Run {
            file,
            record,
            response,
            config,
            url,
        } => {
            let response = match response.as_deref() {
                None => None,
                Some([status, body]) => match status.parse::<u16>() {
                    Ok(status) => Some((status, body.clone())),
                    Err(_) => {
                        eprintln!("--response: \"{status}\" is not an HTTP status");
                        return ExitCode::from(2);
                    }
                },
                Some(_) => unreachable!("clap takes exactly two values"),
            };
            let properties = [
                ("topics".to_owned(), "t".to_owned()),
                ("callback.request.url".to_owned(), url),
            ]
            .into();
            match (
                wasmsink::guest::tool::record_from_json(&record),
                wasmsink::config::ConnectorConfig::from_properties("guest-run", &properties),
            ) {
                (Ok(record), Ok(connector)) => {
                    wasmsink::guest::tool::run(
                        &engine,
                        &file,
                        &config,
                        &record,
                        &connector.callback,
                        response,
                    )
                    .await
                }
                (Err(error), _) => Err(error),
                (_, Err(problems)) => Err(problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")),
            }
        }
    };
    match result {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::from(1)
        }
    }
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
            Command::Healthcheck { listen, https } => healthcheck(&listen, https).await,
            Command::Guest(command) => guest_tool(command).await,
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

async fn run(path: Option<PathBuf>) -> ExitCode {
    let mut config = match &path {
        Some(path) => match wasmsink::config::load_file(path) {
            Ok(config) => config,
            Err(error) => {
                eprint!("{error}");
                return ExitCode::from(2);
            }
        },
        None => match wasmsink::config::parse_str("") {
            Ok(config) => config,
            Err(error) => {
                eprint!("{error}");
                return ExitCode::from(2);
            }
        },
    };
    if let Err(problems) =
        wasmsink::config::apply_env(&mut config.server, &mut config.store, |name| {
            std::env::var(name).ok()
        })
    {
        eprint!("{}", wasmsink::config::ConfigError::from(problems));
        return ExitCode::from(2);
    }
    if let Some(refusal) = config.server.refusal_to_listen() {
        eprintln!("cannot start: {refusal}");
        return ExitCode::from(2);
    }
    warn_about_policy(&config.server);
    let policy = Arc::new(config.server.policy.clone());
    let store = match SqliteStore::open(&config.store.data_dir) {
        Ok(store) => Arc::new(store),
        Err(error) => {
            eprintln!("cannot open the store: {error}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match config
        .server
        .tls
        .as_ref()
        .map(wasmsink::api::tls_config)
        .transpose()
    {
        Ok(tls) => tls,
        Err(error) => {
            eprintln!("cannot serve HTTPS: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match wasmsink::api::bind(config.server.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", config.server.listen);
            return ExitCode::FAILURE;
        }
    };
    let engine = match GuestEngine::new() {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("cannot start the WebAssembly engine: {error}");
            return ExitCode::FAILURE;
        }
    };
    let messengers = match Messengers::open(store.clone(), policy.clone()) {
        Ok(messengers) => messengers,
        Err(error) => {
            eprintln!("cannot read the messengers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let supervisor = Supervisor::new(
        engine,
        messengers.clone(),
        config.kafka.clone(),
        config.runtime.clone(),
        policy.egress.clone(),
        shutdown.clone(),
    );
    let control = Control::new(supervisor.clone(), store, policy);
    if let Err(problems) = control.restore(config.connectors).await {
        eprintln!("cannot start:");
        for problem in problems {
            eprintln!("  - {problem}");
        }
        supervisor.shutdown().await;
        return ExitCode::from(2);
    }
    let local_addr = listener.local_addr().unwrap_or(config.server.listen);
    let local = local_addr.to_string();
    let api_shutdown = CancellationToken::new();
    let router = wasmsink::api::router(
        control.clone(),
        messengers,
        local.clone(),
        wasmsink::api::Access::for_server(&config.server, local_addr),
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    let api = tokio::spawn(wasmsink::api::serve(
        listener,
        tls,
        router,
        api_shutdown.clone(),
    ));
    tracing::info!(
        listen = %local,
        scheme,
        api_keys = config.server.api_keys.len(),
        data_dir = %config.store.data_dir.display(),
        "REST API listening"
    );
    if let Some(path) = path {
        tokio::spawn(reload_on_sighup(path, config.kafka, control));
    }
    wasmsink::wait_for_shutdown_signal().await;
    supervisor.shutdown().await;
    api_shutdown.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Warns about the operator's choices that widen what REST callers may do.
fn warn_about_policy(server: &wasmsink::config::ServerConfig) {
    use wasmsink::security::OverridePolicy;
    if server.policy.client.mode == OverridePolicy::All {
        tracing::warn!(
            "server.client_overrides = \"all\": REST callers may set any librdkafka property \
             except those that load code, run commands or break delivery; use the allowlist unless \
             every API key holder is trusted with the Kafka client"
        );
    }
    if server.auth == wasmsink::config::AuthMode::None && !server.listen.ip().is_loopback() {
        tracing::warn!(listen = %server.listen, "server.auth = \"none\": the REST API is open to anyone who can reach this address");
    }
    if !server.api_keys.is_empty() && server.tls.is_none() && !server.listen.ip().is_loopback() {
        tracing::warn!(listen = %server.listen, "API keys are sent in plain text: set server.tls (or terminate TLS in front of wasmsink)");
    }
}

/// On SIGHUP, re-reads the file and applies connector changes live.
async fn reload_on_sighup(
    path: PathBuf,
    kafka: std::collections::BTreeMap<String, String>,
    control: Control,
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
        for outcome in control.reload_toml(config.connectors).await {
            match outcome {
                Ok(done) => tracing::info!("reload: {done}"),
                Err(error) => tracing::error!("reload: {error}"),
            }
        }
    }
}

/// `wasmsink healthcheck`: GET /health on the local API.
async fn healthcheck(listen: &str, https: bool) -> ExitCode {
    let addr = listen
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/health");
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .tls_danger_accept_invalid_certs(https)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("healthcheck: {error}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("healthcheck: {url} answered {}", response.status());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("healthcheck: {url}: {error}");
            ExitCode::FAILURE
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
