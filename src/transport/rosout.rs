//! Logs to `/rosout`: a `tracing` layer that hands every event of this package to a task
//! publishing `rcl_interfaces/msg/Log`, so ROS tools see the node's logs as they see any
//! node's.
//!
//! The layer never blocks and never publishes itself: events go through a bounded channel
//! (dropped when it is full) to a task that owns the publisher. Events of the DDS stack are
//! not forwarded, since publishing could log and feed itself.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::msgs::rcl_interfaces::Log;
use crate::msgs::std_msgs::Time;

/// Log lines waiting for the publisher; more are dropped rather than slowing the node.
const QUEUE: usize = 1000;

/// Where the layer sends events once a node has started forwarding; unset before.
static SINK: OnceLock<(SyncSender<Log>, String)> = OnceLock::new();

/// The `tracing` layer; add it to the subscriber at start-up. It does nothing until
/// [`start`] is called.
#[derive(Debug, Default, Clone, Copy)]
pub struct RosoutLayer;

struct Message(String);

/// An event's message with its other fields appended as ` name=value`.
pub(crate) fn event_text(event: &Event<'_>) -> String {
    let mut msg = Message(String::new());
    event.record(&mut msg);
    msg.0
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

fn level(l: &Level) -> u8 {
    match *l {
        Level::ERROR => Log::ERROR,
        Level::WARN => Log::WARN,
        Level::INFO => Log::INFO,
        _ => Log::DEBUG,
    }
}

impl<S: Subscriber> Layer<S> for RosoutLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some((sink, name)) = SINK.get() else { return };
        let meta = event.metadata();
        if !meta.target().starts_with("coin_sorter") {
            return;
        }
        let log = Log {
            stamp: Time::now(),
            level: level(meta.level()),
            name: name.clone(),
            msg: event_text(event),
            file: meta.file().unwrap_or_default().to_string(),
            function: meta.module_path().unwrap_or_default().to_string(),
            line: meta.line().unwrap_or(0),
        };
        if let Err(TrySendError::Disconnected(_)) = sink.try_send(log) {
            // The publisher task is gone (the node is shutting down); stderr still has it.
        }
    }
}

/// Makes the layer forward events for the node `fully_qualified_name` and returns the
/// receiving end for the publisher task; `None` when another node of this process already
/// forwards (one process, one `/rosout` logger).
pub fn start(fully_qualified_name: &str) -> Option<Receiver<Log>> {
    let name = fully_qualified_name.trim_start_matches('/').replace('/', ".");
    let (tx, rx) = sync_channel(QUEUE);
    SINK.set((tx, name)).ok().map(|()| rx)
}
