//! What a REST caller may make wasmsink do, as the operator decided.
//!
//! The operator (the TOML file, the environment, the command line) is
//! trusted; whoever calls the REST API is not, even with an admin key. A
//! config written over REST must not load native code, read the host's
//! environment or files, or reach addresses the operator did not allow
//! (see the README's Security section for the threat model). This module
//! holds those decisions as data ([`Policy`]) and the checks that apply
//! them:
//!
//! - [`client_properties`]: which librdkafka properties REST may set;
//! - [`egress`]: which addresses callbacks may connect to (for every
//!   connector, wherever it was written);
//! - [`paths`]: which host files REST may name;
//! - [`SecretPolicy`]: which `${env:}` and `${file:}` references REST may use.
//!
//! Every check runs when a config is written (a refusal is a 400 naming the
//! key and the reason, and nothing is saved or applied), and again
//! wherever the value is used, so a config stored before the operator
//! tightened the policy is refused when it is restored.

pub mod client_properties;
pub mod egress;
pub mod paths;

use std::sync::Arc;
use std::time::Duration;

pub use client_properties::{Client, ClientPolicy, Inherit, OverridePolicy, PropertyRefusal};
pub use egress::{EgressPolicy, EgressRefusal};
pub use paths::{AllowedDirs, PathRefusal};

/// Who wrote a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The operator: the TOML file (a table as the file has it).
    Operator,
    /// A REST caller: held to the [`Policy`].
    Api,
}

/// Which secret references a config written over REST may use.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    /// `server.secrets.env_allow`: names of environment variables that
    /// `${env:NAME}` may read, as a pattern that must match the whole name;
    /// `None` allows none.
    pub env_allow: Option<regex::Regex>,
    /// `server.secrets.file_dirs`: where `${file:PATH:KEY}` may read.
    pub file_dirs: AllowedDirs,
}

impl Default for SecretPolicy {
    fn default() -> Self {
        Self {
            env_allow: None,
            file_dirs: AllowedDirs::none(SECRET_FILE_DIRS),
        }
    }
}

impl PartialEq for SecretPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.env_allow.as_ref().map(regex::Regex::as_str)
            == other.env_allow.as_ref().map(regex::Regex::as_str)
            && self.file_dirs == other.file_dirs
    }
}

impl Eq for SecretPolicy {}

/// The setting naming the directories `${file:}` may read from REST.
pub const SECRET_FILE_DIRS: &str = "server.secrets.file_dirs";
/// The setting naming the directories `guest.path` may name from REST.
pub const GUEST_DIRS: &str = "server.guests.dirs";
/// The setting naming the directories file properties may name from REST.
pub const KAFKA_FILE_DIRS: &str = "server.kafka.file_dirs";

impl SecretPolicy {
    /// Compiles `server.secrets.env_allow`, anchored at both ends, so
    /// `SECRET` does not admit `AWS_SECRET_ACCESS_KEY`.
    pub fn env_pattern(pattern: &str) -> Result<regex::Regex, String> {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("\"{pattern}\" is not a valid pattern: {e}"))
    }

    /// Whether `${env:NAME}` may be read by a REST-written config.
    pub fn env_allowed(&self, name: &str) -> bool {
        self.env_allow.as_ref().is_some_and(|re| re.is_match(name))
    }
}

/// The operator's security decisions, shared by everything that handles a
/// REST-written config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Client properties.
    pub client: ClientPolicy,
    /// Secret references.
    pub secrets: SecretPolicy,
    /// Where callbacks may connect.
    pub egress: Arc<EgressPolicy>,
    /// `server.guests.dirs`: where `guest.path` may point from REST.
    pub guests: AllowedDirs,
    /// The most a connector may give its guest.
    pub guest_caps: GuestCaps,
}

/// The most CPU time and memory any connector may give its guest
/// (`server.guests.max_*`). Guest calls yield to other lanes while they
/// run, so a budget costs other connectors only their share of the CPU;
/// these caps bound that share and how long a stuck guest holds its own
/// records before it is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestCaps {
    /// `server.guests.max_init_ms`: the longest `guest.timeout.init.ms`.
    pub init: Duration,
    /// `server.guests.max_call_ms`: the longest `guest.timeout.transform.ms`
    /// and `guest.timeout.decide.ms`.
    pub call: Duration,
    /// `server.guests.max_memory_mb`: the largest `guest.memory.max.mb`, in MiB.
    pub memory_mb: usize,
}

impl GuestCaps {
    /// The most an operator may raise `max_init_ms` and `max_call_ms` to.
    pub const CEILING_MS: u64 = 60_000;
    /// The most an operator may raise `max_memory_mb` to.
    pub const CEILING_MB: usize = 1024;
}

impl Default for GuestCaps {
    fn default() -> Self {
        Self {
            init: Duration::from_secs(10),
            call: Duration::from_secs(1),
            memory_mb: 256,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            client: ClientPolicy {
                file_dirs: AllowedDirs::none(KAFKA_FILE_DIRS),
                ..ClientPolicy::default()
            },
            secrets: SecretPolicy::default(),
            egress: Arc::new(EgressPolicy::default()),
            guests: AllowedDirs::none(GUEST_DIRS),
            guest_caps: GuestCaps::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_patterns_match_whole_names_only() {
        let policy = SecretPolicy {
            env_allow: Some(
                SecretPolicy::env_pattern("WASMSINK_SECRET_[A-Z0-9_]+|SECRET").unwrap(),
            ),
            ..SecretPolicy::default()
        };
        assert!(policy.env_allowed("WASMSINK_SECRET_TOKEN"));
        assert!(policy.env_allowed("SECRET"));
        assert!(!policy.env_allowed("AWS_SECRET_ACCESS_KEY"));
        assert!(!policy.env_allowed("SECRET_X"));
        assert!(!policy.env_allowed("XWASMSINK_SECRET_TOKEN"));
        assert!(!SecretPolicy::default().env_allowed("HOME"));
        assert!(SecretPolicy::env_pattern("(").is_err());
    }
}
