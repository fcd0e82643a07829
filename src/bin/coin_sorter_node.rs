//! The coin sorter ROS 2 node: images in, detections and sort commands out.

use coin_sorter::nodes::{main_with, sorter};

fn main() -> std::process::ExitCode {
    main_with(
        "coin_sorter_node",
        if cfg!(feature = "r2r") {
            "Finds coins in camera images, classifies them and publishes detections and sort \
             commands.\nROS 2 backends of this build: rcl through r2r (default) and dds \
             (ros2-client); COIN_SORTER_BACKEND=dds picks the second."
        } else {
            "Finds coins in camera images, classifies them and publishes detections and sort \
             commands.\nROS 2 backend of this build: dds (ros2-client over RustDDS); the rcl \
             backend needs the cargo feature r2r."
        },
        sorter::PARAMS,
        sorter::NODE_NAME,
        sorter::run,
    )
}
