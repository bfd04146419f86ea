//! Owner-only permissions for a data directory: it holds patient data in clear text (sled's
//! `db`), the credentials and the audit trail. The directory is made `0700` before anything
//! is created in it, so nothing inside is reachable by other users whatever the umask gave
//! the files, and every file in it is then set to `0600` (every folder `0700`).
//! [`exposed`] lists what is not, for `empi check` to warn about.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates `dir` if needed and makes it and everything in it owner-only (`0700` folders,
/// `0600` files). Symbolic links are left alone. A no-op off unix.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be created or a mode cannot be set.
pub fn make_private(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    for (path, mode, is_dir) in walk(dir)? {
        use std::os::unix::fs::PermissionsExt;
        let want = if is_dir { 0o700 } else { 0o600 };
        if mode & 0o777 != want {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))
                .map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Everything in `dir` (itself included) that group or others may read, write or enter,
/// with its mode. Empty off unix.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be listed.
pub fn exposed(dir: &Path) -> Result<Vec<(PathBuf, u32)>> {
    #[cfg(unix)]
    let found = walk(dir)?
        .into_iter()
        .filter(|(_, mode, _)| mode & 0o077 != 0)
        .map(|(path, mode, _)| (path, mode & 0o777))
        .collect();
    #[cfg(not(unix))]
    let found = {
        let _ = dir;
        Vec::new()
    };
    Ok(found)
}

/// `dir` and every file and folder below it (not following links): path, mode, is a folder.
#[cfg(unix)]
fn walk(dir: &Path) -> Result<Vec<(PathBuf, u32, bool)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let meta = std::fs::symlink_metadata(&d).map_err(|e| Error::io(&d, e))?;
        out.push((d.clone(), meta.permissions().mode(), true));
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Removed meanwhile (sled replaces its snapshot files): nothing to protect.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            if meta.is_dir() {
                todo.push(path);
            } else if meta.is_file() {
                out.push((path, meta.permissions().mode(), false));
            }
        }
    }
    Ok(out)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn everything_becomes_owner_only_and_exposed_lists_what_was_not() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("db"), b"x").unwrap();
        std::fs::write(dir.join("sub").join("f"), b"y").unwrap();
        for (p, m) in [(&dir, 0o755), (&dir.join("db"), 0o644)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let before: Vec<PathBuf> = exposed(&dir).unwrap().into_iter().map(|e| e.0).collect();
        assert!(
            before.contains(&dir) && before.contains(&dir.join("db")),
            "{before:?}"
        );
        make_private(&dir).unwrap();
        assert_eq!(exposed(&dir).unwrap(), Vec::new());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("sub")), 0o700);
        assert_eq!(mode(&dir.join("db")), 0o600);
        assert_eq!(mode(&dir.join("sub").join("f")), 0o600);
    }
}
