//! Two-stage training at tiny scale on real coin crops: stage 2 narrows the head and keeps the
//! frozen part, the curves hold one row per epoch per stage, a paused run resumes into the
//! uninterrupted one, a plateau stops early, and `--init` loads torchvision-named weights.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coin_sorter::classify::metadata::ModelMetadata;
use coin_sorter::train::fit::Stop;
use coin_sorter::train::resnet::Part;
use coin_sorter::train::start::{self, Parent, Start};
use coin_sorter::train::weights::{self, Head};
use coin_sorter::train::{TrainArgs, TrainReport, run};
use tch::{Device, Kind, Tensor};

const SIDE: u32 = 32;
const WIDTH: i64 = 8;
const SOURCE_CLASSES: [&str; 4] = ["1c", "2e", "50c", "5c"];
const TARGET_CLASSES: [&str; 2] = ["2e", "50c"];

/// Training seeds libtorch's global generator, so runs in one process must not overlap.
static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Tiny-scale options: 32 px, base width 8, batches of 4, half the photos held out.
fn tiny_args(data: &Path, out: PathBuf, epochs: usize) -> TrainArgs {
    TrainArgs {
        out,
        input_size: SIDE,
        base_width: WIDTH,
        epochs,
        batch_size: 4,
        val_fraction: 0.5,
        seed: 11,
        ..TrainArgs::new(data.to_path_buf())
    }
}

fn train(args: &TrainArgs) -> TrainReport {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    run(args).unwrap()
}

/// Three crops of two photos of each of `classes`: `3 * 2 * classes.len()` real images.
fn subset(dir: &Path, classes: &[&str]) -> PathBuf {
    common::coins_subset(dir, classes, 2, 3);
    dir.to_path_buf()
}

fn stage1(dir: &Path) -> TrainReport {
    let data = subset(&dir.join("source"), &SOURCE_CLASSES);
    train(&tiny_args(&data, dir.join("stage1/coin.pt"), 2))
}

fn csv_rows(path: &Path) -> Vec<(u8, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(coin_sorter::train::curves::CSV_HEADER));
    lines
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().parse().unwrap(), f.next().unwrap().parse().unwrap())
        })
        .collect()
}

#[test]
fn stage_two_narrows_the_head_keeps_the_frozen_part_and_extends_the_curves() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = stage1(dir.path());
    assert_eq!(s1.labels, SOURCE_CLASSES);
    assert_eq!(s1.curves.len(), 2);

    let target = subset(&dir.path().join("target"), &TARGET_CLASSES);
    let mut args = tiny_args(&target, dir.path().join("stage2/coin.pt"), 2);
    args.stage = 2;
    args.from = Some(s1.model.clone());
    args.freeze_until = Some(Part::Layer3);
    let s2 = train(&args);

    assert_eq!(s2.head, Some(Head::Narrow));
    assert_eq!(s2.labels, TARGET_CLASSES);
    let meta = ModelMetadata::load(&s2.metadata).unwrap();
    assert_eq!(meta.labels, TARGET_CLASSES);
    assert_eq!(meta.training.stage, 2);
    assert_eq!(meta.training.parent.as_deref(), Some(s1.model.to_str().unwrap()));
    let module = tch::CModule::load(&s2.model).unwrap();
    let out = module.forward_ts(&[Tensor::zeros([3, 3, 32, 32], (Kind::Float, Device::Cpu))]);
    // Two logits, then the features the shift monitor reads.
    assert_eq!(meta.feature_columns, 256);
    assert_eq!(out.unwrap().size(), [3, 2 + 256]);
    let monitor = meta.monitor.as_ref().unwrap();
    assert_eq!(monitor.class_means.len(), 2, "target statistics, one mean per target class");

    // Stage 1's two rows, then stage 2's two, in one file beside the stage-2 model.
    assert_eq!(csv_rows(&s2.curves_csv), [(1, 1), (1, 2), (2, 1), (2, 2)]);
    assert_eq!(csv_rows(&s1.curves_csv), [(1, 1), (1, 2)]);
    for f in [&s2.curves_png, &s2.confusion_png, &s2.report] {
        assert!(std::fs::metadata(f).unwrap().len() > 100, "{} is empty", f.display());
    }
    let report = std::fs::read_to_string(&s2.report).unwrap();
    for label in TARGET_CLASSES {
        assert!(report.contains(&format!("| {label} |")), "no row for {label}:\n{report}");
    }

    let before = weights::read(&s1.weights).unwrap();
    let after = weights::read(&s2.weights).unwrap();
    let frozen = |name: &str| Part::of_variable(name).is_some_and(|p| p <= Part::Layer3);
    let mut layer4_changed = false;
    for (name, value) in &after {
        if frozen(name) {
            assert!(value.equal(&before[name]), "frozen {name} changed in stage 2");
        } else if name.starts_with("layer4.") && name.ends_with("weight") {
            layer4_changed |= !value.equal(&before[name]);
        }
    }
    assert!(layer4_changed, "stage 2 did not train layer4");
    assert_eq!(after["fc.weight"].size()[0], 2);
}

#[test]
fn narrowing_takes_the_parent_head_rows_of_the_target_labels() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = stage1(dir.path());
    let parent = Parent::load(&s1.model).unwrap();
    assert_eq!(parent.base_width, WIDTH);
    let labels: Vec<String> = ["50c", "1c"].iter().map(|s| s.to_string()).collect();
    let model = {
        let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        let start = Start::Parent { parent: &parent, head: Head::Narrow };
        start::build(&start, WIDTH, &labels, 3, Device::Cpu).unwrap()
    };
    let vars = model.vs.variables();
    // Parent labels are ["1c", "2e", "50c", "5c"]: rows 2 then 0.
    let rows = Tensor::from_slice(&[2i64, 0]);
    for name in ["fc.weight", "fc.bias"] {
        let want = parent.weights[name].index_select(0, &rows);
        assert!(vars[name].equal(&want), "{name} is not the parent's rows 2 and 0");
    }
    assert!(vars["layer2.0.conv1.weight"].equal(&parent.weights["layer2.0.conv1.weight"]));

    let err = Head::choose(Some(Head::Narrow), &parent.meta.labels, &["2c".to_string()]);
    assert!(err.unwrap_err().to_string().contains("2c"));
    let replace = Head::choose(None, &parent.meta.labels, &["2c".to_string()]).unwrap();
    assert_eq!(replace, Head::Replace);
}

fn sorted_weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = weights::read(path).unwrap().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_paused_run_resumes_into_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset(&dir.path().join("source"), &SOURCE_CLASSES);
    let whole = train(&tiny_args(&data, dir.path().join("whole/coin.pt"), 3));
    assert_eq!(whole.stop, Stop::Completed);
    assert_eq!(whole.curves.len(), 3);

    let mut args = tiny_args(&data, dir.path().join("parts/coin.pt"), 3);
    args.stop_after_epoch = Some(1);
    let first = train(&args);
    assert_eq!(first.stop, Stop::Paused);
    assert_eq!(first.curves.len(), 1);
    assert!(first.checkpoint.join("state.json").is_file());

    args.stop_after_epoch = None;
    args.resume = Some(first.checkpoint.clone());
    let rest = train(&args);
    assert_eq!(rest.stop, Stop::Completed);
    assert_eq!(rest.steps, whole.steps);
    assert_eq!(rest.best_epoch, whole.best_epoch);
    let figures = |r: &TrainReport| -> Vec<[f64; 4]> {
        r.curves.iter().map(|e| [e.train_loss, e.train_acc, e.val_loss, e.val_acc]).collect()
    };
    assert_eq!(figures(&rest), figures(&whole));
    let (a, b) = (sorted_weights(&whole.weights), sorted_weights(&rest.weights));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs between the resumed and the uninterrupted run");
    }

    // A resume with other settings is refused, naming what differs.
    args.lr = Some(0.5);
    let err = {
        let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        run(&args).unwrap_err()
    };
    assert!(format!("{err:#}").contains("lr"), "{err:#}");
}

#[test]
fn a_plateau_stops_training_early() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset(&dir.path().join("source"), &SOURCE_CLASSES);
    let mut args = tiny_args(&data, dir.path().join("flat/coin.pt"), 6);
    // Everything but the head frozen (BatchNorm statistics too) and a learning rate too small
    // to move it: validation accuracy cannot change after the first epoch.
    args.freeze_until = Some(Part::Layer4);
    args.lr = Some(1e-12);
    args.patience = Some(2);
    let r = train(&args);
    assert_eq!(r.stop, Stop::Patience);
    assert_eq!(r.curves.len(), 3);
    assert_eq!(r.best_epoch, 1);
}

#[test]
fn init_loads_torchvision_named_weights_and_skips_a_head_of_another_size() {
    let dir = tempfile::tempdir().unwrap();
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    // An "ImageNet" checkpoint: torchvision's names, 1000 classes, and a tensor torchvision
    // has that the network does not.
    let imagenet = coin_sorter::train::fit::Model::new(WIDTH, 1000, 99, Device::Cpu).unwrap();
    let mut named: Vec<(String, Tensor)> = imagenet.vs.variables().into_iter().collect();
    named.push(("bn1.num_batches_tracked".into(), Tensor::from_slice(&[7i64])));
    let file = dir.path().join("imagenet.safetensors");
    weights::save(named, &file).unwrap();

    let labels: Vec<String> = TARGET_CLASSES.iter().map(|s| s.to_string()).collect();
    let model = start::build(&Start::Init(&file), WIDTH, &labels, 5, Device::Cpu).unwrap();
    let source: HashMap<String, Tensor> = weights::read(&file).unwrap();
    for (name, value) in model.vs.variables() {
        if name.starts_with("fc.") {
            assert_eq!(value.size()[0], 2, "{name}");
        } else {
            assert!(value.equal(&source[&name]), "{name} was not loaded from --init");
        }
    }

    let data = subset(&dir.path().join("source"), &TARGET_CLASSES);
    let mut args = tiny_args(&data, dir.path().join("init/coin.pt"), 1);
    args.init = Some(file);
    args.max_steps = Some(1);
    assert_eq!(run(&args).unwrap().steps, 1);

    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a weights file").unwrap();
    args.init = Some(junk.clone());
    let err = format!("{:#}", run(&args).unwrap_err());
    assert!(err.contains(junk.to_str().unwrap()), "{err}");
}
