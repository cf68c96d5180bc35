//! The `[server]` and `[store]` tables: where the REST API listens, which
//! API keys it accepts, and where the durable connector store lives.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8083"          # env WASMSINK_LISTEN
//! api.keys.file = "/run/secrets/keys" # one key per line; env WASMSINK_API_KEYS_FILE
//!
//! [[server.api_keys]]
//! key = "${env:ADMIN_KEY}"
//!
//! [[server.api_keys]]
//! key = "${file:/run/secrets/keys.properties:messenger}"
//! endpoints = ["/api/messenger"]      # path prefixes; default: every endpoint
//! methods = ["GET"]                   # default: every method
//!
//! [store]
//! data.dir = "./wasmsink-data"        # env WASMSINK_DATA_DIR
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::ConfigProblem;
use super::secrets::resolve_value;

/// The default listen address, Kafka Connect's port on loopback.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./wasmsink-data";

/// The REST server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the REST API listens.
    pub listen: SocketAddr,
    /// Accepted API keys; empty means the API is open.
    pub api_keys: Vec<ApiKey>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            api_keys: Vec::new(),
        }
    }
}

/// One API key and what it may reach. The key itself is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The resolved key.
    pub key: String,
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
            endpoints: Vec::new(),
            methods: Vec::new(),
            expires_at: None,
        }
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

/// Parses the `[server]` table.
pub(super) fn parse_server(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> ServerConfig {
    let mut server = ServerConfig::default();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("listen", toml::Value::String(text)) => match parse_listen(text) {
                Ok(addr) => server.listen = addr,
                Err(reason) => problems.push(ConfigProblem::global("server.listen", reason)),
            },
            ("api", toml::Value::Table(api)) => {
                match api.get("keys").and_then(|k| k.get("file")) {
                    Some(toml::Value::String(path)) if api.len() == 1 && api["keys"].as_table().is_some_and(|t| t.len() == 1) => {
                        match read_key_file(path) {
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
                }
            }
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
                "unknown key or wrong type; the [server] table knows listen (a string), api.keys.file (a string) and [[server.api_keys]]",
            )),
        }
    }
    server
}

fn parse_api_key(
    at: &str,
    entry: &toml::Table,
    problems: &mut Vec<ConfigProblem>,
) -> Option<ApiKey> {
    let mut key = None;
    let mut endpoints = Vec::new();
    let mut methods = Vec::new();
    let mut expires_at = None;
    let strings = |value: &toml::Value| -> Option<Vec<String>> {
        value
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    for (name, value) in entry {
        match (name.as_str(), value) {
            ("key", toml::Value::String(text)) => match resolve_value(text) {
                Ok(resolved) if !resolved.trim().is_empty() => {
                    key = Some(resolved.trim().to_owned())
                }
                Ok(_) => problems.push(ConfigProblem::global(format!("{at}.key"), "is empty")),
                Err(reason) => problems.push(ConfigProblem::global(
                    format!("{at}.key"),
                    reason.to_string(),
                )),
            },
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
                "unknown key or wrong type; an API key has key, endpoints, methods and expires",
            )),
        }
    }
    if key.is_none() && !problems.iter().any(|p| p.key.starts_with(at)) {
        problems.push(ConfigProblem::global(format!("{at}.key"), "missing"));
    }
    Some(ApiKey {
        key: key?,
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

/// Reads a key file: one key per line; blank lines and `#` comments skipped.
fn read_key_file(path: &str) -> Result<Vec<ApiKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(ApiKey::unrestricted)
        .collect())
}

/// Applies the environment: `WASMSINK_LISTEN`, `WASMSINK_DATA_DIR`,
/// `WASMSINK_API_KEYS` (comma-separated) and `WASMSINK_API_KEYS_FILE`. The
/// environment wins over the file.
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
                .map(ApiKey::unrestricted),
        );
    }
    if let Some(path) = env("WASMSINK_API_KEYS_FILE").filter(|p| !p.is_empty()) {
        match read_key_file(&path) {
            Ok(mut keys) => server.api_keys.append(&mut keys),
            Err(reason) => problems.push(ConfigProblem::global("WASMSINK_API_KEYS_FILE", reason)),
        }
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
