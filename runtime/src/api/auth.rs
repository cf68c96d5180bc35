//! API keys: given as FusionAuth clients do (the raw key in
//! `Authorization`) or as Kafka Connect clients do (HTTP Basic, the key as
//! the password). Keys are compared in constant time and never logged.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::config::ApiKey;

/// Paths that never need a key.
const OPEN_PATHS: &[&str] = &["/health"];

/// The keys the server accepts; empty means open.
#[derive(Clone, Default)]
pub struct Keys(pub Arc<Vec<ApiKey>>);

/// The key a request carries, if any.
fn presented(request: &Request) -> Option<Vec<u8>> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
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

/// Lets a request through when no keys are configured, when it is for
/// `/health`, or when it carries a key allowed for its method and path;
/// otherwise answers 401 with an empty body.
pub async fn require_key(State(keys): State<Keys>, request: Request, next: Next) -> Response {
    if keys.0.is_empty() || OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let allowed = presented(&request).is_some_and(|given| {
        let method = request.method().as_str();
        let path = request.uri().path();
        // Every key is compared, so the time taken does not depend on which matched.
        let mut ok = subtle::Choice::from(0);
        for key in keys.0.iter() {
            let matches = key.key.as_bytes().ct_eq(&given);
            let permitted = subtle::Choice::from(u8::from(key.allows(method, path)));
            ok |= matches & permitted;
        }
        bool::from(ok)
    });
    if allowed {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"wasmsink\"")],
            Body::empty(),
        )
            .into_response()
    }
}
