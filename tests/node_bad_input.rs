//! Bad input never stops the node: each kind is logged once (rate-limited), counted in
//! /diagnostics, and the next good frame is still classified. Bad models stop start-up.

mod common;

use std::time::{Duration, Instant};

use coin_sorter::msgs::coin_sorter::CoinDetectionArray;
use coin_sorter::msgs::diagnostic_msgs::DiagnosticArray;
use coin_sorter::msgs::sensor_msgs::{CompressedImage, Image};
use coin_sorter::params::RosArgs;
use coin_sorter::pipeline::Frame;
use coin_sorter::transport::{RosNode, qos};
use common::NodeProc;
use futures::StreamExt;

const NODE: &str = env!("CARGO_BIN_EXE_coin_sorter_node");

/// Stamps at and above this mark the probe frames that prove the path before counting.
const PROBE_STAMP: i64 = 1_600_000_000_000_000_000;

/// Sends `frame` on the topic its kind belongs to.
fn publish(
    raw: &ros2_client::Publisher<Image>,
    comp: &ros2_client::Publisher<CompressedImage>,
    frame: &Frame,
) {
    match frame {
        Frame::Raw(m) => raw.publish(m.clone()).unwrap(),
        Frame::Compressed(m) => comp.publish(m.clone()).unwrap(),
    }
}

/// A good frame for the same topic as `bad`: scene 2 as rgb8, or its JPEG file as is.
fn probe_like(bad: &Frame, stamp_ns: i64) -> Frame {
    match bad {
        Frame::Raw(_) => Frame::Raw(common::photo_frame(2, stamp_ns)),
        Frame::Compressed(_) => {
            let (path, _) = &common::photo_scenes()[2];
            let mut m = CompressedImage {
                format: "jpeg".into(),
                data: std::fs::read(path).unwrap(),
                ..Default::default()
            };
            m.header.stamp = coin_sorter::msgs::std_msgs::Time::from_nanos(stamp_ns);
            m.header.frame_id = "camera".into();
            Frame::Compressed(m)
        }
    }
}

/// Publishes `bad` three times and then one good frame to a running node, and checks the
/// counter `rejected_<kind>` goes to exactly 3, the log has exactly one line for it, and the
/// good frame is answered.
fn bad_frames_are_counted_logged_once_and_skipped(slot: u16, kind: &str, bad: Frame) {
    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let domain = common::domain_id(slot);
    let args = common::node_args(
        &model,
        &[
            "image_qos_reliability:=reliable",
            "image_qos_depth:=10",
            "diagnostics_period:=0.1",
            "log_throttle_period:=600.0",
        ],
    );
    let mut node = NodeProc::start(NODE, "sorter", domain, &args, dir.path());
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut me = RosNode::in_domain("bad_input_test", &RosArgs::default(), domain).unwrap();
        let raw = me.publisher::<Image>("/camera/image_raw", qos::replay()).unwrap();
        let comp =
            me.publisher::<CompressedImage>("/camera/image_raw/compressed", qos::replay()).unwrap();
        let dets = me
            .subscription::<CoinDetectionArray>("/coin_sorter/detections", qos::output())
            .unwrap();
        let diags = me.subscription::<DiagnosticArray>("/diagnostics", qos::output()).unwrap();
        let mut dets = std::pin::pin!(dets.async_stream());
        let mut diags = std::pin::pin!(diags.async_stream());
        let n =
            me.wait_for_subscribers("/camera/image_raw", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(n, 1, "the node never subscribed; log:\n{}", node.log());
        me.wait_for_subscribers("/camera/image_raw/compressed", 1, Duration::from_secs(10))
            .await
            .unwrap();
        // Our writer seeing the node's reader does not mean the node's reader has seen our
        // writer yet; a frame sent in that gap is dropped. A good frame on the bad frame's own
        // topic, repeated until answered, proves the path before anything is counted.
        let send = |attempt| publish(&raw, &comp, &probe_like(&bad, PROBE_STAMP + attempt));
        let is_probe = |d: &CoinDetectionArray| d.header.stamp.as_nanos() >= PROBE_STAMP;
        let answered = common::send_until_answered(send, &mut dets, is_probe, 15).await.is_some();
        assert!(answered, "the node never answered a good probe frame; log:\n{}", node.log());
        let counter = format!("rejected_{kind}");
        for sent in 1..=3u64 {
            publish(&raw, &comp, &bad);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "{counter} never reached {sent}; log:\n{}",
                    node.log()
                );
                let next = tokio::time::timeout(Duration::from_secs(1), diags.next()).await;
                let Ok(Some(Ok((d, _)))) = next else { continue };
                let value = d.status[0]
                    .values
                    .iter()
                    .find(|kv| kv.key == counter)
                    .map(|kv| kv.value.clone());
                if value.as_deref() == Some(sent.to_string().as_str()) {
                    assert_eq!(d.status[0].level, 1, "bad frames should put diagnostics at WARN");
                    break;
                }
            }
        }
        let good = common::photo_frame(2, 1_700_000_000_123_456_789);
        raw.publish(good).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            assert!(
                Instant::now() < deadline,
                "no detections for the good frame; log:\n{}",
                node.log()
            );
            if let Ok(Some(Ok((d, _)))) =
                tokio::time::timeout(Duration::from_secs(1), dets.next()).await
                && d.header.stamp.as_nanos() == 1_700_000_000_123_456_789
            {
                break d;
            }
        };
        assert_eq!(answer.header.stamp.as_nanos(), 1_700_000_000_123_456_789);
        assert_eq!(answer.header.frame_id, "camera");
        assert_eq!(answer.detections.len(), 3, "scene 2 holds three coins");
        // The monitor's status sits beside the pipeline's and has scored every coin found.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no domain shift status; log:\n{}", node.log());
            let next = tokio::time::timeout(Duration::from_secs(1), diags.next()).await;
            let Ok(Some(Ok((d, _)))) = next else { continue };
            let value = |i: usize, key: &str| {
                d.status.get(i)?.values.iter().find(|kv| kv.key == key).map(|kv| kv.value.clone())
            };
            let detected = value(0, "coins_detected");
            if detected.as_deref().is_none_or(|n| n == "0") {
                continue;
            }
            assert_eq!(d.status.len(), 2);
            assert!(d.status[1].name.ends_with("domain shift"), "{:?}", d.status[1]);
            assert_eq!(value(1, "monitor").as_deref(), Some("on"));
            if value(1, "coins_scored") == detected {
                break;
            }
        }
    });
    assert!(node.stop(), "node did not exit cleanly; log:\n{}", node.log());
    let log = node.log();
    let lines: Vec<&str> =
        log.lines().filter(|l| l.contains("dropped") && l.contains("frame")).collect();
    assert_eq!(lines.len(), 1, "expected one log line for three bad frames:\n{log}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("waiting for the next frame"), "{}", lines[0]);
}

#[test]
fn image_data_shorter_than_step_times_height() {
    let mut m = common::photo_frame(0, 1);
    m.data.truncate(m.data.len() - 10);
    bad_frames_are_counted_logged_once_and_skipped(0, "data_too_short", Frame::Raw(m));
}

#[test]
fn unknown_encoding() {
    let mut m = common::photo_frame(0, 2);
    m.encoding = "yuv422_yuy2".into();
    bad_frames_are_counted_logged_once_and_skipped(1, "unknown_encoding", Frame::Raw(m));
}

#[test]
fn corrupt_jpeg() {
    let path = common::shared_data().join("coins-photos/images");
    let mut files: Vec<_> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut data = std::fs::read(&files[0]).unwrap();
    data.truncate(data.len() * 3 / 5);
    let m = CompressedImage { format: "jpeg".into(), data, ..Default::default() };
    bad_frames_are_counted_logged_once_and_skipped(2, "corrupt_compressed", Frame::Compressed(m));
}

#[test]
fn zero_size_image() {
    let m = Image { encoding: "rgb8".into(), ..Default::default() };
    bad_frames_are_counted_logged_once_and_skipped(3, "zero_size", Frame::Raw(m));
}

#[test]
fn missing_model_stops_start_up_naming_the_file() {
    let out = std::process::Command::new(NODE)
        .args(["--ros-args", "-p", "model_path:=/nonexistent/coins.pt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/coins.pt"), "{err}");
}

#[test]
fn model_with_fewer_labels_than_outputs_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let meta_path = model.with_extension("json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["labels"].as_array_mut().unwrap().pop();
    let start = |meta: &serde_json::Value| {
        std::fs::write(&meta_path, meta.to_string()).unwrap();
        let out = std::process::Command::new(NODE)
            .args(["--ros-args", "-p", &format!("model_path:={}", model.display())])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The monitor statistics still have a mean per original class: the metadata contradicts
    // itself before the model is even run.
    let err = start(&meta);
    assert!(err.contains(&meta_path.display().to_string()), "{err}");
    assert!(err.contains("8 class means for 7 labels"), "{err}");
    // Without them, the model's output is what disagrees.
    meta.as_object_mut().unwrap().remove("monitor");
    let err = start(&meta);
    assert!(err.contains(&model.display().to_string()), "{err}");
    assert!(err.contains("7 labels"), "{err}");
}
