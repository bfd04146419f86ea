//! The index snapshot: the service's in-memory index written to one file at a clean stop,
//! so the next start loads prepared records instead of scanning, decoding and re-deriving
//! every stored record.
//!
//! A snapshot is only ever a cache of the store. It is used only when it matches exactly:
//! - the store's [`records_generation`](crate::store::Store::records_generation), bumped
//!   in the same transaction as every record write, equals the one the snapshot was taken
//!   at (any write since, or a crash after one, makes it stale);
//! - its fingerprint equals the running code's: a SHA-256 of the empi version, the whole
//!   model (parameters, term-frequency tables, placeholders) and the blocking
//!   configuration, since all of them shape the prepared form and the blocking keys.
//!
//! Otherwise, or when the file is missing, truncated or undecodable, the service rebuilds
//! from the store as before and says why in the log. Nothing is ever read from a snapshot
//! that the store does not also hold.
//!
//! # Format
//! `EMPIIDX1`, then a little-endian `u32` length and a [postcard] header (fingerprint,
//! generation, record count, chunk count), then chunks, each a `u32` length and a postcard
//! `Vec` of up to 8,192 `(key, euid, prepared)` entries, so chunks decode in parallel.
//! Written to a temporary file, synced, then renamed over the old one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::linker::Linker;
use crate::prepare::{suffix_code, suffix_from_code, Prepared};
use crate::store::Store;

use super::index::{Derived, LiveIndex};
use super::startup::IndexStats;

const MAGIC: &[u8; 8] = b"EMPIIDX1";
/// Entries per chunk.
const CHUNK: usize = 8192;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    fingerprint: [u8; 32],
    generation: u64,
    records: u64,
    chunks: u64,
}

/// One indexed record as read back: index key text, person sequence number, prepared form.
pub(crate) type Entry = (String, u64, Prepared);

/// On disk, the prepared form's name suffix travels beside it (see [`Prepared::suffix`]).
type Stored = (String, u64, Prepared, Option<u8>);

/// The fingerprint of everything that shapes the index besides the stored records.
pub(crate) fn fingerprint(linker: &Linker) -> Result<[u8; 32]> {
    let model = serde_json::to_vec(linker.scorer().model())
        .map_err(|e| Error::Corrupt(format!("cannot encode the model: {e}")))?;
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0]);
    h.update(&model);
    h.update([0]);
    h.update(layout_probe(linker)?);
    h.update([0]);
    h.update(format!("{:?}", linker.blocking()).as_bytes());
    Ok(h.finalize().into())
}

/// The encoding of one fully populated prepared record, as JSON (field names) and as
/// postcard (field order and widths). Any change to the prepared form's layout changes
/// it, so a snapshot written by differently built code is never misread, version number
/// or not.
fn layout_probe(linker: &Linker) -> Result<Vec<u8>> {
    use crate::record::{Address, Identifier, Record, Sex, NATIONAL_ID_SYSTEM};
    let record = Record {
        source: "probe".into(),
        local_id: "1".into(),
        given_name: Some("Katherine".into()),
        middle_name: Some("Ann".into()),
        family_name: Some("Smith Jr".into()),
        previous_family_names: vec!["Jones".into()],
        birth_date: "1970-03-09".parse().ok(),
        sex: Sex::Female,
        address: Address {
            lines: vec!["12 Elm St".into()],
            city: Some("Springfield".into()),
            state: Some("MA".into()),
            postal_code: Some("01101".into()),
            country: Some("US".into()),
        },
        phones: vec!["413-555-0142".into()],
        email: Some("k@example.org".into()),
        identifiers: vec![Identifier {
            system: NATIONAL_ID_SYSTEM.into(),
            value: "521-37-8846".into(),
        }],
        multiple_birth_order: Some(2),
    };
    let p = linker.prepare(&record);
    let mut out = serde_json::to_vec(&p)
        .map_err(|e| Error::Corrupt(format!("cannot encode the layout probe: {e}")))?;
    out.extend(encode(&(p, suffix_code(Some("jr"))))?);
    Ok(out)
}

/// Where the snapshot of a store in `dir` lives.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join("index.snapshot")
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

/// Writes a snapshot of `entries` (exactly `count` of them) atomically.
pub(crate) fn write<'a>(
    path: &Path,
    fingerprint: [u8; 32],
    generation: u64,
    count: usize,
    entries: impl Iterator<Item = (&'a str, u64, &'a Prepared)>,
) -> Result<()> {
    let tmp = path.with_extension("snapshot.tmp");
    let written = write_to(path, &tmp, fingerprint, generation, count, entries);
    if written.is_err() {
        // A half-written file (a full disk, say) is of no use; the old snapshot, if any,
        // was never touched.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_to<'a>(
    path: &Path,
    tmp: &Path,
    fingerprint: [u8; 32],
    generation: u64,
    count: usize,
    entries: impl Iterator<Item = (&'a str, u64, &'a Prepared)>,
) -> Result<()> {
    let tmp = tmp.to_path_buf();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // Prepared records hold names: owner-only, like the store beside it.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(&tmp)
        .map_err(|e| io_err(&tmp, "creating", e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let header = Header {
        fingerprint,
        generation,
        records: count as u64,
        chunks: count.div_ceil(CHUNK) as u64,
    };
    let mut put = |bytes: &[u8]| -> Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| Error::Storage("snapshot chunk over 4 GiB".into()))?;
        out.write_all(&len.to_le_bytes())
            .and_then(|()| out.write_all(bytes))
            .map_err(|e| io_err(&tmp, "writing", e))
    };
    put(MAGIC)?;
    put(&encode(&header)?)?;
    let mut chunk: Vec<(&str, u64, &Prepared, Option<u8>)> = Vec::with_capacity(CHUNK);
    let mut written = 0usize;
    for (key, euid, p) in entries {
        chunk.push((key, euid, p, suffix_code(p.suffix)));
        if chunk.len() == CHUNK {
            put(&encode(&chunk)?)?;
            written += chunk.len();
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        put(&encode(&chunk)?)?;
        written += chunk.len();
    }
    if written != count {
        return Err(Error::Storage(format!(
            "snapshot of {count} records got {written}"
        )));
    }
    let file = out
        .into_inner()
        .map_err(|e| io_err(&tmp, "writing", e.into_error()))?;
    file.sync_all().map_err(|e| io_err(&tmp, "syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, "renaming onto", e))?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is; a failure here only risks the
        // snapshot, which is a cache.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Reads a snapshot if it matches `fingerprint` and `generation`: `Ok(Err(reason))` when
/// it is absent or does not match (the caller rebuilds), entries in chunk order otherwise.
/// Chunks decode in parallel.
///
/// # Errors
/// [`Error::Corrupt`] for a file that matches but cannot be decoded (the caller rebuilds
/// too, after logging it).
pub(crate) fn read(
    path: &Path,
    fingerprint: [u8; 32],
    generation: u64,
) -> Result<std::result::Result<Vec<Vec<Entry>>, &'static str>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err("no snapshot")),
        Err(e) => return Err(io_err(path, "reading", e)),
    };
    let mut parts = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let len = bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| corrupt("truncated length"))?;
        let part = bytes
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| corrupt("truncated chunk"))?;
        parts.push(part);
        at += 4 + len;
    }
    if parts.first().is_none_or(|p| *p != MAGIC) {
        return Ok(Err("not an index snapshot of this format"));
    }
    let header: Header = postcard::from_bytes(parts.get(1).ok_or_else(|| corrupt("no header"))?)
        .map_err(|_| corrupt("undecodable header"))?;
    if header.fingerprint != fingerprint {
        return Ok(Err("taken with another empi version, model or blocking"));
    }
    if header.generation != generation {
        return Ok(Err("the store changed since it was taken"));
    }
    let chunks = &parts[2..];
    if chunks.len() as u64 != header.chunks {
        return Err(corrupt("chunk count"));
    }
    let decoded: Vec<Vec<Entry>> = chunks
        .par_iter()
        .map(|c| {
            let stored: Vec<Stored> =
                postcard::from_bytes(c).map_err(|_| corrupt("undecodable chunk"))?;
            stored
                .into_iter()
                .map(|(key, euid, mut p, suffix)| {
                    p.suffix = match suffix {
                        None => None,
                        Some(code) => {
                            Some(suffix_from_code(code).ok_or_else(|| corrupt("suffix"))?)
                        }
                    };
                    Ok((key, euid, p))
                })
                .collect::<Result<Vec<Entry>>>()
        })
        .collect::<Result<_>>()?;
    let total: usize = decoded.iter().map(Vec::len).sum();
    if total as u64 != header.records {
        return Err(corrupt("record count"));
    }
    Ok(Ok(decoded))
}

/// Loads the index from the snapshot at `path` when it matches the store (module docs);
/// `None` (with the reason logged) when the caller must rebuild.
pub(super) fn load(
    path: &Path,
    store: &dyn Store,
    linker: &Linker,
) -> Option<(LiveIndex, IndexStats)> {
    let started = Instant::now();
    let rss_before = super::rss::resident_bytes();
    let found = fingerprint(linker).and_then(|fp| {
        let generation = store.records_generation()?;
        read(path, fp, generation)
    });
    let chunks = match found {
        Ok(Ok(chunks)) => chunks,
        Ok(Err(reason)) => {
            tracing::info!(reason, "index snapshot not used; rebuilding from the store");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "index snapshot unreadable; rebuilding from the store");
            return None;
        }
    };
    let mut index = LiveIndex::new(linker.blocking().clone());
    index.reserve(chunks.iter().map(Vec::len).sum());
    let mut persons = ahash::AHashSet::new();
    for chunk in chunks {
        let keyed: Vec<_> = chunk
            .into_par_iter()
            .map(|(key, euid, p)| {
                let derived = Derived::of(&p, &linker.blocking().rules);
                (key, euid, p, derived)
            })
            .collect();
        for (key, euid, p, derived) in keyed {
            persons.insert(euid);
            index.upsert_keyed(&key, euid, p, derived);
        }
    }
    let stats = IndexStats::measure(&index, persons.len(), started, rss_before, true);
    Some((index, stats))
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("index snapshot: {what}"))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| Error::Storage(format!("encoding the index snapshot: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn entries(linker: &Linker, n: usize) -> Vec<(String, u64, Prepared)> {
        (0..n)
            .map(|i| {
                let r = Record {
                    source: "s".into(),
                    local_id: i.to_string(),
                    given_name: Some(["Ana", "Ben", "Cleo"][i % 3].into()),
                    family_name: Some("Lima Jr".into()),
                    phones: vec!["413-555-0142".into()],
                    ..Default::default()
                };
                (format!("s\0{i}"), i as u64 / 2, linker.prepare(&r))
            })
            .collect()
    }

    #[test]
    fn round_trips_and_refuses_what_does_not_match() {
        let linker = Linker::with_default_model();
        let fp = fingerprint(&linker).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(read(&path, fp, 0).unwrap(), Err("no snapshot"));
        let want = entries(&linker, CHUNK + 5);
        let it = want.iter().map(|(k, e, p)| (k.as_str(), *e, p));
        write(&path, fp, 7, want.len(), it).unwrap();
        let got: Vec<Entry> = read(&path, fp, 7).unwrap().unwrap().concat();
        assert_eq!(got, want);
        assert_eq!(got[0].2.suffix, Some("jr"));
        assert_eq!(
            read(&path, fp, 8).unwrap(),
            Err("the store changed since it was taken")
        );
        let mut other = fp;
        other[0] ^= 1;
        assert!(read(&path, other, 7).unwrap().is_err());
        // A truncated file is an error, never a partial index.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(read(&path, fp, 7).is_err());
    }

    #[test]
    fn a_failed_write_leaves_the_old_snapshot_and_no_temporary_file() {
        let linker = Linker::with_default_model();
        let fp = fingerprint(&linker).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let want = entries(&linker, 10);
        let it = || want.iter().map(|(k, e, p)| (k.as_str(), *e, p));
        write(&path, fp, 1, want.len(), it()).unwrap();
        // Told 11 records, given 10: refused.
        assert!(write(&path, fp, 2, want.len() + 1, it()).is_err());
        assert!(!path.with_extension("snapshot.tmp").exists());
        assert_eq!(read(&path, fp, 1).unwrap().unwrap().concat(), want);
    }

    #[test]
    fn the_fingerprint_follows_the_model() {
        let a = fingerprint(&Linker::with_default_model()).unwrap();
        let mut model = crate::scoring::Model::default_model();
        model.thresholds.upper += 1.0;
        let b = fingerprint(&Linker::new(model).unwrap()).unwrap();
        assert_ne!(a, b);
    }
}
