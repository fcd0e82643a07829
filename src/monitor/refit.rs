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
    /// Share of photos held out to set the thresholds, split by photo as `train` splits.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Seed of that split; the model's training seed gives its own validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    let model = Model::new(parent.base_width, meta.labels.len(), args.seed, device)?;
    weights::copy_into(&model.vs, &parent.weights, &parent.weights_path, &HeadRule::Copy)?;
    for s in &mut set.samples {
        s.label = to_model[s.label];
    }
    set.labels = meta.labels.clone();
    let split = split_by_group(set.keys(), args.val_fraction, args.seed)?;
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
    export::save_torchscript(&mut vs, &net, meta.input_size, &args.model)?;
    let written =
        ModelMetadata { feature_columns: net.feature_dim(), monitor: Some(stats), ..meta };
    written.save(&ModelMetadata::path_for_model(&args.model))?;
    Ok(written)
}
