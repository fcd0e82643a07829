//! The frames the benchmarks replay: every image message of one bag topic, held in memory so
//! reading the bag is never timed.

use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::bag::BagReader;
use crate::pipeline::Frame;

/// The image frames of `bag` (its only image topic, or `topic`), in recorded order.
pub fn load(bag: &Path, topic: Option<&str>) -> Result<Vec<Frame>> {
    let reader = BagReader::open(bag)?;
    let (topic, type_name) = crate::eval::image_topic(&reader, topic, bag)?;
    let mut frames = Vec::new();
    for msg in reader.messages(Some(std::slice::from_ref(&topic)))? {
        let msg = msg?;
        let frame = Frame::from_cdr(&type_name, &msg.data).with_context(|| {
            format!("{topic} message at {} ns in {}", msg.log_time_ns, bag.display())
        })?;
        frames.push(frame);
    }
    ensure!(!frames.is_empty(), "bag {} has no messages on {topic}", bag.display());
    Ok(frames)
}
