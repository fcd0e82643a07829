//! `coin_sorter monitor fit`: give an existing model the monitor's statistics.
//!
//! Models exported before the monitor existed return logits only and carry no statistics.
//! This rebuilds the network from the weights beside the model, fits the statistics on the
//! set it was trained on, and rewrites the TorchScript file (now returning features too) and
//! the metadata, each atomically.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};

use crate::audit::predict::label_map;
use crate::classify::device::{self, DevicePref};
use crate::classify::metadata::ModelMetadata;
use crate::train::dataset::ImageSet;
use crate::train::export;
use crate::train::fit::Model;
use crate::train::split::split_by_group;
use crate::train::start::Parent;
use crate::train::weights::{self, HeadRule};

/// Options of `coin_sorter monitor fit`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitArgs {
    /// TorchScript model with its metadata (.json) and weights (.safetensors) beside it.
    #[arg(long, value_name = "FILE.pt")]
    pub model: PathBuf,
    /// Class-per-folder set the model was trained on.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Share of photos held out to set the thresholds, split by photo as `train` splits
    /// [default: train's default, 0.2].
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Seed of that split [default: the model's recorded training seed, which with the
    /// training run's fraction gives its own validation split].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the network runs: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Fits and stores the statistics; returns the metadata written.
pub fn run(args: &FitArgs) -> Result<ModelMetadata> {
    let parent = Parent::load(&args.model)?;
    let meta = parent.meta.clone();
    let device = device::select(args.device.parse::<DevicePref>()?)?;
    let mut set = ImageSet::load(&args.data, meta.input_size)
        .with_context(|| format!("cannot load {}", args.data.display()))?;
    let to_model = label_map(&set, &meta.labels)?;
    let model = Model::new(parent.base_width, meta.labels.len(), 0, device)?;
    weights::copy_into(&model.vs, &parent.weights, &parent.weights_path, &HeadRule::Copy)?;
    for s in &mut set.samples {
        s.label = to_model[s.label];
    }
    set.labels = meta.labels.clone();
    let seed = args.seed.unwrap_or(meta.data.seed);
    let fraction = args.val_fraction.unwrap_or(crate::train::run::DEFAULT_VAL_FRACTION);
    let split = split_by_group(set.keys(), fraction, seed)?;
    let (train_n, val_n) = (set.per_class(&split.train), set.per_class(&split.val));
    if !meta.data.train_per_class.is_empty()
        && (train_n != meta.data.train_per_class || val_n != meta.data.val_per_class)
    {
        tracing::warn!(
            "this split ({train_n:?} training, {val_n:?} validation crops per class) is not the \
             one the model was trained with ({:?} / {:?}): validation crops the model trained \
             on make the thresholds too strict. Give the training run's --data, \
             --val-fraction and --seed",
            meta.data.train_per_class,
            meta.data.val_per_class
        );
    }
    let present = set.per_class(&split.train);
    let missing: Vec<&str> = meta
        .labels
        .iter()
        .zip(&present)
        .filter(|(_, n)| **n == 0)
        .map(|(l, _)| l.as_str())
        .collect();
    ensure!(
        missing.is_empty(),
        "{} has no training crops of model labels {missing:?}",
        args.data.display()
    );
    let stats = export::monitor_stats(&model.net, &set, &split.train, &split.val, device)?;
    tracing::info!(
        train = stats.train_count,
        validation = stats.validation.count,
        components = stats.components.len(),
        "fitted the shift monitor on {}",
        args.data.display()
    );
    let Model { mut vs, net } = model;
    let module = export::trace(&mut vs, &net, meta.input_size)?;
    let written =
        ModelMetadata { feature_columns: net.feature_dim(), monitor: Some(stats), ..meta };
    let meta_path = ModelMetadata::path_for_model(&args.model);
    let old_meta = std::fs::read(&meta_path)
        .with_context(|| format!("cannot read {}", meta_path.display()))?;
    // The new model (with feature columns) and the new metadata only work together. The model
    // is written in full under a temporary name, the metadata is switched, then the model is
    // renamed into place; if any step fails, the old metadata is put back, so the pair on disk
    // is always the old one or the new one.
    let swapped = crate::fsutil::write_atomic_path(&args.model, |tmp| {
        module
            .save(tmp)
            .with_context(|| format!("cannot save TorchScript to {}", tmp.display()))?;
        written.save(&meta_path)
    });
    if let Err(e) = swapped {
        crate::fsutil::write_atomic(&meta_path, &old_meta).with_context(|| {
            format!(
                "{e:#}; and putting back the old metadata failed too: {} no longer matches \
                 {}",
                meta_path.display(),
                args.model.display()
            )
        })?;
        return Err(e.context(format!("model {} left as it was", args.model.display())));
    }
    Ok(written)
}
