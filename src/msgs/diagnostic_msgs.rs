//! `diagnostic_msgs` types, for the node's health on `/diagnostics`.

use serde::{Deserialize, Serialize};

use super::std_msgs::Header;

/// `diagnostic_msgs/msg/KeyValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `diagnostic_msgs/msg/DiagnosticStatus`; `level` is one of the `LEVEL_*` constants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    pub level: u8,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<KeyValue>,
}

impl DiagnosticStatus {
    /// Everything is fine.
    pub const OK: u8 = 0;
    /// Working, but something needs attention.
    pub const WARN: u8 = 1;
    /// Not working as intended.
    pub const ERROR: u8 = 2;
    /// No data to judge from.
    pub const STALE: u8 = 3;
}

/// `diagnostic_msgs/msg/DiagnosticArray`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticArray {
    pub header: Header,
    pub status: Vec<DiagnosticStatus>,
}

super::ros_message!(DiagnosticArray, "diagnostic_msgs", "DiagnosticArray");
