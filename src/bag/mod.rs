//! Reading rosbag2 recordings.

pub mod cdr;
