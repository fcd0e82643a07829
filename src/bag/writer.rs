//! Writing an MCAP file in the rosbag2 layout (`ros2` profile, `ros2msg` schemas, CDR
//! messages), which `ros2 bag`, Foxglove and the `mcap` tools open. The file is written under
//! a temporary name and renamed by [`McapBagWriter::finish`], so a crash leaves no half bag.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::bag::cdr::encode_cdr;
use crate::msgs::RosMessage;
use crate::msgs::definitions::ros2msg_schema;

/// An MCAP bag being written. Channels are made on first use of a topic.
pub struct McapBagWriter {
    writer: mcap::Writer<BufWriter<File>>,
    tmp: tempfile::TempPath,
    path: PathBuf,
    channels: HashMap<String, u16>,
    sequence: u32,
}

impl McapBagWriter {
    /// Starts writing `path` (zstd-compressed chunks); the folder must exist.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let named = tempfile::Builder::new()
            .prefix(".bag-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        let (file, tmp) = named.into_parts();
        let writer = mcap::WriteOptions::new()
            .profile("ros2")
            .create(BufWriter::new(file))
            .with_context(|| format!("cannot start MCAP file {}", path.display()))?;
        Ok(Self { writer, tmp, path: path.to_path_buf(), channels: HashMap::new(), sequence: 0 })
    }

    fn channel<T: RosMessage>(&mut self, topic: &str) -> Result<u16> {
        if let Some(&id) = self.channels.get(topic) {
            return Ok(id);
        }
        let ty = T::ros_type();
        let schema = ros2msg_schema(&ty)?;
        let schema_id = self
            .writer
            .add_schema(&ty, "ros2msg", schema.as_bytes())
            .with_context(|| format!("cannot add schema {ty} to {}", self.path.display()))?;
        let id = self
            .writer
            .add_channel(schema_id, topic, "cdr", &BTreeMap::new())
            .with_context(|| format!("cannot add channel {topic} to {}", self.path.display()))?;
        self.channels.insert(topic.to_owned(), id);
        Ok(id)
    }

    /// Appends `msg` on `topic`, logged at `time_ns` (nanoseconds since the epoch).
    pub fn write<T: RosMessage>(&mut self, topic: &str, time_ns: i64, msg: &T) -> Result<()> {
        let channel_id = self.channel::<T>(topic)?;
        let data = encode_cdr(msg)?;
        let time = u64::try_from(time_ns).unwrap_or(0);
        let header = mcap::records::MessageHeader {
            channel_id,
            sequence: self.sequence,
            log_time: time,
            publish_time: time,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.writer
            .write_to_known_channel(&header, &data)
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }

    /// Writes the summary and index, then renames the file into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.writer.finish().with_context(|| format!("cannot finish {}", self.path.display()))?;
        let mut out = self.writer.into_inner();
        std::io::Write::flush(&mut out)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        out.get_ref().sync_all().with_context(|| format!("cannot sync {}", self.path.display()))?;
        self.tmp.persist(&self.path).with_context(|| {
            format!("cannot rename the finished bag to {}", self.path.display())
        })?;
        Ok(self.path)
    }
}
