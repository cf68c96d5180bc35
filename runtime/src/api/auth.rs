//! API keys: given as FusionAuth clients do (the raw key in
//! `Authorization`) or as Kafka Connect clients do (HTTP Basic, the key as
//! the password). Keys are compared in constant time and never logged.
//!
//! FusionAuth's endpoints (`/api/...`) follow FusionAuth's scheme exactly:
//! only the raw key is accepted (a `Bearer` or `Basic` value is compared as
//! it is, and so fails), and a request naming a tenant (a valid UUID in
//! `X-FusionAuth-TenantId`) is refused because messengers are global. Every
//! refusal is 401 with an empty body, never 403.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::fusionauth;
use crate::config::ApiKey;

/// FusionAuth's tenant header.
const TENANT_HEADER: &str = "x-fusionauth-tenantid";

/// Paths that never need a key.
const OPEN_PATHS: &[&str] = &["/health"];

/// The keys the server accepts; empty means open.
#[derive(Clone, Default)]
pub struct Keys(pub Arc<Vec<ApiKey>>);

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

/// Lets a request through when no keys are configured, when it is for
/// `/health`, or when it carries an unexpired key allowed for its method
/// and path; otherwise answers 401 with an empty body.
pub async fn require_key(State(keys): State<Keys>, request: Request, next: Next) -> Response {
    let fusionauth = request.uri().path().starts_with(fusionauth::PREFIX);
    if fusionauth && names_tenant(&request) {
        return unauthorized(fusionauth);
    }
    if keys.0.is_empty() || OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let now = now_ms();
    let allowed = presented(&request, fusionauth).is_some_and(|given| {
        let method = request.method().as_str();
        let path = request.uri().path();
        // Every key is compared, so the time taken does not depend on which matched.
        let mut ok = subtle::Choice::from(0);
        for key in keys.0.iter() {
            let matches = key.key.as_bytes().ct_eq(&given);
            let permitted =
                subtle::Choice::from(u8::from(key.allows(method, path) && !key.expired_at(now)));
            ok |= matches & permitted;
        }
        bool::from(ok)
    });
    if allowed {
        next.run(request).await
    } else {
        unauthorized(fusionauth)
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
