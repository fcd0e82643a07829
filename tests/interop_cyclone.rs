//! Interop with a DDS implementation nobody here wrote: a Python peer on Cyclone DDS publishes
//! `sensor_msgs::msg::dds_::Image_` on `rt/camera/image_raw` and reads the node's
//! `coin_sorter::msg::dds_::CoinDetectionArray_` and `vision_msgs::msg::dds_::Detection2DArray_`,
//! as a ROS 2 node on rmw_cyclonedds would.

mod common;

use std::path::Path;

use coin_sorter::classify::device::DevicePref;
use coin_sorter::classify::model::Classifier;
use coin_sorter::decide::BinTable;
use coin_sorter::locate::DEFAULT_LOCATE;
use coin_sorter::nodes::sorter::PARAMS;
use coin_sorter::params::ParamSet;
use coin_sorter::pipeline::{Frame, Pipeline};
use common::NodeProc;

const NODE: &str = env!("CARGO_BIN_EXE_coin_sorter_node");

#[test]
fn cyclone_dds_peer_sends_an_image_and_reads_the_detections() {
    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let domain = common::domain_id(7);
    let stamp_ns = 1_765_432_100_987_654_321i64;
    let frame = common::photo_frame(2, stamp_ns);
    let raw = dir.path().join("frame.rgb");
    std::fs::write(&raw, &frame.data).unwrap();

    let args = ["--ros-args".to_string(), "-p".into(), format!("model_path:={}", model.display())];
    let node = NodeProc::start(NODE, "sorter", domain, &args, dir.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/peers/cyclone_peer.py"))
        .args(["--domain", &domain.to_string(), "--raw", raw.to_str().unwrap()])
        .args(["--width", &frame.width.to_string(), "--height", &frame.height.to_string()])
        .args(["--encoding", "rgb8", "--stamp-ns", &stamp_ns.to_string(), "--timeout", "60"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer failed: {}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["stamp_ns"].as_i64(), Some(stamp_ns));
    assert_eq!(got["frame_id"], "cyclone_camera");

    // The same frame through the same pipeline in-process is what the node must have sent.
    let defaults = ParamSet::defaults(PARAMS);
    let bins = BinTable::parse(
        &defaults.strings("bin_table"),
        "reject",
        defaults.double("confidence_threshold"),
    )
    .unwrap();
    let classifier = Classifier::load(&model, DevicePref::Cpu).unwrap();
    let mut pipeline = Pipeline::new(classifier, DEFAULT_LOCATE, bins).unwrap();
    // The node's defaults: monitor and tracking on.
    pipeline.with_shift(&coin_sorter::monitor::check::DEFAULT_SHIFT).unwrap();
    pipeline.with_tracking(Some(coin_sorter::track::DEFAULT_TRACK)).unwrap();
    let want = pipeline.process(&Frame::Raw(frame)).unwrap().detections.detections;
    let dets = got["detections"].as_array().unwrap();
    assert_eq!(dets.len(), 3, "scene 2 holds three coins");
    assert_eq!(dets.len(), want.len());
    for (i, (d, w)) in dets.iter().zip(&want).enumerate() {
        assert_eq!(d["coin_id"].as_u64(), Some(i as u64 + 1));
        assert_eq!(d["label"].as_str(), Some(w.label.as_str()));
        assert_eq!(d["bin"].as_str(), Some(w.bin.as_str()));
        assert_eq!(d["rejected"].as_bool(), Some(w.rejected));
        assert_eq!(d["out_of_distribution"].as_bool(), Some(w.out_of_distribution));
        let close = |k: &str, v: f32| (d[k].as_f64().unwrap() - v as f64).abs() < 1e-4;
        assert!(close("x", w.x) && close("y", w.y) && close("radius", w.radius), "{d} vs {w:?}");
        assert!(close("confidence", w.confidence), "{d} vs {w:?}");
        assert!(close("shift_score", w.shift_score), "{d} vs {w:?}");
    }
    // The same coins as vision_msgs/Detection2DArray, decoded with the standard type names.
    let vision = got["vision"].as_array().unwrap();
    assert_eq!(vision.len(), want.len());
    for (v, w) in vision.iter().zip(&want) {
        assert_eq!(v["id"], w.coin_id.to_string());
        assert_eq!(v["frame_id"], "cyclone_camera");
        assert_eq!(v["class_id"], serde_json::json!([w.label]));
        let near = |a: &serde_json::Value, b: f32| (a.as_f64().unwrap() - b as f64).abs() < 1e-4;
        assert!(near(&v["score"][0], w.confidence), "{v}");
        assert!(near(&v["center"][0], w.x) && near(&v["center"][1], w.y), "{v}");
        assert!(near(&v["size"][0], 2.0 * w.radius) && near(&v["size"][1], 2.0 * w.radius));
        assert_eq!(v["covariance_len"], 36);
    }
}
