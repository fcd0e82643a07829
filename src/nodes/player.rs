//! `coin_sorter_player`: publishes the image topics of a rosbag2 recording with their recorded
//! stamps, at the recorded rate or a multiple of it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use ros2_client::Publisher;

use crate::bag::BagReader;
use crate::bag::cdr::decode_cdr;
use crate::msgs::RosMessage;
use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::transport::{RosNode, qos};

/// How to play a bag.
#[derive(Debug, Clone, clap::Args)]
pub struct PlayOptions {
    /// Playback speed as a multiple of the recorded rate.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Topics to play (default: every Image and CompressedImage topic).
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Wait until each played topic has this many subscribers before the first message.
    #[arg(long, default_value_t = 1)]
    pub wait_subscribers: usize,
    /// Give up waiting for subscribers after this many seconds and play anyway.
    #[arg(long, default_value_t = 20.0)]
    pub wait_timeout: f64,
}

impl PlayOptions {
    /// Checks the options, naming a bad value; returns the subscriber wait as a duration.
    pub fn check(&self) -> Result<Duration> {
        if !(self.rate.is_finite() && (1e-3..=1e3).contains(&self.rate)) {
            bail!("--rate {:?} must be a number in [0.001, 1000]", self.rate);
        }
        crate::params::checked_seconds("--wait-timeout", self.wait_timeout, 0.0)
    }
}

/// What a playback did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlayReport {
    /// Messages published per topic, in topic order.
    pub published: Vec<(String, u64)>,
    /// Messages that could not be decoded or published.
    pub failed: u64,
}

enum Out {
    Raw(Publisher<Image>),
    Compressed(Publisher<CompressedImage>),
}

/// Plays `bag` through `node`. Returns after the last message is published.
pub async fn play(node: &mut RosNode, bag: &Path, opts: &PlayOptions) -> Result<PlayReport> {
    let wait = opts.check()?;
    let reader = BagReader::open(bag)?;
    let mut outs: Vec<(String, Out)> = Vec::new();
    for t in &reader.info().topics {
        let wanted = opts.topics.is_empty() || opts.topics.contains(&t.name);
        if !wanted {
            continue;
        }
        let out = if t.type_name == Image::ros_type() {
            Out::Raw(node.publisher::<Image>(&t.name, qos::replay())?)
        } else if t.type_name == CompressedImage::ros_type() {
            Out::Compressed(node.publisher::<CompressedImage>(&t.name, qos::replay())?)
        } else {
            tracing::info!("skipping topic {} of type {}: not an image", t.name, t.type_name);
            continue;
        };
        outs.push((t.name.clone(), out));
    }
    if outs.is_empty() {
        bail!("bag {} has no image topic to play (of {:?})", bag.display(), opts.topics);
    }
    for (topic, _) in &outs {
        let n = node.wait_for_subscribers(topic, opts.wait_subscribers, wait).await?;
        if n < opts.wait_subscribers {
            tracing::warn!(
                "{topic} has {n} of {} subscribers after {wait:?}; playing anyway",
                opts.wait_subscribers
            );
        }
    }
    let names: Vec<String> = outs.iter().map(|(n, _)| n.clone()).collect();
    let mut report =
        PlayReport { published: names.iter().map(|n| (n.clone(), 0)).collect(), failed: 0 };
    let start = tokio::time::Instant::now();
    let mut first_ns: Option<u64> = None;
    for msg in reader.messages(Some(&names))? {
        let msg = msg?;
        let t0 = *first_ns.get_or_insert(msg.log_time_ns);
        let offset = Duration::from_nanos(msg.log_time_ns.saturating_sub(t0)).div_f64(opts.rate);
        tokio::time::sleep_until(start + offset).await;
        let Some(i) = names.iter().position(|n| *n == msg.topic) else {
            continue;
        };
        let result = match &outs[i].1 {
            Out::Raw(p) => decode_cdr::<Image>(&msg.data)
                .and_then(|m| p.publish(m).map_err(|e| anyhow::anyhow!("{e:?}"))),
            Out::Compressed(p) => decode_cdr::<CompressedImage>(&msg.data)
                .and_then(|m| p.publish(m).map_err(|e| anyhow::anyhow!("{e:?}"))),
        };
        match result {
            Ok(()) => report.published[i].1 += 1,
            Err(e) => {
                report.failed += 1;
                tracing::warn!(
                    "could not play a {} message at {} ns: {e:#}; continuing",
                    msg.topic,
                    msg.log_time_ns
                );
            }
        }
    }
    Ok(report)
}
