//! `eval` on the shared recordings, photos and crops with a tiny model: the two recordings of
//! the same photos give the same coins, the output bag re-reads with our reader and with the
//! Python `mcap` + `mcap-ros2-support` packages, and a truncated bag keeps its partial figures.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use coin_sorter::bag::BagReader;
use coin_sorter::bag::cdr::decode_cdr;
use coin_sorter::eval::{self, COMMANDS_TOPIC, DETECTIONS_TOPIC, EvalArgs, EvalReport};
use coin_sorter::msgs::coin_sorter::{CoinDetection, CoinDetectionArray, SortCommand};
use coin_sorter::msgs::sensor_msgs::Image;

/// One tiny model for every test of this file (training seeds libtorch's global generator).
fn model() -> &'static Path {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = common::tiny_model(dir.path());
        (dir, path)
    });
    path
}

/// Tracking off: every frame of the shared bags is a different photo.
const PHOTO_BAGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/photo_bags.yaml");

fn eval_bag(bag: &Path, out: &Path) -> EvalReport {
    let mut args = EvalArgs::bag(bag.to_path_buf(), out.to_path_buf());
    args.model = Some(model().to_path_buf());
    args.params_file = Some(PHOTO_BAGS.into());
    eval::run(&args).unwrap()
}

/// Detections of the output bag by frame stamp.
fn detections_by_stamp(bag: &Path) -> BTreeMap<i64, CoinDetectionArray> {
    let reader = BagReader::open(bag).unwrap();
    let topics = [DETECTIONS_TOPIC.to_owned()];
    reader
        .messages(Some(&topics))
        .unwrap()
        .map(|m| {
            let d: CoinDetectionArray = decode_cdr(&m.unwrap().data).unwrap();
            (d.header.stamp.as_nanos(), d)
        })
        .collect()
}

/// Both recordings hold the same 30 photos at 640 px, one as raw bgr8 and one re-encoded as
/// JPEG. JPEG's loss moves a Hough circle a little: measured at most 8.8 px of centre on a
/// 75 px coin (12% of the radius) and 5.2 px of radius (7%). The test requires the same number
/// of coins in every frame, centres within 15% of the radius and radii within 10%. Labels may
/// differ where the model is unsure; the figures are compared separately.
const CENTRE_TOLERANCE: f32 = 0.15;
const RADIUS_TOLERANCE: f32 = 0.10;
/// Coins whose circle JPEG's loss may move further, or make appear or vanish: the Hough vote
/// can tip to another circle. Measured with the default search at 320 px: both recordings
/// find 53 coins; two circles differ, one with the same centre on a coin's inner ring (54 px)
/// instead of its rim (83 px), one with a radius 12% larger. (At 640 px the JPEG recording
/// found 53 to the raw one's 52, and one circle sat 30 px off, on the same coin.)
const MAY_DIFFER: usize = 2;

#[test]
fn both_recordings_give_the_same_coins_and_the_figures_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::shared_data().join("bags");
    let raw = eval_bag(&data.join("bgr8-mcap"), &dir.path().join("raw"));
    let jpeg = eval_bag(&data.join("jpeg-sqlite3"), &dir.path().join("jpeg"));
    for r in [&raw, &jpeg] {
        assert_eq!(r.frames, 30, "{}", r.input.display());
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        assert_eq!(r.unlabelled_frames, 0);
        assert_eq!(r.scorer.frames, 30);
        assert_eq!(r.scorer.labelled, 53);
        assert!(r.input_error.is_none());
        let s = r.scores.as_ref().unwrap();
        assert_eq!(s.detection_recall.n, 53);
        assert_eq!(s.accuracy.n, r.scorer.matched);
        assert_eq!(s.accuracy.successes, r.scorer.correct());
        let confusion_total: usize = r.scorer.confusion.iter().flatten().sum();
        assert_eq!(confusion_total, r.scorer.matched);
        assert_eq!(r.latency["total"].n, 30);
        assert!(r.fps > 0.0);
    }
    assert_eq!(raw.topic.as_deref(), Some("/camera/image_raw"));
    assert_eq!(jpeg.topic.as_deref(), Some("/camera/image_raw/compressed"));
    assert!(raw.scorer.matched >= 50, "{} of 53 found", raw.scorer.matched);

    let a = detections_by_stamp(raw.out_bag.as_ref().unwrap());
    let b = detections_by_stamp(jpeg.out_bag.as_ref().unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a.len(), 30);
    let mut agree = 0;
    for (stamp, da) in &a {
        let db = &b[stamp];
        // Coins come in the detector's order, which a small shift can swap: pair by distance.
        for x in &da.detections {
            if db.detections.is_empty() {
                eprintln!("frame {stamp}: {x:?} has no counterpart");
                continue;
            }
            let dist = |y: &&CoinDetection| ((x.x - y.x).powi(2) + (x.y - y.y).powi(2)).sqrt();
            let y = db.detections.iter().min_by(|p, q| dist(p).total_cmp(&dist(q))).unwrap();
            let close = dist(&y) <= CENTRE_TOLERANCE * x.radius
                && (x.radius - y.radius).abs() <= RADIUS_TOLERANCE * x.radius;
            if close {
                agree += 1;
            } else {
                eprintln!("frame {stamp}: {x:?} has no counterpart; nearest {y:?}");
            }
        }
    }
    let total: usize = a.values().map(|d| d.detections.len()).sum();
    let total_jpeg: usize = b.values().map(|d| d.detections.len()).sum();
    assert!(agree + MAY_DIFFER >= total, "only {agree} of {total} coins agree");
    assert!(total.abs_diff(total_jpeg) <= MAY_DIFFER, "{total} vs {total_jpeg} coins");
    let md = std::fs::read_to_string(&raw.report_md).unwrap();
    assert!(md.contains(&format!("{}/53", raw.scorer.matched)), "{md}");
    assert!(dir.path().join("raw/confusion.png").is_file());
    assert!(dir.path().join("raw/report.json").is_file());
}

#[test]
fn output_bag_reads_back_with_our_reader_and_with_python_mcap() {
    let dir = tempfile::tempdir().unwrap();
    let bag = common::shared_data().join("bags/bgr8-mcap");
    let r = eval_bag(&bag, &dir.path().join("out"));
    let out = r.out_bag.clone().unwrap();
    let coins: usize = detections_by_stamp(&out).values().map(|d| d.detections.len()).sum();
    assert_eq!(r.sort_commands, coins, "tracking off: one command per detection");
    assert!(r.shift.contains(&format!("of {coins} coins unlike the training data")), "{}", r.shift);
    let rejected: usize = detections_by_stamp(&out)
        .values()
        .flat_map(|d| &d.detections)
        .filter(|d| d.rejected)
        .count();
    assert_eq!(r.low_confidence + r.unfamiliar, rejected);

    let reader = BagReader::open(&out).unwrap();
    let counts: BTreeMap<String, u64> =
        reader.info().topics.iter().map(|t| (t.name.clone(), t.message_count)).collect();
    let want: BTreeMap<String, u64> = [
        ("/camera/image_raw".to_owned(), 30),
        (DETECTIONS_TOPIC.to_owned(), 30),
        (COMMANDS_TOPIC.to_owned(), coins as u64),
    ]
    .into();
    assert_eq!(counts, want);
    let mut images = 0;
    let mut first_size = None;
    for m in reader.messages(None).unwrap() {
        let m = m.unwrap();
        match m.topic.as_str() {
            "/camera/image_raw" => {
                let img: Image = decode_cdr(&m.data).unwrap();
                assert_eq!(img.data.len(), (img.step * img.height) as usize);
                first_size.get_or_insert([img.width, img.height]);
                images += 1;
            }
            DETECTIONS_TOPIC => drop(decode_cdr::<CoinDetectionArray>(&m.data).unwrap()),
            _ => drop(decode_cdr::<SortCommand>(&m.data).unwrap()),
        }
    }
    assert_eq!(images, 30);

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/read_mcap.py");
    let run = std::process::Command::new(python).arg(script).arg(&out).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    for (topic, n) in &want {
        assert_eq!(v["counts"][topic].as_u64(), Some(*n), "{topic}: {v}");
    }
    assert_eq!(v["schemas"][DETECTIONS_TOPIC], "coin_sorter/msg/CoinDetectionArray");
    assert_eq!(v["schemas"]["/camera/image_raw"], "sensor_msgs/msg/Image");
    let first = detections_by_stamp(&out).into_values().next().unwrap();
    let py = &v["first"][DETECTIONS_TOPIC];
    assert_eq!(py["stamp_ns"].as_i64(), Some(first.header.stamp.as_nanos()));
    assert_eq!(py["log_time"].as_i64(), Some(first.header.stamp.as_nanos()));
    let labels: Vec<String> = first.detections.iter().map(|d| d.label.clone()).collect();
    assert_eq!(py["labels"], serde_json::json!(labels));
    assert_eq!(v["first"]["/camera/image_raw"]["size"], serde_json::json!(first_size.unwrap()));
}

#[test]
fn a_truncated_bag_is_an_error_naming_it_with_the_figures_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::shared_data().join("bags/bgr8-mcap");
    let file = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mcap"))
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let mut args = EvalArgs::bag(cut.clone(), dir.path().join("out"));
    args.truth = Some(src.join("ground_truth.jsonl"));
    args.model = Some(model().to_path_buf());
    let r = eval::run(&args).unwrap();
    let err = r.input_error.clone().expect("a truncated bag must report an error");
    assert!(err.contains("cut.mcap"), "{err}");
    assert!(r.frames > 5 && r.frames < 30, "{} frames", r.frames);
    assert_eq!(r.scorer.frames, r.frames);
    let md = std::fs::read_to_string(&r.report_md).unwrap();
    assert!(md.contains("stopped early"), "{md}");
    assert!(md.contains(&format!("| frames read | {} |", r.frames)), "{md}");
}

#[test]
fn photos_and_crop_sets_evaluate_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = EvalArgs::bag(PathBuf::new(), dir.path().join("photos"));
    args.bag = None;
    args.labelme = Some(common::shared_data().join("coins-photos"));
    args.model = Some(model().to_path_buf());
    let r = eval::run(&args).unwrap();
    assert_eq!((r.frames, r.scorer.labelled), (30, 53));
    assert!(r.scorer.matched >= 50, "{} of 53 found", r.scorer.matched);
    let counts: BTreeMap<String, u64> = BagReader::open(r.out_bag.as_ref().unwrap())
        .unwrap()
        .info()
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.message_count))
        .collect();
    assert_eq!(counts[eval::PHOTOS_TOPIC], 30);

    let crops = dir.path().join("crops");
    common::coins_subset(&crops, &["1c", "2e"], 2, 3);
    args.labelme = None;
    args.images = Some(crops);
    args.out = dir.path().join("crops_out");
    let r = eval::run(&args).unwrap();
    assert_eq!((r.frames, r.scorer.labelled, r.scorer.matched), (12, 12, 12));
    assert!(r.out_bag.is_none());
    let s = r.scores.unwrap();
    assert_eq!(s.accuracy.n, 12);
    assert_eq!(s.classes.iter().map(|c| c.labelled).sum::<usize>(), 12);
}

#[test]
fn a_bare_storage_file_finds_its_truth_and_a_topic_of_another_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = common::shared_data().join("bags/bgr8-mcap");
    let file = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mcap"))
        .unwrap();
    let mut args = EvalArgs::bag(file, dir.path().join("bare"));
    args.model = Some(model().to_path_buf());
    args.no_bag = true;
    let r = eval::run(&args).unwrap();
    assert_eq!(r.truth, Some(folder.join("ground_truth.jsonl")));
    assert_eq!((r.frames, r.scorer.labelled), (30, 53));
    assert!(r.out_bag.is_none());

    let talker = common::shared_data().join("rosbag2-samples/mcap/talker");
    let mut args = EvalArgs::bag(talker.clone(), dir.path().join("talker"));
    args.model = Some(model().to_path_buf());
    let err = format!("{:#}", eval::run(&args).unwrap_err());
    assert!(err.contains("no sensor_msgs Image or CompressedImage topic"), "{err}");
    args.topic = Some("/topic".into());
    let err = format!("{:#}", eval::run(&args).unwrap_err());
    assert!(err.contains("carries std_msgs/msg/String"), "{err}");
}
