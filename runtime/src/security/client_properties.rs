//! Which librdkafka properties a REST caller may set, in the spirit of
//! Kafka Connect's `connector.client.config.override.policy` (KIP-458, an
//! allowlist since KIP-1188).
//!
//! Every property librdkafka 2.12 knows, hidden ones included, has a
//! [`Class`] in [`PROPERTIES`]; aliases are folded into the name they stand
//! for ([`ALIASES`]) before anything is decided, so both spellings always
//! get the same verdict. A property map written over REST (a connector's
//! `consumer.override.*` and `producer.override.*`, a messenger's
//! `producer`) is checked here, in Rust, before any librdkafka
//! configuration object sees a value: librdkafka loads a plugin inside
//! `rd_kafka_conf_set` itself.
//!
//! The verdicts, for REST-written maps:
//!
//! | Class | Default (`allowlist`) | `server.client_overrides = "all"` |
//! |---|---|---|
//! | [`Class::Never`]: native code, commands, the mock cluster, C API handles | refused | refused |
//! | [`Class::Reserved`]: what at-least-once delivery depends on | refused | refused |
//! | [`Class::Tuning`]: fetch, queue, batch, timeouts, acks, compression | allowed, within bounds | allowed, within bounds |
//! | [`Class::BrokerAddress`] | allowed; an address that is not the operator's gets no inherited `[kafka]` settings but tuning | same |
//! | [`Class::File`] | only under `server.kafka.file_dirs` | same |
//! | [`Class::Url`] | only URLs in `server.kafka.allowed_urls` | same |
//! | [`Class::Identity`]: credentials, TLS trust | refused for connectors (they use `[kafka]`'s); allowed for messengers, which are their own clients | allowed |
//! | [`Class::Operator`]: logging, debug, groups, transactions, OIDC modes | refused | allowed |
//!
//! `server.kafka.allowed_keys` lifts the refusal of an `Identity` or
//! `Operator` property, one name at a time; nothing lifts `Never` or
//! `Reserved`.

use std::collections::{BTreeMap, BTreeSet};

use super::egress::EgressPolicy;
use super::paths::AllowedDirs;

/// What a property can do, and so who may set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Harmless tuning; numeric values at most the bound, when there is one.
    Tuning(Option<u64>),
    /// A broker address list.
    BrokerAddress,
    /// Credentials, or how the client trusts and authenticates brokers.
    Identity,
    /// Names a host file or directory.
    File,
    /// Names a URL librdkafka fetches.
    Url,
    /// Only the operator may set it.
    Operator,
    /// wasmsink sets it itself.
    Reserved,
    /// Never from REST, whatever the operator allows; the reason says why.
    Never(&'static str),
    /// `group.id`: a consumer may use a `connect-` group (Kafka Connect's
    /// convention, so offsets carry over); other groups are the operator's.
    GroupId,
}

const CODE: Class =
    Class::Never("loads native code or runs a command; only the configuration file may set it");
const KERBEROS: Class = Class::Never(
    "is pasted into the Kerberos kinit command, which librdkafka runs through a shell; only the configuration file may set it",
);
const C_API: Class = Class::Never("is set through librdkafka's C API, never as a property");
const MB_100: Option<u64> = Some(100_000_000);
const MIB_64: Option<u64> = Some(64 << 20);

/// Every property of librdkafka 2.12, global and topic-level, by its
/// canonical name.
pub const PROPERTIES: &[(&str, Class)] = &[
    ("builtin.features", Class::Operator),
    ("client.id", Class::Tuning(None)),
    ("client.software.name", Class::Operator),
    ("client.software.version", Class::Operator),
    ("metadata.broker.list", Class::BrokerAddress),
    ("message.max.bytes", Class::Tuning(MB_100)),
    ("message.copy.max.bytes", Class::Tuning(MB_100)),
    ("receive.message.max.bytes", Class::Tuning(MB_100)),
    ("max.in.flight.requests.per.connection", Class::Tuning(None)),
    ("metadata.recovery.strategy", Class::Tuning(None)),
    (
        "metadata.recovery.rebootstrap.trigger.ms",
        Class::Tuning(None),
    ),
    ("topic.metadata.refresh.interval.ms", Class::Tuning(None)),
    ("metadata.max.age.ms", Class::Tuning(None)),
    (
        "topic.metadata.refresh.fast.interval.ms",
        Class::Tuning(None),
    ),
    ("topic.metadata.refresh.fast.cnt", Class::Tuning(None)),
    ("topic.metadata.refresh.sparse", Class::Tuning(None)),
    ("topic.metadata.propagation.max.ms", Class::Tuning(None)),
    ("metadata.request.timeout.ms", Class::Tuning(None)),
    ("topic.blacklist", Class::Operator),
    ("debug", Class::Operator),
    ("socket.timeout.ms", Class::Tuning(None)),
    ("socket.blocking.max.ms", Class::Tuning(None)),
    ("socket.send.buffer.bytes", Class::Tuning(MB_100)),
    ("socket.receive.buffer.bytes", Class::Tuning(MB_100)),
    ("socket.keepalive.enable", Class::Tuning(None)),
    ("socket.nagle.disable", Class::Tuning(None)),
    ("socket.max.fails", Class::Operator),
    ("broker.address.ttl", Class::Tuning(None)),
    ("broker.address.family", Class::Tuning(None)),
    ("socket.connection.setup.timeout.ms", Class::Tuning(None)),
    ("connections.max.idle.ms", Class::Tuning(None)),
    ("enable.sparse.connections", Class::Operator),
    ("reconnect.backoff.jitter.ms", Class::Tuning(None)),
    ("reconnect.backoff.ms", Class::Tuning(None)),
    ("reconnect.backoff.max.ms", Class::Tuning(None)),
    ("statistics.interval.ms", Class::Operator),
    ("enabled_events", C_API),
    ("error_cb", C_API),
    ("throttle_cb", C_API),
    ("stats_cb", C_API),
    ("log_cb", C_API),
    ("log_level", Class::Operator),
    ("log.queue", Class::Operator),
    ("log.thread.name", Class::Operator),
    ("enable.random.seed", Class::Operator),
    ("log.connection.close", Class::Operator),
    ("background_event_cb", C_API),
    ("socket_cb", C_API),
    ("connect_cb", C_API),
    ("closesocket_cb", C_API),
    ("open_cb", C_API),
    ("resolve_cb", C_API),
    ("opaque", C_API),
    ("default_topic_conf", C_API),
    ("internal.termination.signal", C_API),
    ("api.version.request", Class::Operator),
    ("api.version.request.timeout.ms", Class::Tuning(None)),
    ("api.version.fallback.ms", Class::Operator),
    ("broker.version.fallback", Class::Operator),
    ("allow.auto.create.topics", Class::Operator),
    ("security.protocol", Class::Identity),
    ("ssl.cipher.suites", Class::Identity),
    ("ssl.curves.list", Class::Identity),
    ("ssl.sigalgs.list", Class::Identity),
    ("ssl.key.location", Class::File),
    ("ssl.key.password", Class::Identity),
    ("ssl.key.pem", Class::Identity),
    ("ssl_key", C_API),
    ("ssl.certificate.location", Class::File),
    ("ssl.certificate.pem", Class::Identity),
    ("ssl_certificate", C_API),
    ("ssl.ca.location", Class::File),
    ("https.ca.location", Class::File),
    ("https.ca.pem", Class::Identity),
    ("ssl.ca.pem", Class::Identity),
    ("ssl_ca", C_API),
    ("ssl.ca.certificate.stores", Class::Identity),
    ("ssl.crl.location", Class::File),
    ("ssl.keystore.location", Class::File),
    ("ssl.keystore.password", Class::Identity),
    ("ssl.providers", CODE),
    ("ssl.engine.location", CODE),
    ("ssl.engine.id", CODE),
    ("ssl_engine_callback_data", C_API),
    ("enable.ssl.certificate.verification", Class::Identity),
    ("ssl.endpoint.identification.algorithm", Class::Identity),
    ("ssl.certificate.verify_cb", C_API),
    ("sasl.mechanisms", Class::Identity),
    ("sasl.kerberos.service.name", KERBEROS),
    ("sasl.kerberos.principal", KERBEROS),
    ("sasl.kerberos.kinit.cmd", KERBEROS),
    ("sasl.kerberos.keytab", KERBEROS),
    ("sasl.kerberos.min.time.before.relogin", KERBEROS),
    ("sasl.username", Class::Identity),
    ("sasl.password", Class::Identity),
    ("sasl.oauthbearer.config", Class::Operator),
    ("enable.sasl.oauthbearer.unsecure.jwt", Class::Operator),
    ("oauthbearer_token_refresh_cb", C_API),
    ("enable_sasl_queue", C_API),
    ("sasl.oauthbearer.method", Class::Operator),
    ("sasl.oauthbearer.client.id", Class::Identity),
    ("sasl.oauthbearer.client.secret", Class::Identity),
    ("sasl.oauthbearer.scope", Class::Identity),
    ("sasl.oauthbearer.extensions", Class::Identity),
    ("sasl.oauthbearer.token.endpoint.url", Class::Url),
    ("sasl.oauthbearer.grant.type", Class::Operator),
    ("sasl.oauthbearer.assertion.algorithm", Class::Identity),
    ("sasl.oauthbearer.assertion.private.key.file", Class::File),
    (
        "sasl.oauthbearer.assertion.private.key.passphrase",
        Class::Identity,
    ),
    (
        "sasl.oauthbearer.assertion.private.key.pem",
        Class::Identity,
    ),
    ("sasl.oauthbearer.assertion.file", Class::File),
    ("sasl.oauthbearer.assertion.claim.aud", Class::Identity),
    (
        "sasl.oauthbearer.assertion.claim.exp.seconds",
        Class::Identity,
    ),
    ("sasl.oauthbearer.assertion.claim.iss", Class::Identity),
    (
        "sasl.oauthbearer.assertion.claim.jti.include",
        Class::Identity,
    ),
    (
        "sasl.oauthbearer.assertion.claim.nbf.seconds",
        Class::Identity,
    ),
    ("sasl.oauthbearer.assertion.claim.sub", Class::Identity),
    ("sasl.oauthbearer.assertion.jwt.template.file", Class::File),
    (
        "sasl.oauthbearer.metadata.authentication.type",
        Class::Operator,
    ),
    ("plugin.library.paths", CODE),
    ("interceptors", C_API),
    (
        "test.mock.num.brokers",
        Class::Never("replaces the cluster with an in-process mock"),
    ),
    (
        "test.mock.broker.rtt",
        Class::Never("is a librdkafka test setting"),
    ),
    ("ut_handle_ProduceResponse", C_API),
    ("group.id", Class::GroupId),
    ("group.instance.id", Class::Operator),
    ("partition.assignment.strategy", Class::Tuning(None)),
    ("session.timeout.ms", Class::Tuning(None)),
    ("heartbeat.interval.ms", Class::Tuning(None)),
    ("group.protocol.type", Class::Operator),
    ("group.protocol", Class::Operator),
    ("group.remote.assignor", Class::Operator),
    ("coordinator.query.interval.ms", Class::Tuning(None)),
    ("max.poll.interval.ms", Class::Tuning(None)),
    ("enable.auto.commit", Class::Reserved),
    ("auto.commit.interval.ms", Class::Operator),
    ("enable.auto.offset.store", Class::Reserved),
    ("queued.min.messages", Class::Tuning(Some(10_000_000))),
    ("queued.max.messages.kbytes", Class::Tuning(Some(262_144))),
    ("fetch.wait.max.ms", Class::Tuning(None)),
    ("fetch.queue.backoff.ms", Class::Tuning(None)),
    ("fetch.message.max.bytes", Class::Tuning(MIB_64)),
    ("fetch.max.bytes", Class::Tuning(MIB_64)),
    ("fetch.min.bytes", Class::Tuning(MIB_64)),
    ("fetch.error.backoff.ms", Class::Tuning(None)),
    (
        "offset.store.method",
        Class::Never("selects librdkafka's deprecated file offset store, which writes host files"),
    ),
    ("isolation.level", Class::Operator),
    ("consume_cb", C_API),
    ("rebalance_cb", C_API),
    ("offset_commit_cb", C_API),
    ("enable.partition.eof", Class::Reserved),
    ("check.crcs", Class::Tuning(None)),
    ("client.rack", Class::Operator),
    ("transactional.id", Class::Operator),
    ("transaction.timeout.ms", Class::Operator),
    ("enable.idempotence", Class::Tuning(None)),
    ("enable.gapless.guarantee", Class::Operator),
    (
        "queue.buffering.max.messages",
        Class::Tuning(Some(10_000_000)),
    ),
    ("queue.buffering.max.kbytes", Class::Tuning(Some(1_048_576))),
    ("queue.buffering.max.ms", Class::Tuning(None)),
    ("message.send.max.retries", Class::Tuning(None)),
    ("retry.backoff.ms", Class::Tuning(None)),
    ("retry.backoff.max.ms", Class::Tuning(None)),
    (
        "queue.buffering.backpressure.threshold",
        Class::Tuning(None),
    ),
    ("compression.codec", Class::Tuning(None)),
    ("batch.num.messages", Class::Tuning(None)),
    ("batch.size", Class::Tuning(MB_100)),
    ("delivery.report.only.error", Class::Operator),
    ("dr_cb", C_API),
    ("dr_msg_cb", C_API),
    ("sticky.partitioning.linger.ms", Class::Tuning(None)),
    ("client.dns.lookup", Class::Tuning(None)),
    ("enable.metrics.push", Class::Operator),
    ("request.required.acks", Class::Tuning(None)),
    ("request.timeout.ms", Class::Tuning(None)),
    ("message.timeout.ms", Class::Tuning(None)),
    ("queuing.strategy", Class::Operator),
    ("produce.offset.report", Class::Tuning(None)),
    ("partitioner", Class::Tuning(None)),
    ("partitioner_cb", C_API),
    ("msg_order_cmp", C_API),
    ("compression.level", Class::Tuning(None)),
    ("auto.commit.enable", Class::Reserved),
    ("auto.offset.reset", Class::Tuning(None)),
    (
        "offset.store.path",
        Class::Never("names where librdkafka's deprecated file offset store writes"),
    ),
    ("offset.store.sync.interval.ms", Class::Operator),
    ("consume.callback.max.messages", Class::Tuning(None)),
];

/// Alternative names, each with the canonical name it stands for.
pub const ALIASES: &[(&str, &str)] = &[
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.id",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.secret",
    ),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
];

/// Java client names a messenger's `producer` map may hold (FusionAuth
/// stores Java producer configs); the messenger translates them.
const JAVA_PRODUCER_KEYS: &[(&str, Class)] = &[
    ("max.block.ms", Class::Tuning(None)),
    ("buffer.memory", Class::Tuning(Some(1 << 30))),
    ("key.serializer", Class::Tuning(None)),
    ("value.serializer", Class::Tuning(None)),
    ("sasl.jaas.config", Class::Identity),
    ("ssl.truststore.location", Class::File),
    ("ssl.truststore.password", Class::Identity),
    ("ssl.truststore.type", Class::Identity),
    ("ssl.keystore.type", Class::Identity),
];

/// The client a property map configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A connector's consumer (`consumer.override.*`).
    Consumer,
    /// A connector's dead-letter producer (`producer.override.*`).
    Producer,
    /// A messenger's own producer (its `producer` map), which inherits
    /// nothing from `[kafka]`.
    Messenger,
}

/// How much of the operator's `[kafka]` table a connector's client takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inherit {
    /// All of it: the client talks to the operator's cluster.
    #[default]
    Everything,
    /// Only [`Class::Tuning`] properties: the REST-written config names a
    /// broker the operator did not, and must not receive the operator's
    /// credentials.
    TuningOnly,
}

/// Whether REST callers are held to the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverridePolicy {
    /// Tuning keys, plus `server.kafka.allowed_keys` (the default).
    #[default]
    Allowlist,
    /// Everything but [`Class::Never`] and [`Class::Reserved`]; the
    /// operator's explicit choice, warned about at start-up.
    All,
}

/// The operator's decisions about client properties written over REST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientPolicy {
    /// `server.client_overrides`.
    pub mode: OverridePolicy,
    /// `server.kafka.allowed_keys`, canonical names.
    pub allowed_keys: BTreeSet<String>,
    /// `server.kafka.file_dirs`.
    pub file_dirs: AllowedDirs,
    /// `server.kafka.allowed_urls`.
    pub allowed_urls: BTreeSet<String>,
    /// The operator's broker addresses: `[kafka]`'s `bootstrap.servers`
    /// plus `server.kafka.allowed_bootstrap`, normalized.
    pub operator_brokers: BTreeSet<String>,
}

/// A refused property: the key as given, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyRefusal {
    /// The key, as the caller wrote it.
    pub key: String,
    /// Why it was refused.
    pub reason: String,
}

/// The canonical name of a property, or `None` when librdkafka has no such
/// property. librdkafka also takes every topic-level property with a
/// `topic.` prefix (`topic.acks`), so that spelling is folded too.
pub fn canonical(name: &str) -> Option<&'static str> {
    let exact = |name: &str| {
        let name = ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, canonical)| canonical);
        PROPERTIES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(known, _)| *known)
    };
    exact(name).or_else(|| exact(name.strip_prefix("topic.")?))
}

/// The class of a property (any spelling).
pub fn class_of(name: &str) -> Option<Class> {
    let canonical = canonical(name)?;
    PROPERTIES
        .iter()
        .find(|(known, _)| *known == canonical)
        .map(|(_, class)| *class)
}

/// Whether a client takes the operator's `[kafka]` property `key`: every
/// one, unless its REST-written config names another cluster, then tuning
/// only.
pub fn inherited(key: &str, inherit: Inherit) -> bool {
    inherit == Inherit::Everything || matches!(class_of(key), Some(Class::Tuning(_)))
}

/// A broker list as a set of lower-case `host:port` entries, with any
/// `protocol://` prefix removed.
pub fn normalize_brokers(list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(|entry| {
            let entry = entry.trim();
            let entry = entry.split_once("://").map_or(entry, |(_, rest)| rest);
            entry.to_ascii_lowercase()
        })
        .filter(|entry| !entry.is_empty())
        .collect()
}

impl ClientPolicy {
    /// Checks a map written over REST for `client`, reporting every refused
    /// key; on success, says how much of `[kafka]` the client may inherit.
    pub fn check(
        &self,
        client: Client,
        properties: &BTreeMap<String, String>,
        egress: &EgressPolicy,
    ) -> Result<Inherit, Vec<PropertyRefusal>> {
        let mut refusals = Vec::new();
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut inherit = Inherit::Everything;
        for (key, value) in properties {
            let refuse = |reason: String| PropertyRefusal {
                key: key.clone(),
                reason,
            };
            let name = key.trim();
            let class = match (client, canonical(name)) {
                (_, Some(canonical)) => {
                    if let Some(first) = seen.insert(canonical, key) {
                        refusals.push(refuse(format!(
                            "sets {canonical} a second time (also set as {first})"
                        )));
                        continue;
                    }
                    class_of(canonical)
                }
                (Client::Messenger, None) => JAVA_PRODUCER_KEYS
                    .iter()
                    .find(|(java, _)| *java == name)
                    .map(|(_, class)| *class),
                (_, None) => None,
            };
            let Some(class) = class else {
                refusals.push(refuse("is not a librdkafka property".to_owned()));
                continue;
            };
            if value.contains('\0') {
                refusals.push(refuse("holds a NUL character".to_owned()));
                continue;
            }
            match self.verdict(client, name, class, value, egress) {
                Ok(Some(foreign)) => inherit = foreign,
                Ok(None) => {}
                Err(reason) => refusals.push(refuse(reason)),
            }
        }
        if refusals.is_empty() {
            Ok(inherit)
        } else {
            Err(refusals)
        }
    }

    /// `Ok(Some(_))` when the property decides what is inherited.
    fn verdict(
        &self,
        client: Client,
        name: &str,
        class: Class,
        value: &str,
        egress: &EgressPolicy,
    ) -> Result<Option<Inherit>, String> {
        let lifted = || {
            self.mode == OverridePolicy::All
                || canonical(name).is_some_and(|c| self.allowed_keys.contains(c))
                || self.allowed_keys.contains(name)
        };
        match class {
            Class::Never(reason) => Err(reason.to_owned()),
            Class::Reserved => Err("is set by wasmsink itself: at-least-once delivery depends on it".to_owned()),
            Class::Tuning(bound) => match bound {
                Some(max) => match value.trim().parse::<u64>() {
                    Ok(n) if n <= max => Ok(None),
                    _ => Err(format!("must be a whole number no larger than {max}")),
                },
                None => Ok(None),
            },
            Class::BrokerAddress => {
                let brokers = normalize_brokers(value);
                for broker in &brokers {
                    let host = broker.rsplit_once(':').map_or(broker.as_str(), |(h, _)| h);
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    if let Ok(address) = host.parse()
                        && let Err(refusal) = egress.check(address)
                    {
                        return Err(format!("names {refusal}"));
                    }
                }
                let ours = !brokers.is_empty() && brokers.is_subset(&self.operator_brokers);
                Ok(Some(if ours || client == Client::Messenger {
                    Inherit::Everything
                } else {
                    Inherit::TuningOnly
                }))
            }
            Class::File => {
                for path in value.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
                    self.file_dirs.check(path).map_err(|refusal| {
                        format!("names a host file: {refusal}")
                    })?;
                }
                Ok(None)
            }
            Class::Url => {
                if self.allowed_urls.contains(value.trim()) {
                    Ok(None)
                } else {
                    Err("names a URL librdkafka would fetch; only URLs listed in server.kafka.allowed_urls are accepted".to_owned())
                }
            }
            Class::Identity if client == Client::Messenger || lifted() => Ok(None),
            Class::Identity => Err(
                "sets credentials or TLS trust, which connectors take from the operator's [kafka] table; server.kafka.allowed_keys may list it"
                    .to_owned(),
            ),
            Class::Operator if lifted() => Ok(None),
            Class::Operator => Err(
                "may only be set by the operator; server.kafka.allowed_keys may list it, or server.client_overrides = \"all\" allow every such key"
                    .to_owned(),
            ),
            Class::GroupId if client == Client::Consumer && value.trim().starts_with("connect-") => Ok(None),
            Class::GroupId if lifted() => Ok(None),
            Class::GroupId => Err(
                "may only name a consumer group starting with connect- (Kafka Connect's groups); server.kafka.allowed_keys may list group.id"
                    .to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy() -> ClientPolicy {
        ClientPolicy {
            operator_brokers: normalize_brokers("kafka-1:9092,kafka-2:9092"),
            ..ClientPolicy::default()
        }
    }

    fn refused_keys(policy: &ClientPolicy, client: Client, pairs: &[(&str, &str)]) -> Vec<String> {
        match policy.check(client, &map(pairs), &EgressPolicy::default()) {
            Ok(_) => Vec::new(),
            Err(refusals) => refusals.into_iter().map(|r| r.key).collect(),
        }
    }

    #[test]
    fn every_alias_points_at_a_known_property_and_gets_its_verdict() {
        for (alias, target) in ALIASES {
            assert!(
                PROPERTIES.iter().any(|(name, _)| name == target),
                "{alias} -> {target}"
            );
            assert!(!PROPERTIES.iter().any(|(name, _)| name == alias), "{alias}");
            assert_eq!(class_of(alias), class_of(target), "{alias}");
            for client in [Client::Consumer, Client::Producer, Client::Messenger] {
                let a = policy().check(client, &map(&[(alias, "1")]), &EgressPolicy::default());
                let t = policy().check(client, &map(&[(target, "1")]), &EgressPolicy::default());
                assert_eq!(a.is_ok(), t.is_ok(), "{alias} and {target} for {client:?}");
            }
        }
    }

    #[test]
    fn the_table_names_each_property_once() {
        let mut names: Vec<&str> = PROPERTIES.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn code_loaders_kerberos_and_the_mock_cluster_are_refused_whatever_the_operator_allows() {
        let mut all = policy();
        all.mode = OverridePolicy::All;
        all.allowed_keys = ["plugin.library.paths", "sasl.kerberos.kinit.cmd"]
            .map(str::to_owned)
            .into();
        for key in [
            "plugin.library.paths",
            "ssl.engine.location",
            "ssl.engine.id",
            "ssl.providers",
            "sasl.kerberos.kinit.cmd",
            "sasl.kerberos.principal",
            "sasl.kerberos.keytab",
            "sasl.kerberos.service.name",
            "test.mock.num.brokers",
            "offset.store.method",
            "offset.store.path",
            "interceptors",
            "enable.auto.commit",
            "auto.commit.enable",
            "enable.auto.offset.store",
            "enable.partition.eof",
        ] {
            for client in [Client::Consumer, Client::Producer, Client::Messenger] {
                assert_eq!(
                    refused_keys(&all, client, &[(key, "x")]),
                    [key],
                    "{key} for {client:?}"
                );
            }
        }
    }

    #[test]
    fn tuning_is_allowed_within_bounds_and_the_rest_needs_the_operator() {
        let p = policy();
        assert!(
            refused_keys(
                &p,
                Client::Consumer,
                &[
                    ("fetch.wait.max.ms", "10"),
                    ("max.partition.fetch.bytes", "1048576"),
                    ("session.timeout.ms", "6000"),
                    ("client.id", "x"),
                    ("group.id", "connect-legacy")
                ]
            )
            .is_empty()
        );
        assert_eq!(
            refused_keys(
                &p,
                Client::Consumer,
                &[("receive.message.max.bytes", "2147483647")]
            ),
            ["receive.message.max.bytes"]
        );
        assert_eq!(
            refused_keys(
                &p,
                Client::Producer,
                &[("topic.offset.store.path", "/tmp/x")]
            ),
            ["topic.offset.store.path"],
            "the topic. spelling of a topic property"
        );
        assert_eq!(
            refused_keys(
                &p,
                Client::Producer,
                &[("acks", "1"), ("topic.acks", "all")]
            ),
            ["topic.acks"],
            "one property under two spellings"
        );
        for key in [
            "debug",
            "isolation.level",
            "statistics.interval.ms",
            "security.protocol",
            "sasl.password",
        ] {
            assert_eq!(refused_keys(&p, Client::Consumer, &[(key, "x")]), [key]);
        }
        assert_eq!(
            refused_keys(&p, Client::Consumer, &[("group.id", "payments-app")]),
            ["group.id"]
        );
        assert_eq!(
            refused_keys(&p, Client::Consumer, &[("max.poll.records", "1")]),
            ["max.poll.records"],
            "a Java-only name is not a librdkafka property"
        );
        let mut listed = policy();
        listed.allowed_keys = ["debug".to_owned(), "sasl.mechanisms".to_owned()].into();
        assert!(
            refused_keys(
                &listed,
                Client::Consumer,
                &[("debug", "all"), ("sasl.mechanism", "PLAIN")]
            )
            .is_empty()
        );
        let mut all = policy();
        all.mode = OverridePolicy::All;
        assert!(
            refused_keys(
                &all,
                Client::Consumer,
                &[("debug", "all"), ("sasl.password", "x")]
            )
            .is_empty()
        );
    }

    #[test]
    fn messengers_set_their_own_identity_and_java_names() {
        let p = policy();
        assert!(
            refused_keys(
                &p,
                Client::Messenger,
                &[
                    ("bootstrap.servers", "elsewhere:9092"),
                    ("security.protocol", "SASL_SSL"),
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.jaas.config", "x"),
                    ("max.block.ms", "5000"),
                    ("request.timeout.ms", "2000"),
                    ("value.serializer", "StringSerializer"),
                ]
            )
            .is_empty()
        );
        assert_eq!(
            refused_keys(
                &p,
                Client::Messenger,
                &[("debug", "all"), ("ssl.key.location", "/etc/shadow")]
            ),
            ["debug", "ssl.key.location"]
        );
        assert_eq!(
            refused_keys(
                &p,
                Client::Messenger,
                &[(
                    "sasl.oauthbearer.metadata.authentication.type",
                    "azure_imds"
                )]
            ),
            ["sasl.oauthbearer.metadata.authentication.type"]
        );
    }

    #[test]
    fn files_only_under_the_operators_directories_and_urls_only_when_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let ca = dir.path().join("ca.pem").display().to_string();
        let mut p = policy();
        assert_eq!(
            refused_keys(&p, Client::Consumer, &[("ssl.ca.location", &ca)]),
            ["ssl.ca.location"]
        );
        p.file_dirs = AllowedDirs::new(
            "server.kafka.file_dirs",
            &[dir.path().display().to_string()],
        )
        .unwrap();
        assert!(refused_keys(&p, Client::Consumer, &[("ssl.ca.location", &ca)]).is_empty());
        assert_eq!(
            refused_keys(&p, Client::Consumer, &[("ssl.key.location", "/etc/shadow")]),
            ["ssl.key.location"]
        );
        let url = "https://idp.example/token";
        assert_eq!(
            refused_keys(
                &p,
                Client::Consumer,
                &[("sasl.oauthbearer.token.endpoint.url", url)]
            ),
            ["sasl.oauthbearer.token.endpoint.url"]
        );
        p.allowed_urls = [url.to_owned()].into();
        assert!(
            refused_keys(
                &p,
                Client::Consumer,
                &[("sasl.oauthbearer.token.endpoint.url", url)]
            )
            .is_empty()
        );
    }

    #[test]
    fn a_broker_the_operator_did_not_name_inherits_tuning_only() {
        let p = policy();
        let egress = EgressPolicy::default();
        let check = |pairs: &[(&str, &str)]| p.check(Client::Consumer, &map(pairs), &egress);
        assert_eq!(check(&[]), Ok(Inherit::Everything));
        assert_eq!(
            check(&[("bootstrap.servers", "KAFKA-2:9092")]),
            Ok(Inherit::Everything)
        );
        assert_eq!(
            check(&[("bootstrap.servers", "kafka-1:9092, evil:9092")]),
            Ok(Inherit::TuningOnly)
        );
        assert_eq!(
            check(&[("metadata.broker.list", "SASL_SSL://evil:9092")]),
            Ok(Inherit::TuningOnly)
        );
        assert_eq!(
            check(&[
                ("bootstrap.servers", "kafka-1:9092"),
                ("metadata.broker.list", "kafka-1:9092")
            ])
            .unwrap_err()[0]
                .key,
            "metadata.broker.list",
            "one property set through both names"
        );
        assert!(check(&[("bootstrap.servers", "169.254.169.254:9092")]).is_err());
        let shared = map(&[
            ("bootstrap.servers", "kafka-1:9092"),
            ("sasl.password", "operator-secret"),
            ("security.protocol", "SASL_SSL"),
            ("fetch.wait.max.ms", "50"),
            ("linger.ms", "5"),
        ]);
        let inheritable = |inherit| -> BTreeMap<String, String> {
            shared
                .iter()
                .filter(|(key, _)| inherited(key, inherit))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert_eq!(
            inheritable(Inherit::TuningOnly),
            map(&[("fetch.wait.max.ms", "50"), ("linger.ms", "5")])
        );
        assert_eq!(inheritable(Inherit::Everything), shared);
    }
}
