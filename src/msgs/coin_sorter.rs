//! This package's own messages; the `.msg` files in `msg/` are their interface definition.

use serde::{Deserialize, Serialize};

use super::std_msgs::Header;

/// `coin_sorter/msg/CoinDetection`: one coin found in a frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoinDetection {
    pub coin_id: u32,
    pub label: String,
    pub confidence: f32,
    pub bin: String,
    pub rejected: bool,
    pub shift_score: f32,
    pub out_of_distribution: bool,
    pub x: f32,
    pub y: f32,
    pub radius: f32,
}

/// `coin_sorter/msg/CoinDetectionArray`: all coins of one frame, header from the image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoinDetectionArray {
    pub header: Header,
    pub detections: Vec<CoinDetection>,
}

/// `coin_sorter/msg/SortCommand`: move one coin into one bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SortCommand {
    pub header: Header,
    pub coin_id: u32,
    pub label: String,
    pub bin: String,
    pub confidence: f32,
    pub frames_seen: u32,
    pub x: f32,
    pub y: f32,
    pub radius: f32,
}

impl SortCommand {
    /// The command for a coin seen in one frame only, stamped with that frame's header.
    pub fn for_detection(header: &Header, d: &CoinDetection) -> Self {
        Self {
            header: header.clone(),
            coin_id: d.coin_id,
            label: d.label.clone(),
            bin: d.bin.clone(),
            confidence: d.confidence,
            frames_seen: 1,
            x: d.x,
            y: d.y,
            radius: d.radius,
        }
    }
}

/// `coin_sorter/msg/ActuatorState`: what the reference actuator has done so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActuatorState {
    pub header: Header,
    pub commands_received: u64,
    pub bins: Vec<String>,
    pub counts: Vec<u64>,
}

super::ros_message!(CoinDetection, "coin_sorter", "CoinDetection");
super::ros_message!(CoinDetectionArray, "coin_sorter", "CoinDetectionArray");
super::ros_message!(SortCommand, "coin_sorter", "SortCommand");
super::ros_message!(ActuatorState, "coin_sorter", "ActuatorState");
