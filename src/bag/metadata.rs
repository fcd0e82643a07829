//! The parts of a rosbag2 `metadata.yaml` that say where a bag's data lives and how it is stored.
//!
//! Only the layout is taken from here (storage plugin, file list, compression). Topics and
//! counts are deliberately not: they are read from the storage files themselves, so that the
//! metadata can be checked against the data rather than trusted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Name of the metadata file rosbag2 writes into every bag folder.
pub const METADATA_FILE: &str = "metadata.yaml";

/// The storage plugin a bag's files are written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// MCAP files (`rosbag2_storage_mcap`).
    Mcap,
    /// SQLite databases (`rosbag2_storage_default_plugins`, `.db3`).
    Sqlite3,
}

impl Storage {
    /// The storage identifier as rosbag2 spells it in `metadata.yaml`.
    pub fn identifier(self) -> &'static str {
        match self {
            Storage::Mcap => "mcap",
            Storage::Sqlite3 => "sqlite3",
        }
    }

    fn from_identifier(id: &str) -> Option<Self> {
        match id {
            "mcap" => Some(Storage::Mcap),
            "sqlite3" => Some(Storage::Sqlite3),
            _ => None,
        }
    }
}

/// How rosbag2 compressed a bag. The only compression format rosbag2 ships is zstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BagCompression {
    /// Files and messages are stored as written.
    None,
    /// Each storage file was zstd-compressed as a whole after it was closed (`<file>.zstd`).
    File,
    /// Each message's serialized data is a separate zstd frame inside an ordinary file.
    Message,
}

impl std::fmt::Display for BagCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BagCompression::None => "none",
            BagCompression::File => "zstd, per file",
            BagCompression::Message => "zstd, per message",
        })
    }
}

/// Where a bag's data lives: storage plugin, storage files in order, compression.
///
/// Invariant: `files` is non-empty and every path is absolute or relative to the current
/// directory (never relative to the bag folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Storage plugin of every file.
    pub storage: Storage,
    /// Storage files in recording order.
    pub files: Vec<PathBuf>,
    /// How the files or messages are compressed.
    pub compression: BagCompression,
}

#[derive(Deserialize)]
struct MetadataFile {
    rosbag2_bagfile_information: BagfileInformation,
}

#[derive(Deserialize)]
struct BagfileInformation {
    version: u32,
    storage_identifier: String,
    relative_file_paths: Vec<PathBuf>,
    #[serde(default)]
    compression_format: String,
    #[serde(default)]
    compression_mode: String,
}

/// Reads the layout of the bag folder `dir` from its `metadata.yaml`.
pub fn read_layout(dir: &Path) -> Result<Layout> {
    let path = dir.join(METADATA_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_layout(dir, &text).with_context(|| format!("invalid {}", path.display()))
}

/// Parses `metadata.yaml` text of the bag folder `dir` into its layout.
pub fn parse_layout(dir: &Path, text: &str) -> Result<Layout> {
    let info = serde_yaml::from_str::<MetadataFile>(text)?.rosbag2_bagfile_information;
    let Some(storage) = Storage::from_identifier(&info.storage_identifier) else {
        bail!(
            "storage_identifier {:?} is not supported (only mcap and sqlite3)",
            info.storage_identifier
        );
    };
    let compression = compression(&info.compression_mode, &info.compression_format)?;
    if info.relative_file_paths.is_empty() {
        bail!("relative_file_paths lists no files");
    }
    // Bags older than metadata version 4 name their files relative to the folder above the bag.
    let base = if info.version < 4 { dir.parent().unwrap_or(dir) } else { dir };
    let files = info.relative_file_paths.iter().map(|f| base.join(f)).collect();
    Ok(Layout { storage, files, compression })
}

fn compression(mode: &str, format: &str) -> Result<BagCompression> {
    let compression = match mode.to_ascii_uppercase().as_str() {
        "" | "NONE" => return Ok(BagCompression::None),
        "FILE" => BagCompression::File,
        "MESSAGE" => BagCompression::Message,
        _ => bail!("compression_mode {mode:?} is not one of FILE, MESSAGE, NONE"),
    };
    if format != "zstd" {
        bail!("compression_format {format:?} is not supported (only zstd)");
    }
    Ok(compression)
}

/// Works out the layout of a single storage file opened without a bag folder.
///
/// The storage comes from the file's first bytes, so a misnamed file is still read correctly;
/// a `.zstd` suffix marks a file compressed as a whole, whose storage comes from the extension
/// before that suffix.
pub fn bare_file_layout(path: &Path) -> Result<Layout> {
    if path.extension().is_some_and(|e| e == "zstd") {
        let inner = path.with_extension("");
        let storage = match inner.extension().and_then(|e| e.to_str()) {
            Some("mcap") => Storage::Mcap,
            Some("db3") => Storage::Sqlite3,
            _ => bail!(
                "{}: cannot tell the storage of a .zstd file not named *.mcap.zstd or *.db3.zstd",
                path.display()
            ),
        };
        return Ok(Layout {
            storage,
            files: vec![path.to_path_buf()],
            compression: BagCompression::File,
        });
    }
    let storage = sniff_storage(path)?;
    Ok(Layout { storage, files: vec![path.to_path_buf()], compression: BagCompression::None })
}

fn sniff_storage(path: &Path) -> Result<Storage> {
    use std::io::Read;
    const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
    let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(SQLITE_MAGIC.len() as u64).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if head.starts_with(mcap::MAGIC) {
        Ok(Storage::Mcap)
    } else if head.starts_with(SQLITE_MAGIC) {
        Ok(Storage::Sqlite3)
    } else {
        bail!(
            "{}: neither an MCAP file nor an SQLite database (starts with {:02x?})",
            path.display(),
            head
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_STYLE: &str = "rosbag2_bagfile_information:\n  version: 3\n  \
        storage_identifier: sqlite3\n  relative_file_paths:\n    - b/b_0.db3\n";

    #[test]
    fn old_metadata_paths_are_relative_to_the_parent_folder() {
        let layout = parse_layout(Path::new("/bags/b"), OLD_STYLE).unwrap();
        assert_eq!(layout.files, vec![PathBuf::from("/bags/b/b_0.db3")]);
        assert_eq!(layout.storage, Storage::Sqlite3);
        assert_eq!(layout.compression, BagCompression::None);
    }

    #[test]
    fn compression_mode_and_format_are_checked() {
        let text = "rosbag2_bagfile_information:\n  version: 8\n  storage_identifier: mcap\n  \
            relative_file_paths: [a.mcap.zstd]\n  compression_format: zstd\n  \
            compression_mode: FILE\n";
        let layout = parse_layout(Path::new("/b"), text).unwrap();
        assert_eq!(layout.compression, BagCompression::File);
        assert_eq!(layout.files, vec![PathBuf::from("/b/a.mcap.zstd")]);
        let lz4 = text.replace("format: zstd", "format: lz4");
        let err = parse_layout(Path::new("/b"), &lz4).unwrap_err();
        assert!(err.to_string().contains("\"lz4\""), "{err}");
    }

    #[test]
    fn unknown_storage_is_named() {
        let text = "rosbag2_bagfile_information:\n  version: 8\n  storage_identifier: hdf5\n  \
            relative_file_paths: [a.h5]\n";
        let err = parse_layout(Path::new("/b"), text).unwrap_err();
        assert!(err.to_string().contains("\"hdf5\""), "{err}");
    }
}
