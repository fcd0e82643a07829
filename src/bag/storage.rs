//! What every storage backend provides, and the bookkeeping they share.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;

use super::metadata::Storage;
use super::{BagMessage, TopicInfo, mcap_storage, sqlite_storage};

/// A stream of one file's messages. Ends after the first error.
pub type MessageIter = Box<dyn Iterator<Item = Result<BagMessage>>>;

/// One storage file to read.
///
/// `open` and `shown` differ when the file on disk is compressed: then `open` is a decompressed
/// temporary copy and `shown` the bag's own file, which is what error messages must name.
#[derive(Debug, Clone)]
pub struct StorageFile {
    /// The file to read.
    pub open: PathBuf,
    /// The file to name in messages and errors.
    pub shown: PathBuf,
}

/// Topics, counts and time range of one storage file, as found in the file itself.
#[derive(Debug, Clone, Default)]
pub struct FileSummary {
    /// Every topic the file declares, sorted by name, including topics with no messages.
    pub topics: Vec<TopicInfo>,
    /// Log times of the first and last message; `None` when there are no messages.
    pub time_range: Option<(u64, u64)>,
    /// Problems found while counting, e.g. damage that stopped the count early.
    pub warnings: Vec<String>,
}

/// Counts one file's messages; see the backends for how damage is handled.
pub fn summarize(storage: Storage, file: &StorageFile) -> Result<FileSummary> {
    match storage {
        Storage::Mcap => mcap_storage::summarize(file),
        Storage::Sqlite3 => sqlite_storage::summarize(file),
    }
}

/// Streams one file's messages, only those on `topics` when given.
pub fn messages(
    storage: Storage,
    file: &StorageFile,
    topics: Option<&BTreeSet<String>>,
) -> Result<MessageIter> {
    match storage {
        Storage::Mcap => mcap_storage::messages(file, topics),
        Storage::Sqlite3 => sqlite_storage::messages(file, topics),
    }
}

/// Accumulates topics (merged by name) and the log-time range over files or channels.
#[derive(Debug, Default)]
pub struct TopicTally {
    topics: Vec<TopicInfo>,
    time_range: Option<(u64, u64)>,
    warnings: Vec<String>,
}

impl TopicTally {
    /// Adds `count` messages on `name`. A topic seen before keeps its first type and format;
    /// a different one is recorded as a warning rather than silently merged.
    pub fn add_topic(&mut self, name: &str, type_name: &str, format: &str, count: u64) {
        if let Some(topic) = self.topics.iter_mut().find(|t| t.name == name) {
            if topic.type_name != type_name || topic.serialization_format != format {
                self.warnings.push(format!(
                    "topic {name} is recorded both as {} ({}) and as {type_name} ({format})",
                    topic.type_name, topic.serialization_format
                ));
            }
            topic.message_count += count;
            return;
        }
        self.topics.push(TopicInfo {
            name: name.to_owned(),
            type_name: type_name.to_owned(),
            serialization_format: format.to_owned(),
            message_count: count,
        });
    }

    /// Widens the time range to include `log_time_ns`.
    pub fn add_time(&mut self, log_time_ns: u64) {
        self.time_range = Some(match self.time_range {
            None => (log_time_ns, log_time_ns),
            Some((first, last)) => (first.min(log_time_ns), last.max(log_time_ns)),
        });
    }

    /// Adds a problem to report with the result.
    pub fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }

    /// The accumulated summary, topics sorted by name.
    pub fn finish(mut self) -> FileSummary {
        self.topics.sort_by(|a, b| a.name.cmp(&b.name));
        FileSummary { topics: self.topics, time_range: self.time_range, warnings: self.warnings }
    }
}
