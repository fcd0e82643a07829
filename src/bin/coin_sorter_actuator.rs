//! The reference actuator node: executes sort commands and publishes per-bin counts.

use coin_sorter::nodes::{actuator, main_with};

fn main() -> std::process::ExitCode {
    main_with(
        "coin_sorter_actuator",
        "Reference actuator: executes each sort command once and publishes per-bin counts.",
        actuator::PARAMS,
        actuator::NODE_NAME,
        actuator::run,
    )
}
