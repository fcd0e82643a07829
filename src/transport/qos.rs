//! The QoS profiles the package uses, in one place.

use anyhow::{Result, bail};
use ros2_client::QosProfile;
use ros2_client::qos::{Durability, History, Reliability, WhenFull};

/// Depth of the reliable output topics (detections, sort commands).
pub const OUTPUT_DEPTH: usize = 100;

/// Deepest image queue: a second of a fast camera, and a bound on memory held for images.
pub const MAX_IMAGE_DEPTH: usize = 100;

/// The camera image QoS, checked, for either backend: keep only the newest `depth`;
/// best-effort unless asked otherwise, so a slow classifier never makes the camera wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageQos {
    pub reliable: bool,
    /// At least 1.
    pub depth: usize,
}

impl ImageQos {
    /// Reads the `image_qos_reliability` and `image_qos_depth` parameter values.
    pub fn parse(reliability: &str, depth: i64) -> Result<Self> {
        let Ok(depth @ 1..=MAX_IMAGE_DEPTH) = usize::try_from(depth) else {
            bail!("image_qos_depth {depth} must be between 1 and {MAX_IMAGE_DEPTH}");
        };
        let reliable = match reliability {
            "best_effort" => false,
            "reliable" => true,
            other => bail!("image_qos_reliability {other:?} is not best_effort or reliable"),
        };
        Ok(Self { reliable, depth })
    }

    /// The profile on the default backend.
    pub fn dds(&self) -> QosProfile {
        let base =
            QosProfile::subscription_default().history(History::KeepLast { depth: self.depth });
        match self.reliable {
            false => base.reliability(Reliability::BestEffort),
            true => base.reliability(Reliability::Reliable { when_full: WhenFull::DEFAULT }),
        }
    }
}

/// [`ImageQos`] from its parameter values, as the default backend's profile.
pub fn image(reliability: &str, depth: i64) -> Result<QosProfile> {
    Ok(ImageQos::parse(reliability, depth)?.dds())
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
