//! Secret references in configuration values, in Kafka Connect's
//! config-provider style: `${env:NAME}` and `${file:PATH:KEY}` (PATH a
//! Java-properties file, KEY one of its keys).
//!
//! A connector keeps its properties as written, references and all, so the
//! REST API and logs never show a resolved secret. References are resolved
//! only when the connector is validated and built
//! ([`ConnectorConfig::from_raw_properties`]).
//!
//! What a reference may read depends on who wrote it ([`Scope`]): the
//! operator's file may read any environment variable and any file; a
//! config written over REST only the variables whose whole name matches
//! `server.secrets.env_allow` and files under `server.secrets.file_dirs`
//! (none by default). Either way `${file:}` reads only a regular file of at
//! most [`MAX_SECRET_FILE_BYTES`], so `${file:/dev/zero:k}` costs nothing.

use std::collections::BTreeMap;

use super::{ConfigProblem, ConnectorConfig};
use crate::security::{self, Policy, SecretPolicy, Trust};

/// The largest file `${file:PATH:KEY}` reads.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Who wrote the references being resolved.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The operator: any variable, any regular file.
    Operator,
    /// A REST caller: only what the policy allows.
    Api(&'a SecretPolicy),
}

/// Why a reference could not be resolved. The messages name the reference,
/// never a resolved value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `${env:NAME}` with NAME unset.
    #[error("environment variable {0} (referenced as ${{env:{0}}}) is not set")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read {path} (referenced by ${{file:...}}): {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key is not in the file.
    #[error("key {key} is not in {path}")]
    MissingKey {
        /// The file.
        path: String,
        /// The key.
        key: String,
    },
    /// `${...}` that is neither form.
    #[error("\"{0}\" is not a reference; use ${{env:NAME}} or ${{file:PATH:KEY}}")]
    Malformed(String),
    /// A REST-written `${env:NAME}` that `server.secrets.env_allow` does
    /// not admit.
    #[error(
        "${{env:{0}}} may not be read by a config written over REST: server.secrets.env_allow does not match {0}"
    )]
    EnvNotAllowed(String),
    /// A REST-written `${file:...}` outside `server.secrets.file_dirs`, or
    /// one that cannot be read; the same text either way.
    #[error("${{file:{0}:...}} cannot be resolved: {1}")]
    FileNotAllowed(String, security::PathRefusal),
}

/// Replaces every `${env:...}` and `${file:...:...}` in `value`. Text
/// without `${env:` or `${file:` is returned unchanged.
pub fn resolve_value(value: &str, scope: Scope<'_>) -> Result<String, SecretError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = find_reference(rest) {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after
            .find('}')
            .ok_or_else(|| SecretError::Malformed(after.to_owned()))?;
        let reference = &after[2..end];
        out.push_str(&resolve_reference(reference, scope)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn find_reference(text: &str) -> Option<usize> {
    [text.find("${env:"), text.find("${file:")]
        .into_iter()
        .flatten()
        .min()
}

fn resolve_reference(reference: &str, scope: Scope<'_>) -> Result<String, SecretError> {
    if let Some(name) = reference.strip_prefix("env:") {
        if let Scope::Api(policy) = scope
            && !policy.env_allowed(name)
        {
            return Err(SecretError::EnvNotAllowed(name.to_owned()));
        }
        return std::env::var(name).map_err(|_| SecretError::MissingEnv(name.to_owned()));
    }
    let Some(path_key) = reference.strip_prefix("file:") else {
        return Err(SecretError::Malformed(format!("${{{reference}}}")));
    };
    let (path, key) = path_key
        .rsplit_once(':')
        .filter(|(p, k)| !p.is_empty() && !k.is_empty())
        .ok_or_else(|| SecretError::Malformed(format!("${{{reference}}}")))?;
    let bytes = match scope {
        Scope::Api(policy) => policy
            .file_dirs
            .read(path, MAX_SECRET_FILE_BYTES)
            .map_err(|refusal| SecretError::FileNotAllowed(path.to_owned(), refusal))?,
        Scope::Operator => std::fs::canonicalize(path)
            .map_err(|e| e.to_string())
            .and_then(|canonical| security::paths::read_regular(&canonical, MAX_SECRET_FILE_BYTES))
            .map_err(|reason| SecretError::File {
                path: path.to_owned(),
                reason,
            })?,
    };
    let text = String::from_utf8(bytes).map_err(|_| SecretError::File {
        path: path.to_owned(),
        reason: "not UTF-8 text".to_owned(),
    })?;
    properties_value(&text, key).ok_or_else(|| SecretError::MissingKey {
        path: path.to_owned(),
        key: key.to_owned(),
    })
}

/// The value of `key` in Java-properties text (`key=value`, `key: value` or
/// `key value`; `#` and `!` comment lines). Line continuations and escapes
/// beyond `\\` are not interpreted.
fn properties_value(text: &str, key: &str) -> Option<String> {
    text.lines().map(str::trim_start).find_map(|line| {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            return None;
        }
        let split = line.find(['=', ':', ' ', '\t'])?;
        let (name, rest) = line.split_at(split);
        if name != key {
            return None;
        }
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix('=')
            .or_else(|| rest.strip_prefix(':'))
            .unwrap_or(rest);
        Some(rest.trim().replace("\\\\", "\\"))
    })
}

/// Hides every resolved secret that a problem's reason quotes.
fn redact(raw: &BTreeMap<String, String>, scope: Scope<'_>, problems: &mut [ConfigProblem]) {
    let mut secrets: Vec<String> = Vec::new();
    for value in raw.values() {
        let mut rest = value.as_str();
        while let Some(start) = find_reference(rest) {
            let after = &rest[start..];
            let Some(end) = after.find('}') else { break };
            if let Ok(secret) = resolve_reference(&after[2..end], scope)
                && !secret.is_empty()
            {
                secrets.push(secret);
            }
            rest = &after[end + 1..];
        }
    }
    // Longest first, so a secret containing another is hidden whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for problem in problems {
        for secret in &secrets {
            if problem.reason.contains(secret.as_str()) {
                problem.reason = problem.reason.replace(secret.as_str(), "[secret]");
            }
        }
    }
}

/// Resolves every property, reporting each unresolvable one.
pub fn resolve_properties(
    connector: &str,
    raw: &BTreeMap<String, String>,
    scope: Scope<'_>,
) -> Result<BTreeMap<String, String>, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut resolved = BTreeMap::new();
    for (key, value) in raw {
        match resolve_value(value, scope) {
            Ok(v) => {
                resolved.insert(key.clone(), v);
            }
            Err(e) => problems.push(ConfigProblem::connector(connector, key, e.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

impl ConnectorConfig {
    /// Checks properties as written by `trust`, resolves their secret
    /// references, then validates, reporting every problem. The result's
    /// `properties` are `raw`, references unresolved, so that showing them
    /// never reveals a secret.
    ///
    /// A config written over REST ([`Trust::Api`]) is first held to the
    /// operator's [`Policy`]: its client properties, `guest.path` and
    /// references. When that refuses anything, those refusals alone are
    /// reported, before any file is looked at, so a refusal reveals nothing
    /// about the host. Every config, whoever wrote it, is held to the
    /// egress policy and the guest caps.
    pub fn from_raw_properties(
        name: &str,
        raw: &BTreeMap<String, String>,
        policy: &Policy,
        trust: Trust,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let inherit = match trust {
            Trust::Operator => Default::default(),
            Trust::Api => super::rest_policy::check(name, raw, policy)?,
        };
        let scope = match trust {
            Trust::Operator => Scope::Operator,
            Trust::Api => Scope::Api(&policy.secrets),
        };
        let resolved = resolve_properties(name, raw, scope)?;
        let mut config = Self::from_properties(name, &resolved)
            .and_then(|config| super::rest_policy::check_any(&config, policy).map(|()| config))
            .map_err(|mut problems| {
                redact(raw, scope, &mut problems);
                problems
            })?;
        config.properties = raw.clone();
        (config.consumer_inherit, config.producer_inherit) = inherit;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_file_references_resolve() {
        // SAFETY: a name only this test uses.
        unsafe { std::env::set_var("WASMSINK_TEST_SECRET_A", "s3cret") };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.properties");
        std::fs::write(&file, "# c\napikey = abc:def\nother: x\n").unwrap();
        let value = format!(
            "{{\"apikey\":\"${{file:{}:apikey}}\",\"x\":\"${{env:WASMSINK_TEST_SECRET_A}}\"}}",
            file.display()
        );
        assert_eq!(
            resolve_value(&value, Scope::Operator).unwrap(),
            r#"{"apikey":"abc:def","x":"s3cret"}"#
        );
        assert_eq!(
            resolve_value("plain ${x}", Scope::Operator).unwrap(),
            "plain ${x}"
        );
        assert!(matches!(
            resolve_value("${env:WASMSINK_TEST_NOT_SET_EVER}", Scope::Operator),
            Err(SecretError::MissingEnv(_))
        ));
        assert!(matches!(
            resolve_value(
                &format!("${{file:{}:nope}}", file.display()),
                Scope::Operator
            ),
            Err(SecretError::MissingKey { .. })
        ));
    }

    #[test]
    fn the_config_keeps_the_reference() {
        // SAFETY: a name only this test uses.
        unsafe { std::env::set_var("WASMSINK_TEST_SECRET_B", "K") };
        let raw = BTreeMap::from([
            ("topics".to_owned(), "t".to_owned()),
            ("callback.request.url".to_owned(), "http://h/x".to_owned()),
            (
                "callback.request.headers".to_owned(),
                r#"{"apikey":"${env:WASMSINK_TEST_SECRET_B}"}"#.to_owned(),
            ),
        ]);
        let config =
            ConnectorConfig::from_raw_properties("c", &raw, &Policy::default(), Trust::Operator)
                .unwrap();
        assert_eq!(config.properties, raw);
        assert_eq!(
            config.callback.headers,
            vec![("apikey".to_owned(), "K".to_owned())]
        );
    }

    #[test]
    fn problems_never_quote_a_resolved_secret() {
        // SAFETY: a name only this test uses.
        unsafe { std::env::set_var("WASMSINK_TEST_SECRET_C", "hunter2-token") };
        let raw = BTreeMap::from([
            ("topics".to_owned(), "t".to_owned()),
            (
                "callback.request.url".to_owned(),
                "ftp://h/x?token=${env:WASMSINK_TEST_SECRET_C}".to_owned(),
            ),
        ]);
        let problems =
            ConnectorConfig::from_raw_properties("c", &raw, &Policy::default(), Trust::Operator)
                .unwrap_err();
        let text = format!("{problems:?}");
        assert!(!text.contains("hunter2-token"), "{text}");
    }
}
