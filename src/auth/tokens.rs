//! Credentials: API tokens (stored as SHA-256 hashes only) and client-certificate
//! fingerprints, each with a unique name, a role, submitter sources, creation and revocation
//! times, kept in `DATA/auth/credentials.json`.
//!
//! They live in a small file beside the sled store rather than inside it because sled locks
//! its directory for one process: `empi token create/revoke` must work while the server runs
//! (a revocation that waits for a restart is no revocation). The file is replaced atomically
//! (write, fsync, rename) and created with mode 0600; the server re-reads it whenever its
//! size, modification time or inode changes, checked on every authentication (one `stat`).
//!
//! A token is `empi_` and 64 hex digits (32 bytes from the OS random source), printed once
//! at creation. Lookup is by the hash of the presented token, so no comparison ever touches
//! secret bytes. Entries are never deleted: a revoked credential stays listed, with its time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::UnixMillis;

use super::time::format_rfc3339;
use super::{Identity, Role};

/// The credentials file inside a data directory.
pub fn credentials_path(data: &Path) -> PathBuf {
    data.join("auth").join("credentials.json")
}

/// One stored credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Unique name; the actor recorded in history and audit.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Sources a submitter speaks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Hex SHA-256 of the bearer token, for a token credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// Hex SHA-256 of the client certificate (DER), for a certificate credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Revocation time, RFC 3339, once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

impl Credential {
    /// The identity this credential authenticates.
    pub fn identity(&self) -> Identity {
        Identity {
            name: self.name.clone(),
            role: self.role,
            sources: self.sources.clone(),
            authenticated: true,
        }
    }

    /// `token` or `certificate`.
    pub fn kind(&self) -> &'static str {
        if self.cert_sha256.is_some() {
            "certificate"
        } else {
            "token"
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    credentials: Vec<Credential>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn read_file(path: &Path) -> Result<File> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Creates `dir` (and parents) readable by the owner only.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

fn write_file(path: &Path, file: &File) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    private_dir(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let json = serde_json::to_vec_pretty(file).map_err(|e| Error::Storage(e.to_string()))?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn check_new(file: &File, name: &str, role: Role, sources: &[String]) -> Result<()> {
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
        return Err(Error::invalid("name", "1 to 128 printable characters"));
    }
    if file.credentials.iter().any(|c| c.name == name) {
        return Err(Error::Conflict(format!(
            "a credential named {name} exists (names are never reused, even after revocation)"
        )));
    }
    if role == Role::Submitter && sources.is_empty() {
        return Err(Error::invalid(
            "source",
            "a submitter needs at least one source it speaks for",
        ));
    }
    Ok(())
}

/// Creates a token credential and returns it with the token, which is shown only now.
///
/// # Errors
/// [`Error::Conflict`] when the name is taken; [`Error::InvalidInput`] for an empty name or
/// a submitter without sources; I/O errors.
pub fn create_token(
    data: &Path,
    name: &str,
    role: Role,
    sources: &[String],
) -> Result<(Credential, String)> {
    let path = credentials_path(data);
    let mut file = read_file(&path)?;
    check_new(&file, name, role, sources)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| Error::Storage(format!("OS random source failed: {e}")))?;
    let token = format!("empi_{}", hex(&secret));
    let credential = Credential {
        name: name.to_string(),
        role,
        sources: sources.to_vec(),
        token_sha256: Some(sha256_hex(token.as_bytes())),
        cert_sha256: None,
        created: format_rfc3339(UnixMillis::now().0),
        revoked: None,
    };
    file.credentials.push(credential.clone());
    write_file(&path, &file)?;
    Ok((credential, token))
}

/// Registers a client certificate (PEM or DER) as a credential: a TLS client presenting
/// exactly this certificate authenticates as `name`.
///
/// # Errors
/// As [`create_token`]; [`Error::InvalidInput`] for a file that is neither a PEM
/// certificate nor DER.
pub fn register_certificate(
    data: &Path,
    name: &str,
    role: Role,
    sources: &[String],
    cert: &[u8],
) -> Result<Credential> {
    let der = pem_certificate_der(cert).unwrap_or_else(|| cert.to_vec());
    if der.first() != Some(&0x30) {
        return Err(Error::invalid("cert", "not a PEM or DER certificate"));
    }
    let path = credentials_path(data);
    let mut file = read_file(&path)?;
    check_new(&file, name, role, sources)?;
    let credential = Credential {
        name: name.to_string(),
        role,
        sources: sources.to_vec(),
        token_sha256: None,
        cert_sha256: Some(sha256_hex(&der)),
        created: format_rfc3339(UnixMillis::now().0),
        revoked: None,
    };
    file.credentials.push(credential.clone());
    write_file(&path, &file)?;
    Ok(credential)
}

/// Revokes the credential named `name`; a running server stops accepting it at once.
///
/// # Errors
/// [`Error::NotFound`] for an unknown name; [`Error::Conflict`] when already revoked.
pub fn revoke(data: &Path, name: &str) -> Result<Credential> {
    let path = credentials_path(data);
    let mut file = read_file(&path)?;
    let c = file
        .credentials
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::NotFound {
            what: "credential",
            id: name.to_string(),
        })?;
    if c.revoked.is_some() {
        return Err(Error::Conflict(format!(
            "credential {name} is already revoked"
        )));
    }
    c.revoked = Some(format_rfc3339(UnixMillis::now().0));
    let out = c.clone();
    write_file(&path, &file)?;
    Ok(out)
}

/// Every credential, revoked ones included, in creation order.
///
/// # Errors
/// I/O errors; [`Error::Corrupt`] for an unreadable file.
pub fn list(data: &Path) -> Result<Vec<Credential>> {
    Ok(read_file(&credentials_path(data))?.credentials)
}

/// The first certificate of a PEM file, decoded to DER.
pub fn pem_certificate_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    base64_decode(&text[start..end])
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Identifies a version of the credentials file: size, modification time, inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(u64, Option<SystemTime>, u64)>);

fn stamp(path: &Path) -> Stamp {
    Stamp(std::fs::metadata(path).ok().map(|m| {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        (m.len(), m.modified().ok(), ino)
    }))
}

#[derive(Debug, Default)]
struct Active {
    by_token: HashMap<String, Identity>,
    by_cert: HashMap<String, Identity>,
    /// Every credential the file lists, revoked ones included.
    listed: usize,
}

/// The server's view of the credentials file: authenticates tokens and certificates,
/// re-reading the file when it changes.
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    cache: RwLock<(Stamp, Active)>,
}

impl Credentials {
    /// Opens the credentials of data directory `data` (none yet is fine).
    ///
    /// # Errors
    /// I/O errors; [`Error::Corrupt`] for an unreadable file.
    pub fn open(data: &Path) -> Result<Self> {
        let c = Credentials {
            path: credentials_path(data),
            cache: RwLock::new((Stamp(None), Active::default())),
        };
        c.refresh()?;
        Ok(c)
    }

    /// Re-reads the file if it changed since the last read.
    fn refresh(&self) -> Result<()> {
        let now = stamp(&self.path);
        if self.cache.read().map(|c| c.0 == now).unwrap_or(false) {
            return Ok(());
        }
        let file = read_file(&self.path)?;
        let mut active = Active {
            listed: file.credentials.len(),
            ..Active::default()
        };
        for c in file.credentials.iter().filter(|c| c.revoked.is_none()) {
            if let Some(h) = &c.token_sha256 {
                active.by_token.insert(h.clone(), c.identity());
            }
            if let Some(h) = &c.cert_sha256 {
                active.by_cert.insert(h.clone(), c.identity());
            }
        }
        // The cache holds plain maps replaced whole; a poisoned lock still holds a valid one.
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = (now, active);
        Ok(())
    }

    fn lookup(&self, f: impl FnOnce(&Active) -> Option<Identity>) -> Option<Identity> {
        if let Err(e) = self.refresh() {
            // Keep serving with the last good view; the operator sees the error.
            tracing::error!("reading credentials: {e}");
        }
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        f(&cache.1)
    }

    /// The identity of an active token, `None` for unknown or revoked ones.
    pub fn authenticate_token(&self, token: &str) -> Option<Identity> {
        let h = sha256_hex(token.as_bytes());
        self.lookup(|a| a.by_token.get(&h).cloned())
    }

    /// The identity of an active registered client certificate (DER).
    pub fn authenticate_cert(&self, der: &[u8]) -> Option<Identity> {
        let h = sha256_hex(der);
        self.lookup(|a| a.by_cert.get(&h).cloned())
    }

    /// The identity of the active credential named `name` (any kind), `None` once it is
    /// revoked: a console session made from a token, or a listener bound by configuration
    /// to one credential, ends when the credential is revoked.
    pub fn active_named(&self, name: &str) -> Option<Identity> {
        self.lookup(|a| {
            a.by_token
                .values()
                .chain(a.by_cert.values())
                .find(|i| i.name == name)
                .cloned()
        })
    }

    /// Number of active (not revoked) credentials.
    pub fn active_count(&self) -> usize {
        self.counted(|a| a.by_token.len() + a.by_cert.len())
    }

    /// Number of credentials ever created in this data directory, revoked ones included:
    /// a store that has had one keeps authentication on (see `empi serve --disable-auth`).
    pub fn listed_count(&self) -> usize {
        self.counted(|a| a.listed)
    }

    fn counted(&self, f: impl FnOnce(&Active) -> usize) -> usize {
        if let Err(e) = self.refresh() {
            tracing::error!("reading credentials: {e}");
        }
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        f(&cache.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let creds = Credentials::open(dir.path()).unwrap();
        assert_eq!(creds.active_count(), 0);
        let (c, token) = create_token(dir.path(), "adt", Role::Submitter, &["sm".into()]).unwrap();
        assert!(token.starts_with("empi_") && token.len() == 69);
        assert_eq!(
            c.token_sha256.as_deref(),
            Some(sha256_hex(token.as_bytes()).as_str())
        );
        // The file holds the hash, never the token.
        let text = std::fs::read_to_string(credentials_path(dir.path())).unwrap();
        assert!(!text.contains(&token[5..]));
        let id = creds.authenticate_token(&token).unwrap();
        assert_eq!((id.name.as_str(), id.role), ("adt", Role::Submitter));
        assert_eq!(creds.authenticate_token("empi_00"), None);

        let (_, admin) = create_token(dir.path(), "ops", Role::Admin, &[]).unwrap();
        assert_ne!(admin, token);
        assert_eq!(creds.active_count(), 2);

        assert_eq!(
            creds.active_named("adt").map(|i| i.role),
            Some(Role::Submitter)
        );
        revoke(dir.path(), "adt").unwrap();
        assert_eq!(creds.authenticate_token(&token), None);
        assert_eq!(creds.active_named("adt"), None);
        assert_eq!((creds.active_count(), creds.listed_count()), (1, 2));
        assert!(creds.authenticate_token(&admin).is_some());
        assert!(matches!(revoke(dir.path(), "adt"), Err(Error::Conflict(_))));
        assert!(matches!(
            revoke(dir.path(), "nobody"),
            Err(Error::NotFound { .. })
        ));
        // Names are never reused.
        assert!(create_token(dir.path(), "adt", Role::Admin, &[]).is_err());
        assert!(create_token(dir.path(), "x", Role::Submitter, &[]).is_err());
        let all = list(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].revoked.is_some() && all[1].revoked.is_none());
    }

    #[test]
    fn certificates_by_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let der = vec![0x30, 0x03, 0x01, 0x02, 0x03];
        let pem = "-----BEGIN CERTIFICATE-----\nMAMBAgM=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificate_der(pem.as_bytes()), Some(der.clone()));
        register_certificate(dir.path(), "lab", Role::Registrar, &[], pem.as_bytes()).unwrap();
        let creds = Credentials::open(dir.path()).unwrap();
        assert_eq!(creds.authenticate_cert(&der).unwrap().name, "lab");
        assert_eq!(creds.authenticate_cert(&[0x30, 0x00]), None);
        assert!(register_certificate(dir.path(), "y", Role::Admin, &[], b"junk").is_err());
    }
}
