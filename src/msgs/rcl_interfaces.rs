//! `rcl_interfaces/msg/Log`: one log line on `/rosout`, where `ros2 topic echo /rosout`, rqt
//! and rosbag find every node's logs.

use serde::{Deserialize, Serialize};

use super::std_msgs::Time;

/// `rcl_interfaces/msg/Log`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Log {
    pub stamp: Time,
    /// One of [`Log::DEBUG`] … [`Log::FATAL`].
    pub level: u8,
    /// Logger name: the node's name, namespace parts joined by dots (`cell1.coin_sorter`).
    pub name: String,
    pub msg: String,
    pub file: String,
    pub function: String,
    pub line: u32,
}

impl Log {
    pub const DEBUG: u8 = 10;
    pub const INFO: u8 = 20;
    pub const WARN: u8 = 30;
    pub const ERROR: u8 = 40;
    pub const FATAL: u8 = 50;
}

super::ros_message!(Log, "rcl_interfaces", "Log");
