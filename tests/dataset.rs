//! `dataset crops` from LabelMe photos and from both recorded bags, checked against the
//! annotations and ground truth read independently here; `dataset capture` from a live topic
//! fed by the bag player over DDS (inside the private network namespace).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coin_sorter::dataset::capture::{RECORD_FILE, read_records};
use coin_sorter::dataset::crops::{self, CropsArgs, DEFAULT_SIZE};
use coin_sorter::params::RosArgs;
use coin_sorter::score::read_ground_truth;
use coin_sorter::train::dataset::group_id;
use coin_sorter::transport::RosNode;
use common::NodeProc;

const CLI: &str = env!("CARGO_BIN_EXE_coin_sorter");
const PLAYER: &str = env!("CARGO_BIN_EXE_coin_sorter_player");

fn count_labels<'a>(labels: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in labels {
        *m.entry(l.to_owned()).or_default() += 1;
    }
    m
}

/// Every file under `out`, as (class folder, file name), sorted.
fn files_under(out: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for class in std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()) {
        if !class.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&class).unwrap().map(|e| e.unwrap().path()) {
            let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
            v.push((name(&class), name(&f)));
        }
    }
    v.sort();
    v
}

fn assert_square_jpeg(path: &Path, side: u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..2], [0xFF, 0xD8], "{} is not a JPEG", path.display());
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (side, side), "{}", path.display());
}

#[test]
fn labelme_crops_match_the_annotations_one_file_per_coin() {
    let scenes = common::photo_scenes();
    let want = count_labels(scenes.iter().flat_map(|(_, c)| c.iter().map(|c| c.label.as_str())));
    assert_eq!(want.values().sum::<usize>(), 53);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("crops");
    let labelme = common::shared_data().join("coins-photos");
    let s = crops::run(&CropsArgs::labelme(labelme, out.clone())).unwrap();
    assert_eq!(s.per_class, want);
    assert_eq!(s.sources, scenes.iter().filter(|(_, c)| !c.is_empty()).count());
    assert_eq!(s.files.len(), 53);
    assert_eq!(files_under(&out).len(), 53);

    // Coin k of scene S is `<label of its k-th shape>/S_k.jpg`, grouped back to S.
    for (image, coins) in &scenes {
        let stem = image.file_stem().unwrap().to_str().unwrap();
        for (k, c) in coins.iter().enumerate() {
            let f = out.join(&c.label).join(format!("{stem}_{k}.jpg"));
            assert!(s.files.contains(&f), "{} missing", f.display());
            assert_eq!(group_id(&f), stem);
        }
    }
    assert_square_jpeg(&s.files[0], DEFAULT_SIZE);

    // Training reads the result directly: eight classes, 53 images.
    let set = coin_sorter::train::dataset::ImageSet::load(&out, 32).unwrap();
    assert_eq!(set.samples.len(), 53);
    assert_eq!(set.labels, want.keys().cloned().collect::<Vec<_>>());
}

#[test]
fn bag_crops_match_the_ground_truth_for_both_storage_formats() {
    for (bag, size) in [("bgr8-mcap", 64u32), ("jpeg-sqlite3", 96)] {
        let bag = common::shared_data().join("bags").join(bag);
        let truth = read_ground_truth(&bag.join("ground_truth.jsonl")).unwrap();
        let want = count_labels(truth.iter().flat_map(|f| f.coins.iter().map(|c| &*c.label)));

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("crops");
        let mut args = CropsArgs::bag(bag.clone(), out.clone());
        args.size = size;
        let s = crops::run(&args).unwrap();
        assert_eq!(s.per_class, want, "{}", bag.display());
        assert_eq!(s.sources, truth.iter().filter(|f| !f.coins.is_empty()).count());
        let groups: BTreeSet<String> = s.files.iter().map(|f| group_id(f)).collect();
        let sources: BTreeSet<String> =
            truth.iter().filter(|f| !f.coins.is_empty()).map(|f| f.source.clone()).collect();
        assert_eq!(groups, sources, "{}", bag.display());
        assert_square_jpeg(&s.files[0], size);
    }
}

#[test]
fn crops_refuse_bad_inputs_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_folder");
    let err = crops::run(&CropsArgs::labelme(missing.clone(), dir.path().join("o"))).unwrap_err();
    assert!(format!("{err:#}").contains(missing.to_str().unwrap()), "{err:#}");

    // An annotation whose label would climb out of the output folder.
    let ann = dir.path().join("evil");
    std::fs::create_dir_all(&ann).unwrap();
    let src = common::photo_scenes()[0].0.clone();
    std::fs::copy(&src, ann.join("p.jpg")).unwrap();
    let json = serde_json::json!({
        "imagePath": "p.jpg",
        "shapes": [{"label": "../x", "shape_type": "polygon",
                    "points": [[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0]]}]
    });
    std::fs::write(ann.join("p.json"), json.to_string()).unwrap();
    let out = dir.path().join("o2");
    let err = crops::run(&CropsArgs::labelme(ann, out.clone())).unwrap_err();
    assert!(format!("{err:#}").contains("../x"), "{err:#}");
    assert!(!dir.path().join("x").exists());

    let bag = common::shared_data().join("bags/bgr8-mcap");
    let mut args = CropsArgs::bag(bag, dir.path().join("o3"));
    args.truth = Some(dir.path().join("absent.jsonl"));
    let err = crops::run(&args).unwrap_err();
    assert!(format!("{err:#}").contains("absent.jsonl"), "{err:#}");
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn capture_saves_every_coin_the_pipeline_finds_on_a_live_topic() {
    common::require_private_network();
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let labels = coin_sorter::classify::metadata::ModelMetadata::load(
        &coin_sorter::classify::metadata::ModelMetadata::path_for_model(&model),
    )
    .unwrap()
    .labels;
    let bag = common::shared_data().join("bags/bgr8-mcap");
    let stamps: BTreeSet<i64> = read_ground_truth(&bag.join("ground_truth.jsonl"))
        .unwrap()
        .iter()
        .map(|f| f.stamp_ns)
        .collect();
    let domain = common::domain_id(0);
    let out = dir.path().join("captured");
    let mut capture = NodeProc::start(
        CLI,
        "capture",
        domain,
        &strings(&[
            "dataset",
            "capture",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-frames",
            "30",
            "--timeout",
            "45",
            "--reliability",
            "reliable",
            // Every frame of the bag may wait while a loaded machine classifies.
            "--depth",
            "30",
            "--device",
            "cpu",
        ]),
        dir.path(),
    );
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let me = RosNode::in_domain("capture_test", &RosArgs::default(), domain).unwrap();
        let n =
            me.wait_for_subscribers("/camera/image_raw", 1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(n, 1, "capture never subscribed:\n{}", capture.log());
        me.shutdown().await;
    });
    let mut player =
        NodeProc::start(PLAYER, "player", domain, &strings(&[bag.to_str().unwrap()]), dir.path());
    let deadline = Instant::now() + Duration::from_secs(150);
    let exited = |p: &mut NodeProc| matches!(p.child.try_wait(), Ok(Some(_)));
    while Instant::now() < deadline && !(exited(&mut capture) && exited(&mut player)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(capture.stop(), "capture failed:\n{}", capture.log());
    assert!(player.stop(), "player failed:\n{}", player.log());

    let records = read_records(&out.join(RECORD_FILE)).unwrap();
    let files = files_under(&out);
    assert_eq!(records.len(), files.len());
    let frames: BTreeSet<i64> = records.iter().map(|r| r.stamp_ns).collect();
    assert!(frames.is_subset(&stamps), "a crop names a stamp not in the bag");
    for r in &records {
        assert!(labels.contains(&r.label), "{} is not a model label", r.label);
        let name = format!("{}_{}.jpg", r.stamp_ns, r.k);
        assert_eq!(r.file, PathBuf::from(&r.label).join(&name));
        assert!((0.0..=1.0).contains(&r.confidence));
        assert_square_jpeg(&out.join(&r.file), DEFAULT_SIZE);
    }
    // The coins of each frame as the node's own locate step finds them, computed here. Frames
    // sent before the capture's reader has matched the player's writer are lost, as for any
    // volatile DDS reader, and a loaded machine loses more of them: so every frame captured
    // must hold exactly its coins, and most frames must arrive.
    let mut expected = BTreeMap::new();
    let reader = coin_sorter::bag::BagReader::open(&bag).unwrap();
    for m in reader.messages(None).unwrap() {
        let m = m.unwrap();
        let img: coin_sorter::msgs::sensor_msgs::Image =
            coin_sorter::bag::cdr::decode_cdr(&m.data).unwrap();
        let stamp = img.header.stamp.as_nanos();
        let rgb = coin_sorter::pipeline::Frame::Raw(img).decode().unwrap();
        let n = coin_sorter::locate::locate(&rgb, &coin_sorter::locate::DEFAULT_LOCATE).unwrap();
        expected.insert(stamp, n.len());
    }
    assert_eq!(expected.values().sum::<usize>(), 53);
    let mut got = BTreeMap::new();
    for r in &records {
        *got.entry(r.stamp_ns).or_insert(0usize) += 1;
    }
    for (stamp, n) in &got {
        assert_eq!(*n, expected[stamp], "frame {stamp}");
    }
    assert!(got.len() >= 10, "only {} of 30 frames captured:\n{}", got.len(), capture.log());
}

#[test]
fn split_keeps_photos_whole_unless_asked_to_split_by_crop() {
    use coin_sorter::dataset::split::{self, SplitArgs, SplitBy};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("set");
    common::coins_subset(&data, &["1c", "2e", "50c"], 4, 3);
    let args = |by, out: &str| SplitArgs {
        data: data.clone(),
        out: dir.path().join(out),
        test_fraction: 0.25,
        by,
        classes: vec!["2e".into(), "50c".into()],
        seed: 3,
    };
    let groups =
        |files: &[PathBuf]| -> BTreeSet<String> { files.iter().map(|f| group_id(f)).collect() };

    let s = split::run(&args(SplitBy::Photo, "photo")).unwrap();
    assert_eq!(s.labels, ["2e", "50c"]);
    // 4 photos of 3 crops per class: one photo of each class is tested.
    assert_eq!((s.train.len(), s.test.len()), (18, 6));
    assert!(groups(&s.train).is_disjoint(&groups(&s.test)));
    assert_eq!(files_under(&dir.path().join("photo/test")).len(), 6);

    let s = split::run(&args(SplitBy::Crop, "crop")).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (18, 6));
    assert!(!groups(&s.train).is_disjoint(&groups(&s.test)), "no photo on both sides");

    let err = split::run(&args(SplitBy::Photo, "photo")).unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    let mut bad = args(SplitBy::Photo, "bad");
    bad.classes = vec!["3e".into()];
    assert!(split::run(&bad).unwrap_err().to_string().contains("\"3e\""));
}

#[test]
fn crop_writer_numbers_on_for_a_repeated_source_and_refuses_circles_off_the_image() {
    use coin_sorter::dataset::LabelledCircle;
    use coin_sorter::dataset::writer::CropWriter;
    use coin_sorter::locate::Circle;
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = common::load_rgb(&common::photo_scenes()[0].0, 320);
    let coin =
        |x: f32, y: f32, r: f32| LabelledCircle { label: "1e".into(), circle: Circle { x, y, r } };
    let mut w = CropWriter::new(dir.path(), 32, 1.1).unwrap();
    let a = w.write(&img, &[coin(100.0, 100.0, 30.0)], "scene_a").unwrap();
    let b = w.write(&img, &[coin(150.0, 120.0, 30.0), coin(60.0, 60.0, 20.0)], "scene_a").unwrap();
    let names = |v: &[PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    };
    assert_eq!(names(&a), ["scene_a_0.jpg"]);
    assert_eq!(names(&b), ["scene_a_1.jpg", "scene_a_2.jpg"]);
    assert_eq!((w.total(), w.sources()), (3, 1));
    for bad in [coin(-5.0, 10.0, 8.0), coin(10.0, 10.0, 0.0), coin(10.0, 10.0, f32::NAN)] {
        let err = w.write(&img, &[bad], "scene_b").unwrap_err();
        assert!(err.to_string().contains("scene_b"), "{err}");
    }
    assert_eq!(w.total(), 3);
    assert!(CropWriter::new(dir.path(), 100_000, 1.1).is_err());
}
