//! The benchmarks measure what they say: `bench pipeline` times exactly the frames it was
//! asked for, with the coins the node's pipeline finds in them, and samples memory where told;
//! `bench e2e` accounts for every frame it sent and every sort command of the answered ones,
//! against a real node over DDS. Their speed figures are printed, never asserted.

mod common;

use coin_sorter::bench::e2e::{self, E2eArgs};
use coin_sorter::bench::pipeline::{self, PipelineArgs};
use coin_sorter::classify::model::Classifier;
use coin_sorter::locate::DEFAULT_LOCATE;
use coin_sorter::pipeline::Pipeline;
use common::NodeProc;

const NODE: &str = env!("CARGO_BIN_EXE_coin_sorter_node");

fn bag() -> std::path::PathBuf {
    common::shared_data().join("bags/bgr8-mcap")
}

#[test]
fn pipeline_bench_times_the_frames_it_was_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let json = dir.path().join("pipeline.json");
    let args = PipelineArgs {
        bag: bag(),
        topic: None,
        model: Some(model.clone()),
        params_file: None,
        frames: 5,
        warmup: 1,
        publish: false,
        batch: 3,
        batches: 2,
        memory_every: 2,
        json: Some(json.clone()),
    };
    let r = pipeline::run(&args).unwrap();
    assert_eq!(r.frames, 5);
    let names: Vec<&str> = r.stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["decode", "locate", "crop_normalise", "forward", "classify_other", "decide", "total"]
    );
    assert!(r.stages.iter().all(|(_, l)| l.n == 5));
    assert_eq!(r.memory.iter().map(|m| m.0).collect::<Vec<_>>(), [0, 2, 4, 5]);
    assert!(r.memory_before_frames > 0);
    assert_eq!(r.by_coins.iter().map(|(_, l)| l.n).sum::<usize>(), 5);
    let (n, rate, l) = r.batch.unwrap();
    assert_eq!((n, l.n), (3, 2));
    assert!(rate > 0.0);
    // The coins are the pipeline's own: frames 1..=5 of the bag (frame 0 was the warm-up).
    let frames = coin_sorter::bench::frames::load(&bag(), None).unwrap();
    let classifier =
        Classifier::load(&model, coin_sorter::classify::device::DevicePref::Cpu).unwrap();
    let params = coin_sorter::params::ParamSet::defaults(coin_sorter::nodes::sorter::PARAMS);
    let bins = coin_sorter::nodes::sorter::SorterConfig::from_params(&params).unwrap().bins;
    let mut p = Pipeline::new(classifier, DEFAULT_LOCATE, bins).unwrap();
    let coins: usize =
        frames[1..6].iter().map(|f| p.process(f).unwrap().detections.detections.len()).sum();
    assert_eq!(r.coins, coins);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(written["frames"], 5);
}

#[test]
fn e2e_bench_accounts_for_every_frame_and_command() {
    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let domain = common::domain_id(12);
    let args = common::node_args(&model, &["tracking:=false", "shift_score:=off"]);
    let mut node = NodeProc::start(NODE, "sorter", domain, &args, dir.path());
    let args = E2eArgs {
        bag: bag(),
        topic: None,
        rate: 5.0,
        duration: 4.0,
        warmup: 3,
        answer_wait: 1.0,
        node: "/coin_sorter".into(),
        image_topic: "/camera/image_raw".into(),
        compressed_topic: "/camera/image_raw/compressed".into(),
        domain: Some(domain),
        pid: Some(node.child.id()),
        json: None,
    };
    let r = e2e::run(&args).unwrap();
    assert!(node.stop(), "node did not exit cleanly:\n{}", node.log());
    // 5 Hz for 4 s: the first frame at once, then one every 200 ms.
    assert!((19..=21).contains(&r.frames_sent), "{r:?}");
    assert!(r.frames_answered >= 1 && r.frames_answered <= r.frames_sent, "{r:?}");
    assert_eq!(r.frames_skipped, r.frames_sent - r.frames_answered);
    assert_eq!(r.latency.n, r.frames_answered);
    // Reliable commands on loopback: one per coin of every answered frame.
    assert_eq!(r.sort_commands_lost, 0, "{r:?}");
    assert_eq!(r.sort_commands, r.coins);
    let (start, end) = r.memory.unwrap();
    assert!(start > 0 && end > 0);
    assert!(r.memory_after_first_frame.is_some_and(|b| b > 0));
}
