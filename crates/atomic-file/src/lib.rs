//! Atomic whole-file writes: every file xlmc produces (models, corpora, checkpoints, bundles) is
//! written to a temporary file beside its destination, synced, given ordinary permissions and
//! renamed into place, so a reader — or a rerun after a crash — never sees half a file.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("out.txt");
//! xlmc_atomic_file::write(&path, b"hello\n").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"hello\n");
//! ```

use std::{
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
};

/// rw-r--r--: what a plain `File::create` gives under the usual umask (temp files start at 0600).
const FILE_MODE: u32 = 0o644;

/// Replaces `path` with `bytes` atomically. The folder must exist.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Hex sha256 of a file's bytes (`None` when it cannot be read): how corpora, caches and bundles
/// pin the files they were made from.
pub fn sha256_file(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).ok()?;
    Some(hex::encode(hasher.finalize()))
}

/// Creates (or, with `replace`, replaces) the folder `out` as a whole: `fill` writes into a
/// staging folder beside it, which is renamed into place only when `fill` succeeded. A failed
/// or killed run leaves `out` as it was (never a mix of old and new files).
pub fn replace_dir<T, E: From<io::Error>>(
    out: &Path,
    replace: bool,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    if out.exists() && !replace {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", out.display())).into());
    }
    let staging = tempfile::Builder::new().prefix(".xlmc-staging.").tempdir_in(parent)?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))?;
    let value = fill(staging.path())?;
    if out.exists() {
        // Move the old folder aside first, so `out` is missing for an instant at most and never mixed.
        let old = tempfile::Builder::new().prefix(".xlmc-old.").tempdir_in(parent)?;
        std::fs::rename(out, old.path().join("old"))?;
        std::fs::rename(staging.keep(), out)?;
        drop(old);
    } else {
        std::fs::rename(staging.keep(), out)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_leaves_no_temp_file_and_is_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, FILE_MODE);
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_stray_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(&dir.path().join("no/such/dir/f"), b"x").is_err());
    }

    #[test]
    fn a_folder_is_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bundle");
        replace_dir::<_, io::Error>(&out, false, |d| std::fs::write(d.join("a"), "1")).unwrap();
        let exists = replace_dir::<_, io::Error>(&out, false, |d| std::fs::write(d.join("b"), "2")).unwrap_err();
        assert_eq!(exists.kind(), io::ErrorKind::AlreadyExists);
        let failed = replace_dir::<(), io::Error>(&out, true, |d| {
            std::fs::write(d.join("b"), "2")?;
            Err(io::Error::other("export failed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "1", "the old folder is untouched");
        assert!(!out.join("b").exists());
        replace_dir::<_, io::Error>(&out, true, |d| std::fs::write(d.join("b"), "2")).unwrap();
        assert!(!out.join("a").exists() && out.join("b").exists(), "replaced as a whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no staging folder left behind");
    }
}
