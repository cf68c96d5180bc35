//! Holding a connector config to the operator's [`Policy`]: what a config
//! written over REST may contain, and where any connector's callback may
//! point.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{ConfigProblem, ConnectorConfig};
use crate::security::{Client, EgressPolicy, GuestCaps, Inherit, Policy};

/// The client-property prefixes of a connector, and the client each
/// configures.
const CLIENT_PREFIXES: [(&str, Client); 2] = [
    ("consumer.override.", Client::Consumer),
    ("producer.override.", Client::Producer),
];

/// Checks what only matters for a config written over REST: its client
/// properties and its `guest.path`. Secret references are checked when they
/// are resolved. Returns how much of `[kafka]` the consumer and the
/// dead-letter producer inherit.
pub(super) fn check(
    connector: &str,
    raw: &BTreeMap<String, String>,
    policy: &Policy,
) -> Result<(Inherit, Inherit), Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut inherit = [Inherit::Everything; 2];
    for ((prefix, client), inherited) in CLIENT_PREFIXES.iter().zip(&mut inherit) {
        let properties: BTreeMap<String, String> = raw
            .iter()
            .filter_map(|(key, value)| Some((key.strip_prefix(prefix)?.to_owned(), value.clone())))
            .collect();
        match policy.client.check(*client, &properties, &policy.egress) {
            Ok(decided) => *inherited = decided,
            Err(refusals) => problems.extend(refusals.into_iter().map(|refusal| {
                ConfigProblem::connector(
                    connector,
                    format!("{prefix}{}", refusal.key),
                    refusal.reason,
                )
            })),
        }
    }
    if let Some(path) = raw
        .get("guest.path")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        && let Err(refusal) = policy.guests.check(path)
    {
        problems.push(ConfigProblem::connector(
            connector,
            "guest.path",
            format!("{refusal}: a config written over REST may only load guests from there"),
        ));
    }
    if problems.is_empty() {
        Ok((inherit[0], inherit[1]))
    } else {
        Err(problems)
    }
}

/// Checks what holds for every connector, whoever wrote it: the callback
/// address and the guest's limits.
pub(super) fn check_any(
    config: &ConnectorConfig,
    policy: &Policy,
) -> Result<(), Vec<ConfigProblem>> {
    let mut problems = check_guest_caps(config, &policy.guest_caps);
    if let Err(found) = check_callback(config, &policy.egress) {
        problems.extend(found);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Refuses guest limits above the operator's caps.
fn check_guest_caps(config: &ConnectorConfig, caps: &GuestCaps) -> Vec<ConfigProblem> {
    let limits = &config.guest.limits;
    let timeouts = [
        (
            "guest.timeout.init.ms",
            limits.init_timeout,
            caps.init,
            "server.guests.max_init_ms",
        ),
        (
            "guest.timeout.transform.ms",
            limits.transform_timeout,
            caps.call,
            "server.guests.max_call_ms",
        ),
        (
            "guest.timeout.decide.ms",
            limits.decide_timeout,
            caps.call,
            "server.guests.max_call_ms",
        ),
    ];
    let mut problems: Vec<ConfigProblem> = timeouts
        .into_iter()
        .filter(|(_, asked, cap, _)| asked > cap)
        .map(|(key, asked, cap, setting)| {
            ConfigProblem::connector(
                &config.name,
                key,
                format!(
                    "{} ms is above the {} ms the operator allows ({setting})",
                    asked.as_millis(),
                    cap.as_millis()
                ),
            )
        })
        .collect();
    let asked_mb = limits.max_memory_bytes >> 20;
    if asked_mb > caps.memory_mb {
        problems.push(ConfigProblem::connector(
            &config.name,
            "guest.memory.max.mb",
            format!(
                "{asked_mb} MiB is above the {} MiB the operator allows (server.guests.max_memory_mb)",
                caps.memory_mb
            ),
        ));
    }
    problems
}

/// Refuses a callback URL whose host is an address the egress policy
/// refuses. A name is checked when it is resolved, at connect time.
fn check_callback(
    config: &ConnectorConfig,
    egress: &EgressPolicy,
) -> Result<(), Vec<ConfigProblem>> {
    let address: IpAddr = match config.callback.url.host() {
        Some(url::Host::Ipv4(v4)) => v4.into(),
        Some(url::Host::Ipv6(v6)) => v6.into(),
        _ => return Ok(()),
    };
    egress.check(address).map_err(|refusal| {
        vec![ConfigProblem::connector(
            &config.name,
            "callback.request.url",
            refusal.to_string(),
        )]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{AllowedDirs, SecretPolicy, Trust};

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        [
            ("topics", "t"),
            ("callback.request.url", "http://127.0.0.1:9/hook"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn api(pairs: &[(&str, &str)], policy: &Policy) -> Result<ConnectorConfig, Vec<ConfigProblem>> {
        ConnectorConfig::from_raw_properties("c", &raw(pairs), policy, Trust::Api)
    }

    fn keys(result: Result<ConnectorConfig, Vec<ConfigProblem>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn guest_limits_above_the_operators_caps_are_refused_whoever_writes_them() {
        let policy = Policy::default();
        let within = [
            ("guest.timeout.init.ms", "10000"),
            ("guest.timeout.transform.ms", "1000"),
            ("guest.timeout.decide.ms", "1000"),
            ("guest.memory.max.mb", "256"),
        ];
        assert!(
            api(&within, &policy).is_ok(),
            "the defaults allow 1 s calls"
        );
        let above = [
            ("guest.timeout.init.ms", "10001"),
            ("guest.timeout.transform.ms", "1001"),
            ("guest.timeout.decide.ms", "5000"),
            ("guest.memory.max.mb", "257"),
        ];
        for trust in [Trust::Api, Trust::Operator] {
            let problems = ConnectorConfig::from_raw_properties("c", &raw(&above), &policy, trust)
                .unwrap_err();
            let found: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(
                found,
                [
                    "guest.timeout.init.ms",
                    "guest.timeout.transform.ms",
                    "guest.timeout.decide.ms",
                    "guest.memory.max.mb"
                ]
            );
            assert!(
                problems[1].reason.contains("server.guests.max_call_ms"),
                "{problems:?}"
            );
        }
        let raised = Policy {
            guest_caps: GuestCaps {
                call: std::time::Duration::from_secs(5),
                ..GuestCaps::default()
            },
            ..Policy::default()
        };
        assert!(api(&[("guest.timeout.decide.ms", "5000")], &raised).is_ok());
    }

    #[test]
    fn rest_configs_may_not_load_code_or_name_host_files_the_operator_may() {
        let policy = Policy::default();
        let risky = [
            ("consumer.override.plugin.library.paths", "/tmp/evil.so"),
            ("producer.override.ssl.engine.location", "/tmp/engine.so"),
            ("consumer.override.ssl.key.location", "/etc/shadow"),
        ];
        assert_eq!(
            keys(api(&risky, &policy)),
            [
                "consumer.override.plugin.library.paths",
                "consumer.override.ssl.key.location",
                "producer.override.ssl.engine.location"
            ]
        );
        let operator = ConnectorConfig::from_raw_properties(
            "c",
            &raw(&[("consumer.override.fetch.wait.max.ms", "5")]),
            &policy,
            Trust::Operator,
        );
        assert!(operator.is_ok());
    }

    #[test]
    fn secret_references_from_rest_need_the_operators_allowlists() {
        // SAFETY: names only this test uses.
        unsafe {
            std::env::set_var("WASMSINK_SECRET_REST_TOKEN", "token-value");
            std::env::set_var("REST_TEST_AWS_SECRET", "aws-value");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.properties"), "k=file-value\n").unwrap();
        let file_ref = format!("${{file:{}:k}}", dir.path().join("s.properties").display());
        let headers = |value: &str| format!("{{\"X-Secret\":\"{value}\"}}");

        let closed = Policy::default();
        for reference in [
            "${env:WASMSINK_SECRET_REST_TOKEN}",
            file_ref.as_str(),
            "${file:/etc/os-release:ID}",
        ] {
            let problems = api(
                &[("callback.request.headers", &headers(reference))],
                &closed,
            )
            .unwrap_err();
            assert_eq!(problems[0].key, "callback.request.headers");
            let text = format!("{problems:?}");
            assert!(
                !text.contains("token-value") && !text.contains("file-value"),
                "{text}"
            );
        }

        let open = Policy {
            secrets: SecretPolicy {
                env_allow: Some(SecretPolicy::env_pattern("WASMSINK_SECRET_[A-Z_]+").unwrap()),
                file_dirs: AllowedDirs::new(
                    crate::security::SECRET_FILE_DIRS,
                    &[dir.path().display().to_string()],
                )
                .unwrap(),
            },
            ..Policy::default()
        };
        let config = api(
            &[(
                "callback.request.headers",
                &format!("{{\"A\":\"${{env:WASMSINK_SECRET_REST_TOKEN}}\",\"B\":\"{file_ref}\"}}"),
            )],
            &open,
        )
        .unwrap();
        assert_eq!(
            config.callback.headers,
            [
                ("A".to_owned(), "token-value".to_owned()),
                ("B".to_owned(), "file-value".to_owned())
            ]
        );
        assert!(
            api(
                &[(
                    "callback.request.headers",
                    &headers("${env:REST_TEST_AWS_SECRET}")
                )],
                &open
            )
            .is_err()
        );
        assert!(
            api(
                &[(
                    "callback.request.headers",
                    &headers("${file:/etc/os-release:ID}")
                )],
                &open
            )
            .is_err()
        );
    }

    #[test]
    fn a_refused_file_reference_reads_the_same_whether_or_not_the_file_exists() {
        let closed = Policy::default();
        let text = |path: &str| {
            let problems = api(
                &[(
                    "callback.request.headers",
                    &format!("{{\"X\":\"${{file:{path}:k}}\"}}"),
                )],
                &closed,
            )
            .unwrap_err();
            problems[0].reason.replace(path, "PATH")
        };
        assert_eq!(text("/etc/os-release"), text("/no/such/file"));
    }

    #[test]
    fn metadata_addresses_are_refused_for_every_connector_and_guests_need_a_listed_dir() {
        let policy = Policy::default();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://0.0.0.0:80/",
        ] {
            for trust in [Trust::Operator, Trust::Api] {
                let problems = ConnectorConfig::from_raw_properties(
                    "c",
                    &raw(&[("callback.request.url", url)]),
                    &policy,
                    trust,
                )
                .unwrap_err();
                assert_eq!(problems[0].key, "callback.request.url", "{url}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("g.wasm");
        std::fs::write(&guest, b"\0asm").unwrap();
        let path = guest.display().to_string();
        assert_eq!(keys(api(&[("guest.path", &path)], &policy)), ["guest.path"]);
        let allowed = Policy {
            guests: AllowedDirs::new(
                crate::security::GUEST_DIRS,
                &[dir.path().display().to_string()],
            )
            .unwrap(),
            ..Policy::default()
        };
        assert!(api(&[("guest.path", &path)], &allowed).is_ok());
    }

    #[test]
    fn a_rest_config_naming_another_cluster_inherits_tuning_only() {
        let mut policy = Policy::default();
        policy.client.operator_brokers = ["kafka:9092".to_owned()].into();
        let ours = api(
            &[("consumer.override.bootstrap.servers", "kafka:9092")],
            &policy,
        )
        .unwrap();
        assert_eq!(ours.consumer_inherit, Inherit::Everything);
        let theirs = api(
            &[("consumer.override.bootstrap.servers", "other:9092")],
            &policy,
        )
        .unwrap();
        assert_eq!(theirs.consumer_inherit, Inherit::TuningOnly);
        assert_eq!(theirs.producer_inherit, Inherit::Everything);
    }
}
