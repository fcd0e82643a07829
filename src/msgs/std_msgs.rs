//! `builtin_interfaces` and `std_msgs` types.

use serde::{Deserialize, Serialize};

/// `builtin_interfaces/msg/Time`: seconds and nanoseconds since the epoch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

impl Time {
    /// Converts nanoseconds since the epoch; saturates outside the `i32` seconds range.
    pub fn from_nanos(ns: i64) -> Self {
        let sec = ns.div_euclid(1_000_000_000);
        let nanosec = ns.rem_euclid(1_000_000_000) as u32;
        Self { sec: sec.clamp(i32::MIN as i64, i32::MAX as i64) as i32, nanosec }
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(&self) -> i64 {
        self.sec as i64 * 1_000_000_000 + self.nanosec as i64
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let d =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self::from_nanos(d.as_nanos() as i64)
    }
}

/// `std_msgs/msg/Header`: when and in which frame a message's data was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `std_msgs/msg/String`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StringMsg {
    pub data: String,
}

super::ros_message!(Header, "std_msgs", "Header");
super::ros_message!(StringMsg, "std_msgs", "String");
