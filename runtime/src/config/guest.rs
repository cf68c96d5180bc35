//! A connector's `guest.*` keys: which component runs, its configuration,
//! its limits and what a guest failure does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigProblem;
use crate::guest::GuestLimits;

/// Prefix of the properties handed to the guest's `init`.
pub const GUEST_CONFIG_PREFIX: &str = "guest.config.";
/// Largest memory cap a connector may ask for.
const MAX_MEMORY_MB: usize = 1024;
/// Longest deadline a guest call may be given.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// What a trap, timeout or out-of-memory in a guest call does to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuestErrorPolicy {
    /// Stop the connector without committing the record (the default).
    #[default]
    Stop,
    /// Produce the record to the dead-letter topic and go on.
    DeadLetter,
    /// Drop the record (logged and counted) and go on.
    Drop,
}

/// The guest a connector runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestSettings {
    /// `guest.path`: a `.wasm` component; `None` runs the built-in guest.
    pub path: Option<PathBuf>,
    /// `guest.config.*`, prefix removed, handed to `init`.
    pub config: Vec<(String, String)>,
    /// `guest.errors`.
    pub errors: GuestErrorPolicy,
    /// `guest.timeout.{init,transform,decide}.ms` and `guest.memory.max.mb`.
    pub limits: GuestLimits,
}

/// Reads the `guest.*` keys; returns the settings and the keys it read.
pub(super) fn read(
    connector: &str,
    properties: &BTreeMap<String, String>,
    has_dead_letter_topic: bool,
    problems: &mut Vec<ConfigProblem>,
) -> (GuestSettings, Vec<String>) {
    let mut settings = GuestSettings::default();
    let mut used = Vec::new();
    let mut problem =
        |key: &str, reason: String| problems.push(ConfigProblem::connector(connector, key, reason));
    for (key, value) in properties.range("guest.".to_owned()..) {
        let Some(name) = key.strip_prefix("guest.") else {
            break;
        };
        used.push(key.clone());
        let value = value.trim();
        match name {
            "path" => match value {
                "" => {}
                path if !path.ends_with(".wasm") => problem(
                    key,
                    format!(
                        "\"{path}\" must be a .wasm component (compiled artifacts are never accepted)"
                    ),
                ),
                path if !std::path::Path::new(path).is_file() => {
                    problem(key, format!("\"{path}\" does not exist"))
                }
                path => settings.path = Some(PathBuf::from(path)),
            },
            "errors" => match value.to_ascii_lowercase().as_str() {
                "stop" => settings.errors = GuestErrorPolicy::Stop,
                "dead-letter" if has_dead_letter_topic => {
                    settings.errors = GuestErrorPolicy::DeadLetter
                }
                "dead-letter" => problem(
                    key,
                    "dead-letter needs errors.deadletterqueue.topic.name or errors.deadletterqueue.messenger".into(),
                ),
                "drop" => settings.errors = GuestErrorPolicy::Drop,
                other => problem(
                    key,
                    format!("\"{other}\" is not one of stop, dead-letter, drop"),
                ),
            },
            "timeout.init.ms" | "timeout.transform.ms" | "timeout.decide.ms" => {
                match value.parse::<u64>() {
                    Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => {
                        let deadline = Duration::from_millis(ms);
                        match name {
                            "timeout.init.ms" => settings.limits.init_timeout = deadline,
                            "timeout.transform.ms" => settings.limits.transform_timeout = deadline,
                            _ => settings.limits.decide_timeout = deadline,
                        }
                    }
                    _ => problem(
                        key,
                        format!(
                            "\"{value}\" is not a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
                        ),
                    ),
                }
            }
            "memory.max.mb" => match value.parse::<usize>() {
                Ok(mb) if (1..=MAX_MEMORY_MB).contains(&mb) => {
                    settings.limits.max_memory_bytes = mb << 20
                }
                _ => problem(
                    key,
                    format!("\"{value}\" is not a whole number of MiB from 1 to {MAX_MEMORY_MB}"),
                ),
            },
            _ => match key.strip_prefix(GUEST_CONFIG_PREFIX) {
                Some(guest_key) if !guest_key.is_empty() => settings
                    .config
                    .push((guest_key.to_owned(), value.to_owned())),
                _ => problem(
                    key,
                    "unknown key; the guest keys are guest.path, guest.config.*, guest.errors, \
                     guest.timeout.{init,transform,decide}.ms and guest.memory.max.mb"
                        .into(),
                ),
            },
        }
    }
    if settings.path.is_none() && !settings.config.is_empty() {
        problem(
            "guest.config",
            "guest.config.* is only passed to a custom guest; set guest.path".into(),
        );
    }
    (settings, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_props(list: &[(&str, &str)], dlq: bool) -> (GuestSettings, Vec<ConfigProblem>) {
        let properties = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut problems = Vec::new();
        let (settings, _) = read("c", &properties, dlq, &mut problems);
        (settings, problems)
    }

    #[test]
    fn defaults_run_the_built_in_guest_with_the_issue_limits() {
        let (settings, problems) = read_props(&[], false);
        assert!(problems.is_empty());
        assert_eq!(settings.path, None);
        assert_eq!(settings.errors, GuestErrorPolicy::Stop);
        assert_eq!(
            settings.limits.transform_timeout,
            Duration::from_millis(100)
        );
        assert_eq!(settings.limits.decide_timeout, Duration::from_millis(10));
        assert_eq!(settings.limits.init_timeout, Duration::from_secs(1));
        assert_eq!(settings.limits.max_memory_bytes, 64 << 20);
    }

    #[test]
    fn every_key_is_read_and_checked() {
        let wasm = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
        let path = wasm.path().to_str().unwrap();
        let (settings, problems) = read_props(
            &[
                ("guest.path", path),
                ("guest.config.secret", "whsec_x"),
                ("guest.config.route.header", "route"),
                ("guest.errors", "DROP"),
                ("guest.timeout.transform.ms", "250"),
                ("guest.memory.max.mb", "16"),
            ],
            false,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(settings.path.as_deref(), Some(wasm.path()));
        assert_eq!(
            settings.config,
            [
                ("route.header".into(), "route".into()),
                ("secret".into(), "whsec_x".into())
            ]
        );
        assert_eq!(settings.errors, GuestErrorPolicy::Drop);
        assert_eq!(
            settings.limits.transform_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(settings.limits.max_memory_bytes, 16 << 20);
    }

    #[test]
    fn bad_values_are_refused() {
        let (_, problems) = read_props(
            &[
                ("guest.path", "guest.cwasm"),
                ("guest.errors", "dead-letter"),
                ("guest.timeout.decide.ms", "0"),
                ("guest.memory.max.mb", "4096"),
                ("guest.colour", "blue"),
            ],
            false,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "guest.colour",
                "guest.errors",
                "guest.memory.max.mb",
                "guest.path",
                "guest.timeout.decide.ms"
            ]
        );
        let (_, missing) = read_props(&[("guest.path", "/no/such/file.wasm")], false);
        assert!(missing[0].reason.contains("does not exist"));
        let (_, orphan) = read_props(&[("guest.config.a", "1")], false);
        assert_eq!(orphan[0].key, "guest.config");
        let (settings, ok) = read_props(&[("guest.errors", "dead-letter")], true);
        assert!(ok.is_empty());
        assert_eq!(settings.errors, GuestErrorPolicy::DeadLetter);
    }
}
