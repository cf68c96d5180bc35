//! Reading a configuration file: TOML tables flattened back into Kafka-style
//! dotted property names.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::server::{parse_server, parse_store};
use super::{
    Config, ConfigError, ConfigProblem, ConnectorConfig, RuntimeConfig, ServerConfig, StoreConfig,
};
use crate::security::{Trust, client_properties};

/// The only key whose TOML table form is kept whole, as a JSON object string,
/// instead of being flattened: `callback.request.headers = { Accept = "..." }`.
const JSON_OBJECT_KEYS: &[&str] = &["callback.request.headers"];

/// Reads and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::from(vec![ConfigProblem::global(
            path.display().to_string(),
            format!("cannot read the file: {e}"),
        )])
    })?;
    parse_in(&text, path.parent())
}

/// Parses and validates configuration text; relative paths are taken from
/// the working directory.
pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse_in(text, None)
}

/// Parses configuration text whose relative paths (`guest.path`) are
/// relative to `base` (the file's directory).
fn parse_in(text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
    let document: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::from(vec![ConfigProblem::global(
            "(file)",
            format!("not valid TOML: {e}"),
        )])
    })?;

    let mut problems = Vec::new();
    let mut kafka = BTreeMap::new();
    let mut runtime = RuntimeConfig::default();
    let mut connectors = Vec::new();
    let mut server = ServerConfig::default();
    let mut store = StoreConfig::default();

    // The process tables first: connectors are checked against [server]'s policy.
    for (table_name, value) in &document {
        match (table_name.as_str(), value) {
            ("kafka", toml::Value::Table(table)) => kafka = flatten(None, table, &mut problems),
            ("runtime", toml::Value::Table(table)) => runtime = parse_runtime(table, &mut problems),
            ("server", toml::Value::Table(table)) => server = parse_server(table, &mut problems),
            ("store", toml::Value::Table(table)) => store = parse_store(table, &mut problems),
            ("connectors", toml::Value::Table(_)) => {}
            ("kafka" | "runtime" | "server" | "store" | "connectors", _) => {
                problems.push(ConfigProblem::global(table_name.clone(), "must be a table"));
            }
            (other, _) => problems.push(ConfigProblem::global(
                other,
                "unknown top-level key; expected the tables [kafka], [runtime], [server], [store] and [connectors.NAME]",
            )),
        }
    }
    for key in ["bootstrap.servers", "metadata.broker.list"] {
        if let Some(list) = kafka.get(key) {
            server
                .policy
                .client
                .operator_brokers
                .extend(client_properties::normalize_brokers(list));
        }
    }
    if let Some(toml::Value::Table(table)) = document.get("connectors") {
        for (name, value) in table {
            let toml::Value::Table(body) = value else {
                problems.push(ConfigProblem::connector(
                    name,
                    "(table)",
                    "must be a table: [connectors.NAME]",
                ));
                continue;
            };
            let mut properties = flatten(Some(name), body, &mut problems);
            resolve_relative_path(&mut properties, "guest.path", base);
            match ConnectorConfig::from_raw_properties(
                name,
                &properties,
                &server.policy,
                Trust::Operator,
            ) {
                Ok(connector) => connectors.push(connector),
                Err(mut found) => problems.append(&mut found),
            }
        }
    }
    // No connector is fine: connectors may all be managed over the REST API.
    if problems.is_empty() {
        Ok(Config {
            kafka,
            runtime,
            connectors,
            server,
            store,
        })
    } else {
        Err(problems.into())
    }
}

fn parse_runtime(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> RuntimeConfig {
    let mut runtime = RuntimeConfig::default();
    for (key, value) in flatten(None, table, problems) {
        match key.as_str() {
            "shutdown.timeout.sec" => match value.parse::<f64>() {
                Ok(secs) if secs.is_finite() && (0.0..=3600.0).contains(&secs) => {
                    runtime.shutdown_timeout = Duration::from_secs_f64(secs);
                }
                _ => problems.push(ConfigProblem::global(
                    "runtime.shutdown.timeout.sec",
                    format!("\"{value}\" is not a number of seconds between 0 and 3600"),
                )),
            },
            other => problems.push(ConfigProblem::global(
                format!("runtime.{other}"),
                "unknown key; the [runtime] table knows shutdown.timeout.sec",
            )),
        }
    }
    runtime
}

/// Turns nested TOML tables back into dotted keys with string values, the way
/// Kafka properties are written. Arrays of scalars become comma-separated
/// lists (`topics = ["a", "b"]`).
fn flatten(
    connector: Option<&str>,
    table: &toml::Table,
    problems: &mut Vec<ConfigProblem>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten_into(connector, "", table, &mut out, problems);
    out
}

fn flatten_into(
    connector: Option<&str>,
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
    problems: &mut Vec<ConfigProblem>,
) {
    for (key, value) in table {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let problem = |reason: &str| match connector {
            Some(name) => ConfigProblem::connector(name, full.clone(), reason),
            None => ConfigProblem::global(full.clone(), reason),
        };
        match value {
            toml::Value::Table(inner) if JSON_OBJECT_KEYS.contains(&full.as_str()) => {
                match serde_json::to_string(inner) {
                    Ok(json) => {
                        out.insert(full, json);
                    }
                    Err(e) => problems.push(problem(&format!(
                        "cannot be turned into a JSON object: {e}"
                    ))),
                }
            }
            toml::Value::Table(inner) => flatten_into(connector, &full, inner, out, problems),
            toml::Value::Array(items) => {
                match items.iter().map(scalar_text).collect::<Option<Vec<_>>>() {
                    Some(texts) => {
                        out.insert(full, texts.join(","));
                    }
                    None => problems.push(problem(
                        "a list may only hold strings, numbers and booleans",
                    )),
                }
            }
            scalar => {
                if let Some(text) = scalar_text(scalar) {
                    out.insert(full, text);
                }
            }
        }
    }
}

/// Makes a relative path property relative to `base` instead of the
/// working directory.
fn resolve_relative_path(
    properties: &mut BTreeMap<String, String>,
    key: &str,
    base: Option<&Path>,
) {
    let (Some(base), Some(value)) = (base, properties.get_mut(key)) else {
        return;
    };
    let path = Path::new(value.trim());
    if path.is_relative() && !value.trim().is_empty() {
        *value = base.join(path).to_string_lossy().into_owned();
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [kafka]
        bootstrap.servers = "127.0.0.1:9092"

        [connectors.orders]
        topics = "orders"
        callback.request.url = "http://127.0.0.1:8080/hook"
    "#;

    #[test]
    fn dotted_keys_become_kafka_property_names() {
        let config = parse_str(MINIMAL).unwrap();
        assert_eq!(
            config.kafka.get("bootstrap.servers").map(String::as_str),
            Some("127.0.0.1:9092")
        );
        assert_eq!(config.connectors.len(), 1);
        let connector = &config.connectors[0];
        assert_eq!(connector.name, "orders");
        assert_eq!(
            connector.callback.url.as_str(),
            "http://127.0.0.1:8080/hook"
        );
    }

    #[test]
    fn quoted_keys_and_nested_tables_give_the_same_names() {
        let text = r#"
            [kafka]
            "bootstrap.servers" = "b:1"
            [connectors.a]
            "topics" = ["t1", "t2"]
            "callback.request.url" = "http://h/x"
            callback.request.headers = { "Content-Type" = "application/json", apikey = "k" }
            retry.backoff.sec = [1, 0.5]
        "#;
        let config = parse_str(text).unwrap();
        let connector = &config.connectors[0];
        assert_eq!(
            connector.subscription,
            crate::config::Subscription::Topics(vec!["t1".into(), "t2".into()])
        );
        assert_eq!(
            connector.callback.headers,
            vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("apikey".to_string(), "k".to_string())
            ]
        );
        assert_eq!(connector.strategy.backoff.waits_ms(), &[1000, 500]);
    }

    #[test]
    fn every_problem_is_reported_with_connector_and_key() {
        let text = r#"
            [connectors.a]
            topics = "t"
            callback.request.url = "ftp://nope"
            exception.strategy = "SOMETIMES"
            [connectors.b]
            callback.request.url = "http://h"
            request.delay.sec = -1
        "#;
        let err = parse_str(text).unwrap_err();
        let rendered = err.to_string();
        assert!(
            rendered.contains("connector \"a\": key \"callback.request.url\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("connector \"a\": key \"exception.strategy\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("connector \"b\": key \"topics\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("connector \"b\": key \"request.delay.sec\""),
            "{rendered}"
        );
        assert_eq!(err.problems.len(), 4, "{rendered}");
    }

    #[test]
    fn unknown_tables_and_empty_files_are_refused() {
        assert!(
            parse_str("[kafkaa]\nx = 1\n")
                .unwrap_err()
                .to_string()
                .contains("unknown top-level key")
        );
        // A file without connectors is valid: they may be managed over REST.
        assert!(parse_str("").unwrap().connectors.is_empty());
        assert!(
            parse_str("not toml = = 1")
                .unwrap_err()
                .to_string()
                .contains("not valid TOML")
        );
    }

    #[test]
    fn every_example_config_is_valid() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&examples).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                if let Err(error) = load_file(&path) {
                    panic!("{}: {error}", path.display());
                }
                checked += 1;
            }
        }
        assert!(
            checked > 0,
            "no example configs found in {}",
            examples.display()
        );
    }

    #[test]
    fn runtime_table_sets_the_shutdown_timeout() {
        let text = format!("[runtime]\nshutdown.timeout.sec = 2.5\n{MINIMAL}");
        assert_eq!(
            parse_str(&text).unwrap().runtime.shutdown_timeout,
            Duration::from_millis(2500)
        );
        let bad = format!("[runtime]\nshutdown.timeout.sec = \"soon\"\nspeed = 1\n{MINIMAL}");
        let err = parse_str(&bad).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }
}
