//! coin_sorter: a ROS 2 node that finds coins in camera images and sorts them.
//!
//! The modules follow the data flow: image in → [`decode`] → [`locate`] → [`classify`] →
//! [`decide`] (bin) → publish ([`transport`]). Around it: [`train`] makes the model,
//! [`bag`] reads and writes rosbag2 recordings.

pub mod bag;
pub mod classify;
pub mod fsutil;
