//! `coin_sorter_actuator`: the reference actuator. It executes each sort command once (here:
//! counts it and logs the move), and publishes its state. A real driver replaces it by
//! subscribing to the same topic.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use futures::StreamExt;

use crate::msgs::coin_sorter::{ActuatorState, SortCommand};
use crate::params::{Default as D, ParamSet, ParamSpec, RosArgs};
use crate::transport::{RosNode, qos};

/// Default node name.
pub const NODE_NAME: &str = "coin_sorter_actuator";

/// Every parameter of the actuator, with its default.
pub const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "command_topic",
        default: D::Str("/coin_sorter/sort_commands"),
        help: "SortCommand topic to execute",
        dynamic: false,
    },
    ParamSpec {
        name: "move_log",
        default: D::Str(""),
        help: "if set, append one JSON line per executed move to this file",
        dynamic: false,
    },
];

/// The actuator's bookkeeping: bins in first-use order with their coin counts.
#[derive(Debug, Default)]
pub struct BinCounts {
    order: Vec<String>,
    counts: BTreeMap<String, u64>,
    received: u64,
    seen: HashSet<(i64, u32)>,
    seen_order: VecDeque<(i64, u32)>,
}

/// How many executed commands are remembered to catch repeats; bounds the actuator's memory.
const REMEMBERED_COMMANDS: usize = 4096;

impl BinCounts {
    /// Records a command; returns false (and counts nothing) for a repeat of a command already
    /// executed (same source stamp and coin id), so a re-sent command never moves a coin twice.
    pub fn record(&mut self, cmd: &SortCommand) -> bool {
        let key = (cmd.header.stamp.as_nanos(), cmd.coin_id);
        if !self.seen.insert(key) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > REMEMBERED_COMMANDS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.received += 1;
        if !self.counts.contains_key(&cmd.bin) {
            self.order.push(cmd.bin.clone());
        }
        *self.counts.entry(cmd.bin.clone()).or_default() += 1;
        true
    }

    /// The state message for the last command.
    pub fn state(&self, last: &SortCommand) -> ActuatorState {
        ActuatorState {
            header: last.header.clone(),
            commands_received: self.received,
            bins: self.order.clone(),
            counts: self.order.iter().map(|b| self.counts[b]).collect(),
        }
    }
}

/// Runs the actuator until SIGINT/SIGTERM.
pub fn run(args: RosArgs, params: ParamSet) -> Result<()> {
    let topic = params.string("command_topic");
    let move_log = match params.string("move_log") {
        s if s.is_empty() => None,
        s => Some(PathBuf::from(s)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let mut node = RosNode::new(NODE_NAME, &args)?;
        let state_pub = node.publisher::<ActuatorState>("~/state", qos::latched())?;
        let sub = node.subscription::<SortCommand>(&topic, qos::output())?;
        let mut log = match &move_log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open move_log {}", p.display()))?,
            ),
            None => None,
        };
        tracing::info!(
            "{} ready: executing {}",
            node.fully_qualified_name(),
            node.resolve(&topic)?
        );
        let mut counts = BinCounts::default();
        let execute = async {
            let mut stream = std::pin::pin!(sub.async_stream());
            while let Some(r) = stream.next().await {
                let cmd = match r {
                    Ok((cmd, _)) => cmd,
                    Err(e) => {
                        tracing::warn!(
                            "dropped a malformed sort command ({e:?}); waiting for the next"
                        );
                        continue;
                    }
                };
                if !counts.record(&cmd) {
                    tracing::warn!(
                        "coin {} of frame {} was already moved; ignoring the repeat",
                        cmd.coin_id,
                        cmd.header.stamp.as_nanos()
                    );
                    continue;
                }
                tracing::info!(
                    "move coin {} ({}, {:.2}) to bin {}",
                    cmd.coin_id,
                    cmd.label,
                    cmd.confidence,
                    cmd.bin
                );
                if let Some(f) = log.as_mut() {
                    let line = serde_json::json!({
                        "coin_id": cmd.coin_id, "label": cmd.label, "bin": cmd.bin,
                        "confidence": cmd.confidence, "stamp_ns": cmd.header.stamp.as_nanos(),
                        "frame_id": cmd.header.frame_id,
                    });
                    if let Err(e) = writeln!(f, "{line}").and_then(|()| f.flush()) {
                        tracing::warn!("cannot write the move log: {e}; moves continue");
                    }
                }
                if let Err(e) = state_pub.publish(counts.state(&cmd)) {
                    tracing::warn!("could not publish actuator state: {e:?}");
                }
            }
        };
        tokio::select! {
            _ = super::shutdown_signal() => tracing::info!("shutdown requested; stopping"),
            _ = execute => tracing::warn!("command subscription closed; stopping"),
        }
        tracing::info!("{} moves done", counts.received);
        drop((sub, state_pub));
        node.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::std_msgs::{Header, Time};

    fn cmd(ns: i64, id: u32, bin: &str) -> SortCommand {
        SortCommand {
            header: Header { stamp: Time::from_nanos(ns), frame_id: "cam".into() },
            coin_id: id,
            bin: bin.into(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_each_command_once_per_bin() {
        let mut c = BinCounts::default();
        assert!(c.record(&cmd(1, 1, "b")));
        assert!(c.record(&cmd(1, 2, "a")));
        assert!(c.record(&cmd(2, 3, "b")));
        assert!(!c.record(&cmd(2, 3, "b")));
        let s = c.state(&cmd(2, 3, "b"));
        assert_eq!(s.commands_received, 3);
        assert_eq!(s.bins, vec!["b".to_string(), "a".to_string()]);
        assert_eq!(s.counts, vec![2, 1]);
        assert_eq!(s.header.stamp, Time::from_nanos(2));
    }
}
