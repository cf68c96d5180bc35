//! Attempts through the HTTP proxy the environment names (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`, with `NO_PROXY` exceptions), on reqwest's
//! pooled client, which implements proxying, `CONNECT` tunnels and the
//! exceptions.
//!
//! Every name this client resolves itself (a `NO_PROXY` host, or the proxy)
//! goes through the egress policy. A name the proxy resolves for us is the
//! proxy's to police: behind an operator's proxy, enforce egress rules
//! there too. A callback URL that is an address literal was checked when
//! its connector was configured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;

use super::{PreparedRequest, ResponseHeaders, ResponseReader, SinkError, Timeouts, error_chain};
use crate::guest::bindings::{AttemptOutcome, TransportError, TransportErrorKind};
use crate::security::EgressPolicy;

/// The system resolver, keeping only the addresses the egress policy allows.
struct EgressResolver(Arc<EgressPolicy>);

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.0.clone();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| match egress.check(address.ip()) {
                    Ok(()) => true,
                    Err(refusal) => {
                        refused = Some(refusal);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(refusal)) => Err(format!("not connected: {refusal}").into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The environment variables that route callbacks through a proxy.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// True when the environment names a proxy for callbacks.
pub fn proxy_configured() -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// A connector's pooled client that follows the environment's proxies.
#[derive(Clone)]
pub struct ProxiedClient {
    client: Client,
    /// `scheme://authority` of the callback URL, before each path and query.
    origin: String,
}

impl ProxiedClient {
    /// Builds the client: keep-alive, redirects not followed, the timeouts,
    /// through `proxy`, or the environment's proxies when it is `None`.
    pub fn new(
        url: &url::Url,
        timeouts: Timeouts,
        proxy: Option<reqwest::Proxy>,
        egress: Arc<EgressPolicy>,
    ) -> Result<Self, SinkError> {
        crate::install_tls_provider();
        let mut builder = Client::builder()
            .dns_resolver(Arc::new(EgressResolver(egress)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        if let Some(proxy) = proxy {
            builder = builder.proxy(proxy);
        }
        if let Some(timeout) = timeouts.connect {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = timeouts.read {
            builder = builder.read_timeout(timeout);
        }
        let client = builder
            .build()
            .map_err(|e| SinkError(error_chain(&e.without_url())))?;
        Ok(Self {
            client,
            origin: url[..url::Position::BeforePath].to_owned(),
        })
    }

    /// Sends one attempt and reports what happened; the response keeps or
    /// drops its headers.
    pub async fn send(
        &self,
        request: &PreparedRequest,
        headers: HeaderMap,
        response_headers: ResponseHeaders,
    ) -> AttemptOutcome {
        let url = format!("{}{}", self.origin, request.path_and_query);
        let url = match reqwest::Url::parse(&url) {
            Ok(url) => url,
            Err(error) => {
                return AttemptOutcome::Transport(TransportError {
                    kind: TransportErrorKind::Io,
                    message: format!("cannot form the request URL: {error}"),
                });
            }
        };
        let mut attempt = reqwest::Request::new(request.method.clone(), url);
        *attempt.headers_mut() = headers;
        *attempt.body_mut() = Some(request.body.clone().into());
        match self.client.execute(attempt).await {
            Ok(response) => read_response(response, response_headers).await,
            Err(error) => AttemptOutcome::Transport(transport_error(error)),
        }
    }
}

async fn read_response(
    mut response: reqwest::Response,
    headers: ResponseHeaders,
) -> AttemptOutcome {
    let mut reader = ResponseReader::new(response.status(), response.headers(), headers);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if reader.push(&chunk) => {}
            Ok(_) => break,
            // The status line arrived, then the connection broke mid-body.
            Err(error) => return AttemptOutcome::Transport(transport_error(error)),
        }
    }
    AttemptOutcome::Response(reader.finish())
}

/// The error's kind and text, without the URL (it may carry credentials in
/// its query).
fn transport_error(error: reqwest::Error) -> TransportError {
    let error = error.without_url();
    let message = error_chain(&error);
    let lower = message.to_ascii_lowercase();
    let kind = if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        TransportErrorKind::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        TransportErrorKind::Tls
    } else if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Io
    };
    TransportError { kind, message }
}
