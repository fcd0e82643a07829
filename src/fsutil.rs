//! File writing that never leaves a half-written file behind.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// A hidden staging folder `out/.<prefix>XXXX` (created with `out`), removed when dropped.
/// A tool that writes many files fills it and moves them into place only once all are
/// written, so a failure half-way leaves `out` as it was. Training skips dot folders.
pub fn staging_dir(out: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    tempfile::Builder::new()
        .prefix(&format!(".{prefix}"))
        .tempdir_in(out)
        .with_context(|| format!("cannot create a staging folder in {}", out.display()))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it over
/// `path`, so readers see either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes).map_err(Into::into))
}

/// Like [`write_atomic`], but lets `fill` write the temporary file (given as a path, for
/// libraries that insist on opening files themselves).
pub fn write_atomic_path(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    let result = fill(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Like [`write_atomic`], but streams into the open temporary file through `fill`.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    write_atomic_path(path, |tmp| {
        let file = std::fs::File::create(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w).with_context(|| format!("cannot write {}", tmp.display()))?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        Ok(())
    })
}

fn temp_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}
