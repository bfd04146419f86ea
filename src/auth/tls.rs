//! TLS for the listeners: the server certificate and key, and optionally a CA whose client
//! certificates the server accepts (mutual TLS). The gRPC listener gets them as tonic's
//! configuration, the MLLP and FHIR listeners as a rustls one built from the same files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};

use crate::error::{Error, Result};

/// The PEM files of a TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificate(s), PEM, that sign accepted client certificates.
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate (otherwise a client may present
    /// either a certificate or a bearer token).
    pub require_client_cert: bool,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

impl TlsFiles {
    /// The tonic server TLS configuration of these files.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file; [`Error::InvalidInput`] when a file holds no
    /// PEM block, or a client certificate is required without a client CA.
    pub fn server_config(&self) -> Result<ServerTlsConfig> {
        let (cert, key) = (read(&self.cert)?, read(&self.key)?);
        if !cert.windows(10).any(|w| w == b"-----BEGIN") {
            return Err(Error::invalid("tls_cert", "no PEM certificate in the file"));
        }
        if !key.windows(10).any(|w| w == b"-----BEGIN") {
            return Err(Error::invalid("tls_key", "no PEM private key in the file"));
        }
        let mut config = ServerTlsConfig::new().identity(TlsIdentity::from_pem(cert, key));
        match &self.client_ca {
            Some(ca) => {
                config = config
                    .client_ca_root(Certificate::from_pem(read(ca)?))
                    .client_auth_optional(!self.require_client_cert);
            }
            None if self.require_client_cert => {
                return Err(Error::invalid(
                    "require_client_cert",
                    "needs a client CA (--tls-client-ca)",
                ))
            }
            None => {}
        }
        Ok(config)
    }

    /// The rustls server configuration of these files (ring provider), for the listeners
    /// tonic does not serve (MLLP, FHIR); `alpn` lists the protocols offered, e.g.
    /// `http/1.1`. A client certificate is verified against the client CA and optional
    /// unless required, as for gRPC.
    ///
    /// # Errors
    /// As [`TlsFiles::server_config`]; [`Error::InvalidInput`] for a certificate or key
    /// rustls cannot use.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
        let unusable = |field: &'static str| {
            move |e: &dyn std::fmt::Display| Error::invalid(field, format!("unusable: {e}"))
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| unusable("tls_cert")(&e))?;
        if certs.is_empty() {
            return Err(Error::invalid("tls_cert", "no PEM certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| unusable("tls_key")(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable("tls")(&e))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in
                    CertificateDer::pem_file_iter(ca).map_err(|e| unusable("tls_client_ca")(&e))?
                {
                    roots
                        .add(c.map_err(|e| unusable("tls_client_ca")(&e))?)
                        .map_err(|e| unusable("tls_client_ca")(&e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let verifier = if self.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| unusable("tls_client_ca")(&e))?,
                )
            }
            None if self.require_client_cert => {
                return Err(Error::invalid(
                    "require_client_cert",
                    "needs a client CA (--tls-client-ca)",
                ))
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| unusable("tls_key")(&e))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// How long a client of the console, MLLP or FHIR door gets to complete its TLS handshake.
pub const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// The next connection on a door's listener (`door` names it in the log), with
/// `TCP_NODELAY` set: small request/reply exchanges would otherwise wait on Nagle's
/// algorithm. A failed accept (out of file descriptors and the like: the listener itself is
/// fine) is logged and tried again after 50 ms.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    door: &str,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!("{door} accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Completes the TLS handshake of a connection the door named `door` accepted from `peer`,
/// within [`HANDSHAKE`]: the stream, and the client's certificate (DER) when it gave one. A
/// failed or slow handshake is logged (the peer's address, never what it sent) and gives
/// `None`.
pub async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    door: &str,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
)> {
    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            Some((stream, cert))
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, "{door} TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "{door} TLS handshake timed out");
            None
        }
    }
}
