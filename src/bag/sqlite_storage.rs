//! Reading one rosbag2 SQLite (`.db3`) storage file.
//!
//! The database is opened read-only and `immutable`, so reading never creates `-wal` or `-shm`
//! files beside it (bags often live on read-only or shared folders). The price: changes still
//! sitting in an uncheckpointed `-wal` file are not seen; this is reported as a warning.
//!
//! Messages are streamed by a worker thread that owns the connection and hands rows over a
//! small bounded channel, so memory holds a few messages, never the table.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, OpenFlags};
use tempfile::TempPath;

use super::BagMessage;
use super::storage::{FileSummary, MessageIter, StorageFile, TopicTally};

/// Messages buffered between the worker thread and the consumer.
const CHANNEL_CAPACITY: usize = 4;

/// One row of the `topics` table.
struct Topic {
    name: String,
    type_name: String,
    format: String,
}

/// Counts the topics and messages of one `.db3` file.
///
/// Damage inside the `messages` table is not fatal: rows read before it are counted and the
/// damage is reported in [`FileSummary::warnings`]. Fails when the database cannot be opened or
/// its `topics` table cannot be read.
pub fn summarize(file: &StorageFile) -> Result<FileSummary> {
    let db = connect(file)?;
    let topics = read_topics(&db.conn, &file.shown)?;
    let mut counts: HashMap<i64, u64> = HashMap::new();
    let mut tally = TopicTally::default();
    if let Some(warning) = unmerged_wal_warning(&file.open, &file.shown) {
        tally.warn(warning);
    }
    if let Some(t) = &db.truncation {
        tally.warn(format!(
            "file {} is truncated at byte {} (its header says {} bytes)",
            file.shown.display(),
            t.actual,
            t.expected
        ));
    }
    let mut negative = 0u64;
    let scanned = count_rows(&db.conn, &mut counts, &mut negative, &mut tally);
    let total: u64 = counts.values().sum();
    if negative > 0 {
        tally.warn(format!(
            "file {}: {negative} messages have a negative timestamp and cannot be read",
            file.shown.display()
        ));
    }
    if let Err(err) = scanned {
        tally.warn(format!(
            "file {} is corrupt or truncated after {total} messages: {err}",
            file.shown.display()
        ));
    }
    for (id, topic) in &topics {
        let count = counts.remove(id).unwrap_or(0);
        tally.add_topic(&topic.name, &topic.type_name, &topic.format, count);
    }
    for (id, n) in counts {
        tally.warn(format!(
            "file {}: {n} messages on topic id {id}, which the topics table does not list",
            file.shown.display()
        ));
    }
    Ok(tally.finish())
}

/// Counts rows per topic id into `counts` and their times into `tally`; rows with a negative
/// timestamp are counted in `negative` instead, since they cannot become messages.
fn count_rows(
    conn: &Connection,
    counts: &mut HashMap<i64, u64>,
    negative: &mut u64,
    tally: &mut TopicTally,
) -> rusqlite::Result<()> {
    // Only columns stored before `data` are read, so the blobs themselves are never loaded.
    let mut stmt = conn.prepare("SELECT topic_id, timestamp FROM messages")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let topic_id: i64 = row.get(0)?;
        match u64::try_from(row.get::<_, i64>(1)?) {
            Ok(timestamp) => {
                *counts.entry(topic_id).or_default() += 1;
                tally.add_time(timestamp);
            }
            Err(_) => *negative += 1,
        }
    }
    Ok(())
}

/// Streams the messages of one `.db3` file in timestamp order, only those on `topics` when
/// given.
///
/// Order comes from rosbag2's `timestamp` index. If reading through the index fails, the rest
/// is read from the table itself in recording (row id) order, so that damage to the index alone
/// loses no messages. A file shorter than its header says ends the stream with an error even
/// when every row could be read.
pub fn messages(file: &StorageFile, topics: Option<&BTreeSet<String>>) -> Result<MessageIter> {
    let db = connect(file)?;
    let table = read_topics(&db.conn, &file.shown)?;
    let filter = match topics {
        None => String::new(),
        Some(wanted) => {
            let mut ids = String::new();
            for (id, _) in table.iter().filter(|(_, t)| wanted.contains(&t.name)) {
                let sep = if ids.is_empty() { "" } else { "," };
                write!(ids, "{sep}{id}")?;
            }
            format!("AND topic_id IN ({ids})")
        }
    };
    let job = Job { db, filter, topics: table.into_iter().collect(), shown: file.shown.clone() };
    let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
    std::thread::Builder::new()
        .name("bag-sqlite".into())
        .spawn(move || {
            let outcome = job.run(&tx);
            // The consumer may be gone already; then nobody needs the outcome.
            let _ = tx.send(outcome.map(|()| Streamed::End));
        })
        .with_context(|| format!("cannot start a reader thread for {}", file.shown.display()))?;
    Ok(Box::new(SqliteMessages { rx, shown: file.shown.clone(), done: false }))
}

enum Streamed {
    Message(BagMessage),
    End,
}

/// Whether a pass over the rows went to the end or the consumer hung up.
enum Flow {
    Finished,
    HungUp,
}

/// Everything the worker thread needs to stream one file.
struct Job {
    db: Db,
    /// SQL condition restricting `topic_id`, or empty.
    filter: String,
    topics: HashMap<i64, Topic>,
    shown: PathBuf,
}

/// Where the last message sent sits in (timestamp, id) order, and how many were sent.
struct Progress {
    last: (i64, i64),
    sent: u64,
}

impl Job {
    /// Sends every message to `tx`; returns early, without error, once the consumer hangs up.
    fn run(&self, tx: &SyncSender<Result<Streamed>>) -> Result<()> {
        let mut progress = Progress { last: (i64::MIN, i64::MIN), sent: 0 };
        let indexed = "SELECT id, topic_id, timestamp, data FROM messages \
                       WHERE (timestamp, id) > (?1, ?2) {filter} ORDER BY timestamp, id";
        let failure = match self.send_rows(indexed, &mut progress, tx) {
            Ok(Flow::HungUp) => return Ok(()),
            Ok(Flow::Finished) => None,
            Err(err) => {
                tracing::debug!("{}: reading by timestamp failed: {err:#}", self.shown.display());
                // Every row up to `progress.last` was sent, so the rest is exactly the rows
                // after it, in whatever order they are read now.
                let table = "SELECT id, topic_id, timestamp, data FROM messages NOT INDEXED \
                             WHERE (timestamp, id) > (?1, ?2) {filter} ORDER BY id";
                match self.send_rows(table, &mut progress, tx) {
                    Ok(Flow::HungUp) => return Ok(()),
                    Ok(Flow::Finished) => None,
                    Err(err) => Some(err),
                }
            }
        };
        let what = match &self.db.truncation {
            Some(t) => {
                format!("truncated at byte {} (its header says {} bytes)", t.actual, t.expected)
            }
            None => "corrupt".to_owned(),
        };
        let read = format!(
            "file {} is {what}: read {} messages before the damage",
            self.shown.display(),
            progress.sent
        );
        match failure {
            None if self.db.truncation.is_none() => Ok(()),
            None => Err(anyhow!(read)),
            Some(err) => Err(anyhow!("{read}: {err:#}")),
        }
    }

    /// One pass of `sql` (with `{filter}` filled in) over the rows after `progress.last`.
    fn send_rows(
        &self,
        sql: &str,
        progress: &mut Progress,
        tx: &SyncSender<Result<Streamed>>,
    ) -> Result<Flow> {
        let sql = sql.replace("{filter}", &self.filter);
        let mut stmt = self.db.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params![progress.last.0, progress.last.1])?;
        while let Some(row) = rows.next()? {
            let (key, message) = self.read_row(row)?;
            if tx.send(Ok(Streamed::Message(message))).is_err() {
                return Ok(Flow::HungUp);
            }
            progress.last = key;
            progress.sent += 1;
        }
        Ok(Flow::Finished)
    }

    /// One message and its (timestamp, id) key from a row.
    fn read_row(&self, row: &rusqlite::Row<'_>) -> Result<((i64, i64), BagMessage)> {
        let id: i64 = row.get(0)?;
        let topic_id: i64 = row.get(1)?;
        let timestamp: i64 = row.get(2)?;
        let Some(topic) = self.topics.get(&topic_id) else {
            bail!("message {id} is on topic id {topic_id}, which the topics table does not list");
        };
        let Ok(log_time_ns) = u64::try_from(timestamp) else {
            bail!("message {id} on {} has negative timestamp {timestamp}", topic.name);
        };
        let data = row
            .get_ref(3)?
            .as_blob()
            .with_context(|| format!("message {id} on {} has no blob data", topic.name))?
            .to_vec();
        let message = BagMessage {
            topic: topic.name.clone(),
            type_name: topic.type_name.clone(),
            log_time_ns,
            data,
        };
        Ok(((timestamp, id), message))
    }
}

/// The consumer's end of the worker thread's channel.
struct SqliteMessages {
    rx: Receiver<Result<Streamed>>,
    shown: PathBuf,
    done: bool,
}

impl Iterator for SqliteMessages {
    type Item = Result<BagMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.rx.recv() {
            Ok(Ok(Streamed::Message(message))) => return Some(Ok(message)),
            Ok(Ok(Streamed::End)) => None,
            Ok(Err(err)) => Some(Err(err)),
            // The worker never drops its sender before sending `End` or an error, so this
            // means it panicked: say so rather than end the stream as if it were complete.
            Err(_) => Some(Err(anyhow!(
                "reading {} stopped: its reader thread failed",
                self.shown.display()
            ))),
        };
        self.done = true;
        item
    }
}

/// An open database file, and what is known about its damage.
struct Db {
    conn: Connection,
    /// Set when the file is shorter than its header says.
    truncation: Option<Truncation>,
    /// The copy SQLite reads instead of a file that ends inside a page; deleted on drop.
    _whole_pages: Option<TempPath>,
}

fn connect(file: &StorageFile) -> Result<Db> {
    let shown = file.shown.display();
    let truncation = truncation(&file.open)?;
    // SQLite reads a page cut short by truncation as if its missing tail were zeros, which
    // would hand out messages with zeroed bytes as if they were intact. So a file that ends
    // inside a page is read from a copy that stops at the last whole page.
    let whole_pages = match &truncation {
        Some(t) if t.page_size > 0 && !t.actual.is_multiple_of(t.page_size) => Some(
            copy_prefix(&file.open, t.actual - t.actual % t.page_size)
                .with_context(|| format!("cannot copy the intact pages of truncated {shown}"))?,
        ),
        _ => None,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let uri = immutable_uri(whole_pages.as_deref().unwrap_or(&file.open))?;
    let conn = Connection::open_with_flags(&uri, flags)
        .with_context(|| format!("cannot open {shown} as an SQLite database"))?;
    // SQLite refuses a file shorter than its header says, before reading any row. With this
    // flag it reads what is there instead and reports damage only where a row is missing,
    // which is what lets a truncated bag give up its intact messages. The connection is
    // read-only, so the flag cannot lead to a schema change.
    conn.pragma_update(None, "writable_schema", true)
        .with_context(|| format!("cannot configure SQLite for {shown}"))?;
    Ok(Db { conn, truncation, _whole_pages: whole_pages })
}

/// Copies the first `len` bytes of `path` into a temporary file.
fn copy_prefix(path: &Path, len: u64) -> Result<TempPath> {
    use std::io::Read;
    let mut source = std::fs::File::open(path)?.take(len);
    let mut temp = tempfile::Builder::new().prefix("coin_sorter-db3-").tempfile()?;
    std::io::copy(&mut source, &mut temp)?;
    Ok(temp.into_temp_path())
}

/// A `file:` URI for `path` with `immutable=1`.
fn immutable_uri(path: &Path) -> Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let Some(text) = absolute.to_str() else {
        bail!("{}: SQLite files need a UTF-8 path", path.display());
    };
    let mut uri = String::from("file:");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            write!(uri, "%{byte:02X}")?;
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// The `topics` table by id, in id order.
fn read_topics(conn: &Connection, shown: &Path) -> Result<Vec<(i64, Topic)>> {
    let read = || -> rusqlite::Result<Vec<(i64, Topic)>> {
        let mut stmt =
            conn.prepare("SELECT id, name, type, serialization_format FROM topics ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            let topic = Topic { name: row.get(1)?, type_name: row.get(2)?, format: row.get(3)? };
            Ok((row.get(0)?, topic))
        })?;
        rows.collect()
    };
    read().with_context(|| format!("cannot read the topics table of {}", shown.display()))
}

/// A database file shorter than its header says it is.
struct Truncation {
    /// Bytes in the file.
    actual: u64,
    /// Bytes the header's page count and page size add up to.
    expected: u64,
    /// Page size from the header; 0 when the header itself is cut off.
    page_size: u64,
}

/// Compares the file's length with the size its header records.
///
/// The header's page count is only trusted when its validity stamp matches the change counter,
/// as SQLite itself does; otherwise nothing can be said and `None` is returned.
fn truncation(path: &Path) -> Result<Option<Truncation>> {
    use std::io::Read;
    let mut header = [0u8; 100];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let actual = f.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
    if f.read_exact(&mut header).is_err() {
        return Ok(Some(Truncation { actual, expected: header.len() as u64, page_size: 0 }));
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let (change_counter, valid_for, pages) = (be32(24), be32(92), u64::from(be32(28)));
    let expected = pages * page_size;
    let stamped = change_counter == valid_for && pages > 0;
    Ok((stamped && actual < expected).then_some(Truncation { actual, expected, page_size }))
}

/// A warning when a non-empty `-wal` file sits beside `open`: its changes are not read.
fn unmerged_wal_warning(open: &Path, shown: &Path) -> Option<String> {
    let mut wal = open.as_os_str().to_owned();
    wal.push("-wal");
    let len = std::fs::metadata(PathBuf::from(wal)).ok()?.len();
    (len > 0).then(|| {
        format!(
            "file {} has an uncheckpointed -wal file ({len} bytes) whose messages are not read",
            shown.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_everything_but_plain_path_characters() {
        let uri = immutable_uri(Path::new("/bags/a b?#%.db3")).unwrap();
        assert_eq!(uri, "file:/bags/a%20b%3F%23%25.db3?immutable=1");
    }
}
