//! Every ROS 2 message type the package sends or receives, as serde structs whose field order
//! is the CDR wire order. Our own types mirror `msg/*.msg` field by field (a test checks it).

pub mod coin_sorter;
pub mod definitions;
pub mod diagnostic_msgs;
pub mod rcl_interfaces;
pub mod sensor_msgs;
pub mod std_msgs;
pub mod std_srvs;
pub mod vision_msgs;

/// A message type with its ROS 2 name, so transports can build topic types from one place.
pub trait RosMessage: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {
    /// ROS package of the type, e.g. `sensor_msgs`.
    const PACKAGE: &'static str;
    /// Type name inside the package, e.g. `Image`.
    const NAME: &'static str;

    /// The ROS 2 type name as tools print it: `sensor_msgs/msg/Image`.
    fn ros_type() -> String {
        format!("{}/msg/{}", Self::PACKAGE, Self::NAME)
    }

    /// The DDS type name ROS 2 uses on the wire: `sensor_msgs::msg::dds_::Image_`.
    fn dds_type() -> String {
        format!("{}::msg::dds_::{}_", Self::PACKAGE, Self::NAME)
    }
}

macro_rules! ros_message {
    ($ty:ty, $pkg:literal, $name:literal) => {
        impl $crate::msgs::RosMessage for $ty {
            const PACKAGE: &'static str = $pkg;
            const NAME: &'static str = $name;
        }
        impl ros2_client::Message for $ty {}
    };
}
pub(crate) use ros_message;
