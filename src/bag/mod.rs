//! Reading rosbag2 recordings: bag folders (`metadata.yaml` plus `mcap` or `sqlite3` files,
//! possibly zstd-compressed per file or per message), or a single `.mcap` / `.db3` file.
//!
//! [`BagReader::open`] reads what the bag holds from the storage files themselves, not from
//! `metadata.yaml`, and [`BagReader::messages`] streams the messages with bounded memory.
//! Damaged files do not stop either: `open` counts what is readable and lists the damage in
//! [`BagInfo::warnings`]; `messages` yields every message it can read before the damage and
//! then one error naming the file.

pub mod cdr;
mod compression;
mod mcap_storage;
mod metadata;
mod sqlite_storage;
mod storage;
pub mod writer;

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tempfile::TempPath;

pub use metadata::BagCompression;
use metadata::Layout;
use storage::{MessageIter, StorageFile, TopicTally};

/// One topic of a bag and how many messages the storage files hold for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name, e.g. `/camera/image_raw`.
    pub name: String,
    /// ROS message type, e.g. `sensor_msgs/msg/Image`.
    pub type_name: String,
    /// How messages are serialized; `cdr` for ROS 2.
    pub serialization_format: String,
    /// Messages on this topic in all files; topics declared without messages count 0.
    pub message_count: u64,
}

/// What a bag holds, as found in its storage files.
///
/// Invariants: `message_count` is the sum of the topics' counts; `topics` are sorted by name
/// and unique; `start_ns` and `duration_ns` are 0 when there are no messages. When a file is
/// damaged, the counts cover what was readable and `warnings` says what was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagInfo {
    /// The path the bag was opened from: a bag folder or a single storage file.
    pub path: PathBuf,
    /// Storage identifier as rosbag2 spells it: `mcap` or `sqlite3`.
    pub storage: String,
    /// How rosbag2 compressed the bag.
    pub compression: BagCompression,
    /// Storage files in recording order.
    pub files: Vec<PathBuf>,
    /// Every topic declared in the files, sorted by name.
    pub topics: Vec<TopicInfo>,
    /// Messages on all topics.
    pub message_count: u64,
    /// Log time of the earliest message, in nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// Log time of the latest message minus that of the earliest, in nanoseconds.
    pub duration_ns: u64,
    /// Problems found while reading, e.g. a truncated file whose tail could not be counted.
    pub warnings: Vec<String>,
}

/// One recorded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagMessage {
    /// Topic it was recorded on.
    pub topic: String,
    /// ROS message type of the topic, e.g. `sensor_msgs/msg/Image`.
    pub type_name: String,
    /// When it was recorded, in nanoseconds since the Unix epoch.
    pub log_time_ns: u64,
    /// The serialized message as recorded (for ROS 2: CDR including its 4-byte encapsulation
    /// header, see [`cdr::decode_cdr`]); per-message compression is already undone.
    pub data: Vec<u8>,
}

/// An open bag: its [`BagInfo`], and the means to stream its messages.
///
/// Holds no file open between calls; every [`BagReader::messages`] call reads the files anew.
#[derive(Debug)]
pub struct BagReader {
    info: BagInfo,
    layout: Layout,
}

impl BagReader {
    /// Opens a bag folder (with `metadata.yaml`), a bare `.mcap` or `.db3` file, or a bare
    /// `*.mcap.zstd` / `*.db3.zstd` file, and counts what its files hold.
    ///
    /// Fails when the layout cannot be read or a file cannot be opened at all; damage inside a
    /// file only shows in [`BagInfo::warnings`]. Whole-file compressed bags are decompressed
    /// once here to count, and again while streaming.
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot open bag {}", path.display()))?;
        let layout = if meta.is_dir() {
            metadata::read_layout(path)
        } else {
            metadata::bare_file_layout(path)
        }
        .with_context(|| format!("cannot open bag {}", path.display()))?;
        let mut tally = TopicTally::default();
        for file in &layout.files {
            let (file, _temp) = storage_file(file, layout.compression)?;
            let summary = storage::summarize(layout.storage, &file)?;
            for topic in &summary.topics {
                tally.add_topic(
                    &topic.name,
                    &topic.type_name,
                    &topic.serialization_format,
                    topic.message_count,
                );
            }
            if let Some((first, last)) = summary.time_range {
                tally.add_time(first);
                tally.add_time(last);
            }
            for warning in summary.warnings {
                tracing::warn!("{warning}");
                tally.warn(warning);
            }
        }
        let summary = tally.finish();
        let (start_ns, end_ns) = summary.time_range.unwrap_or((0, 0));
        let info = BagInfo {
            path: path.to_path_buf(),
            storage: layout.storage.identifier().to_owned(),
            compression: layout.compression,
            files: layout.files.clone(),
            message_count: summary.topics.iter().map(|t| t.message_count).sum(),
            topics: summary.topics,
            start_ns,
            duration_ns: end_ns - start_ns,
            warnings: summary.warnings,
        };
        Ok(BagReader { info, layout })
    }

    /// What the bag holds.
    pub fn info(&self) -> &BagInfo {
        &self.info
    }

    /// Streams messages in log-time order per file, files in order; `topics = None` means all.
    ///
    /// SQLite files and MCAP files with a chunk index (every finished one) give log-time
    /// order. An MCAP file without a chunk index is read in file order, and an SQLite file
    /// whose timestamp index is damaged continues in row order past the damage: both are the
    /// order rosbag2 wrote the messages in.
    ///
    /// Fails at once when a requested topic is not in the bag. The stream ends after its
    /// first error, which names the file; messages before it are all delivered.
    pub fn messages(
        &self,
        topics: Option<&[String]>,
    ) -> Result<impl Iterator<Item = Result<BagMessage>> + '_> {
        let topics = match topics {
            None => None,
            Some(wanted) => {
                for name in wanted {
                    if !self.info.topics.iter().any(|t| &t.name == name) {
                        let known: Vec<_> = self.info.topics.iter().map(|t| &t.name).collect();
                        bail!(
                            "bag {} has no topic {name:?}; its topics are {known:?}",
                            self.info.path.display()
                        );
                    }
                }
                Some(wanted.iter().cloned().collect())
            }
        };
        Ok(BagMessages { reader: self, topics, next_file: 0, current: None, done: false })
    }
}

/// The file to read for `path`: itself, or a decompressed copy that lives as long as the
/// returned [`TempPath`].
fn storage_file(
    path: &Path,
    compression: BagCompression,
) -> Result<(StorageFile, Option<TempPath>)> {
    if compression != BagCompression::File {
        let file = StorageFile { open: path.to_path_buf(), shown: path.to_path_buf() };
        return Ok((file, None));
    }
    let temp = compression::decompress_file(path)?;
    let file = StorageFile { open: temp.to_path_buf(), shown: path.to_path_buf() };
    Ok((file, Some(temp)))
}

/// The iterator behind [`BagReader::messages`]: one file at a time, fused after an error.
struct BagMessages<'a> {
    reader: &'a BagReader,
    topics: Option<BTreeSet<String>>,
    next_file: usize,
    current: Option<CurrentFile<'a>>,
    done: bool,
}

/// The file [`BagMessages`] is reading.
struct CurrentFile<'a> {
    messages: MessageIter,
    /// The bag's file, for error messages.
    path: &'a Path,
    /// The decompressed copy being read, if the file is compressed; deleted on drop.
    _temp: Option<TempPath>,
}

impl<'a> BagMessages<'a> {
    fn open_next(&mut self) -> Option<Result<CurrentFile<'a>>> {
        let layout = &self.reader.layout;
        let path = layout.files.get(self.next_file)?;
        self.next_file += 1;
        Some(storage_file(path, layout.compression).and_then(|(file, temp)| {
            Ok(CurrentFile {
                messages: storage::messages(layout.storage, &file, self.topics.as_ref())?,
                path,
                _temp: temp,
            })
        }))
    }
}

impl CurrentFile<'_> {
    /// The next message, with per-message compression undone when the bag uses it.
    fn next(&mut self, compression: BagCompression) -> Option<Result<BagMessage>> {
        let item = self.messages.next()?;
        if compression != BagCompression::Message {
            return Some(item);
        }
        Some(item.and_then(|mut message| {
            message.data = compression::decompress_message(self.path, &message)?;
            Ok(message)
        }))
    }
}

impl Iterator for BagMessages<'_> {
    type Item = Result<BagMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(current) = self.current.as_mut() else {
                match self.open_next() {
                    None => self.done = true,
                    Some(Ok(file)) => self.current = Some(file),
                    Some(Err(err)) => {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
                continue;
            };
            match current.next(self.reader.layout.compression) {
                None => self.current = None,
                Some(item) => {
                    self.done = item.is_err();
                    return Some(item);
                }
            }
        }
        None
    }
}

impl fmt::Display for BagInfo {
    /// The report of `coin_sorter bag info`: layout, time span, counts, one line per topic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Bag:          {}", self.path.display())?;
        writeln!(f, "Storage:      {}", self.storage)?;
        writeln!(f, "Compression:  {}", self.compression)?;
        for (i, file) in self.files.iter().enumerate() {
            let label = if i == 0 { "Files:" } else { "" };
            writeln!(f, "{label:<14}{}", file.display())?;
        }
        let (secs, nanos) = split_ns(self.duration_ns);
        writeln!(f, "Duration:     {secs}.{nanos:09} s")?;
        writeln!(f, "Start:        {}", utc(self.start_ns))?;
        writeln!(f, "End:          {}", utc(self.start_ns + self.duration_ns))?;
        writeln!(f, "Messages:     {}", self.message_count)?;
        writeln!(f, "Topics:       {}", self.topics.len())?;
        let name_w = self.topics.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let type_w = self.topics.iter().map(|t| t.type_name.len()).max().unwrap_or(0);
        let format_w = self.topics.iter().map(|t| t.serialization_format.len()).max();
        for t in &self.topics {
            writeln!(
                f,
                "  {:<name_w$}  {:<type_w$}  {:<format_w$}  {:>8}",
                t.name,
                t.type_name,
                t.serialization_format,
                t.message_count,
                format_w = format_w.unwrap_or(0),
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "Warning:      {warning}")?;
        }
        Ok(())
    }
}

fn split_ns(ns: u64) -> (u64, u64) {
    (ns / 1_000_000_000, ns % 1_000_000_000)
}

/// `ns` since the Unix epoch as a UTC date and time, with the raw value after it.
fn utc(ns: u64) -> String {
    let (secs, nanos) = split_ns(ns);
    let (mut days, day_secs) = (secs / 86_400, secs % 86_400);
    let mut year = 1970;
    loop {
        let year_days = if is_leap(year) { 366 } else { 365 };
        if days < year_days {
            break;
        }
        days -= year_days;
        year += 1;
    }
    let feb = if is_leap(year) { 29 } else { 28 };
    let mut month = 1;
    for len in [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    let (h, m, s) = (day_secs / 3600, day_secs / 60 % 60, day_secs % 60);
    format!("{year:04}-{month:02}-{:02} {h:02}:{m:02}:{s:02}.{nanos:09} UTC ({ns} ns)", days + 1)
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Arguments of `coin_sorter bag info`.
#[derive(Debug, Clone, clap::Args)]
pub struct BagInfoArgs {
    /// Bag folder (with metadata.yaml), or a single .mcap or .db3 file.
    pub path: PathBuf,
}

/// Runs `coin_sorter bag info`: prints what [`BagInfo`]'s `Display` shows to stdout.
pub fn run_info(args: &BagInfoArgs) -> Result<()> {
    let reader = BagReader::open(&args.path)?;
    write!(std::io::stdout().lock(), "{}", reader.info()).context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_handles_epoch_leap_days_and_year_ends() {
        assert_eq!(utc(2623), "1970-01-01 00:00:00.000002623 UTC (2623 ns)");
        // 2024-02-29 12:34:56 UTC.
        assert!(utc(1_709_210_096_000_000_000).starts_with("2024-02-29 12:34:56.000000000"));
        // 2000-12-31 23:59:59 UTC (day 366 of a leap year divisible by 400).
        assert!(utc(978_307_199_000_000_000).starts_with("2000-12-31 23:59:59."));
        assert!(utc(1_764_000_000_000_000_000).starts_with("2025-11-24 16:00:00."));
    }
}
