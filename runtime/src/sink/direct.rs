//! One keep-alive HTTP/1.1 connection per partition lane, driven inside the
//! lane's own task.
//!
//! A lane has at most one request in flight (its records are delivered in
//! order), so it needs no pool: it opens one connection on first use, keeps
//! it for the next record, and opens a new one when the server closes it or
//! an attempt fails. The connection is polled only while the lane waits for
//! an answer, and in the lane's task, so an attempt is one write and one
//! read with no hand-off to a connection task, no pool lookup and no URL
//! parsing.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{PreparedRequest, ResponseHeaders, ResponseReader, Timeouts, error_chain};
use crate::guest::bindings::{AttemptOutcome, HttpResponse, TransportError, TransportErrorKind};
use crate::security::EgressPolicy;

/// Where a connector's direct connections go.
///
/// **Invariant:** a connection is opened only to an address the egress
/// policy allows, checked on the address actually connected to (after
/// resolving, with no second lookup), so DNS rebinding cannot reach a
/// refused address.
#[derive(Debug)]
pub struct Endpoint {
    host: EndpointHost,
    port: u16,
    /// The TLS name to verify, for `https` endpoints.
    tls_name: Option<ServerName<'static>>,
    egress: Arc<EgressPolicy>,
}

#[derive(Debug)]
enum EndpointHost {
    Ip(std::net::IpAddr),
    Name(String),
}

impl Endpoint {
    /// The endpoint of a callback URL; `None` for a scheme other than
    /// `http` or `https` or a URL without a host (the configuration refuses
    /// those first).
    pub fn of(url: &url::Url, egress: Arc<EgressPolicy>) -> Option<Self> {
        let port = url.port_or_known_default()?;
        let host = match url.host()? {
            url::Host::Domain(name) => EndpointHost::Name(name.to_owned()),
            url::Host::Ipv4(ip) => EndpointHost::Ip(ip.into()),
            url::Host::Ipv6(ip) => EndpointHost::Ip(ip.into()),
        };
        let tls_name = match url.scheme() {
            "http" => None,
            "https" => Some(match &host {
                EndpointHost::Ip(ip) => ServerName::IpAddress((*ip).into()),
                EndpointHost::Name(name) => ServerName::try_from(name.clone()).ok()?,
            }),
            _ => return None,
        };
        Some(Self {
            host,
            port,
            tls_name,
            egress,
        })
    }
}

/// The TLS client settings every direct `https` connection shares: the
/// platform's trust store, HTTP/1.1 by ALPN.
fn tls_connector() -> Result<TlsConnector, TransportError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        crate::install_tls_provider();
        use rustls_platform_verifier::ConfigVerifierExt;
        let mut config =
            rustls::ClientConfig::with_platform_verifier().map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    });
    match config {
        Ok(config) => Ok(TlsConnector::from(config.clone())),
        Err(message) => Err(TransportError {
            kind: TransportErrorKind::Tls,
            message: format!("cannot load the TLS trust store: {message}"),
        }),
    }
}

/// A lane's connection to its connector's callback.
pub struct DirectConnection {
    endpoint: Arc<Endpoint>,
    timeouts: Timeouts,
    response_headers: ResponseHeaders,
    open: Option<Box<Open>>,
}

/// An open connection: hyper's request handle and the connection future
/// that does its I/O when polled.
struct Open {
    sender: SendRequest<Full<Bytes>>,
    driver: Connection<TokioIo<Stream>, Full<Bytes>>,
}

/// How one exchange on an open connection ended.
enum Exchanged {
    /// The request was never written (the connection had closed while
    /// idle); here it is back, to go on another.
    NotSent(Box<Message>),
    /// An answer or a failure; the connection, when it can be used again.
    Finished(AttemptOutcome, Option<Box<Open>>),
}

impl DirectConnection {
    /// A lane's connection, opened on its first attempt.
    pub fn new(
        endpoint: Arc<Endpoint>,
        timeouts: Timeouts,
        response_headers: ResponseHeaders,
    ) -> Self {
        Self {
            endpoint,
            timeouts,
            response_headers,
            open: None,
        }
    }

    /// Sends one attempt and reports what happened. A kept connection that
    /// the server closed while it was idle is replaced without counting as
    /// an attempt: the request had not been written.
    pub async fn send(&mut self, request: &PreparedRequest, headers: HeaderMap) -> AttemptOutcome {
        let mut message = hyper::Request::new(Full::new(request.body.clone()));
        *message.method_mut() = request.method.clone();
        *message.uri_mut() = request.path_and_query.clone();
        *message.headers_mut() = headers;
        if let Some(open) = self.open.take() {
            match exchange(open, message, self.timeouts.read, self.response_headers).await {
                Exchanged::NotSent(unsent) => message = *unsent,
                Exchanged::Finished(outcome, reusable) => {
                    self.open = reusable;
                    return outcome;
                }
            }
        }
        // Rare (the first attempt, or after the server closed), and its
        // future is large (resolving, TLS): boxed, so that every attempt's
        // future stays small.
        let open = match Box::pin(self.connect()).await {
            Ok(open) => Box::new(open),
            Err(error) => return AttemptOutcome::Transport(error),
        };
        match exchange(open, message, self.timeouts.read, self.response_headers).await {
            Exchanged::NotSent(_) => AttemptOutcome::Transport(TransportError {
                kind: TransportErrorKind::Io,
                message: "the server closed a new connection before the request was sent".into(),
            }),
            Exchanged::Finished(outcome, reusable) => {
                self.open = reusable;
                outcome
            }
        }
    }

    /// Opens a connection: resolve, connect, TLS handshake for `https`, all
    /// within the connect timeout.
    async fn connect(&self) -> Result<Open, TransportError> {
        let connecting = async {
            let tcp = self.connect_tcp().await?;
            let stream = match &self.endpoint.tls_name {
                None => Stream::Plain(tcp),
                Some(name) => {
                    let tls = tls_connector()?
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| transport(TransportErrorKind::Tls, &e))?;
                    Stream::Tls(Box::new(tls))
                }
            };
            let (sender, driver) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| transport(TransportErrorKind::Io, &e))?;
            Ok(Open { sender, driver })
        };
        match self.timeouts.connect {
            None => connecting.await,
            Some(limit) => tokio::time::timeout(limit, connecting)
                .await
                .unwrap_or_else(|_| {
                    Err(TransportError {
                        kind: TransportErrorKind::Timeout,
                        message: format!("connect timed out after {} ms", limit.as_millis()),
                    })
                }),
        }
    }

    /// Connects to the first address of the host that the egress policy
    /// allows and that accepts.
    async fn connect_tcp(&self) -> Result<TcpStream, TransportError> {
        let port = self.endpoint.port;
        let resolved: Vec<SocketAddr> = match &self.endpoint.host {
            EndpointHost::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            EndpointHost::Name(name) => tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| TransportError {
                    kind: TransportErrorKind::Dns,
                    message: format!("cannot resolve {name}: {e}"),
                })?
                .collect(),
        };
        let mut refused = None;
        let addresses: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|address| match self.endpoint.egress.check(address.ip()) {
                Ok(()) => true,
                Err(refusal) => {
                    refused = Some(refusal);
                    false
                }
            })
            .collect();
        if let (true, Some(refusal)) = (addresses.is_empty(), refused) {
            return Err(TransportError {
                kind: TransportErrorKind::Connect,
                message: format!("not connected: {refusal}"),
            });
        }
        let mut last_error = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    stream
                        .set_nodelay(true)
                        .map_err(|e| transport(TransportErrorKind::Connect, &e))?;
                    return Ok(stream);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(match last_error {
            Some(error) => transport(TransportErrorKind::Connect, &error),
            None => TransportError {
                kind: TransportErrorKind::Dns,
                message: "the host name resolved to no address".into(),
            },
        })
    }
}

/// An attempt's request as hyper sends it.
type Message = hyper::Request<Full<Bytes>>;

/// Sends `message` on `open` and reads the answer, polling the connection
/// in this task until the answer is complete.
async fn exchange(
    mut open: Box<Open>,
    message: Message,
    read_timeout: Option<Duration>,
    response_headers: ResponseHeaders,
) -> Exchanged {
    let Open { sender, driver } = &mut *open;

    let result = {
        let attempt =
            pin!(async {
                if sender.ready().await.is_err() {
                    return Err(Failure::NotSent(Box::new(message)));
                }
                let response = sender.try_send_request(message).await.map_err(|mut e| {
                    match e.take_message() {
                        Some(unsent) => Failure::NotSent(Box::new(unsent)),
                        None => Failure::Broken(e.into_error()),
                    }
                })?;
                read_response(response, response_headers)
                    .await
                    .map_err(Failure::Broken)
            });
        let driven = async {
            let mut attempt = attempt;
            tokio::select! {
                biased;
                result = &mut attempt => (result, false),
                // The connection ended (closed or broken): the attempt
                // learns how from its own future.
                _ = &mut *driver => (attempt.await, true),
            }
        };
        match read_timeout {
            None => Some(driven.await),
            Some(limit) => tokio::time::timeout(limit, driven).await.ok(),
        }
    };
    match result {
        None => Exchanged::Finished(
            AttemptOutcome::Transport(TransportError {
                kind: TransportErrorKind::Timeout,
                message: format!(
                    "no complete answer within {} ms",
                    read_timeout.unwrap_or_default().as_millis()
                ),
            }),
            None,
        ),
        Some((Err(Failure::NotSent(message)), _)) => Exchanged::NotSent(message),
        Some((Err(Failure::Broken(error)), _)) => Exchanged::Finished(
            AttemptOutcome::Transport(transport(TransportErrorKind::Io, &error)),
            None,
        ),
        Some((Ok((response, keep_alive)), ended)) => {
            let reusable = (keep_alive && !ended && !open.sender.is_closed()).then_some(open);
            Exchanged::Finished(AttemptOutcome::Response(response), reusable)
        }
    }
}

/// Why an exchange did not produce an answer.
enum Failure {
    /// Nothing was written; the request (boxed: this is rare), to go on a
    /// new connection.
    NotSent(Box<Message>),
    /// The connection broke after the request was (maybe) written.
    Broken(hyper::Error),
}

/// Reads the status, headers and up to [`super::RESPONSE_BODY_CAP`] body bytes; true
/// with them when the connection can carry another request (the whole body
/// was read).
async fn read_response(
    response: hyper::Response<Incoming>,
    headers: ResponseHeaders,
) -> Result<(HttpResponse, bool), hyper::Error> {
    let (head, mut body) = response.into_parts();
    let mut reader = ResponseReader::new(head.status, &head.headers, headers);
    while let Some(frame) = body.frame().await {
        // Trailers are not data; they are skipped.
        if let Ok(chunk) = frame?.into_data()
            && !reader.push(&chunk)
        {
            break;
        }
    }
    let response = reader.finish();
    let whole = !response.body_truncated;
    Ok((response, whole))
}

fn transport(
    kind: TransportErrorKind,
    error: &(dyn std::error::Error + 'static),
) -> TransportError {
    TransportError {
        kind,
        message: error_chain(error),
    }
}

/// A plain or TLS connection to the callback.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
