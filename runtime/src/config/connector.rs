//! One connector's configuration: Kafka Connect property names in, a
//! validated [`ConnectorConfig`] out, with every problem reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::{Method, Url};
use wasmsink_policy::StrategyConfig;
use wasmsink_policy::strategy::{
    KEY_EXCEPTION_STRATEGY, KEY_RETRY_BACKOFF, KEY_STOP_BACKOFF, KEY_SUCCESS_ON_2XX,
};

use super::ConfigProblem;
use super::delivery::DeliverySettings;
use super::guest::GuestSettings;
use super::headers::parse_headers;
use crate::security::Inherit;

/// The connector class of the original Kafka Connect HTTP sink; configs
/// written for it work unchanged.
pub const SEED_CONNECTOR_CLASS: &str = "nz.ac.auckland.kafka.http.sink.HttpSinkConnector";
/// Short aliases accepted for `connector.class`.
const CONNECTOR_CLASS_ALIASES: &[&str] = &["HttpSinkConnector", "HttpSink", "wasmsink"];
/// Converters whose output is the record bytes unchanged.
const BYTE_PRESERVING_CONVERTERS: &[&str] = &[
    "org.apache.kafka.connect.storage.StringConverter",
    "org.apache.kafka.connect.converters.ByteArrayConverter",
];
/// Kafka Connect framework keys that are accepted for compatibility and have
/// no effect in wasmsink.
const NO_EFFECT_KEYS: &[&str] = &[
    "errors.tolerance",
    "errors.log.enable",
    "errors.log.include.messages",
    "errors.retry.timeout",
    "errors.retry.delay.max.ms",
    "errors.deadletterqueue.topic.replication.factor",
    "config.action.reload",
];
/// Consumer properties that wasmsink sets itself because at-least-once
/// delivery depends on them.
const RESERVED_CONSUMER_KEYS: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];
/// Largest accepted `request.delay.sec`: one year.
const MAX_DELAY_SECS: f64 = 365.0 * 24.0 * 3600.0;
/// Default connect and read timeout, as the reference.
const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// A validated connector.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// Connector name (the TOML table name or the REST `name`).
    pub name: String,
    /// The properties exactly as given, for display and for the guest.
    pub properties: BTreeMap<String, String>,
    /// What to consume.
    pub subscription: Subscription,
    /// Consumer group; `connect-<name>` unless `consumer.override.group.id` is set.
    pub group_id: String,
    /// Where and how to call the HTTP callback.
    pub callback: CallbackConfig,
    /// Retry and give-up strategy, handed to the built-in guest.
    pub strategy: StrategyConfig,
    /// `request.delay.sec`: how long after its timestamp a record is sent.
    pub request_delay: Duration,
    /// `behavior.on.null.values`.
    pub null_values: NullValueBehavior,
    /// The dead-letter topic, if any.
    pub dead_letter: Option<DeadLetterConfig>,
    /// `consumer.override.*` properties, prefix removed.
    pub consumer_overrides: BTreeMap<String, String>,
    /// `producer.override.*` properties (for the dead-letter producer), prefix removed.
    pub producer_overrides: BTreeMap<String, String>,
    /// How much of `[kafka]` the consumer takes: all of it, unless a config
    /// written over REST names a broker the operator did not.
    pub consumer_inherit: Inherit,
    /// The same for the dead-letter producer.
    pub producer_inherit: Inherit,
    /// Keys accepted for Kafka Connect compatibility that change nothing here.
    pub no_effect_keys: Vec<String>,
    /// The guest and its limits (`guest.*`).
    pub guest: GuestSettings,
    /// Ordering and concurrency (`delivery.*`).
    pub delivery: DeliverySettings,
}

/// Topics a connector consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// `topics`: a list of topic names.
    Topics(Vec<String>),
    /// `topics.regex`: every topic matching the pattern.
    Regex(String),
}

/// The HTTP callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// `callback.request.url`.
    pub url: Url,
    /// `callback.request.method`: POST, PUT or DELETE.
    pub method: Method,
    /// `callback.request.headers`, in order. Values may be secrets: never log them.
    pub headers: Vec<(String, String)>,
    /// `callback.timeout.connect.ms`; `None` (0) waits for ever.
    pub connect_timeout: Option<Duration>,
    /// `callback.timeout.read.ms`; `None` (0) waits for ever.
    pub read_timeout: Option<Duration>,
}

/// What to do with a record whose value is null (a tombstone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullValueBehavior {
    /// Skip it, log a warning and count it (the default).
    #[default]
    Ignore,
    /// Stop the connector without committing the record.
    Fail,
    /// Hand it to the guest; the built-in guest sends an empty body.
    Send,
}

/// The dead-letter topic, and who produces to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterConfig {
    /// `errors.deadletterqueue.topic.name`; with a messenger and no topic,
    /// the messenger's `defaultTopic`.
    pub topic: Option<String>,
    /// `errors.deadletterqueue.messenger`: the id or name of a Kafka
    /// messenger whose producer (its own cluster and credentials) writes the
    /// dead letters; without one, the connector's `[kafka]` cluster.
    pub messenger: Option<String>,
    /// `errors.deadletterqueue.context.headers.enable` (default true): add the
    /// `__connect.errors.*` context headers.
    pub context_headers: bool,
}

impl ConnectorConfig {
    /// What the built-in guest's `init` receives: the strategy's keys and values.
    pub fn builtin_guest_config(&self) -> Vec<(String, String)> {
        self.strategy
            .to_pairs()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }

    /// Validates a connector's properties, reporting every problem.
    pub fn from_properties(
        name: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut reader = Reader {
            connector: name,
            properties,
            used: BTreeSet::new(),
            problems: Vec::new(),
        };
        reader.check_name();
        reader.check_connector_class();
        reader.check_converters();
        reader.check_tasks_max();
        let subscription = reader.subscription();
        let callback = reader.callback();
        let strategy = reader.strategy();
        let request_delay = reader.request_delay();
        let null_values = reader.null_values();
        let dead_letter = reader.dead_letter();
        let guest = reader.guest(dead_letter.is_some());
        let delivery = reader.delivery();
        reader.check_unsupported_transforms();
        let consumer_overrides = reader.overrides("consumer.override.");
        let producer_overrides = reader.overrides("producer.override.");
        let no_effect_keys = reader.no_effect_keys();
        reader.check_unknown_keys();

        let Reader { problems, .. } = reader;
        match (subscription, callback, strategy) {
            (Some(subscription), Some(callback), Some(strategy)) if problems.is_empty() => {
                Ok(Self {
                    name: name.to_owned(),
                    properties: properties.clone(),
                    group_id: consumer_overrides
                        .get("group.id")
                        .cloned()
                        .unwrap_or_else(|| format!("connect-{name}")),
                    subscription,
                    callback,
                    strategy,
                    request_delay,
                    null_values,
                    dead_letter,
                    consumer_overrides,
                    producer_overrides,
                    consumer_inherit: Inherit::Everything,
                    producer_inherit: Inherit::Everything,
                    no_effect_keys,
                    guest,
                    delivery,
                })
            }
            _ => Err(problems),
        }
    }
}

/// Walks a property map, remembering which keys were read.
struct Reader<'a> {
    connector: &'a str,
    properties: &'a BTreeMap<String, String>,
    used: BTreeSet<&'a str>,
    problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    /// The trimmed value of `key`, marking it as read. Blank counts as absent.
    fn take(&mut self, key: &'a str) -> Option<&'a str> {
        let value = self.properties.get(key)?;
        self.used.insert(key);
        Some(value.trim()).filter(|v| !v.is_empty())
    }

    fn problem(&mut self, key: &str, reason: impl Into<String>) {
        self.problems
            .push(ConfigProblem::connector(self.connector, key, reason));
    }

    fn check_name(&mut self) {
        if !is_valid_connector_name(self.connector) {
            self.problem(
                "name",
                "a connector name is 1-249 characters of letters, digits, '.', '_' and '-'",
            );
        }
        if let Some(given) = self.take("name")
            && given != self.connector
        {
            self.problem(
                "name",
                format!(
                    "\"{given}\" differs from the connector's name \"{}\"",
                    self.connector
                ),
            );
        }
    }

    fn check_connector_class(&mut self) {
        if let Some(class) = self.take("connector.class")
            && class != SEED_CONNECTOR_CLASS
            && !CONNECTOR_CLASS_ALIASES.contains(&class)
        {
            self.problem(
                    "connector.class",
                    format!("\"{class}\" is not supported; use {SEED_CONNECTOR_CLASS} or one of {CONNECTOR_CLASS_ALIASES:?}"),
                );
        }
    }

    fn check_converters(&mut self) {
        for key in ["key.converter", "value.converter", "header.converter"] {
            if let Some(converter) = self.take(key)
                && !BYTE_PRESERVING_CONVERTERS.contains(&converter)
            {
                self.problem(
                        key,
                        format!(
                            "\"{converter}\" is not supported: wasmsink hands record bytes to the guest unchanged; \
                             use {} or {} and reshape payloads in a guest",
                            BYTE_PRESERVING_CONVERTERS[0], BYTE_PRESERVING_CONVERTERS[1]
                        ),
                    );
            }
        }
        // Converter sub-properties (e.g. value.converter.schemas.enable) are accepted and unused.
        let properties = self.properties;
        for key in properties.keys() {
            if ["key.converter.", "value.converter.", "header.converter."]
                .iter()
                .any(|p| key.starts_with(p))
            {
                self.used.insert(key);
            }
        }
    }

    fn check_tasks_max(&mut self) {
        if let Some(text) = self.take("tasks.max")
            && !text.parse::<u32>().is_ok_and(|n| n >= 1)
        {
            self.problem("tasks.max", format!("\"{text}\" is not a positive integer"));
        }
    }

    fn subscription(&mut self) -> Option<Subscription> {
        match (self.take("topics"), self.take("topics.regex")) {
            (Some(_), Some(_)) => {
                self.problem("topics", "set either topics or topics.regex, not both");
                None
            }
            (None, None) => {
                self.problem(
                    "topics",
                    "missing: set topics (a comma-separated list) or topics.regex",
                );
                None
            }
            (None, Some(regex)) => Some(Subscription::Regex(regex.to_owned())),
            (Some(list), None) => {
                let topics: Vec<String> = list.split(',').map(|t| t.trim().to_owned()).collect();
                match topics.iter().find(|t| !is_valid_topic_name(t)) {
                    Some(bad) => {
                        self.problem("topics", format!("\"{bad}\" is not a valid topic name"));
                        None
                    }
                    None => Some(Subscription::Topics(topics)),
                }
            }
        }
    }

    fn callback(&mut self) -> Option<CallbackConfig> {
        let url = self.url();
        let method = self.method();
        let separator = self
            .take("callback.header.separator")
            .map(unescape_separator)
            .unwrap_or("|");
        let headers = match self.take("callback.request.headers") {
            None => Some(Vec::new()),
            Some(text) => match parse_headers(text, separator) {
                Ok(headers) => Some(headers),
                Err(e) => {
                    self.problem("callback.request.headers", e.to_string());
                    None
                }
            },
        };
        let connect_timeout = self.timeout("callback.timeout.connect.ms");
        let read_timeout = self.timeout("callback.timeout.read.ms");
        Some(CallbackConfig {
            url: url?,
            method: method?,
            headers: headers?,
            connect_timeout: connect_timeout?,
            read_timeout: read_timeout?,
        })
    }

    fn url(&mut self) -> Option<Url> {
        const KEY: &str = "callback.request.url";
        let Some(text) = self.take(KEY) else {
            self.problem(KEY, "missing: the URL to call for each record");
            return None;
        };
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
            Ok(url) => {
                self.problem(
                    KEY,
                    format!(
                        "\"{text}\" must be an http:// or https:// URL with a host (scheme is {})",
                        url.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(KEY, format!("\"{text}\" is not a valid URL: {e}"));
                None
            }
        }
    }

    fn method(&mut self) -> Option<Method> {
        let singular = self.take("callback.request.method");
        let plural = self.take("callback.request.methods");
        let (key, text) = match (singular, plural) {
            (Some(s), Some(p)) if !s.eq_ignore_ascii_case(p) => {
                self.problem(
                    "callback.request.method",
                    format!("\"{s}\" conflicts with callback.request.methods \"{p}\""),
                );
                return None;
            }
            (Some(s), _) => ("callback.request.method", s),
            (None, Some(p)) => ("callback.request.methods", p),
            (None, None) => return Some(Method::POST),
        };
        match text.to_ascii_uppercase().as_str() {
            "POST" => Some(Method::POST),
            "PUT" => Some(Method::PUT),
            "DELETE" => Some(Method::DELETE),
            _ => {
                self.problem(key, format!("\"{text}\" is not one of POST, PUT, DELETE"));
                None
            }
        }
    }

    /// A timeout in ms; `Some(None)` means no timeout (0).
    fn timeout(&mut self, key: &'a str) -> Option<Option<Duration>> {
        let Some(text) = self.take(key) else {
            return Some(Some(Duration::from_millis(DEFAULT_TIMEOUT_MS)));
        };
        match text.parse::<u64>() {
            Ok(0) => Some(None),
            Ok(ms) => Some(Some(Duration::from_millis(ms))),
            Err(_) => {
                self.problem(
                    key,
                    format!("\"{text}\" is not a non-negative whole number of milliseconds"),
                );
                None
            }
        }
    }

    fn strategy(&mut self) -> Option<StrategyConfig> {
        let mut pairs = Vec::new();
        for key in [
            KEY_EXCEPTION_STRATEGY,
            KEY_RETRY_BACKOFF,
            KEY_STOP_BACKOFF,
            KEY_SUCCESS_ON_2XX,
        ] {
            if let Some(value) = self.properties.get(key) {
                self.used.insert(key);
                pairs.push((key, value.as_str()));
            }
        }
        match StrategyConfig::from_pairs(pairs) {
            Ok(strategy) => Some(strategy),
            Err(errors) => {
                for error in errors {
                    self.problem(error.key, error.reason);
                }
                None
            }
        }
    }

    fn request_delay(&mut self) -> Duration {
        const KEY: &str = "request.delay.sec";
        let Some(text) = self.take(KEY) else {
            return Duration::ZERO;
        };
        match text.parse::<f64>() {
            Ok(secs)
                if secs.is_finite()
                    && (0.0..=MAX_DELAY_SECS).contains(&secs)
                    && !text.starts_with('+') =>
            {
                Duration::from_secs_f64(secs)
            }
            _ => {
                self.problem(
                    KEY,
                    format!("\"{text}\" is not a number of seconds between 0 and one year"),
                );
                Duration::ZERO
            }
        }
    }

    fn null_values(&mut self) -> NullValueBehavior {
        const KEY: &str = "behavior.on.null.values";
        match self.take(KEY).map(str::to_ascii_lowercase).as_deref() {
            None | Some("ignore") => NullValueBehavior::Ignore,
            Some("fail") => NullValueBehavior::Fail,
            Some("send") => NullValueBehavior::Send,
            Some(other) => {
                self.problem(KEY, format!("\"{other}\" is not one of ignore, fail, send"));
                NullValueBehavior::Ignore
            }
        }
    }

    fn dead_letter(&mut self) -> Option<DeadLetterConfig> {
        const TOPIC: &str = "errors.deadletterqueue.topic.name";
        const HEADERS: &str = "errors.deadletterqueue.context.headers.enable";
        const MESSENGER: &str = "errors.deadletterqueue.messenger";
        let context_headers = match self.take(HEADERS).map(str::to_ascii_lowercase).as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.problem(HEADERS, format!("\"{other}\" is not true or false"));
                true
            }
        };
        let messenger = self.take(MESSENGER).map(str::to_owned);
        let topic = self.take(TOPIC);
        if let Some(topic) = topic
            && !is_valid_topic_name(topic)
        {
            self.problem(TOPIC, format!("\"{topic}\" is not a valid topic name"));
            return None;
        }
        if topic.is_none() && messenger.is_none() {
            return None;
        }
        Some(DeadLetterConfig {
            topic: topic.map(str::to_owned),
            messenger,
            context_headers,
        })
    }

    fn check_unsupported_transforms(&mut self) {
        for key in ["transforms", "predicates"] {
            if self.take(key).is_some() {
                self.problem(key, "single message transforms are not supported; reshape records in a guest instead");
            }
        }
    }

    fn overrides(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let properties = self.properties;
        let mut out = BTreeMap::new();
        for (key, value) in properties.range(prefix.to_owned()..) {
            let Some(property) = key.strip_prefix(prefix) else {
                break;
            };
            self.used.insert(key);
            if prefix == "consumer.override." && RESERVED_CONSUMER_KEYS.contains(&property) {
                self.problem(
                    key,
                    "is set by wasmsink itself: at-least-once delivery depends on it",
                );
            } else if property.is_empty() {
                self.problem(key, "names no property");
            } else {
                out.insert(property.to_owned(), value.trim().to_owned());
            }
        }
        out
    }

    fn guest(&mut self, has_dead_letter_topic: bool) -> GuestSettings {
        let (settings, used) = super::guest::read(
            self.connector,
            self.properties,
            has_dead_letter_topic,
            &mut self.problems,
        );
        let properties = self.properties;
        self.used.extend(
            used.iter()
                .filter_map(|key| properties.get_key_value(key).map(|(k, _)| k.as_str())),
        );
        settings
    }

    fn delivery(&mut self) -> DeliverySettings {
        let (settings, used) =
            super::delivery::read(self.connector, self.properties, &mut self.problems);
        let properties = self.properties;
        self.used.extend(
            used.iter()
                .filter_map(|key| properties.get_key_value(key).map(|(k, _)| k.as_str())),
        );
        settings
    }

    fn no_effect_keys(&mut self) -> Vec<String> {
        let present: Vec<&'a str> = NO_EFFECT_KEYS
            .iter()
            .copied()
            .filter(|k| self.properties.contains_key(*k))
            .collect();
        self.used.extend(present.iter().copied());
        present.into_iter().map(str::to_owned).collect()
    }

    fn check_unknown_keys(&mut self) {
        let unknown: Vec<&String> = self
            .properties
            .keys()
            .filter(|k| !self.used.contains(k.as_str()))
            .collect();
        for key in unknown {
            let reason = match closest_known_key(key) {
                Some(known) => format!("unknown key; did you mean \"{known}\"?"),
                None => "unknown key".to_owned(),
            };
            self.problem(key, reason);
        }
    }
}

/// Every key a connector understands, for suggestions.
const KNOWN_KEYS: &[&str] = &[
    "name",
    "connector.class",
    "tasks.max",
    "topics",
    "topics.regex",
    "key.converter",
    "value.converter",
    "header.converter",
    "callback.request.url",
    "callback.request.method",
    "callback.request.methods",
    "callback.request.headers",
    "callback.header.separator",
    "callback.timeout.connect.ms",
    "callback.timeout.read.ms",
    KEY_SUCCESS_ON_2XX,
    KEY_EXCEPTION_STRATEGY,
    KEY_RETRY_BACKOFF,
    KEY_STOP_BACKOFF,
    "request.delay.sec",
    "behavior.on.null.values",
    "errors.deadletterqueue.topic.name",
    "errors.deadletterqueue.context.headers.enable",
    "errors.deadletterqueue.messenger",
    "delivery.ordering",
    "delivery.max.in.flight",
    "delivery.max.in.flight.total",
    "delivery.max.pending.records",
    "delivery.concurrency",
    "delivery.null.key",
];

fn closest_known_key(key: &str) -> Option<&'static str> {
    KNOWN_KEYS
        .iter()
        .chain(NO_EFFECT_KEYS)
        .map(|known| (edit_distance(key, known), *known))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, known)| known)
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The reference treats the separator as a Java regex whose default is `\|`;
/// a backslash-escaped single character is read as that character.
fn unescape_separator(text: &str) -> &str {
    match text.strip_prefix('\\') {
        Some(rest) if rest.chars().count() == 1 => rest,
        _ => text,
    }
}

/// Kafka's topic name rule: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn is_valid_topic_name(name: &str) -> bool {
    is_valid_connector_name(name) && name != "." && name != ".."
}

fn is_valid_connector_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmsink_policy::ExceptionStrategy;

    fn props(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("topics", "orders"),
            ("callback.request.url", "http://127.0.0.1:9/hook"),
        ]
    }

    fn parse(extra: &[(&str, &str)]) -> Result<ConnectorConfig, Vec<ConfigProblem>> {
        let mut list = base();
        list.extend_from_slice(extra);
        ConnectorConfig::from_properties("sink", &props(&list))
    }

    fn problem_keys(extra: &[(&str, &str)]) -> Vec<String> {
        parse(extra)
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn defaults_follow_the_seed() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.group_id, "connect-sink");
        assert_eq!(config.callback.method, Method::POST);
        assert_eq!(
            config.callback.connect_timeout,
            Some(Duration::from_secs(60))
        );
        assert_eq!(config.callback.read_timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            config.strategy.strategy,
            ExceptionStrategy::ProgressBackOffDropMessage
        );
        assert_eq!(
            config.strategy.backoff.waits_ms(),
            &[5_000, 30_000, 60_000, 300_000, 600_000]
        );
        assert!(!config.strategy.success_on_2xx);
        assert_eq!(config.request_delay, Duration::ZERO);
        assert_eq!(config.null_values, NullValueBehavior::Ignore);
        assert_eq!(config.dead_letter, None);
    }

    #[test]
    fn the_seed_rest_payload_is_accepted_verbatim() {
        let config = parse(&[
            ("connector.class", SEED_CONNECTOR_CLASS),
            ("tasks.max", "1"),
            (
                "value.converter",
                "org.apache.kafka.connect.storage.StringConverter",
            ),
            (
                "key.converter",
                "org.apache.kafka.connect.storage.StringConverter",
            ),
            (
                "header.converter",
                "org.apache.kafka.connect.storage.StringConverter",
            ),
            ("callback.request.method", "put"),
            (
                "callback.request.headers",
                "{\"Content-Type\":\"application/json\",\"apikey\":\"API_KEY_HERE\"}",
            ),
            ("retry.backoff.sec", "5,60,120,300,600"),
            ("exception.strategy", "PROGRESS_BACK_OFF_DROP_MESSAGE"),
        ])
        .unwrap();
        assert_eq!(config.callback.method, Method::PUT);
        assert_eq!(config.callback.headers.len(), 2);
        assert_eq!(
            config.strategy.backoff.waits_ms(),
            &[5_000, 60_000, 120_000, 300_000, 600_000]
        );
    }

    #[test]
    fn plural_method_is_an_alias_and_conflicts_are_refused() {
        assert_eq!(
            parse(&[("callback.request.methods", "DELETE")])
                .unwrap()
                .callback
                .method,
            Method::DELETE
        );
        assert_eq!(
            parse(&[
                ("callback.request.methods", "PUT"),
                ("callback.request.method", "put")
            ])
            .unwrap()
            .callback
            .method,
            Method::PUT
        );
        assert_eq!(
            problem_keys(&[
                ("callback.request.methods", "PUT"),
                ("callback.request.method", "POST")
            ]),
            ["callback.request.method"]
        );
        assert_eq!(
            problem_keys(&[("callback.request.method", "GET")]),
            ["callback.request.method"]
        );
    }

    #[test]
    fn legacy_headers_with_the_reference_regex_separator() {
        let config = parse(&[
            ("callback.request.headers", "a:1|b:2"),
            ("callback.header.separator", "\\|"),
        ])
        .unwrap();
        assert_eq!(
            config.callback.headers,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            problem_keys(&[("callback.request.headers", "apikey")]),
            ["callback.request.headers"]
        );
    }

    #[test]
    fn timeouts_accept_zero_as_no_timeout_and_refuse_negatives() {
        let config = parse(&[
            ("callback.timeout.connect.ms", "0"),
            ("callback.timeout.read.ms", "1500"),
        ])
        .unwrap();
        assert_eq!(config.callback.connect_timeout, None);
        assert_eq!(
            config.callback.read_timeout,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            problem_keys(&[("callback.timeout.read.ms", "-1")]),
            ["callback.timeout.read.ms"]
        );
    }

    #[test]
    fn url_must_be_http_with_a_host() {
        assert_eq!(
            problem_keys(&[("callback.request.url", "ftp://x/y")]),
            ["callback.request.url"]
        );
        assert_eq!(
            problem_keys(&[("callback.request.url", "not a url")]),
            ["callback.request.url"]
        );
        let missing =
            ConnectorConfig::from_properties("s", &props(&[("topics", "t")])).unwrap_err();
        assert_eq!(missing[0].key, "callback.request.url");
        assert!(missing[0].reason.starts_with("missing"));
    }

    #[test]
    fn topics_and_regex_are_exclusive_and_names_are_checked() {
        let config = parse(&[("topics", " a , b ")]).unwrap();
        assert_eq!(
            config.subscription,
            Subscription::Topics(vec!["a".into(), "b".into()])
        );
        assert_eq!(problem_keys(&[("topics.regex", "a.*")]), ["topics"]);
        assert_eq!(problem_keys(&[("topics", "a,,b")]), ["topics"]);
        assert_eq!(problem_keys(&[("topics", "bad topic")]), ["topics"]);
        let regex = ConnectorConfig::from_properties(
            "s",
            &props(&[
                ("topics.regex", "^orders-.*"),
                ("callback.request.url", "http://h"),
            ]),
        )
        .unwrap();
        assert_eq!(regex.subscription, Subscription::Regex("^orders-.*".into()));
    }

    #[test]
    fn strategy_keys_are_validated_by_the_policy() {
        let keys = problem_keys(&[
            ("exception.strategy", "RETRY_FOREVER"),
            ("retry.backoff.sec", "5,,30"),
            ("callback.success.on.2xx", "yes"),
        ]);
        assert_eq!(
            keys,
            [
                "exception.strategy",
                "retry.backoff.sec",
                "callback.success.on.2xx"
            ]
        );
        let config = parse(&[
            ("exception.strategy", "stop_task"),
            ("retry.backoff.sec", "0.2, 1"),
            ("callback.success.on.2xx", "TRUE"),
        ])
        .unwrap();
        assert_eq!(config.strategy.strategy, ExceptionStrategy::StopTask);
        assert_eq!(config.strategy.backoff.waits_ms(), &[200, 1000]);
        assert!(config.strategy.success_on_2xx);
    }

    #[test]
    fn delay_null_values_and_dead_letter() {
        let config = parse(&[
            ("request.delay.sec", "2.5"),
            ("behavior.on.null.values", "SEND"),
            ("errors.deadletterqueue.topic.name", "orders-dlq"),
            ("errors.deadletterqueue.context.headers.enable", "false"),
        ])
        .unwrap();
        assert_eq!(config.request_delay, Duration::from_millis(2500));
        assert_eq!(config.null_values, NullValueBehavior::Send);
        assert_eq!(
            config.dead_letter,
            Some(DeadLetterConfig {
                topic: Some("orders-dlq".into()),
                messenger: None,
                context_headers: false
            })
        );
        let via_messenger =
            parse(&[("errors.deadletterqueue.messenger", " dlq-cluster ")]).unwrap();
        assert_eq!(
            via_messenger.dead_letter,
            Some(DeadLetterConfig {
                topic: None,
                messenger: Some("dlq-cluster".into()),
                context_headers: true
            })
        );
        let keys = problem_keys(&[
            ("request.delay.sec", "-1"),
            ("behavior.on.null.values", "drop"),
            ("errors.deadletterqueue.topic.name", "a b"),
        ]);
        assert_eq!(
            keys,
            [
                "request.delay.sec",
                "behavior.on.null.values",
                "errors.deadletterqueue.topic.name"
            ]
        );
    }

    #[test]
    fn converters_other_than_bytes_are_refused() {
        assert_eq!(
            problem_keys(&[(
                "value.converter",
                "org.apache.kafka.connect.json.JsonConverter"
            )]),
            ["value.converter"]
        );
        assert!(
            parse(&[
                (
                    "value.converter",
                    "org.apache.kafka.connect.converters.ByteArrayConverter"
                ),
                ("value.converter.schemas.enable", "false")
            ])
            .is_ok()
        );
    }

    #[test]
    fn overrides_are_collected_and_reserved_ones_refused() {
        let config = parse(&[
            ("consumer.override.max.poll.records", "1"),
            ("consumer.override.group.id", "g"),
            ("producer.override.acks", "all"),
        ])
        .unwrap();
        assert_eq!(config.group_id, "g");
        assert_eq!(
            config
                .consumer_overrides
                .get("max.poll.records")
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(
            config.producer_overrides.get("acks").map(String::as_str),
            Some("all")
        );
        assert_eq!(
            problem_keys(&[("consumer.override.enable.auto.commit", "true")]),
            ["consumer.override.enable.auto.commit"]
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_a_suggestion() {
        let problems = parse(&[("exception.stratgy", "STOP_TASK")]).unwrap_err();
        assert_eq!(problems[0].key, "exception.stratgy");
        assert!(
            problems[0]
                .reason
                .contains("did you mean \"exception.strategy\""),
            "{}",
            problems[0].reason
        );
        let config = parse(&[("errors.tolerance", "all")]).unwrap();
        assert_eq!(config.no_effect_keys, ["errors.tolerance"]);
    }

    #[test]
    fn connector_class_and_name_are_checked() {
        assert!(parse(&[("connector.class", "HttpSink")]).is_ok());
        assert_eq!(
            problem_keys(&[("connector.class", "io.confluent.HttpSinkConnector")]),
            ["connector.class"]
        );
        assert_eq!(problem_keys(&[("name", "other")]), ["name"]);
        assert_eq!(problem_keys(&[("tasks.max", "0")]), ["tasks.max"]);
        assert_eq!(problem_keys(&[("transforms", "t1")]), ["transforms"]);
    }
}
