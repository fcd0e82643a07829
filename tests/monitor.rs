//! The domain-shift monitor end to end at tiny scale: statistics written at export and by
//! `monitor fit`, per-coin flags in the pipeline's detections, the stream state, and the
//! `monitor study` report checked against scores computed here.

mod common;

use std::path::Path;

use coin_sorter::classify::device::DevicePref;
use coin_sorter::classify::metadata::ModelMetadata;
use coin_sorter::classify::model::Classifier;
use coin_sorter::decide::BinTable;
use coin_sorter::locate::DEFAULT_LOCATE;
use coin_sorter::monitor::check::{DEFAULT_SHIFT, ShiftSettings};
use coin_sorter::monitor::refit::{self, FitArgs};
use coin_sorter::monitor::score::{ScoreKind, ShiftScorer};
use coin_sorter::monitor::study::{self, StudyArgs};
use coin_sorter::pipeline::{Frame, Pipeline, ShiftStatus};
use coin_sorter::train::dataset::ImageSet;

fn bins(labels: &[String]) -> BinTable {
    let entries: Vec<String> = labels.iter().map(|l| format!("{l}:bin_{l}")).collect();
    BinTable::parse(&entries, "reject", 0.0).unwrap()
}

/// Mahalanobis scores of every crop of a class-per-folder set, computed here from the model's
/// outputs and the statistics in its metadata.
fn scores(classifier: &Classifier, dir: &Path) -> Vec<f32> {
    let meta = classifier.metadata();
    let scorer = ShiftScorer::new(meta.monitor.clone().unwrap()).unwrap();
    let set = ImageSet::load(dir, meta.input_size).unwrap();
    set.samples
        .iter()
        .map(|s| {
            let p = classifier.classify_rgb(s.rgb()).unwrap().remove(0);
            scorer.mahalanobis(&p.features).unwrap()
        })
        .collect()
}

#[test]
fn training_writes_statistics_and_monitor_fit_rewrites_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let meta_path = ModelMetadata::path_for_model(&model);
    let trained = ModelMetadata::load(&meta_path).unwrap();
    let stats = trained.monitor.clone().expect("training stores monitor statistics");
    // Two photos of two crops per class, half the photos held out: 16 and 16.
    assert_eq!((stats.train_count, stats.validation.count), (16, 16));
    assert_eq!(trained.feature_columns, 8 * 32);
    assert_eq!(stats.components.len(), 16 - 8, "at most one per crop beyond the class means");

    let stripped = ModelMetadata { monitor: None, ..trained.clone() };
    stripped.save(&meta_path).unwrap();
    let mut args = FitArgs {
        model: model.clone(),
        data: dir.path().join("tiny_set"),
        // The tiny model's split; its recorded seed is the default.
        val_fraction: Some(0.5),
        seed: None,
        device: "cpu".into(),
    };
    let refitted = refit::run(&args).unwrap().monitor.unwrap();
    assert_eq!(refitted.train_count, 16);
    assert_eq!(refitted.validation.count, 16);
    for (a, b) in refitted.class_means.iter().flatten().zip(stats.class_means.iter().flatten()) {
        assert!((a - b).abs() < 1e-3, "class means differ: {a} vs {b}");
    }
    for (a, b) in refitted.validation.energy.iter().zip(&stats.validation.energy) {
        assert!((a - b).abs() < 1e-3, "validation energies differ: {a} vs {b}");
    }
    let reloaded = Classifier::load(&model, DevicePref::Cpu).unwrap();
    assert_eq!(reloaded.metadata().monitor.as_ref().unwrap().train_count, 16);

    args.data = dir.path().join("missing");
    let err = format!("{:#}", refit::run(&args).unwrap_err());
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn flagged_coins_go_to_the_reject_bin_and_the_stream_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let classifier = Classifier::load(&model, DevicePref::Cpu).unwrap();
    let labels = classifier.metadata().labels.clone();
    let mut pipeline = Pipeline::new(classifier, DEFAULT_LOCATE, bins(&labels)).unwrap();
    // At the median of validation crops, about half of any coins are flagged.
    let settings = ShiftSettings { quantile: 0.5, ..DEFAULT_SHIFT };
    assert_eq!(pipeline.with_shift(&settings).unwrap(), ShiftStatus::On);
    let (mut coins, mut flagged, mut changes) = (0u64, 0u64, Vec::new());
    for i in 0..8 {
        let out = pipeline.process(&Frame::Raw(common::photo_frame(i, i as i64))).unwrap();
        for d in &out.detections.detections {
            coins += 1;
            assert_eq!(d.out_of_distribution, d.shift_score > 1.0, "{d:?}");
            if d.out_of_distribution {
                flagged += 1;
                assert!(d.rejected && d.bin == "reject", "{d:?}");
            } else {
                assert_eq!(d.bin, format!("bin_{}", d.label), "{d:?}");
            }
        }
        let state = out.shift.unwrap();
        assert_eq!((state.total_coins, state.total_flagged), (coins, flagged));
        changes.extend(out.shift_change);
    }
    assert!(coins >= 10, "only {coins} coins in eight photos");
    assert!(flagged > 0, "no coin of another camera above the validation median");
    if let Some(first) = changes.first() {
        assert_ne!(*first, coin_sorter::monitor::stream::ShiftLevel::Ok, "starts OK");
    }

    let off = ShiftSettings { kind: None, ..DEFAULT_SHIFT };
    assert_eq!(pipeline.with_shift(&off).unwrap(), ShiftStatus::Off);
    let out = pipeline.process(&Frame::Raw(common::photo_frame(0, 99))).unwrap();
    assert!(out.shift.is_none());
    assert!(out.detections.detections.iter().all(|d| !d.out_of_distribution));
    assert!(out.detections.detections.iter().all(|d| d.shift_score == 0.0));
}

#[test]
fn study_auroc_matches_pairs_counted_here_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let inside = dir.path().join("inside");
    common::coins_subset(&inside, &["1e", "2e"], 3, 3);
    let shifted = dir.path().join("photos");
    coin_sorter::dataset::crops::run(&coin_sorter::dataset::crops::CropsArgs::labelme(
        common::shared_data().join("coins-photos"),
        shifted.clone(),
    ))
    .unwrap();
    let args = StudyArgs {
        model: model.clone(),
        in_domain: inside.clone(),
        shifted: shifted.clone(),
        out: dir.path().join("study"),
        quantile: 0.99,
        orders: 50,
        seed: 3,
        device: "cpu".into(),
    };
    let r = study::run(&args).unwrap();
    assert_eq!((r.in_domain_crops, r.shifted_crops), (18, 53));
    assert_eq!(r.kinds.len(), 3);
    assert_eq!(r.switches.len(), 3);
    assert!(r.switches.iter().all(|w| w.orders == 50));

    let classifier = Classifier::load(&model, DevicePref::Cpu).unwrap();
    let (a, b) = (scores(&classifier, &inside), scores(&classifier, &shifted));
    let mut pairs = 0.0;
    for x in &a {
        for y in &b {
            pairs += if y > x {
                1.0
            } else if y == x {
                0.5
            } else {
                0.0
            };
        }
    }
    let want = pairs / (a.len() * b.len()) as f64;
    let maha = r.kinds.iter().find(|k| k.kind == ScoreKind::Mahalanobis).unwrap();
    assert!((maha.auroc - want).abs() < 1e-9, "report {} vs pairs {want}", maha.auroc);
    assert_eq!(maha.in_domain_flagged.n, 18);
    assert_eq!(maha.shifted_flagged.n, 53);
    let above = b.iter().filter(|&&s| s > maha.threshold).count();
    assert_eq!(maha.shifted_flagged.successes, above);

    let md = std::fs::read_to_string(&r.markdown).unwrap();
    assert!(md.contains("| mahalanobis |") && md.contains("| max_softmax |"), "{md}");
    let png = image::open(&r.roc_png).unwrap();
    assert_eq!((png.width(), png.height()), coin_sorter::plots::ROC_SIZE);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&r.json).unwrap()).unwrap();
    assert_eq!(json["shifted_crops"], 53);
}
