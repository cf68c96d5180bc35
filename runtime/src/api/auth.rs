//! Who may call the API: API keys, given as FusionAuth clients do (the raw
//! key in `Authorization`) or as Kafka Connect clients do (HTTP Basic, the
//! key as the password), a `Host`/`Origin` check against DNS rebinding for
//! a keyless API, and a limit on failed authentication per address.
//!
//! Keys are compared in constant time and never logged. FusionAuth's
//! endpoints (`/api/...`) follow FusionAuth's scheme exactly: only the raw
//! key is accepted (a `Bearer` or `Basic` value is compared as it is, and
//! so fails), and a request naming a tenant (a valid UUID in
//! `X-FusionAuth-TenantId`) is refused because messengers are global. Every
//! refusal there is 401 with an empty body, never 403.
//!
//! **Invariants:**
//! - an address over its failure limit gets 429 before its key is looked
//!   at, so the limit cannot be used to test keys;
//! - every request that gets through carries a [`Caller`] extension naming
//!   its key (by label, never by value) and its address, for the audit log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::{ApiError, fusionauth};
use crate::config::{ApiKey, ServerConfig};

/// FusionAuth's tenant header.
const TENANT_HEADER: &str = "x-fusionauth-tenantid";

/// Paths that never need a key.
const OPEN_PATHS: &[&str] = &["/health"];

/// The window failed authentications are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How many addresses the failure counts remember before expired windows
/// are dropped.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Who the API lets in.
#[derive(Debug, Clone)]
pub struct Access {
    /// The keys it accepts; empty means open.
    pub keys: Vec<ApiKey>,
    /// The `Host` names (without port) a browser-reachable keyless API
    /// accepts; `None` checks nothing.
    pub hosts: Option<Vec<String>>,
    /// Failed authentications per address per minute before 429.
    pub failures_per_minute: u32,
}

impl Access {
    /// The access rules for a server listening on `local`: keys as
    /// configured; the `Host` check when the API is keyless and on
    /// loopback, or keyless with `allowed_hosts` set.
    pub fn for_server(server: &ServerConfig, local: SocketAddr) -> Self {
        let keyless = server.api_keys.is_empty();
        let check_hosts = keyless && (local.ip().is_loopback() || !server.allowed_hosts.is_empty());
        let hosts = check_hosts.then(|| {
            let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
                .into_iter()
                .map(str::to_owned)
                .chain(server.allowed_hosts.iter().cloned())
                .collect();
            hosts.push(match local.ip() {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            });
            hosts
        });
        Self {
            keys: server.api_keys.clone(),
            hosts,
            failures_per_minute: server.auth_failures_per_minute,
        }
    }

    /// An open API with no checks, for tests and the quickstart.
    pub fn open() -> Self {
        Self {
            keys: Vec::new(),
            hosts: None,
            failures_per_minute: crate::config::DEFAULT_AUTH_FAILURES_PER_MINUTE,
        }
    }
}

/// Who made a request: the key's label (`None` when the API is open) and
/// the peer address, when the server knows it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The label of the key used.
    pub key: Option<Arc<str>>,
    /// The peer address.
    pub address: Option<IpAddr>,
}

impl Caller {
    /// The key as the audit log names it.
    pub fn key_label(&self) -> &str {
        self.key.as_deref().unwrap_or("(no key: the API is open)")
    }

    /// The address as the audit log names it.
    pub fn address_label(&self) -> String {
        self.address
            .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string())
    }
}

/// The guard's shared state.
#[derive(Clone)]
pub struct Guard {
    access: Arc<Access>,
    failures: Arc<Mutex<HashMap<Option<IpAddr>, Window>>>,
}

/// Failed authentications of one address in the current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    warned: bool,
}

impl Guard {
    /// A guard applying `access`.
    pub fn new(access: Access) -> Self {
        Self {
            access: Arc::new(access),
            failures: Arc::default(),
        }
    }

    /// How long `address` must wait, when it is over its limit.
    fn limited(&self, address: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let window = failures.get(&address)?;
        let ends = window.started + FAILURE_WINDOW;
        (now < ends && window.failures >= self.access.failures_per_minute)
            .then(|| ends.saturating_duration_since(now))
    }

    fn record_failure(&self, address: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED_ADDRESSES {
            failures.retain(|_, w| now.duration_since(w.started) < FAILURE_WINDOW);
        }
        let window = failures.entry(address).or_insert(Window {
            started: now,
            failures: 0,
            warned: false,
        });
        if now.duration_since(window.started) >= FAILURE_WINDOW {
            *window = Window {
                started: now,
                failures: 0,
                warned: false,
            };
        }
        window.failures += 1;
        if window.failures >= self.access.failures_per_minute && !window.warned {
            window.warned = true;
            tracing::warn!(
                address = %address.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
                failures = window.failures,
                "repeated failed API authentication: this address gets 429 for the rest of the minute"
            );
        }
    }

    /// The key that `request` carries and that may make it, by label.
    fn authenticate(&self, request: &Request, fusionauth: bool) -> Option<Arc<str>> {
        let given = presented(request, fusionauth)?;
        let method = request.method().as_str();
        let path = request.uri().path();
        let now = now_ms();
        // Every key is compared, so the time taken does not depend on which matched.
        let mut found = None;
        let mut ok = subtle::Choice::from(0);
        for key in &self.access.keys {
            let matches = key.key.as_bytes().ct_eq(&given);
            let permitted =
                subtle::Choice::from(u8::from(key.allows(method, path) && !key.expired_at(now)));
            let this = matches & permitted;
            if bool::from(this) && found.is_none() {
                found = Some(key.label.as_str());
            }
            ok |= this;
        }
        bool::from(ok).then(|| Arc::from(found.unwrap_or_default()))
    }

    /// Whether `Host` (and `Origin`, when present) name this API, when the
    /// check applies.
    fn host_refusal(&self, request: &Request) -> Option<String> {
        let hosts = self.access.hosts.as_ref()?;
        let accepted = |authority: &str| {
            let host = host_of(authority);
            hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        };
        if let Some(host) = request.headers().get(header::HOST) {
            let host = host.to_str().unwrap_or("(not text)");
            if !accepted(host) {
                return Some(format!(
                    "Host \"{host}\" is not accepted: a keyless API answers only the names of this \
                     machine (server.allowed_hosts adds others), which keeps web pages from reaching \
                     it through DNS rebinding"
                ));
            }
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)");
            let authority = origin
                .split_once("://")
                .map(|(_, rest)| rest)
                .filter(|_| origin.starts_with("http://") || origin.starts_with("https://"));
            if !authority.is_some_and(accepted) {
                return Some(format!(
                    "Origin \"{origin}\" is not accepted: a keyless API refuses requests from web \
                     pages of other sites"
                ));
            }
        }
        None
    }
}

/// The host of an authority (`host:port`, `[v6]:port`), without the port.
fn host_of(authority: &str) -> &str {
    let authority = authority.trim().trim_end_matches('/');
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The key a request carries, if any; `raw_only` for FusionAuth's scheme.
fn presented(request: &Request, raw_only: bool) -> Option<Vec<u8>> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    if raw_only {
        return Some(value.as_bytes().to_vec());
    }
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().as_bytes().to_vec())
    } else {
        Some(value.as_bytes().to_vec())
    }
}

/// Whether a request names a tenant: FusionAuth ignores a header value
/// that is not a UUID.
fn names_tenant(request: &Request) -> bool {
    request
        .headers()
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| uuid::Uuid::parse_str(v.trim()).is_ok())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Lets a request through when its `Host` and `Origin` are acceptable and
/// either no keys are configured, it is for `/health`, or it carries an
/// unexpired key allowed for its method and path; otherwise answers 401
/// with an empty body (429 for an address over its failure limit).
pub async fn guard(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let fusionauth = request.uri().path().starts_with(fusionauth::PREFIX);
    if let Some(reason) = guard.host_refusal(&request) {
        tracing::warn!(%reason, "request refused");
        return if fusionauth {
            unauthorized(true)
        } else {
            ApiError::new(StatusCode::FORBIDDEN, reason).into_response()
        };
    }
    if fusionauth && names_tenant(&request) {
        return unauthorized(fusionauth);
    }
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if guard.access.keys.is_empty() || OPEN_PATHS.contains(&request.uri().path()) {
        request
            .extensions_mut()
            .insert(Caller { key: None, address });
        return next.run(request).await;
    }
    let now = Instant::now();
    if let Some(wait) = guard.limited(address, now) {
        return too_many(wait);
    }
    match guard.authenticate(&request, fusionauth) {
        Some(label) => {
            request.extensions_mut().insert(Caller {
                key: Some(label),
                address,
            });
            next.run(request).await
        }
        None => {
            guard.record_failure(address, now);
            unauthorized(fusionauth)
        }
    }
}

/// 401 with an empty body; Connect's endpoints also invite HTTP Basic.
fn unauthorized(fusionauth: bool) -> Response {
    if fusionauth {
        return (StatusCode::UNAUTHORIZED, Body::empty()).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"wasmsink\"")],
        Body::empty(),
    )
        .into_response()
}

/// 429 with `Retry-After` in whole seconds and an empty body.
fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Body::empty()).into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_compared_without_their_port() {
        assert_eq!(host_of("localhost:8083"), "localhost");
        assert_eq!(host_of("[::1]:8083"), "[::1]");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_of("evil.example:80"), "evil.example");
    }

    #[test]
    fn an_address_is_limited_after_its_failures_and_only_for_the_window() {
        let guard = Guard::new(Access {
            failures_per_minute: 3,
            ..Access::open()
        });
        let attacker = Some(IpAddr::from([10, 0, 0, 1]));
        let other = Some(IpAddr::from([10, 0, 0, 2]));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(guard.limited(attacker, start).is_none());
            guard.record_failure(attacker, start);
        }
        let wait = guard.limited(attacker, start).expect("limited");
        assert!(wait <= FAILURE_WINDOW && wait > Duration::from_secs(59));
        assert!(
            guard.limited(other, start).is_none(),
            "another address is not"
        );
        assert!(guard.limited(attacker, start + FAILURE_WINDOW).is_none());
    }
}
