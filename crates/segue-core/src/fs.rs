//! Atomic file writes: an artifact is either complete or absent, never half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The temporary sibling that `path` is written to before the rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes a file through `write` into a temporary sibling, then renames it over `path`. On any
/// error the temporary file is removed and `path` is untouched. The file is not fsynced: a
/// process that dies leaves no partial file, and a torn write after a power loss is caught by
/// the hashes the xtask's cache records for every artifact.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
{
    let tmp = temp_path(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = std::io::BufWriter::new(file);
        write(&mut out)?;
        out.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |out| out.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
