//! The `[server]` and `[store]` tables: where the REST API listens, how it
//! is protected, what REST callers may make wasmsink do, and where the
//! durable connector store lives.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8083"          # env WASMSINK_LISTEN
//! auth = "keys"                       # or "none": an open API on a non-loopback address; env WASMSINK_AUTH
//! allowed_hosts = ["wasmsink.internal"] # Host names a keyless loopback API accepts besides localhost
//! api.keys.file = "/run/secrets/keys" # one key per line; env WASMSINK_API_KEYS_FILE
//! client_overrides = "allowlist"      # or "all" (warned about at start-up)
//! tls.cert = "/etc/wasmsink/tls/cert.pem"     # env WASMSINK_TLS_CERT
//! tls.key = "/etc/wasmsink/tls/key.pem"       # env WASMSINK_TLS_KEY
//! tls.client_ca = "/etc/wasmsink/tls/ca.pem"  # mTLS; env WASMSINK_TLS_CLIENT_CA
//!
//! [[server.api_keys]]
//! key = "${env:ADMIN_KEY}"
//! label = "ops-admin"                 # names the key in the audit log
//!
//! [[server.api_keys]]
//! key = "${file:/run/secrets/keys.properties:messenger}"
//! endpoints = ["/api/messenger"]      # path prefixes; default: every endpoint
//! methods = ["GET"]                   # default: every method
//!
//! [server.kafka]
//! allowed_keys = ["security.protocol"]  # librdkafka keys REST may set beyond tuning
//! file_dirs = ["/etc/wasmsink/kafka"]   # where REST-set ssl.*.location may point
//! allowed_urls = ["https://idp.example/oauth2/token"]
//! allowed_bootstrap = ["kafka-b:9092"]  # broker addresses that inherit [kafka]'s credentials
//!
//! [server.secrets]
//! env_allow = "WASMSINK_SECRET_[A-Z0-9_]+" # whole names only
//! file_dirs = ["/run/secrets/wasmsink"]
//!
//! [server.egress]
//! allow_cidrs = ["169.254.10.0/24"]
//! deny_cidrs = ["10.0.0.0/8"]
//!
//! [server.guests]
//! dirs = ["/var/lib/wasmsink/guests"]
//! max_init_ms = 10000                 # the most guest.timeout.init.ms may be
//! max_call_ms = 1000                  # ... guest.timeout.{transform,decide}.ms
//! max_memory_mb = 256                 # ... guest.memory.max.mb
//!
//! [store]
//! data.dir = "./wasmsink-data"        # env WASMSINK_DATA_DIR
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::ConfigProblem;
use super::secrets::{Scope, resolve_value};
use crate::security::client_properties::{self, OverridePolicy};
use crate::security::{
    AllowedDirs, EgressPolicy, GUEST_DIRS, GuestCaps, KAFKA_FILE_DIRS, Policy, SECRET_FILE_DIRS,
    SecretPolicy, egress,
};

/// The default listen address, Kafka Connect's port on loopback.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./wasmsink-data";
/// How many failed authentications an address may make in a minute.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// The REST server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the REST API listens.
    pub listen: SocketAddr,
    /// Accepted API keys; empty means the API is open.
    pub api_keys: Vec<ApiKey>,
    /// `auth`: whether an open API may listen beyond loopback.
    pub auth: AuthMode,
    /// `allowed_hosts`: `Host` names a keyless loopback API accepts besides
    /// `localhost`, `127.0.0.1` and `[::1]`.
    pub allowed_hosts: Vec<String>,
    /// `tls.*`: serve HTTPS.
    pub tls: Option<TlsFiles>,
    /// `auth_failures_per_minute`: failed authentications an address may
    /// make in a minute before it gets 429 for the rest of it.
    pub auth_failures_per_minute: u32,
    /// What REST callers may make wasmsink do.
    pub policy: Policy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            api_keys: Vec::new(),
            auth: AuthMode::Keys,
            allowed_hosts: Vec::new(),
            tls: None,
            auth_failures_per_minute: DEFAULT_AUTH_FAILURES_PER_MINUTE,
            policy: Policy::default(),
        }
    }
}

/// `[server] auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Keys guard the API when any are configured; without keys the API
    /// may only listen on loopback (the default).
    #[default]
    Keys,
    /// The operator's explicit opt-out: an open API on any address.
    None,
}

/// The listener's certificate, key and, for mutual TLS, client CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to; with
    /// it, a client without a valid certificate cannot connect.
    pub client_ca: Option<PathBuf>,
}

impl ServerConfig {
    /// Why the API must not start as configured: an open API on an address
    /// other than loopback, unless the operator opted out.
    pub fn refusal_to_listen(&self) -> Option<String> {
        if self.api_keys.is_empty()
            && self.auth == AuthMode::Keys
            && !self.listen.ip().is_loopback()
        {
            return Some(format!(
                "refusing to serve the REST API on {} without an API key: anyone who can reach that \
                 address could create connectors. Configure a key ([[server.api_keys]], \
                 WASMSINK_API_KEYS or WASMSINK_API_KEYS_FILE), listen on loopback, or opt out \
                 explicitly with [server] auth = \"none\" (WASMSINK_AUTH=none)",
                self.listen
            ));
        }
        None
    }
}

/// One API key and what it may reach. The key itself is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The resolved key.
    pub key: String,
    /// How the audit log names the key: its `label`, or where it was
    /// configured (`server.api_keys[1]`, `WASMSINK_API_KEYS[0]`).
    pub label: String,
    /// Path prefixes this key may call; empty means every endpoint.
    pub endpoints: Vec<String>,
    /// Upper-case HTTP methods this key may use; empty means every method.
    pub methods: Vec<String>,
    /// When the key stops working, epoch milliseconds (FusionAuth's
    /// `expirationInstant`); `None` never.
    pub expires_at: Option<i64>,
}

impl ApiKey {
    /// A key that may call everything.
    pub fn unrestricted(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            label: "unlabelled".to_owned(),
            endpoints: Vec::new(),
            methods: Vec::new(),
            expires_at: None,
        }
    }

    /// The same key, named `label` in the audit log.
    pub fn labelled(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Whether the key has expired at `now` (epoch milliseconds).
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether this key may call `method path`.
    pub fn allows(&self, method: &str, path: &str) -> bool {
        let method_ok =
            self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method));
        let path_ok = self.endpoints.is_empty()
            || self.endpoints.iter().any(|prefix| {
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
            });
        method_ok && path_ok
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"<redacted>")
            .field("label", &self.label)
            .field("endpoints", &self.endpoints)
            .field("methods", &self.methods)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The durable store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The directory holding `wasmsink.db`.
    pub data_dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// Reads a TOML list of strings.
fn strings(value: &toml::Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Reads one sub-table of `[server]` whose values are all lists of strings
/// (or, for `one_string` keys, a string), reporting unknown keys.
fn sub_table<'t>(
    at: &str,
    value: &'t toml::Value,
    known: &[&str],
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(&'t str, &'t toml::Value)> {
    let Some(table) = value.as_table() else {
        problems.push(ConfigProblem::global(at, "must be a table"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in table {
        if known.contains(&key.as_str()) {
            out.push((key.as_str(), value));
        } else {
            problems.push(ConfigProblem::global(
                format!("{at}.{key}"),
                format!("unknown key; {at} knows {}", known.join(", ")),
            ));
        }
    }
    out
}

fn string_list(key: String, value: &toml::Value, problems: &mut Vec<ConfigProblem>) -> Vec<String> {
    strings(value).unwrap_or_else(|| {
        problems.push(ConfigProblem::global(key, "must be a list of strings"));
        Vec::new()
    })
}

fn dirs(key: &'static str, value: &toml::Value, problems: &mut Vec<ConfigProblem>) -> AllowedDirs {
    let list = string_list(key.to_owned(), value, problems);
    AllowedDirs::new(key, &list).unwrap_or_else(|reason| {
        problems.push(ConfigProblem::global(key, reason));
        AllowedDirs::none(key)
    })
}

/// Parses the `[server]` table.
pub(super) fn parse_server(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> ServerConfig {
    let mut server = ServerConfig::default();
    let mut allow_cidrs = Vec::new();
    let mut deny_cidrs = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("listen", toml::Value::String(text)) => match parse_listen(text) {
                Ok(addr) => server.listen = addr,
                Err(reason) => problems.push(ConfigProblem::global("server.listen", reason)),
            },
            ("auth", toml::Value::String(text)) => match parse_auth(text) {
                Ok(mode) => server.auth = mode,
                Err(reason) => problems.push(ConfigProblem::global("server.auth", reason)),
            },
            ("auth_failures_per_minute", toml::Value::Integer(n)) => match u32::try_from(*n) {
                Ok(n) if n >= 1 => server.auth_failures_per_minute = n,
                _ => problems.push(ConfigProblem::global(
                    "server.auth_failures_per_minute",
                    "must be a whole number of at least 1",
                )),
            },
            ("allowed_hosts", value) => {
                server.allowed_hosts = string_list("server.allowed_hosts".into(), value, problems)
                    .into_iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect();
            }
            ("client_overrides", toml::Value::String(text)) => match text.as_str() {
                "allowlist" => server.policy.client.mode = OverridePolicy::Allowlist,
                "all" => server.policy.client.mode = OverridePolicy::All,
                other => problems.push(ConfigProblem::global(
                    "server.client_overrides",
                    format!("\"{other}\" is not one of allowlist, all"),
                )),
            },
            ("tls", value) => {
                let mut cert = None;
                let mut key_file = None;
                let mut client_ca = None;
                for (name, value) in
                    sub_table("server.tls", value, &["cert", "key", "client_ca"], problems)
                {
                    let Some(path) = value.as_str() else {
                        problems.push(ConfigProblem::global(
                            format!("server.tls.{name}"),
                            "must be a path",
                        ));
                        continue;
                    };
                    let path = Some(PathBuf::from(path));
                    match name {
                        "cert" => cert = path,
                        "key" => key_file = path,
                        _ => client_ca = path,
                    }
                }
                match (cert, key_file) {
                    (Some(cert), Some(key)) => {
                        server.tls = Some(TlsFiles {
                            cert,
                            key,
                            client_ca,
                        })
                    }
                    (None, None) if client_ca.is_none() => {}
                    _ => problems.push(ConfigProblem::global(
                        "server.tls",
                        "needs both cert and key (client_ca is optional)",
                    )),
                }
            }
            ("kafka", value) => {
                for (name, value) in sub_table(
                    "server.kafka",
                    value,
                    &[
                        "allowed_keys",
                        "file_dirs",
                        "allowed_urls",
                        "allowed_bootstrap",
                    ],
                    problems,
                ) {
                    let at = format!("server.kafka.{name}");
                    match name {
                        "file_dirs" => {
                            server.policy.client.file_dirs = dirs(KAFKA_FILE_DIRS, value, problems)
                        }
                        "allowed_keys" => {
                            for name in string_list(at.clone(), value, problems) {
                                match client_properties::canonical(name.trim()) {
                                    Some(canonical) => {
                                        server
                                            .policy
                                            .client
                                            .allowed_keys
                                            .insert(canonical.to_owned());
                                    }
                                    None => problems.push(ConfigProblem::global(
                                        at.clone(),
                                        format!("\"{name}\" is not a librdkafka property"),
                                    )),
                                }
                            }
                        }
                        "allowed_urls" => {
                            server.policy.client.allowed_urls = string_list(at, value, problems)
                                .into_iter()
                                .map(|u| u.trim().to_owned())
                                .collect();
                        }
                        _ => {
                            for list in string_list(at, value, problems) {
                                server
                                    .policy
                                    .client
                                    .operator_brokers
                                    .extend(client_properties::normalize_brokers(&list));
                            }
                        }
                    }
                }
            }
            ("secrets", value) => {
                for (name, value) in sub_table(
                    "server.secrets",
                    value,
                    &["env_allow", "file_dirs"],
                    problems,
                ) {
                    if name == "file_dirs" {
                        server.policy.secrets.file_dirs = dirs(SECRET_FILE_DIRS, value, problems);
                        continue;
                    }
                    match value.as_str().map(SecretPolicy::env_pattern) {
                        Some(Ok(pattern)) => server.policy.secrets.env_allow = Some(pattern),
                        Some(Err(reason)) => {
                            problems.push(ConfigProblem::global("server.secrets.env_allow", reason))
                        }
                        None => problems.push(ConfigProblem::global(
                            "server.secrets.env_allow",
                            "must be a pattern (a string) that whole variable names match",
                        )),
                    }
                }
            }
            ("egress", value) => {
                for (name, value) in sub_table(
                    "server.egress",
                    value,
                    &["allow_cidrs", "deny_cidrs"],
                    problems,
                ) {
                    let at = format!("server.egress.{name}");
                    let list = string_list(at.clone(), value, problems);
                    match egress::parse_cidrs(&list) {
                        Ok(nets) if name == "allow_cidrs" => allow_cidrs = nets,
                        Ok(nets) => deny_cidrs = nets,
                        Err(reason) => problems.push(ConfigProblem::global(at, reason)),
                    }
                }
            }
            ("guests", value) => {
                let keys = ["dirs", "max_init_ms", "max_call_ms", "max_memory_mb"];
                for (name, value) in sub_table("server.guests", value, &keys, problems) {
                    let at = format!("server.guests.{name}");
                    let ceiling = match name {
                        "dirs" => {
                            server.policy.guests = dirs(GUEST_DIRS, value, problems);
                            continue;
                        }
                        "max_memory_mb" => GuestCaps::CEILING_MB as u64,
                        _ => GuestCaps::CEILING_MS,
                    };
                    let n = match value.as_integer().and_then(|n| u64::try_from(n).ok()) {
                        Some(n) if (1..=ceiling).contains(&n) => n,
                        _ => {
                            problems.push(ConfigProblem::global(
                                at,
                                format!("must be a whole number from 1 to {ceiling}"),
                            ));
                            continue;
                        }
                    };
                    let caps = &mut server.policy.guest_caps;
                    match name {
                        "max_init_ms" => caps.init = Duration::from_millis(n),
                        "max_call_ms" => caps.call = Duration::from_millis(n),
                        _ => caps.memory_mb = n as usize,
                    }
                }
            }
            ("api", toml::Value::Table(api)) => match api.get("keys").and_then(|k| k.get("file")) {
                Some(toml::Value::String(path))
                    if api.len() == 1 && api["keys"].as_table().is_some_and(|t| t.len() == 1) =>
                {
                    match read_key_file(path, "server.api.keys.file") {
                        Ok(mut keys) => server.api_keys.append(&mut keys),
                        Err(reason) => {
                            problems.push(ConfigProblem::global("server.api.keys.file", reason))
                        }
                    }
                }
                _ => problems.push(ConfigProblem::global(
                    "server.api",
                    "the only key under server.api is api.keys.file = \"PATH\"",
                )),
            },
            ("api_keys", toml::Value::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    let at = format!("server.api_keys[{index}]");
                    match item {
                        toml::Value::Table(entry) => {
                            if let Some(key) = parse_api_key(&at, entry, problems) {
                                server.api_keys.push(key);
                            }
                        }
                        _ => problems.push(ConfigProblem::global(
                            at,
                            "must be a table: [[server.api_keys]] key = \"...\"",
                        )),
                    }
                }
            }
            (other, _) => problems.push(ConfigProblem::global(
                format!("server.{other}"),
                "unknown key or wrong type; the [server] table knows listen, auth, allowed_hosts, \
                 client_overrides, auth_failures_per_minute, api.keys.file, [[server.api_keys]] \
                 and the tables tls, kafka, secrets, egress and guests",
            )),
        }
    }
    server.policy.egress = Arc::new(EgressPolicy::new(&allow_cidrs, &deny_cidrs));
    if server.auth == AuthMode::None && !server.api_keys.is_empty() {
        problems.push(ConfigProblem::global(
            "server.auth",
            "\"none\" turns API keys off, but keys are configured: remove one or the other",
        ));
    }
    server
}

fn parse_auth(text: &str) -> Result<AuthMode, String> {
    match text.trim() {
        "keys" => Ok(AuthMode::Keys),
        "none" => Ok(AuthMode::None),
        other => Err(format!("\"{other}\" is not one of keys, none")),
    }
}

fn parse_api_key(
    at: &str,
    entry: &toml::Table,
    problems: &mut Vec<ConfigProblem>,
) -> Option<ApiKey> {
    let mut key = None;
    let mut label = at.to_owned();
    let mut endpoints = Vec::new();
    let mut methods = Vec::new();
    let mut expires_at = None;
    for (name, value) in entry {
        match (name.as_str(), value) {
            ("key", toml::Value::String(text)) => match resolve_value(text, Scope::Operator) {
                Ok(resolved) if !resolved.trim().is_empty() => {
                    key = Some(resolved.trim().to_owned())
                }
                Ok(_) => problems.push(ConfigProblem::global(format!("{at}.key"), "is empty")),
                Err(reason) => problems.push(ConfigProblem::global(
                    format!("{at}.key"),
                    reason.to_string(),
                )),
            },
            ("label", toml::Value::String(text)) if !text.trim().is_empty() => {
                label = text.trim().to_owned();
            }
            ("endpoints", value) => match strings(value) {
                Some(list) if list.iter().all(|p| p.starts_with('/')) => endpoints = list,
                _ => problems.push(ConfigProblem::global(
                    format!("{at}.endpoints"),
                    "must be a list of paths starting with /",
                )),
            },
            ("methods", value) => match strings(value) {
                Some(list) => methods = list.into_iter().map(|m| m.to_ascii_uppercase()).collect(),
                None => problems.push(ConfigProblem::global(
                    format!("{at}.methods"),
                    "must be a list of HTTP methods",
                )),
            },
            ("expires", value) => match expiry(value) {
                Some(at_ms) => expires_at = Some(at_ms),
                None => problems.push(ConfigProblem::global(
                    format!("{at}.expires"),
                    "must be a date-time with an offset (2027-01-31T00:00:00Z) or epoch milliseconds",
                )),
            },
            (other, _) => problems.push(ConfigProblem::global(
                format!("{at}.{other}"),
                "unknown key or wrong type; an API key has key, label, endpoints, methods and expires",
            )),
        }
    }
    if key.is_none() && !problems.iter().any(|p| p.key.starts_with(at)) {
        problems.push(ConfigProblem::global(format!("{at}.key"), "missing"));
    }
    Some(ApiKey {
        key: key?,
        label,
        endpoints,
        methods,
        expires_at,
    })
}

/// An expiry as epoch milliseconds: a TOML offset date-time, or a number
/// of milliseconds as FusionAuth's `expirationInstant`.
fn expiry(value: &toml::Value) -> Option<i64> {
    match value {
        toml::Value::Integer(ms) => Some(*ms),
        toml::Value::Datetime(datetime) => {
            let date = datetime.date?;
            let time = datetime.time?;
            let offset_minutes = match datetime.offset? {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i64::from(minutes),
            };
            let days = days_from_civil(i64::from(date.year), date.month.into(), date.day.into());
            let seconds = days * 86_400
                + i64::from(time.hour) * 3_600
                + i64::from(time.minute) * 60
                + i64::from(time.second)
                - offset_minutes * 60;
            Some(seconds * 1_000 + i64::from(time.nanosecond / 1_000_000))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses the `[store]` table.
pub(super) fn parse_store(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> StoreConfig {
    let mut store = StoreConfig::default();
    match table.get("data").and_then(|d| d.get("dir")) {
        Some(toml::Value::String(dir))
            if table.len() == 1 && table["data"].as_table().is_some_and(|t| t.len() == 1) =>
        {
            store.data_dir = PathBuf::from(dir);
        }
        None if table.is_empty() => {}
        _ => problems.push(ConfigProblem::global(
            "store",
            "the [store] table knows one key: data.dir = \"PATH\"",
        )),
    }
    store
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("\"{text}\" is not an address such as 127.0.0.1:8083 or 0.0.0.0:8083"))
}

/// Reads a key file: one key per line; blank lines and `#` comments
/// skipped. Each key is labelled `SOURCE:LINE`.
fn read_key_file(path: &str, source: &str) -> Result<Vec<ApiKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(line, key)| ApiKey::unrestricted(key).labelled(format!("{source}:{line}")))
        .collect())
}

/// Applies the environment: `WASMSINK_LISTEN`, `WASMSINK_DATA_DIR`,
/// `WASMSINK_API_KEYS` (comma-separated), `WASMSINK_API_KEYS_FILE`,
/// `WASMSINK_AUTH` and `WASMSINK_TLS_{CERT,KEY,CLIENT_CA}`. The environment
/// wins over the file.
pub fn apply_env(
    server: &mut ServerConfig,
    store: &mut StoreConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    if let Some(listen) = env("WASMSINK_LISTEN") {
        match parse_listen(&listen) {
            Ok(addr) => server.listen = addr,
            Err(reason) => problems.push(ConfigProblem::global("WASMSINK_LISTEN", reason)),
        }
    }
    if let Some(dir) = env("WASMSINK_DATA_DIR").filter(|d| !d.is_empty()) {
        store.data_dir = PathBuf::from(dir);
    }
    if let Some(keys) = env("WASMSINK_API_KEYS") {
        server.api_keys.extend(
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .enumerate()
                .map(|(index, key)| {
                    ApiKey::unrestricted(key).labelled(format!("WASMSINK_API_KEYS[{index}]"))
                }),
        );
    }
    if let Some(path) = env("WASMSINK_API_KEYS_FILE").filter(|p| !p.is_empty()) {
        match read_key_file(&path, "WASMSINK_API_KEYS_FILE") {
            Ok(mut keys) => server.api_keys.append(&mut keys),
            Err(reason) => problems.push(ConfigProblem::global("WASMSINK_API_KEYS_FILE", reason)),
        }
    }
    if let Some(mode) = env("WASMSINK_AUTH").filter(|m| !m.is_empty()) {
        match parse_auth(&mode) {
            Ok(mode) => server.auth = mode,
            Err(reason) => problems.push(ConfigProblem::global("WASMSINK_AUTH", reason)),
        }
    }
    if server.auth == AuthMode::None && !server.api_keys.is_empty() {
        problems.push(ConfigProblem::global(
            "WASMSINK_AUTH",
            "\"none\" turns API keys off, but keys are configured: remove one or the other",
        ));
    }
    let tls_env = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    match (
        tls_env("WASMSINK_TLS_CERT"),
        tls_env("WASMSINK_TLS_KEY"),
        tls_env("WASMSINK_TLS_CLIENT_CA"),
    ) {
        (None, None, None) => {}
        (Some(cert), Some(key), client_ca) => {
            server.tls = Some(TlsFiles {
                cert,
                key,
                client_ca,
            })
        }
        (None, None, Some(client_ca)) if server.tls.is_some() => {
            if let Some(tls) = &mut server.tls {
                tls.client_ca = Some(client_ca);
            }
        }
        _ => problems.push(ConfigProblem::global(
            "WASMSINK_TLS_CERT",
            "WASMSINK_TLS_CERT and WASMSINK_TLS_KEY are set together",
        )),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn server_table_reads_listen_and_keys() {
        let mut problems = Vec::new();
        let server = parse_server(
            &table(
                "listen = \"0.0.0.0:9000\"\n[[api_keys]]\nkey = \"k1\"\n[[api_keys]]\nkey = \"k2\"\nendpoints = [\"/api/messenger\"]\nmethods = [\"get\"]\n",
            ),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(server.listen.port(), 9000);
        assert_eq!(server.api_keys.len(), 2);
        let limited = &server.api_keys[1];
        assert!(limited.allows("GET", "/api/messenger/x"));
        assert!(!limited.allows("POST", "/api/messenger"));
        assert!(!limited.allows("GET", "/api/messengerx"));
        assert!(!limited.allows("GET", "/connectors"));
        assert!(server.api_keys[0].allows("DELETE", "/connectors/a"));
        assert!(!format!("{server:?}").contains("k1"));
    }

    #[test]
    fn keys_expire_at_a_date_time_or_epoch_milliseconds() {
        let mut problems = Vec::new();
        let server = parse_server(
            &table(
                "[[api_keys]]\nkey = \"a\"\nexpires = 2027-01-31T01:00:00+01:00\n\
                 [[api_keys]]\nkey = \"b\"\nexpires = 1735689600000\n\
                 [[api_keys]]\nkey = \"c\"\nexpires = \"tomorrow\"\n",
            ),
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "server.api_keys[2].expires");
        // 2027-01-31T00:00:00Z
        assert_eq!(server.api_keys[0].expires_at, Some(1_801_353_600_000));
        assert!(!server.api_keys[0].expired_at(1_801_353_599_999));
        assert!(server.api_keys[0].expired_at(1_801_353_600_000));
        assert_eq!(server.api_keys[1].expires_at, Some(1_735_689_600_000));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn unknown_server_and_store_keys_are_problems() {
        let mut problems = Vec::new();
        parse_server(&table("port = 1\nlisten = \"nope\"\n"), &mut problems);
        parse_store(&table("dir = \"x\"\n"), &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn guest_caps_are_read_up_to_their_ceilings() {
        let mut problems = Vec::new();
        let server = parse_server(
            &table("[guests]\nmax_init_ms = 20000\nmax_call_ms = 2500\nmax_memory_mb = 512\n"),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let caps = server.policy.guest_caps;
        assert_eq!(caps.init, Duration::from_secs(20));
        assert_eq!(caps.call, Duration::from_millis(2500));
        assert_eq!(caps.memory_mb, 512);
        let mut problems = Vec::new();
        parse_server(
            &table("[guests]\nmax_call_ms = 60001\nmax_memory_mb = 0\n"),
            &mut problems,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server.guests.max_call_ms", "server.guests.max_memory_mb"]
        );
    }

    #[test]
    fn env_overrides_the_file() {
        let mut server = ServerConfig::default();
        let mut store = StoreConfig::default();
        apply_env(&mut server, &mut store, |name| match name {
            "WASMSINK_LISTEN" => Some("127.0.0.1:1234".into()),
            "WASMSINK_DATA_DIR" => Some("/tmp/d".into()),
            "WASMSINK_API_KEYS" => Some("a, b".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(server.listen.port(), 1234);
        assert_eq!(store.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(server.api_keys.len(), 2);
    }
}
