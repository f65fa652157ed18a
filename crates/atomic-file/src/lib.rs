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
}
