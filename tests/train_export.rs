//! Training on real coin crops, export to TorchScript, and the split and seed guarantees.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use coin_sorter::classify::metadata::ModelMetadata;
use coin_sorter::train::augment::Level;
use coin_sorter::train::dataset::ImageSet;
use coin_sorter::train::fit::{FitConfig, Fitted, Model, fit};
use coin_sorter::train::optim::Optim;
use coin_sorter::train::sampler::Balance;
use coin_sorter::train::split::{Split, split_by_group};
use coin_sorter::train::{TrainArgs, export, run};
use tch::nn::ModuleT;
use tch::{Device, Tensor};

const COINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/coins-mobile");
const CLASSES: [&str; 3] = ["1c", "2e", "50c"];
const SIDE: u32 = 32;

/// `fit` seeds libtorch's global generator, so fits running at once in one process would
/// draw from each other's stream.
static TORCH_RNG: Mutex<()> = Mutex::new(());

/// The first three crops of the first two photos of each of [`CLASSES`] as a
/// class-per-folder set: 18 real images, 6 photos.
fn small_set() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::coins_subset(dir.path(), &CLASSES, 2, 3);
    dir
}

fn tiny_config(seed: u64) -> FitConfig {
    FitConfig {
        stage: 1,
        epochs: 2,
        batch_size: 4,
        lr: 2e-3,
        seed,
        max_steps: Some(3),
        optim: Optim::Adamw,
        augment: Level::Full,
        balance: Balance::None,
        patience: None,
        stop_after: None,
        checkpoint: None,
    }
}

fn tiny_fit(set: &ImageSet, split: &Split, seed: u64) -> Fitted {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let model = Model::new(8, set.labels.len(), seed, Device::Cpu).unwrap();
    fit(model, set, split, &tiny_config(seed), Device::Cpu, None, |_| Ok(())).unwrap()
}

#[test]
fn exported_torchscript_matches_the_varstore_model_for_any_batch() {
    let data = small_set();
    let set = ImageSet::load(data.path(), SIDE).unwrap();
    let split = split_by_group(set.keys(), 0.5, 7).unwrap();
    let mut fitted = tiny_fit(&set, &split, 1);
    assert_eq!(fitted.steps, 3);

    let out = data.path().join("models/tiny.pt");
    export::save_torchscript(&mut fitted.vs, &fitted.net, SIDE, &out).unwrap();
    let labels: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    let monitor =
        export::monitor_stats(&fitted.net, &set, &split.train, &split.val, Device::Cpu).unwrap();
    assert_eq!(monitor.feature_dim, 8 * 32, "ResNet-50 features are 32 times the base width");
    assert_eq!(monitor.train_count, split.train.len());
    assert_eq!(monitor.validation.count, split.val.len());
    assert_eq!(monitor.class_means.len(), CLASSES.len());
    let written = export::write_metadata(
        &out,
        &fitted.net,
        &set.labels,
        SIDE,
        Default::default(),
        Default::default(),
        Some(monitor),
    )
    .unwrap();
    assert_eq!(written.feature_columns, 8 * 32);

    let module = tch::CModule::load(&out).unwrap();
    let meta = ModelMetadata::load(&ModelMetadata::path_for_model(&out)).unwrap();
    assert_eq!(meta.labels, labels);
    assert_eq!(meta.arch, "resnet50");
    assert_eq!(meta.input_size, SIDE);

    // Real crops as input: no draw from libtorch's generator, which another test may be seeding.
    let mean = coin_sorter::classify::metadata::IMAGENET_MEAN;
    let std = coin_sorter::classify::metadata::IMAGENET_STD;
    for n in [1i64, 7] {
        let idx: Vec<usize> = (0..n as usize).collect();
        let plain = None::<(Level, &mut rand_chacha::ChaCha8Rng)>;
        let (xs, _) = set.batch(&idx, mean, std, plain, Device::Cpu).unwrap();
        let want = tch::no_grad(|| fitted.net.forward_t(&xs, false));
        let want_features = tch::no_grad(|| fitted.net.features_t(&xs, false));
        let out = module.forward_ts(&[&xs]).unwrap();
        assert_eq!(out.size(), [n, 3 + 8 * 32], "logits, then features");
        let (got, features) = (out.narrow(1, 0, 3), out.narrow(1, 3, 8 * 32));
        let diff = f64::try_from((got - &want).abs().max()).unwrap();
        assert!(diff < 1e-4, "batch {n}: TorchScript differs from VarStore model by {diff}");
        let diff = f64::try_from((&features - &want_features).abs().max()).unwrap();
        assert!(diff < 1e-4, "batch {n}: features differ from the VarStore model by {diff}");
        let spread = f64::try_from(want.abs().max()).unwrap();
        assert!(spread > 1e-3, "batch {n}: logits are all near zero ({spread})");
    }
}

#[test]
fn split_keeps_every_photo_on_one_side_and_repeats_for_a_seed() {
    let set = ImageSet::load(Path::new(COINS), 8).unwrap();
    assert_eq!(set.labels, ["10c", "1c", "1e", "20c", "2c", "2e", "50c", "5c"]);
    assert_eq!(set.samples.len(), 1246);
    let split = split_by_group(set.keys(), 0.2, 42).unwrap();
    assert_eq!(split.train.len() + split.val.len(), set.samples.len());

    let groups = |idx: &[usize]| -> HashSet<String> {
        idx.iter().map(|&i| set.samples[i].group.clone()).collect()
    };
    let (train_groups, val_groups) = (groups(&split.train), groups(&split.val));
    assert!(train_groups.is_disjoint(&val_groups));
    assert_eq!(train_groups.len() + val_groups.len(), 120);
    assert!((20..=28).contains(&val_groups.len()), "{} validation photos", val_groups.len());
    assert!(set.per_class(&split.val).iter().all(|&n| n > 0));

    assert_eq!(split_by_group(set.keys(), 0.2, 42).unwrap(), split);
    assert_ne!(split_by_group(set.keys(), 0.2, 43).unwrap(), split);
}

fn weights(f: &Fitted) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = f.vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn same_seed_and_data_give_identical_weights() {
    let data = small_set();
    let set = ImageSet::load(data.path(), SIDE).unwrap();
    let split = split_by_group(set.keys(), 0.5, 7).unwrap();
    let a = weights(&tiny_fit(&set, &split, 3));
    let b = weights(&tiny_fit(&set, &split, 3));
    let c = weights(&tiny_fit(&set, &split, 4));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs between runs with the same seed");
    }
    assert!(a.iter().zip(&c).any(|((_, x), (_, y))| !x.equal(y)), "seed has no effect");
}

#[test]
fn run_writes_model_metadata_and_curves() {
    let data = small_set();
    let out = data.path().join("out/coin.pt");
    let args = TrainArgs {
        out: out.clone(),
        input_size: SIDE,
        epochs: 2,
        batch_size: 4,
        val_fraction: 0.5,
        base_width: 8,
        ..TrainArgs::new(data.path().to_path_buf())
    };
    let report = {
        let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        run(&args).unwrap()
    };
    assert_eq!(report.curves.len(), 2);
    // 9 training images in batches of 4: two steps per epoch, the lone ninth is dropped.
    assert_eq!(report.steps, 4);

    let meta = ModelMetadata::load(&report.metadata).unwrap();
    assert_eq!(meta.labels, CLASSES);
    assert_eq!(meta.data.train_per_class, [3, 3, 3]);
    assert_eq!(meta.data.val_per_class, [3, 3, 3]);
    assert_eq!((meta.data.train_groups, meta.data.val_groups), (3, 3));
    assert_eq!(meta.data.epochs, 2);
    assert_eq!(meta.data.val_accuracy, report.best_val_accuracy);

    let csv = std::fs::read_to_string(&report.curves_csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], coin_sorter::train::curves::CSV_HEADER);
    assert_eq!(lines.len(), 3);
    assert!(lines[2].starts_with("1,2,"));
    assert!(tch::CModule::load(&report.model).is_ok());
}
