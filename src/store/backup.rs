//! Online backups of a data directory and their restore.
//!
//! # Taking one while the server runs
//! sled has no snapshots, and its directory lock keeps a second process out, so a backup
//! is taken by the process that holds the store ([`crate::store::SledStore::backup`]):
//! `empi backup` asks a running server over its control socket (`DATA/control.sock`,
//! reachable only by the data directory's owner) and receives the copy as a byte stream;
//! with no server running it opens the store itself. Writers are paused for two moments
//! only, each a lock taken and released between two change sets:
//! 1. at the start, the store begins to *capture* every write it makes (each change set's
//!    writes, counters, the audit trail's staged lines and intents), last value per key;
//! 2. every tree is then copied by scanning it while writers go on (a scan may see some
//!    later writes, or miss a deleted key);
//! 3. at the end (the backup's *moment*), capturing stops; the captured writes follow the
//!    scanned entries in the copy, so applying them in order gives each key its value at
//!    that moment: a key written after the start has its last value (or its deletion), and
//!    any other key was unchanged throughout and scanned as it was.
//!
//! The copy is therefore the store exactly as it was between two change sets, at the
//! moment; the change feed's head then is recorded with it (the "backup's sequence").
//! Beside the trees it holds the credentials file as it was at the moment and the audit
//! trail up to its length at the moment: with the trail's lines staged in the store (and
//! the intents of calls whose lines were not written yet), opening the restored trail
//! completes it exactly as after a crash at that moment (docs/DESIGN.md, section 6).
//!
//! # File format
//! A fixed header of [`HEADER_LEN`] bytes, then the body:
//!
//! | bytes | field |
//! |-------|-------|
//! | 8     | magic `EMPI-BAK` |
//! | 4     | backup format ([`BACKUP_FORMAT`]), big-endian |
//! | 8     | store format version of the copy |
//! | 32    | empi version that wrote it, UTF-8, zero-padded |
//! | 8     | the change feed's head at the moment |
//! | 8     | when the moment was, ms since 1970 |
//! | 8     | body length |
//! | 32    | SHA-256 over the header (this field zeroed) and the body's SHA-256 |
//! | rest  | zero |
//!
//! The body is a sequence of items, each a kind byte and length-prefixed fields
//! (big-endian): `1` an entry (tree name, key, value), `2` a deletion (tree name, key),
//! `3` a file (path inside the data directory, content), `9` the end (the feed's head and
//! the moment again).
//!
//! Over the control socket the server sends a header with the versions only (the other
//! fields zero), then the body; the receiving `empi backup` writes the file's final header
//! once the body has arrived whole. Restoring applies them in order, so a captured write overrides the scanned
//! entry before it.
//!
//! A restore refuses a file whose magic, formats, length or checksum is wrong before it
//! writes anything, and writes into a directory that holds no store.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Bytes of the header.
pub const HEADER_LEN: usize = 256;

/// The backup file format this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

const MAGIC: &[u8; 8] = b"EMPI-BAK";

const ENTRY: u8 = 1;
const DELETE: u8 = 2;
const FILE: u8 = 3;
const END: u8 = 9;
const FAILED: u8 = 0xEE;

/// Longest tree name, path or key in an item; values and files may be larger.
const MAX_NAME: usize = 4096;

/// Where in the data directory a file of the backup goes, and how it is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// The path inside the data directory, `/`-separated (e.g. `auth/credentials.json`).
    pub name: String,
    /// Where it is now.
    pub path: std::path::PathBuf,
    /// Append-only (the audit trail): copied up to its length at the moment, cut after its
    /// last whole line. Otherwise read whole at the moment.
    pub append_only: bool,
}

/// What a backup holds, from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Store format version of the copy.
    pub store_format: u64,
    /// The empi version that wrote it.
    pub empi_version: String,
    /// The change feed's head at the backup's moment.
    pub feed_head: u64,
    /// When the moment was, ms since 1970.
    pub at_ms: i64,
    /// Body bytes.
    pub body_len: u64,
}

/// Writes a backup's body items to `out`.
pub struct BodyWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> BodyWriter<W> {
    /// A writer of items to `out`.
    pub fn new(out: W) -> Self {
        BodyWriter { out, written: 0 }
    }

    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.out
            .write_all(b)
            .map_err(|e| Error::Storage(format!("writing the backup: {e}")))?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn field(&mut self, b: &[u8]) -> Result<()> {
        self.bytes(&(b.len() as u64).to_be_bytes())?;
        self.bytes(b)
    }

    /// A tree's entry.
    ///
    /// # Errors
    /// [`Error::Storage`] when `out` fails.
    pub fn entry(&mut self, tree: &str, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(v) => {
                self.bytes(&[ENTRY])?;
                self.field(tree.as_bytes())?;
                self.field(key)?;
                self.field(v)
            }
            None => {
                self.bytes(&[DELETE])?;
                self.field(tree.as_bytes())?;
                self.field(key)
            }
        }
    }

    /// A file of the data directory.
    ///
    /// # Errors
    /// [`Error::Storage`] when `out` fails.
    pub fn file(&mut self, name: &str, content: &[u8]) -> Result<()> {
        self.bytes(&[FILE])?;
        self.field(name.as_bytes())?;
        self.field(content)
    }

    /// Tells the reader the backup failed (its reason, without data), ending the body.
    ///
    /// # Errors
    /// [`Error::Storage`] when `out` fails.
    pub fn fail(mut self, reason: &str) -> Result<()> {
        self.bytes(&[FAILED])?;
        self.field(reason.as_bytes())?;
        self.out
            .flush()
            .map_err(|e| Error::Storage(format!("writing the backup: {e}")))
    }

    /// The last item; returns the body's length. Flushes `out`.
    ///
    /// # Errors
    /// [`Error::Storage`] when `out` fails.
    pub fn end(mut self, feed_head: u64, at_ms: i64) -> Result<u64> {
        self.bytes(&[END])?;
        self.bytes(&feed_head.to_be_bytes())?;
        self.bytes(&at_ms.to_be_bytes())?;
        self.out
            .flush()
            .map_err(|e| Error::Storage(format!("writing the backup: {e}")))?;
        Ok(self.written)
    }
}

/// One item of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A tree's key and its value (`None`: deleted).
    Entry {
        /// The tree.
        tree: String,
        /// The key.
        key: Vec<u8>,
        /// The value, or its deletion.
        value: Option<Vec<u8>>,
    },
    /// A file of the data directory.
    File {
        /// Its path inside the directory.
        name: String,
        /// Its content.
        content: Vec<u8>,
    },
    /// The end, with the change feed's head at the moment and when it was.
    End {
        /// The feed's head.
        feed_head: u64,
        /// The moment, ms since 1970.
        at_ms: i64,
    },
}

fn damaged(what: &str) -> Error {
    Error::Corrupt(format!("backup is damaged: {what}"))
}

/// Reads the items of a body from `input`.
pub struct BodyReader<R: Read> {
    input: R,
    read: u64,
}

impl<R: Read> BodyReader<R> {
    /// A reader of items from `input`.
    pub fn new(input: R) -> Self {
        BodyReader { input, read: 0 }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    fn exact(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut b = vec![0; n];
        self.input
            .read_exact(&mut b)
            .map_err(|_| damaged("it ends early"))?;
        self.read += n as u64;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.exact(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn field(&mut self, max: u64) -> Result<Vec<u8>> {
        let n = self.u64()?;
        if n > max {
            return Err(damaged("an item is longer than allowed"));
        }
        self.exact(n as usize)
    }

    fn text(&mut self) -> Result<String> {
        String::from_utf8(self.field(MAX_NAME as u64)?).map_err(|_| damaged("a name is not UTF-8"))
    }

    /// The next item.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for bytes that are not an item.
    pub fn next_item(&mut self) -> Result<Item> {
        const MAX_VALUE: u64 = 1 << 32;
        const MAX_FILE: u64 = 1 << 40;
        let kind = self.exact(1)?[0];
        Ok(match kind {
            ENTRY => Item::Entry {
                tree: self.text()?,
                key: self.field(MAX_NAME as u64)?,
                value: Some(self.field(MAX_VALUE)?),
            },
            DELETE => Item::Entry {
                tree: self.text()?,
                key: self.field(MAX_NAME as u64)?,
                value: None,
            },
            FILE => Item::File {
                name: self.text()?,
                content: self.field(MAX_FILE)?,
            },
            END => Item::End {
                feed_head: self.u64()?,
                at_ms: self.u64()? as i64,
            },
            FAILED => {
                let why = self.text()?;
                return Err(Error::Storage(format!("the backup failed: {why}")));
            }
            _ => return Err(damaged("an unknown item")),
        })
    }
}

/// The header a server sends before a body: versions only ([`read_preamble`]).
pub fn preamble(store_format: u64, empi_version: &str) -> [u8; HEADER_LEN] {
    header_fields(&BackupInfo {
        store_format,
        empi_version: empi_version.into(),
        feed_head: 0,
        at_ms: 0,
        body_len: 0,
    })
}

/// Reads a [`preamble`]: an empi backup stream, of formats this build reads.
///
/// # Errors
/// As for a backup file's header: [`Error::Incompatible`].
pub fn read_preamble(h: &[u8; HEADER_LEN]) -> Result<BackupInfo> {
    parse_header(h)
}

/// The header for a body: its fields, with the checksum of header and body.
pub fn header(info: &BackupInfo, body_digest: Sha256) -> [u8; HEADER_LEN] {
    let mut h = header_fields(info);
    // The body was hashed as it streamed, before the header's fields were known.
    let mut whole = Sha256::new();
    whole.update(h);
    whole.update(body_digest.finalize());
    h[CHECKSUM..CHECKSUM + 32].copy_from_slice(&whole.finalize());
    h
}

const CHECKSUM: usize = 8 + 4 + 8 + 32 + 8 + 8 + 8;

fn header_fields(info: &BackupInfo) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&BACKUP_FORMAT.to_be_bytes());
    h[12..20].copy_from_slice(&info.store_format.to_be_bytes());
    let v = info.empi_version.as_bytes();
    let n = v.len().min(32);
    h[20..20 + n].copy_from_slice(&v[..n]);
    h[52..60].copy_from_slice(&info.feed_head.to_be_bytes());
    h[60..68].copy_from_slice(&info.at_ms.to_be_bytes());
    h[68..76].copy_from_slice(&info.body_len.to_be_bytes());
    h
}

/// Reads and checks a header: an empi backup, of a format this build reads.
///
/// # Errors
/// [`Error::Incompatible`] for another file, or a backup or store format this build does
/// not read.
fn parse_header(h: &[u8; HEADER_LEN]) -> Result<BackupInfo> {
    if &h[..8] != MAGIC {
        return Err(Error::Incompatible(
            "not an empi backup (no EMPI-BAK header)".into(),
        ));
    }
    let n = |r: std::ops::Range<usize>| u64::from_be_bytes(h[r].try_into().expect("8 bytes"));
    let format = u32::from_be_bytes(h[8..12].try_into().expect("4 bytes"));
    if format != BACKUP_FORMAT {
        return Err(Error::Incompatible(format!(
            "backup file format {format}; this empi reads format {BACKUP_FORMAT}"
        )));
    }
    let version = String::from_utf8_lossy(&h[20..52])
        .trim_end_matches('\0')
        .to_string();
    let info = BackupInfo {
        store_format: n(12..20),
        empi_version: version,
        feed_head: n(52..60),
        at_ms: i64::from_be_bytes(h[60..68].try_into().expect("8 bytes")),
        body_len: n(68..76),
    };
    if info.store_format > super::upgrade::CURRENT {
        return Err(Error::Incompatible(format!(
            "the backup holds store format {}, newer than this empi reads ({}): restore it \
             with empi {} or later",
            info.store_format,
            super::upgrade::CURRENT,
            info.empi_version
        )));
    }
    Ok(info)
}

/// Reads a backup file's header and checks its checksum over the whole file.
///
/// # Errors
/// [`Error::Incompatible`] for a file that is not an empi backup of a readable format;
/// [`Error::Corrupt`] for a damaged one (wrong length or checksum); [`Error::Io`].
pub fn verify(path: &Path) -> Result<BackupInfo> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = [0u8; HEADER_LEN];
    f.read_exact(&mut h)
        .map_err(|_| Error::Incompatible("not an empi backup (too short)".into()))?;
    let info = parse_header(&h)?;
    let mut zeroed = h;
    zeroed[CHECKSUM..CHECKSUM + 32].fill(0);
    let mut body = Sha256::new();
    let copied = std::io::copy(
        &mut std::io::Read::by_ref(&mut f).take(info.body_len + 1),
        &mut HashWriter(&mut body),
    )
    .map_err(|e| Error::io(path, e))?;
    if copied != info.body_len {
        return Err(damaged(&format!(
            "its body is {copied} bytes, its header says {}",
            info.body_len
        )));
    }
    let mut whole = Sha256::new();
    whole.update(zeroed);
    whole.update(body.finalize());
    if whole.finalize().as_slice() != &h[CHECKSUM..CHECKSUM + 32] {
        return Err(damaged("its checksum does not match its content"));
    }
    Ok(info)
}

/// A [`Write`] that hashes what it is given.
pub struct HashWriter<'a>(pub &'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The body of a verified backup file, item by item (after [`verify`]).
///
/// # Errors
/// [`Error::Io`].
pub fn body_of(path: &Path) -> Result<BodyReader<std::io::BufReader<std::fs::File>>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(|e| Error::io(path, e))?;
    Ok(BodyReader::new(std::io::BufReader::with_capacity(
        1 << 20,
        f,
    )))
}

/// A file of a backup as its path under `dir`, refusing any name that would leave it.
///
/// # Errors
/// [`Error::Corrupt`] for an absolute name or one with `..`.
pub fn file_path(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let rel = Path::new(name);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || name.is_empty() {
        return Err(damaged("a file name leaves the data directory"));
    }
    Ok(dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_file(dir: &Path) -> std::path::PathBuf {
        let mut body = Vec::new();
        let mut w = BodyWriter::new(&mut body);
        w.entry("records", b"k", Some(b"v")).unwrap();
        w.entry("records", b"k", None).unwrap();
        w.file("auth/credentials.json", b"{}").unwrap();
        let len = w.end(7, 5).unwrap();
        let info = BackupInfo {
            store_format: 2,
            empi_version: "0.1.0".into(),
            feed_head: 7,
            at_ms: 5,
            body_len: len,
        };
        let mut digest = Sha256::new();
        digest.update(&body);
        let path = dir.join("b.empibak");
        let mut bytes = header(&info, digest).to_vec();
        bytes.extend(body);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_backup_round_trips_and_any_changed_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = backup_file(dir.path());
        let info = verify(&path).unwrap();
        assert_eq!((info.feed_head, info.store_format), (7, 2));
        assert_eq!(info.empi_version, "0.1.0");
        let mut body = body_of(&path).unwrap();
        assert!(matches!(
            body.next_item().unwrap(),
            Item::Entry { value: Some(_), .. }
        ));
        assert!(matches!(
            body.next_item().unwrap(),
            Item::Entry { value: None, .. }
        ));
        assert!(matches!(body.next_item().unwrap(), Item::File { .. }));
        assert_eq!(
            body.next_item().unwrap(),
            Item::End {
                feed_head: 7,
                at_ms: 5
            }
        );

        let good = std::fs::read(&path).unwrap();
        for at in [CHECKSUM + 3, 60, HEADER_LEN, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            let e = verify(&path).unwrap_err();
            assert!(e.to_string().contains("damaged"), "byte {at}: {e}");
        }
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(verify(&path).unwrap_err().to_string().contains("damaged"));
        std::fs::write(&path, b"SQLite format 3\0 and more bytes").unwrap();
        assert!(matches!(verify(&path), Err(Error::Incompatible(_))));
        let mut newer = good.clone();
        newer[12..20].copy_from_slice(&99u64.to_be_bytes());
        std::fs::write(&path, &newer).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(e.to_string().contains("newer than this empi"), "{e}");
    }

    #[test]
    fn file_names_stay_inside_the_directory() {
        let d = Path::new("/data");
        assert_eq!(
            file_path(d, "auth/audit.jsonl").unwrap(),
            Path::new("/data/auth/audit.jsonl")
        );
        for bad in ["../x", "/etc/passwd", "auth/../../x", ""] {
            assert!(file_path(d, bad).is_err(), "{bad}");
        }
    }
}
