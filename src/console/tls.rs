//! TLS for the console: the same certificate, key and client CA as the gRPC listener
//! ([`TlsFiles`]), through rustls with the ring provider, and a listener that completes
//! handshakes off the accept loop, so a slow client delays nobody else.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::auth::tls::{accept, handshake, TlsFiles};
use crate::error::Result;

/// The rustls configuration of `files` for the console: the doors' own
/// ([`TlsFiles::rustls_config`]), offering HTTP/1.1; client certificates are verified
/// against the client CA as for gRPC (the console still signs registrars in with a token).
///
/// # Errors
/// As [`TlsFiles::rustls_config`].
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    files.rustls_config(&[b"http/1.1"])
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
                let (tcp, peer) = accept(&listener, "console").await;
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
