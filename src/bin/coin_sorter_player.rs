//! Publishes a rosbag2 recording's image topics over ROS 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coin_sorter::nodes::{init_logging, player};
use coin_sorter::params::RosArgs;
use coin_sorter::transport::RosNode;

/// Publishes the Image and CompressedImage topics of a rosbag2 recording (storage mcap or
/// sqlite3) with their recorded stamps. ROS arguments go after --ros-args.
#[derive(Debug, Parser)]
#[command(name = "coin_sorter_player")]
struct Cli {
    /// rosbag2 directory, .mcap or .db3 file.
    bag: PathBuf,
    #[command(flatten)]
    play: player::PlayOptions,
}

fn main() -> ExitCode {
    let ros = match RosArgs::parse(std::env::args().skip(1)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coin_sorter_player: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli =
        Cli::parse_from(std::iter::once("coin_sorter_player".to_string()).chain(ros.other.clone()));
    init_logging(ros.log_level.as_deref());
    let rt =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("cannot start the async runtime: {e}");
                return ExitCode::from(1);
            }
        };
    let result = rt.block_on(async {
        let mut node = RosNode::new("coin_sorter_player", &ros)?;
        let report = player::play(&mut node, &cli.bag, &cli.play).await?;
        for (topic, n) in &report.published {
            tracing::info!("published {n} messages on {topic}");
        }
        // Reliable writers keep resending for late acknowledgements; give them a moment.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        anyhow::Ok(report)
    });
    match result {
        Ok(r) if r.failed == 0 => ExitCode::SUCCESS,
        Ok(r) => {
            tracing::error!("{} messages could not be played", r.failed);
            ExitCode::from(1)
        }
        Err(e) => {
            tracing::error!("{e:#}; exiting");
            ExitCode::from(1)
        }
    }
}
