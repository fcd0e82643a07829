//! Logging on the rcl backend: a `tracing` layer that hands this package's events to rcutils
//! under the node's logger name, so they reach the console, the ROS log file and `/rosout`
//! the way every rcl node's logs do. While it forwards, the package's own console output
//! stands down (see [`forwarding`]), so each line is printed once.

use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The rcl logger name events go to, once [`start`] has set it.
static LOGGER: OnceLock<String> = OnceLock::new();

/// The `tracing` layer; add it to the subscriber at start-up. It does nothing until
/// [`start`] is called.
#[derive(Debug, Default, Clone, Copy)]
pub struct RclLogLayer;

/// Forwards this package's events to rcutils under `logger` (`r2r::Node::logger`) from now
/// on; a second call is ignored (one process, one node logger).
pub fn start(logger: &str) {
    let _ = LOGGER.set(logger.to_string());
}

/// Whether events go to rcutils, which then prints them itself.
pub fn forwarding() -> bool {
    LOGGER.get().is_some()
}

fn severity(l: &Level) -> r2r::LogSeverity {
    match *l {
        Level::ERROR => r2r::LogSeverity::Error,
        Level::WARN => r2r::LogSeverity::Warn,
        Level::INFO => r2r::LogSeverity::Info,
        _ => r2r::LogSeverity::Debug,
    }
}

/// Text rcutils can take: r2r turns it into a C string and panics on a NUL byte, which a
/// logged topic name or frame id from outside could hold.
fn c_safe(s: &str) -> String {
    s.replace('\0', "\\0")
}

impl<S: Subscriber> Layer<S> for RclLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(logger) = LOGGER.get() else { return };
        let meta = event.metadata();
        if !meta.target().starts_with("coin_sorter") {
            return;
        }
        let msg = c_safe(&crate::transport::rosout::event_text(event));
        let file = c_safe(meta.file().unwrap_or_default());
        r2r::log(&msg, logger, &file, meta.line().unwrap_or(0), severity(meta.level()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_cannot_reach_rcutils() {
        assert_eq!(c_safe("frame\0id"), "frame\\0id");
        assert_eq!(c_safe("plain"), "plain");
    }
}
