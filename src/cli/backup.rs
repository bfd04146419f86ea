//! `empi backup`, `empi restore` and `empi upgrade`, and the control socket through which a
//! running `empi serve` takes a backup for `empi backup` (how a backup is consistent while
//! writes go on: [`empi::store::backup`]).
//!
//! Why a socket in the data directory: sled locks its directory, so only the server can
//! read a store it serves; the socket is found from `--data` alone, and only the directory's
//! owner (and root) can reach it, as only they can read the files the backup copies. The
//! server streams the copy back and `empi backup` writes the file, with its own
//! permissions, where it was asked to: the server never writes a path a client names.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};

use empi::auth::{audit::audit_path, tokens::credentials_path, AuditEntry, AuditLog};
use empi::store::backup::{self, BackupFile, BackupInfo, BodyReader, Item, HEADER_LEN};
use empi::store::{upgrade, SledStore};

/// The control socket of a data directory.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("control.sock")
}

/// What a backup copies beside the store: the credentials and the audit trail.
fn files_of(data: &Path) -> Vec<BackupFile> {
    vec![
        BackupFile {
            name: "auth/credentials.json".into(),
            path: credentials_path(data),
            append_only: false,
        },
        BackupFile {
            name: "auth/audit.jsonl".into(),
            path: audit_path(data),
            append_only: true,
        },
    ]
}

/// The request a client writes on the control socket.
const BACKUP_REQUEST: &[u8] = b"backup\n";

/// Arguments of `empi backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Data directory (of a running `empi serve`, or of a stopped one).
    #[arg(long)]
    pub data: PathBuf,
    /// The backup file to write (refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `empi restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// A new data directory (absent or empty) to restore into.
    #[arg(long)]
    pub data: PathBuf,
}

/// Arguments of `empi upgrade`.
#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// Data directory of a stopped server (back it up first).
    #[arg(long)]
    pub data: PathBuf,
}

/// Runs `empi backup`: asks the server that holds the store, or takes the copy itself
/// when none does.
pub fn backup_command(args: &BackupArgs) -> Result<()> {
    if args.out.exists() {
        bail!("{}: exists already; choose a new file", args.out.display());
    }
    if !SledStore::exists(&args.data) {
        bail!("{}: not an empi store (no `db` file)", args.data.display());
    }
    let info = match UnixStream::connect(socket_path(&args.data)) {
        Ok(mut conn) => {
            conn.write_all(BACKUP_REQUEST)
                .context("asking the server for a backup")?;
            receive(conn, &args.out).context("receiving the backup from the server")?
        }
        Err(_) => offline(&args.data, &args.out)?,
    };
    println!(
        "backup {} written: store format {}, change feed sequence {}, {} bytes",
        args.out.display(),
        info.store_format,
        info.feed_head,
        info.body_len + HEADER_LEN as u64
    );
    Ok(())
}

/// A backup of a store no server holds, taken by this process and audited in its trail.
fn offline(data: &Path, out: &Path) -> Result<BackupInfo> {
    let Some(store) = SledStore::open_if_free(data)? else {
        bail!(
            "{}: the store is held by a process that takes no backup requests (no {} \
             answers); stop it, or back up where it runs",
            data.display(),
            socket_path(data).display()
        );
    };
    let store = Arc::new(store);
    let (theirs, ours) = UnixStream::pair().context("a socket pair for the backup")?;
    let producer = {
        let (store, data) = (Arc::clone(&store), data.to_path_buf());
        std::thread::spawn(move || send(&store, &data, theirs))
    };
    let received = receive(ours, out);
    let sent = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the backup thread panicked"))?;
    let info = received?;
    sent?;
    drop(store);
    let trail = AuditLog::open(data)?;
    trail.append_blocking(&audited(&info, "by `empi backup` with no server running"))?;
    Ok(info)
}

fn audited(info: &BackupInfo, how: &str) -> AuditEntry {
    AuditEntry::operator(
        "Backup",
        format!(
            "backup of the data directory at change feed sequence {}, {how}",
            info.feed_head
        ),
    )
}

/// Sends a backup of `store` (data directory `data`) to `conn`: the preamble, then the
/// body. Returns the feed head at the backup's moment.
fn send(store: &SledStore, data: &Path, mut conn: UnixStream) -> empi::Result<u64> {
    let preamble = backup::preamble(upgrade::CURRENT, env!("CARGO_PKG_VERSION"));
    conn.write_all(&preamble)
        .map_err(|e| empi::Error::Storage(format!("sending the backup: {e}")))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, conn);
    store.backup(out, &files_of(data))
}

/// Receives a backup stream into the file `out`: written to `out.partial` while the body
/// is read and hashed, then given its header, synced and renamed.
fn receive(conn: UnixStream, out: &Path) -> Result<BackupInfo> {
    let partial = out.with_extension("partial");
    let written = receive_into(conn, &partial);
    match written {
        Ok(info) => {
            std::fs::rename(&partial, out)
                .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
            Ok(info)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn receive_into(conn: UnixStream, partial: &Path) -> Result<BackupInfo> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut input = std::io::BufReader::with_capacity(1 << 20, conn);
    let mut head = [0u8; HEADER_LEN];
    input
        .read_exact(&mut head)
        .context("the server sent no backup (see its log)")?;
    let mut info = backup::read_preamble(&head)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
    file.write_all(&[0u8; HEADER_LEN])?;
    let mut digest = Sha256::new();
    let mut body = BodyReader::new(Tee {
        input,
        copy: &mut file,
        digest: &mut digest,
    });
    loop {
        if let Item::End { feed_head, at_ms } = body.next_item()? {
            info.feed_head = feed_head;
            info.at_ms = at_ms;
            break;
        }
    }
    info.body_len = body.bytes_read();
    drop(body);
    let mut file = file.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&backup::header(&info, digest))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", partial.display()))?;
    Ok(info)
}

/// Reads from `input`, copying and hashing every byte read.
struct Tee<'a, R, W> {
    input: R,
    copy: &'a mut W,
    digest: &'a mut Sha256,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

/// Runs `empi restore`.
pub fn restore_command(args: &RestoreArgs) -> Result<()> {
    let info = SledStore::restore(&args.from, &args.data)
        .with_context(|| format!("restoring {}", args.from.display()))?;
    println!(
        "restored {} into {}: written by empi {}, store format {} (now {}), change feed \
         sequence {}; run `empi check --data {}` before serving it",
        args.from.display(),
        args.data.display(),
        info.empi_version,
        info.store_format,
        upgrade::CURRENT,
        info.feed_head,
        args.data.display()
    );
    let trail = AuditLog::open(&args.data)?;
    trail.append_blocking(&AuditEntry::operator(
        "Restore",
        format!(
            "restored from a backup at change feed sequence {} (empi {})",
            info.feed_head, info.empi_version
        ),
    ))?;
    Ok(())
}

/// Runs `empi upgrade`.
pub fn upgrade_command(args: &UpgradeArgs) -> Result<()> {
    let done = SledStore::upgrade(&args.data)
        .with_context(|| format!("upgrading {}", args.data.display()))?;
    if done.from == done.to {
        println!("{}: store format {} already", args.data.display(), done.to);
        return Ok(());
    }
    println!(
        "{}: store format {} upgraded to {}",
        args.data.display(),
        done.from,
        done.to
    );
    let trail = AuditLog::open(&args.data)?;
    trail.append_blocking(&AuditEntry::operator(
        "Upgrade",
        format!("store format {} upgraded to {}", done.from, done.to),
    ))?;
    Ok(())
}

/// A running server's control socket: answers backup requests, one at a time, on a thread
/// of its own, until stopped.
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlSocket {
    /// Listens on `DATA/control.sock` (replacing one a crashed server left) for backups of
    /// `store`, audited in `trail`.
    ///
    /// # Errors
    /// When the socket cannot be bound (another server answers on it, or the path is
    /// longer than a socket address allows).
    pub fn start(data: &Path, store: Arc<SledStore>, trail: Arc<AuditLog>) -> Result<Self> {
        let path = socket_path(data);
        if UnixStream::connect(&path).is_ok() {
            bail!("{}: another server answers on it", path.display());
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("binding the control socket {}", path.display()))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (data, stopping) = (data.to_path_buf(), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("empi-control".into())
            .spawn(move || serve_control(&listener, &data, &store, &trail, &stopping))?;
        Ok(ControlSocket {
            path,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops answering (a backup in progress finishes first) and removes the socket; the
    /// thread's handles on the store and the trail are dropped.
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        // Wakes the accepting thread.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_control(
    listener: &UnixListener,
    data: &Path,
    store: &SledStore,
    trail: &AuditLog,
    stop: &std::sync::atomic::AtomicBool,
) {
    for conn in listener.incoming() {
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let Ok(mut conn) = conn else { continue };
        let mut request = [0u8; BACKUP_REQUEST.len()];
        if conn.read_exact(&mut request).is_err() || request != BACKUP_REQUEST {
            tracing::warn!("control socket: an unknown request, ignored");
            continue;
        }
        tracing::info!("backup requested on the control socket");
        let started = std::time::Instant::now();
        let entry = match send(store, data, conn) {
            Ok(head) => {
                tracing::info!(
                    feed_head = head,
                    secs = started.elapsed().as_secs_f64(),
                    "backup sent"
                );
                AuditEntry::operator(
                    "Backup",
                    format!(
                        "backup of the data directory at change feed sequence {head}, over \
                         the control socket"
                    ),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "backup failed");
                AuditEntry::operator("Backup", "backup over the control socket failed")
                    .failed(e.code())
            }
        };
        if let Err(e) = trail.append_blocking(&entry) {
            tracing::error!(error = %e, "backup not audited");
        }
    }
}
