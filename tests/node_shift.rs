//! The shift monitor in the running node over DDS: every change of the stream state is logged
//! exactly once, in the order the node's own pipeline, run here on the same frames, gives, and
//! `/diagnostics` carries the final state with its numbers.

mod common;

use std::time::{Duration, Instant};

use coin_sorter::classify::device::DevicePref;
use coin_sorter::classify::model::Classifier;
use coin_sorter::decide::BinTable;
use coin_sorter::locate::DEFAULT_LOCATE;
use coin_sorter::monitor::check::DEFAULT_SHIFT;
use coin_sorter::monitor::stream::{ShiftLevel, StreamParams};
use coin_sorter::msgs::coin_sorter::CoinDetectionArray;
use coin_sorter::msgs::diagnostic_msgs::DiagnosticArray;
use coin_sorter::msgs::sensor_msgs::Image;
use coin_sorter::params::RosArgs;
use coin_sorter::pipeline::{Frame, Pipeline};
use coin_sorter::transport::{RosNode, qos};
use common::NodeProc;
use futures::StreamExt;
use ros2_client::parameters::{ParameterValue, raw};
use ros2_client::rcl_interfaces::{SetParametersRequest, SetParametersResponse};

const NODE: &str = env!("CARGO_BIN_EXE_coin_sorter_node");
/// A short window and a threshold at the validation median, so that photos from another
/// camera change the state within a few frames.
const STREAM: StreamParams =
    StreamParams { window: 4, min_coins: 2, warn_fraction: 0.3, error_fraction: 0.8 };
const QUANTILE: f64 = 0.5;
const FRAMES: usize = 10;

#[test]
fn state_changes_are_logged_once_each_and_reach_diagnostics() {
    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let frames: Vec<Image> =
        (0..FRAMES).map(|i| common::photo_frame(i, 1_000_000_000 * (i as i64 + 1))).collect();

    let classifier = Classifier::load(&model, DevicePref::Cpu).unwrap();
    let labels = classifier.metadata().labels.clone();
    let entries: Vec<String> = labels.iter().map(|l| format!("{l}:bin_{l}")).collect();
    let bins = BinTable::parse(&entries, "reject", 0.5).unwrap();
    let mut pipeline = Pipeline::new(classifier, DEFAULT_LOCATE, bins).unwrap();
    let settings = coin_sorter::monitor::check::ShiftSettings {
        quantile: QUANTILE,
        stream: STREAM,
        ..DEFAULT_SHIFT
    };
    pipeline.with_shift(&settings).unwrap();
    let mut expected = Vec::new();
    let mut last = None;
    for f in &frames {
        let out = pipeline.process(&Frame::Raw(f.clone())).unwrap();
        expected.extend(out.shift_change);
        last = out.shift;
    }
    assert!(!expected.is_empty(), "the frames must change the state at least once");
    let last = last.unwrap();

    let domain = common::domain_id(8);
    let p = |k: &str, v: String| ["-p".to_string(), format!("{k}:={v}")];
    let mut args = vec!["--ros-args".to_string()];
    for (k, v) in [
        ("model_path", model.display().to_string()),
        ("image_qos_reliability", "reliable".into()),
        ("image_qos_depth", "10".into()),
        ("diagnostics_period", "0.1".into()),
        ("shift_threshold_quantile", QUANTILE.to_string()),
        ("shift_window", STREAM.window.to_string()),
        ("shift_min_coins", STREAM.min_coins.to_string()),
        ("shift_warn_fraction", STREAM.warn_fraction.to_string()),
        ("shift_error_fraction", STREAM.error_fraction.to_string()),
    ] {
        args.extend(p(k, v));
    }
    let mut node = NodeProc::start(NODE, "sorter", domain, &args, dir.path());
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let diag = rt.block_on(async {
        let mut me = RosNode::in_domain("shift_test", &RosArgs::default(), domain).unwrap();
        let raw = me.publisher::<Image>("/camera/image_raw", qos::replay()).unwrap();
        let dets = me
            .subscription::<CoinDetectionArray>("/coin_sorter/detections", qos::output())
            .unwrap();
        let diags = me.subscription::<DiagnosticArray>("/diagnostics", qos::output()).unwrap();
        let mut dets = std::pin::pin!(dets.async_stream());
        let mut diags = std::pin::pin!(diags.async_stream());
        let n =
            me.wait_for_subscribers("/camera/image_raw", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(n, 1, "the node never subscribed; log:\n{}", node.log());
        // Our writer may be matched before the node's reader has seen it, and a frame sent
        // in that gap is lost. A blank frame (no coins, so nothing for the monitor), repeated
        // until answered, proves the path first.
        let blank = Image {
            height: 64,
            width: 64,
            encoding: "rgb8".into(),
            step: 64 * 3,
            data: vec![128; 64 * 64 * 3],
            ..Default::default()
        };
        let send = |_| raw.publish(blank.clone()).unwrap();
        let answered =
            common::send_until_answered(send, &mut dets, |d| d.detections.is_empty(), 30);
        assert!(
            answered.await.is_some(),
            "the node never answered the blank frame:\n{}",
            node.log()
        );
        // Then one frame at a time, each answered before the next, so the node skips none.
        for (i, f) in frames.iter().enumerate() {
            let stamp = f.header.stamp.as_nanos();
            raw.publish(f.clone()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "frame {i} never answered:\n{}", node.log());
                let next = tokio::time::timeout(Duration::from_millis(200), dets.next()).await;
                if let Ok(Some(Ok((d, _)))) = next
                    && d.header.stamp.as_nanos() == stamp
                {
                    break;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let value = |d: &DiagnosticArray, key: &str| {
            d.status
                .get(1)
                .and_then(|s| s.values.iter().find(|kv| kv.key == key).map(|kv| kv.value.clone()))
        };
        let final_diag = loop {
            assert!(Instant::now() < deadline, "no final diagnostics:\n{}", node.log());
            let next = tokio::time::timeout(Duration::from_secs(1), diags.next()).await;
            let Ok(Some(Ok((d, _)))) = next else { continue };
            if value(&d, "coins_scored") == Some(last.total_coins.to_string()) {
                break d;
            }
        };
        // A live change of the monitor's settings shows on /diagnostics, not only at start.
        let set = me
            .client::<SetParametersRequest, SetParametersResponse>(
                "/coin_sorter/set_parameters",
                ("rcl_interfaces", "SetParameters"),
            )
            .unwrap();
        let request = SetParametersRequest {
            parameter: vec![raw::Parameter {
                name: "shift_warn_fraction".into(),
                value: ParameterValue::Double(0.55).into(),
            }],
        };
        let answer = common::call_until_answered(&set, request, Duration::from_secs(3)).await;
        let result = answer.and_then(|r| r.results.into_iter().next());
        assert!(result.is_some_and(|r| r.successful), "not set:\n{}", node.log());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "warn_fraction not updated:\n{}", node.log());
            let next = tokio::time::timeout(Duration::from_secs(1), diags.next()).await;
            let Ok(Some(Ok((d, _)))) = next else { continue };
            if value(&d, "warn_fraction").as_deref() == Some("0.55") {
                break;
            }
        }
        final_diag
    });
    assert!(node.stop(), "node did not exit cleanly:\n{}", node.log());

    let status = &diag.status[1];
    assert_eq!(status.level, last.level.diagnostic_level(), "{status:?}");
    let value = |k: &str| status.values.iter().find(|kv| kv.key == k).unwrap().value.clone();
    assert_eq!(value("state"), last.level.name());
    assert_eq!(value("window_coins"), last.coins.to_string());
    assert_eq!(value("window_flagged"), last.flagged.to_string());
    assert_eq!(value("coins_flagged"), last.total_flagged.to_string());

    let log = node.log();
    let logged: Vec<ShiftLevel> = log
        .lines()
        .filter_map(|l| {
            if l.contains("shift monitor WARN:") {
                Some(ShiftLevel::Warn)
            } else if l.contains("shift monitor ERROR:") {
                Some(ShiftLevel::Error)
            } else if l.contains("shift monitor back to OK:") {
                Some(ShiftLevel::Ok)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(logged, expected, "one log line per change of state:\n{log}");
    for l in log.lines().filter(|l| l.contains("shift monitor WARN:")) {
        assert!(l.contains("train --stage 2"), "WARN must say what to do: {l}");
    }
}
