//! Undoing rosbag2's zstd compression, per file and per message.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use tempfile::TempPath;

use super::BagMessage;

/// Decompresses the whole-file zstd storage file `path` into a temporary file.
///
/// Streams through a fixed-size buffer, so memory does not grow with the file; the disk needs
/// room for the decompressed file in the system temporary folder. The file is deleted when the
/// returned path is dropped. A damaged stream fails as a whole, naming `path`.
pub fn decompress_file(path: &Path) -> Result<TempPath> {
    let source = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let temp = tempfile::Builder::new()
        .prefix("coin_sorter-bag-")
        .tempfile()
        .context("cannot create a temporary file to decompress into")?;
    let (file, temp_path) = temp.into_parts();
    let mut sink = BufWriter::new(file);
    zstd::stream::copy_decode(BufReader::new(source), &mut sink)
        .and_then(|()| sink.flush())
        .map_err(|e| anyhow!("file {} is not a complete zstd stream: {e}", path.display()))?;
    Ok(temp_path)
}

/// Decompresses one message of the bag file `path` stored as its own zstd frame (rosbag2
/// `MESSAGE` mode); `path` and the message's topic and time only serve to name it in errors.
pub fn decompress_message(path: &Path, message: &BagMessage) -> Result<Vec<u8>> {
    zstd::stream::decode_all(&message.data[..]).map_err(|e| {
        anyhow!(
            "file {}: the message on {} at {} ns is not a valid zstd frame ({} bytes): {e}",
            path.display(),
            message.topic,
            message.log_time_ns,
            message.data.len()
        )
    })
}
