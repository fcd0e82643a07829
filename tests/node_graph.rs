//! The live graph over DDS: player → coin_sorter_node → actuator, on the recorded bag. The
//! actuator must receive exactly one command per coin the node reported, each stamped with
//! its source frame.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use coin_sorter::msgs::coin_sorter::CoinDetectionArray;
use coin_sorter::params::RosArgs;
use coin_sorter::transport::{RosNode, qos};
use common::NodeProc;
use futures::StreamExt;

const NODE: &str = env!("CARGO_BIN_EXE_coin_sorter_node");
const ACTUATOR: &str = env!("CARGO_BIN_EXE_coin_sorter_actuator");
const PLAYER: &str = env!("CARGO_BIN_EXE_coin_sorter_player");

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn actuator_gets_one_command_per_reported_coin_with_its_frame_stamp() {
    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let domain = common::domain_id(5);
    let moves = dir.path().join("moves.jsonl");
    let bag = common::shared_data().join("bags/bgr8-mcap");
    let truth = coin_sorter::score::read_ground_truth(&bag.join("ground_truth.jsonl")).unwrap();
    let stamps: BTreeSet<i64> = truth.iter().map(|f| f.stamp_ns).collect();
    assert_eq!(stamps.len(), 30);

    let mut actuator = NodeProc::start(
        ACTUATOR,
        "actuator",
        domain,
        &strings(&["--ros-args", "-p", &format!("move_log:={}", moves.display())]),
        dir.path(),
    );
    let mut node = NodeProc::start(
        NODE,
        "sorter",
        domain,
        &strings(&[
            "--ros-args",
            "-p",
            &format!("model_path:={}", model.display()),
            // Every frame of the bag is a different photo: one command per detection.
            "-p",
            "tracking:=false",
        ]),
        dir.path(),
    );
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let reported: BTreeMap<i64, CoinDetectionArray> = rt.block_on(async {
        let mut me = RosNode::in_domain("graph_test", &RosArgs::default(), domain).unwrap();
        let sub = me
            .subscription::<CoinDetectionArray>("/coin_sorter/detections", qos::output())
            .unwrap();
        let mut dets = std::pin::pin!(sub.async_stream());
        let n =
            me.wait_for_subscribers("/camera/image_raw", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(n, 1, "node never subscribed:\n{}", node.log());
        // The actuator must be listening before the first command, or reliable volatile QoS
        // would let early commands go unseen.
        let n = me
            .wait_for_subscribers("/coin_sorter/sort_commands", 1, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(n, 1, "actuator never subscribed:\n{}", actuator.log());
        let mut player = NodeProc::start(
            PLAYER,
            "player",
            domain,
            &strings(&[bag.to_str().unwrap(), "--rate", "2"]),
            dir.path(),
        );
        let mut reported = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut player_done_at: Option<Instant> = None;
        while Instant::now() < deadline {
            if player_done_at.is_none() && matches!(player.child.try_wait(), Ok(Some(_))) {
                player_done_at = Some(Instant::now());
            }
            if player_done_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
                break;
            }
            if let Ok(Some(Ok((d, _)))) =
                tokio::time::timeout(Duration::from_millis(200), dets.next()).await
            {
                reported.insert(d.header.stamp.as_nanos(), d);
            }
        }
        assert!(player.stop(), "player failed:\n{}", player.log());
        reported
    });
    let coins: usize = reported.values().map(|d| d.detections.len()).sum();
    assert!(reported.len() >= 20, "only {} of 30 frames answered:\n{}", reported.len(), node.log());
    assert!(
        reported.keys().all(|s| stamps.contains(s)),
        "a detection carries a stamp not in the bag"
    );
    assert!(coins >= reported.len(), "{coins} coins in {} frames", reported.len());

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines: Vec<serde_json::Value> = Vec::new();
    while Instant::now() < deadline {
        lines = std::fs::read_to_string(&moves)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= coins {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(node.stop(), "node did not exit cleanly:\n{}", node.log());
    assert!(actuator.stop(), "actuator did not exit cleanly:\n{}", actuator.log());
    let moved: BTreeSet<(i64, u64)> = lines
        .iter()
        .map(|l| (l["stamp_ns"].as_i64().unwrap(), l["coin_id"].as_u64().unwrap()))
        .collect();
    let want: BTreeSet<(i64, u64)> = reported
        .values()
        .flat_map(|d| d.detections.iter().map(|c| (d.header.stamp.as_nanos(), c.coin_id as u64)))
        .collect();
    assert_eq!(lines.len(), coins, "the actuator executed {} moves for {coins} coins", lines.len());
    assert_eq!(moved, want);
}
