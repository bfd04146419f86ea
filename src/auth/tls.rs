//! TLS for the gRPC listener (rustls through tonic): the server certificate and key, and
//! optionally a CA whose client certificates the server accepts (mutual TLS).

use std::path::{Path, PathBuf};

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
}
