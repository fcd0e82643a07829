//! Reading one rosbag2 MCAP storage file, streamed from disk (no mmap).
//!
//! A finished file has a summary section with statistics and a chunk index; then counts come
//! from the statistics and messages are read chunk by chunk in log-time order. Otherwise the
//! file is scanned from the start: counts when there are no usable statistics (e.g. a
//! recording that was cut off), messages when there is no chunk index (cut off, or written
//! without chunks). Scanned messages come in file order, the order rosbag2 wrote them in, and a
//! scan stops with an error at the first damaged byte.
//!
//! Memory stays bounded by the largest chunk (or, when chunks overlap in time, the few chunks
//! that overlap), never by the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use mcap::records::Record;
use mcap::sans_io::indexed_reader::IndexedReaderOptions;
use mcap::sans_io::{
    IndexedReadEvent, IndexedReader, LinearReadEvent, LinearReader, LinearReaderOptions,
    SummaryReadEvent, SummaryReader, SummaryReaderOptions,
};
use mcap::{McapError, Summary};

use super::BagMessage;
use super::storage::{FileSummary, MessageIter, StorageFile, TopicTally};

/// Smallest cap on one record's length; see [`record_limit`].
const MIN_RECORD_LIMIT: usize = 64 << 20;

/// The longest record the reader accepts in a file of `size` bytes.
///
/// Record lengths are read from the file and the reader allocates them before it can check
/// them, so a corrupt length must not be trusted. A record outside a compressed chunk cannot be
/// longer than the file; one inside may be, if it compresses well, hence the floor.
fn record_limit(size: u64) -> usize {
    usize::try_from(size).unwrap_or(usize::MAX).max(MIN_RECORD_LIMIT)
}

/// Counts the topics and messages of one MCAP file.
///
/// Never fails on damaged data: what was readable is counted and the damage is reported in
/// [`FileSummary::warnings`]. Fails only when the file cannot be opened at all.
pub fn summarize(file: &StorageFile) -> Result<FileSummary> {
    let (mut f, size) = open(file)?;
    let summary = match read_summary(&mut f, size) {
        Ok(summary) => summary,
        // A damaged footer or summary is not fatal: the data section may still be intact.
        Err(err) => {
            tracing::debug!("{}: summary unreadable, scanning: {err}", file.shown.display());
            None
        }
    };
    if let Some(summary) = summary.as_ref()
        && let Some(counted) = summary_counts(summary)
    {
        return Ok(counted);
    }
    f.seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot seek in {}", file.shown.display()))?;
    Ok(scan_counts(Scanner::new(f, size, &file.shown)))
}

/// Streams the messages of one MCAP file, only those on `topics` when given.
pub fn messages(file: &StorageFile, topics: Option<&BTreeSet<String>>) -> Result<MessageIter> {
    let (mut f, size) = open(file)?;
    let summary = read_summary(&mut f, size).ok().flatten();
    if let Some(summary) = summary.filter(|s| !s.chunk_indexes.is_empty()) {
        let mut options = IndexedReaderOptions::new().with_record_length_limit(record_limit(size));
        if let Some(topics) = topics {
            options = options.include_topics(topics.iter().cloned());
        }
        let reader = IndexedReader::new_with_options(&summary, options).map_err(|e| {
            anyhow!("file {} has an invalid chunk index: {e}", file.shown.display())
        })?;
        return Ok(Box::new(IndexedMessages {
            file: f,
            size,
            shown: file.shown.clone(),
            reader,
            summary,
            buf: Vec::new(),
            done: false,
        }));
    }
    f.seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot seek in {}", file.shown.display()))?;
    Ok(Box::new(LinearMessages {
        scanner: Scanner::new(f, size, &file.shown),
        channels: HashMap::new(),
        schemas: HashMap::new(),
        topics: topics.cloned(),
    }))
}

fn open(file: &StorageFile) -> Result<(File, u64)> {
    let f =
        File::open(&file.open).with_context(|| format!("cannot open {}", file.shown.display()))?;
    let size = f.metadata().with_context(|| format!("cannot stat {}", file.shown.display()))?.len();
    Ok((f, size))
}

/// Reads the summary section; `Ok(None)` when the file has none.
fn read_summary(f: &mut File, size: u64) -> mcap::McapResult<Option<Summary>> {
    let options = SummaryReaderOptions::default()
        .with_file_size(size)
        .with_record_length_limit(record_limit(size));
    let mut reader = SummaryReader::new_with_options(options);
    while let Some(event) = reader.next_event() {
        match event? {
            SummaryReadEvent::ReadRequest(n) => {
                let read = f.read(reader.insert(n))?;
                reader.notify_read(read);
            }
            SummaryReadEvent::SeekRequest(to) => reader.notify_seeked(f.seek(to)?),
        }
    }
    Ok(reader.finish())
}

/// Counts from the statistics record, when it is present and its per-channel counts add up.
fn summary_counts(summary: &Summary) -> Option<FileSummary> {
    let stats = summary.stats.as_ref()?;
    if stats.channel_message_counts.values().sum::<u64>() != stats.message_count {
        return None;
    }
    let mut tally = TopicTally::default();
    let mut channels: Vec<_> = summary.channels.values().collect();
    channels.sort_by_key(|c| c.id);
    for channel in channels {
        let count = stats.channel_message_counts.get(&channel.id).copied().unwrap_or(0);
        let type_name = channel.schema.as_ref().map_or("", |s| s.name.as_str());
        tally.add_topic(&channel.topic, type_name, &channel.message_encoding, count);
    }
    if stats.message_count > 0 {
        tally.add_time(stats.message_start_time);
        tally.add_time(stats.message_end_time);
    }
    Some(tally.finish())
}

fn scan_counts(mut scanner: Scanner) -> FileSummary {
    let mut schemas = HashMap::new();
    let mut channels = BTreeMap::new();
    let mut counts: BTreeMap<u16, u64> = BTreeMap::new();
    let mut tally = TopicTally::default();
    while let Some(item) = scanner.next_item(false) {
        match item {
            Ok(Item::Schema { id, name }) => {
                schemas.insert(id, name);
            }
            Ok(Item::Channel(channel)) => {
                channels.insert(channel.id, channel);
            }
            Ok(Item::Message { channel_id, log_time, .. }) => {
                *counts.entry(channel_id).or_default() += 1;
                tally.add_time(log_time);
            }
            Err(err) => tally.warn(format!("{err:#}")),
        }
    }
    for (id, channel) in &channels {
        let type_name = schemas.get(&channel.schema_id).map_or("", String::as_str);
        let count = counts.remove(id).unwrap_or(0);
        tally.add_topic(&channel.topic, type_name, &channel.message_encoding, count);
    }
    for (id, n) in counts {
        tally.warn(format!(
            "file {}: {n} messages on channel {id}, which is never defined",
            scanner.shown
        ));
    }
    tally.finish()
}

/// One record of interest from a linear scan, owned.
enum Item {
    Schema { id: u16, name: String },
    Channel(mcap::records::Channel),
    Message { channel_id: u16, log_time: u64, data: Vec<u8> },
}

/// Reads a file's records front to back, keeping only the read buffer and current chunk.
///
/// Yields nothing after the first error, so a damaged file ends with exactly one error.
struct Scanner {
    source: BufReader<File>,
    reader: LinearReader,
    /// Bytes handed to the parser so far; where the damage is at most.
    pos: u64,
    shown: String,
    done: bool,
}

impl Scanner {
    fn new(f: File, size: u64, shown: &Path) -> Self {
        let options = LinearReaderOptions::default().with_record_length_limit(record_limit(size));
        Scanner {
            source: BufReader::with_capacity(1 << 16, f),
            reader: LinearReader::new_with_options(options),
            pos: 0,
            shown: shown.display().to_string(),
            done: false,
        }
    }

    /// The next schema, channel or message; message data is copied only when `with_data`.
    fn next_item(&mut self, with_data: bool) -> Option<Result<Item>> {
        if self.done {
            return None;
        }
        let item = self.next_item_inner(with_data);
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }

    fn next_item_inner(&mut self, with_data: bool) -> Option<Result<Item>> {
        loop {
            let (opcode, record) = match self.reader.next_event()? {
                Ok(LinearReadEvent::ReadRequest(n)) => {
                    let read = match self.source.read(self.reader.insert(n)) {
                        Ok(read) => read,
                        Err(err) => {
                            return Some(Err(anyhow!("cannot read {}: {err}", self.shown)));
                        }
                    };
                    self.pos += read as u64;
                    self.reader.notify_read(read);
                    continue;
                }
                Ok(LinearReadEvent::Record { opcode, data }) => {
                    (opcode, mcap::parse_record(opcode, data))
                }
                Err(err) => return Some(Err(damage_error(&self.shown, self.pos, err))),
            };
            let item = match record {
                Ok(Record::Schema { header, .. }) => {
                    Item::Schema { id: header.id, name: header.name }
                }
                Ok(Record::Channel(channel)) => Item::Channel(channel),
                Ok(Record::Message { header, data }) => Item::Message {
                    channel_id: header.channel_id,
                    log_time: header.log_time,
                    data: if with_data { data.into_owned() } else { Vec::new() },
                },
                Ok(_) => continue,
                Err(err) => {
                    let err = anyhow::Error::new(err);
                    return Some(Err(anyhow!(
                        "file {} is corrupt before byte {}: record with opcode {opcode:#04x}: \
                         {err:#}",
                        self.shown,
                        self.pos
                    )));
                }
            };
            return Some(Ok(item));
        }
    }
}

fn damage_error(shown: &str, pos: u64, err: McapError) -> anyhow::Error {
    match err {
        McapError::UnexpectedEof => {
            anyhow!("file {shown} is truncated at byte {pos}: it ends inside an MCAP record")
        }
        err => {
            let err = anyhow::Error::new(err);
            anyhow!("file {shown} is corrupt before byte {pos}: {err:#}")
        }
    }
}

/// Messages in file order from a linear scan, for files without a chunk index.
struct LinearMessages {
    scanner: Scanner,
    channels: HashMap<u16, mcap::records::Channel>,
    schemas: HashMap<u16, String>,
    topics: Option<BTreeSet<String>>,
}

impl Iterator for LinearMessages {
    type Item = Result<BagMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.scanner.next_item(true)? {
                Ok(Item::Schema { id, name }) => {
                    self.schemas.insert(id, name);
                }
                Ok(Item::Channel(channel)) => {
                    self.channels.insert(channel.id, channel);
                }
                Ok(Item::Message { channel_id, log_time, data }) => {
                    let Some(channel) = self.channels.get(&channel_id) else {
                        self.scanner.done = true;
                        return Some(Err(anyhow!(
                            "file {} is corrupt: a message before byte {} is on channel \
                             {channel_id}, which is not defined before it",
                            self.scanner.shown,
                            self.scanner.pos
                        )));
                    };
                    if self.topics.as_ref().is_some_and(|t| !t.contains(&channel.topic)) {
                        continue;
                    }
                    let type_name = self.schemas.get(&channel.schema_id).cloned();
                    return Some(Ok(BagMessage {
                        topic: channel.topic.clone(),
                        type_name: type_name.unwrap_or_default(),
                        log_time_ns: log_time,
                        data,
                    }));
                }
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

/// Messages in log-time order, read through the chunk index of a finished file.
struct IndexedMessages {
    file: File,
    size: u64,
    shown: PathBuf,
    reader: IndexedReader,
    summary: Summary,
    /// Compressed data of the chunk being loaded, reused between chunks.
    buf: Vec<u8>,
    done: bool,
}

impl IndexedMessages {
    fn load_chunk(&mut self, offset: u64, length: usize) -> Result<()> {
        let shown = self.shown.display();
        if offset.saturating_add(length as u64) > self.size {
            return Err(anyhow!(
                "file {shown} is corrupt: its index points to a chunk at bytes {offset}..{} but \
                 the file has {} bytes",
                offset.saturating_add(length as u64),
                self.size
            ));
        }
        self.buf.resize(length, 0);
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut self.buf))
            .with_context(|| format!("cannot read chunk at byte {offset} of {shown}"))?;
        self.reader.insert_chunk_record_data(offset, &self.buf).map_err(|err| {
            let err = anyhow::Error::new(err);
            anyhow!("file {shown} is corrupt: chunk at byte {offset}: {err:#}")
        })
    }
}

impl Iterator for IndexedMessages {
    type Item = Result<BagMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = loop {
            let (offset, length) = match self.reader.next_event()? {
                Ok(IndexedReadEvent::ReadChunkRequest { offset, length }) => (offset, length),
                Ok(IndexedReadEvent::Message { header, data }) => {
                    break linked_message(&self.summary, &self.shown, &header, data);
                }
                Err(err) => {
                    let err = anyhow::Error::new(err);
                    break Err(anyhow!("file {} is corrupt: {err:#}", self.shown.display()));
                }
            };
            if let Err(err) = self.load_chunk(offset, length) {
                break Err(err);
            }
        };
        self.done = item.is_err();
        Some(item)
    }
}

/// A message with its topic and type looked up in the summary's channels.
fn linked_message(
    summary: &Summary,
    shown: &Path,
    header: &mcap::records::MessageHeader,
    data: &[u8],
) -> Result<BagMessage> {
    let Some(channel) = summary.channels.get(&header.channel_id) else {
        return Err(anyhow!(
            "file {} is corrupt: a message is on channel {}, which the summary does not define",
            shown.display(),
            header.channel_id
        ));
    };
    Ok(BagMessage {
        topic: channel.topic.clone(),
        type_name: channel.schema.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
        log_time_ns: header.log_time,
        data: data.to_vec(),
    })
}
