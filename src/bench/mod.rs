//! `coin_sorter bench`: the speed and memory figures of docs/performance.md, measured and
//! printed (never asserted in tests). `pipeline` times the node's pipeline in this process;
//! `e2e` measures a running node from outside over DDS.

pub mod e2e;
pub mod frames;
pub mod pipeline;
pub mod rss;

use anyhow::Result;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Per-stage times, share outside the forward pass, sustained frames per second, crops
    /// per second at a batch, and resident memory of the node's pipeline on a bag's frames.
    Pipeline(pipeline::PipelineArgs),
    /// A running node measured over DDS (inside scripts/netns.sh): latency from image to
    /// detections, frames skipped, sort commands lost, the node's memory.
    E2e(e2e::E2eArgs),
}

/// Runs one benchmark.
pub fn run(command: &BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Pipeline(a) => pipeline::run(a).map(|_| ()),
        BenchCommand::E2e(a) => e2e::run(a).map(|_| ()),
    }
}
