//! `sensor_msgs` image types.

use serde::{Deserialize, Serialize};

use super::std_msgs::Header;

/// `sensor_msgs/msg/Image`: uncompressed pixels, rows of `step` bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: u8,
    pub step: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `sensor_msgs/msg/CompressedImage`: a JPEG or PNG file in `data`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedImage {
    pub header: Header,
    pub format: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

super::ros_message!(Image, "sensor_msgs", "Image");
super::ros_message!(CompressedImage, "sensor_msgs", "CompressedImage");
