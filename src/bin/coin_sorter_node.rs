//! The coin sorter ROS 2 node: images in, detections and sort commands out.

use coin_sorter::nodes::{main_with, sorter};

fn main() -> std::process::ExitCode {
    main_with(
        "coin_sorter_node",
        "Finds coins in camera images, classifies them and publishes detections and sort commands.",
        sorter::PARAMS,
        sorter::NODE_NAME,
        sorter::run,
    )
}
