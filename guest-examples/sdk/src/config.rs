//! Typed access to the guest's configuration (`guest.config.*`).

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, Result};

/// The guest's configuration: the connector's `guest.config.*` properties,
/// with the `guest.config.` prefix removed, as given to `init`.
///
/// Getters return [`ErrorKind::Fatal`](crate::ErrorKind::Fatal) errors whose
/// messages name the property as the operator wrote it
/// (`guest.config.KEY`), so `init` can return them as they are. Values are
/// never echoed by [`Config::require`], so it is safe for secrets; the
/// parsing getters show the bad value.
///
/// ```
/// use std::time::Duration;
/// use wasmsink_guest::Config;
///
/// let config = Config::from_pairs([("max-attempts", "5"), ("base", "250ms"), ("cpa", "1m")]);
/// assert_eq!(config.parse_or("max-attempts", 8u32).unwrap(), 5);
/// assert_eq!(config.duration_or("base", Duration::from_secs(1)).unwrap(), Duration::from_millis(250));
/// assert_eq!(
///     config.require("secret").unwrap_err().message(),
///     "guest.config.secret is required"
/// );
/// assert_eq!(
///     config.check_keys(&["max-attempts", "base", "cap"]).unwrap_err().message(),
///     "unknown guest.config.cpa (did you mean guest.config.cap?)"
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration from (key, value) pairs; a repeated key's last value wins.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Config {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Every (key, value) pair, in the order the host gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when there is no configuration at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`; an error naming it when it is missing or blank.
    pub fn require(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            Some(_) => Err(Error::fatal(format!("guest.config.{key} is empty"))),
            None => Err(Error::fatal(format!("guest.config.{key} is required"))),
        }
    }

    /// Parses `key` with [`FromStr`] (surrounding spaces trimmed); `None` when
    /// it is not set.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        raw.trim().parse().map(Some).map_err(|e| {
            Error::fatal(format!(
                "guest.config.{key} = {raw:?}: expected {}: {e}",
                type_label::<T>()
            ))
        })
    }

    /// [`Config::parse`], with `default` when `key` is not set.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Parses `key` as a duration: a number and a unit, `ms`, `s`, `m` or
    /// `h` (`"250ms"`, `"1.5s"`, `"2m"`); `None` when it is not set.
    pub fn duration(&self, key: &str) -> Result<Option<Duration>> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        parse_duration(raw)
            .map(Some)
            .map_err(|reason| Error::fatal(format!("guest.config.{key} = {raw:?}: {reason}")))
    }

    /// [`Config::duration`], with `default` when `key` is not set.
    pub fn duration_or(&self, key: &str, default: Duration) -> Result<Duration> {
        Ok(self.duration(key)?.unwrap_or(default))
    }

    /// Fails on the first key that is not in `known`, suggesting the closest
    /// known key, so a typo in a connector file is not silently ignored.
    pub fn check_keys(&self, known: &[&str]) -> Result<()> {
        for (key, _) in &self.entries {
            if known.contains(&key.as_str()) {
                continue;
            }
            let closest = known
                .iter()
                .map(|k| (edit_distance(k, key), *k))
                .filter(|(d, k)| *d <= k.len().max(key.len()) / 3 + 1)
                .min();
            let mut message = format!("unknown guest.config.{key}");
            match closest {
                Some((_, k)) => message.push_str(&format!(" (did you mean guest.config.{k}?)")),
                None if known.is_empty() => {
                    message.push_str(" (this guest takes no configuration)")
                }
                None => message.push_str(&format!(" (known: {})", known.join(", "))),
            }
            return Err(Error::fatal(message));
        }
        Ok(())
    }
}

/// A short name for the expected type in error messages.
fn type_label<T>() -> String {
    let name = std::any::type_name::<T>();
    match name {
        "bool" => "true or false".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        other => format!("a {}", other.rsplit("::").next().unwrap_or(other)),
    }
}

/// Parses `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`.
fn parse_duration(raw: &str) -> std::result::Result<Duration, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err("add a unit: ms, s, m or h (e.g. \"500ms\", \"2s\")".into()),
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| "expected a number and a unit, e.g. \"500ms\" or \"1.5s\"".to_string())?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| e.to_string())
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_value_wins_and_blank_required_values_fail() {
        let config = Config::from_pairs([("a", "1"), ("a", "2"), ("b", " ")]);
        assert_eq!(config.get("a"), Some("2"));
        assert_eq!(config.get_or("c", "d"), "d");
        assert_eq!(
            config.require("b").unwrap_err().message(),
            "guest.config.b is empty"
        );
        assert_eq!(config.iter().count(), 3);
    }

    #[test]
    fn parse_errors_name_the_key_the_value_and_the_type() {
        let config = Config::from_pairs([("n", "-1"), ("on", "yes")]);
        assert_eq!(
            config.parse::<u32>("n").unwrap_err().message(),
            "guest.config.n = \"-1\": expected a whole number, 0 or more: invalid digit found in string"
        );
        assert_eq!(
            config.parse::<bool>("on").unwrap_err().message(),
            "guest.config.on = \"yes\": expected true or false: provided string was not `true` or `false`"
        );
        assert_eq!(config.parse::<u32>("missing").unwrap(), None);
    }

    #[test]
    fn durations_need_a_unit() {
        let d = |raw: &str| parse_duration(raw);
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d(" 1.5 s "), Ok(Duration::from_millis(1500)));
        assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
        assert!(d("500").unwrap_err().contains("add a unit"));
        assert!(d("5d").unwrap_err().contains("unknown unit"));
        assert!(d("ms").is_err());
        let config = Config::from_pairs([("cap", "10")]);
        assert!(
            config
                .duration("cap")
                .unwrap_err()
                .message()
                .starts_with("guest.config.cap = \"10\": add a unit")
        );
    }

    #[test]
    fn unknown_keys_are_reported_with_suggestions() {
        let config = Config::from_pairs([("max-atempts", "3")]);
        assert_eq!(
            config
                .check_keys(&["max-attempts", "base"])
                .unwrap_err()
                .message(),
            "unknown guest.config.max-atempts (did you mean guest.config.max-attempts?)"
        );
        assert_eq!(
            config.check_keys(&["zzz"]).unwrap_err().message(),
            "unknown guest.config.max-atempts (known: zzz)"
        );
        assert!(
            config
                .check_keys(&[])
                .unwrap_err()
                .message()
                .ends_with("takes no configuration)")
        );
        assert!(config.check_keys(&["max-atempts"]).is_ok());
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
