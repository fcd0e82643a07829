//! The QoS profiles the package uses, in one place.

use anyhow::{Result, bail};
use ros2_client::QosProfile;
use ros2_client::qos::{Durability, History, Reliability, WhenFull};

/// Depth of the reliable output topics (detections, sort commands).
pub const OUTPUT_DEPTH: usize = 100;

/// Camera images: keep only the newest `depth`; best-effort unless asked otherwise, so a slow
/// classifier never makes the camera driver wait.
pub fn image(reliability: &str, depth: i64) -> Result<QosProfile> {
    if depth < 1 {
        bail!("image_qos_depth {depth} must be at least 1");
    }
    let base =
        QosProfile::subscription_default().history(History::KeepLast { depth: depth as usize });
    Ok(match reliability {
        "best_effort" => base.reliability(Reliability::BestEffort),
        "reliable" => base.reliability(Reliability::Reliable { when_full: WhenFull::DEFAULT }),
        other => bail!("image_qos_reliability {other:?} is not best_effort or reliable"),
    })
}

/// Detections and sort commands: reliable, keep-last [`OUTPUT_DEPTH`].
pub fn output() -> QosProfile {
    QosProfile::publisher_default()
        .reliability(Reliability::Reliable { when_full: WhenFull::DEFAULT })
        .history(History::KeepLast { depth: OUTPUT_DEPTH })
}

/// State topics a late subscriber should still see: reliable, transient-local, depth 1.
pub fn latched() -> QosProfile {
    output().durability(Durability::TransientLocal).history(History::KeepLast { depth: 1 })
}

/// `/rosout` as rcl writes it: reliable, transient-local, keep-last 1000, so a late
/// `ros2 topic echo /rosout` still sees the start-up lines.
pub fn rosout() -> QosProfile {
    output().durability(Durability::TransientLocal).history(History::KeepLast { depth: 1000 })
}

/// Services: reliable, volatile, keep-last 10, as rmw's default for services.
pub fn service() -> QosProfile {
    output().history(History::KeepLast { depth: 10 })
}

/// What a recorder or player uses for replayed images: reliable, keep-last 10.
pub fn replay() -> QosProfile {
    output().history(History::KeepLast { depth: 10 })
}
