//! TLS for the console: the same certificate, key and client CA as the gRPC listener
//! ([`TlsFiles`]), through rustls with the ring provider, and a listener that completes
//! handshakes off the accept loop, so a slow client delays nobody else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{crypto, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::auth::tls::{handshake, TlsFiles};
use crate::error::{Error, Result};

/// The rustls configuration of `files` for the console: HTTP/1.1, and client certificates
/// verified against the client CA when there is one (required when `require_client_cert`,
/// as for gRPC; the console still signs registrars in with a token).
///
/// # Errors
/// [`Error::InvalidInput`] naming `tls_cert`, `tls_key` or `tls_client_ca` for a file
/// without usable PEM.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|_| Error::invalid("tls_cert", "no readable PEM certificate in the file"))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|_| Error::invalid("tls_key", "no readable PEM private key in the file"))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("tls", e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let bad = || Error::invalid("tls_client_ca", "no readable PEM certificate in the file");
            for cert in CertificateDer::pem_file_iter(ca).map_err(|_| bad())? {
                roots.add(cert.map_err(|_| bad())?).map_err(|_| bad())?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| Error::invalid("tls_client_ca", e.to_string()))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| Error::invalid("tls_key", format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections come out with their TLS handshake done.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, each handshake in a task of its own.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        let tls = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "console accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some((stream, _)) = handshake(&tls, tcp, peer, "console").await {
                        let _ = tx.send((stream, peer)).await;
                    }
                });
            }
        });
        TlsListener {
            ready,
            local,
            acceptor,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended (it does not, short of a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
