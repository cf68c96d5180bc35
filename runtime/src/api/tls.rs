//! HTTPS for the REST API: the operator's certificate and key, and, for
//! mutual TLS, the CAs that client certificates must chain to.
//!
//! [`TlsListener`] is an [`axum::serve::Listener`] whose `accept` yields
//! connections that finished their handshake, so axum serves them as it
//! serves plain TCP, graceful shutdown included. **Invariants:** every
//! handshake runs in its own task under [`HANDSHAKE_TIMEOUT`], so a client
//! that connects and says nothing holds up no other; at most
//! [`MAX_PENDING_HANDSHAKES`] run at once, and past that new connections
//! wait in the kernel's backlog; dropping the listener (axum does on
//! shutdown) aborts the handshakes still pending.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig as RustlsConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsFiles;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many handshakes may run at once.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// Why the listener's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A file holds no certificate.
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    /// rustls refused the certificates, the key or the client CAs.
    #[error("{context}: {source}")]
    Rustls {
        /// What was being set up.
        context: String,
        /// Why.
        source: rustls::Error,
    },
    /// The client CA file cannot verify clients.
    #[error("client CA {path}: {source}")]
    ClientCa {
        /// The file.
        path: String,
        /// Why.
        source: rustls::server::VerifierBuilderError,
    },
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.display().to_string(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(chain)
}

/// The rustls settings for `files`: TLS 1.3 and 1.2, HTTP/1.1 by ALPN, and
/// client certificates required when a client CA is given.
pub fn server_config(files: &TlsFiles) -> Result<Arc<RustlsConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Pem {
        path: files.key.display().to_string(),
        source,
    })?;
    let rustls_error = |context: &str| {
        let context = context.to_owned();
        move |source| TlsError::Rustls { context, source }
    };
    let builder = RustlsConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error("TLS versions"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path)? {
                roots
                    .add(ca)
                    .map_err(rustls_error(&format!("client CA {}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|source| TlsError::ClientCa {
                    path: path.display().to_string(),
                    source,
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(rustls_error(
        "the certificate and key do not form a usable pair",
    ))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// A TCP listener whose `accept` yields finished TLS connections.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    pending: JoinSet<Handshake>,
}

impl TlsListener {
    /// TLS with `config` on `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<RustlsConfig>) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            pending: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.pending.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    /// Cancel-safe (axum drops it when shutdown wins): both awaited
    /// futures are, and all state lives in `self`.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                biased;
                // Finished handshakes first, so a flood of connections cannot starve them.
                Some(joined) = self.pending.join_next() => {
                    if let Ok(Some(connection)) = joined {
                        return connection;
                    }
                }
                accepted = self.tcp.accept(), if self.pending.len() < MAX_PENDING_HANDSHAKES => {
                    match accepted {
                        Ok((tcp, peer)) => {
                            let _ = tcp.set_nodelay(true);
                            self.start_handshake(tcp, peer);
                        }
                        Err(error) => accept_error(error).await,
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// As axum does for plain TCP: a failed connection is skipped; anything
/// else (out of file descriptors) is logged and retried after a second.
async fn accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
