//! The network a run starts from: a new one, optionally with ImageNet-style initial weights
//! (stage 1), or a stage-1 model's weights with its head narrowed or replaced (stage 2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tch::{Device, Tensor};

use crate::classify::metadata::ModelMetadata;
use crate::train::curves::{EpochStats, curves_path_for_model, read_csv};
use crate::train::fit::Model;
use crate::train::weights::{self, Head, HeadRule};

/// A trained model that stage 2 starts from: its metadata, VarStore weights and curves.
#[derive(Debug)]
pub struct Parent {
    /// The parent's TorchScript file.
    pub model: PathBuf,
    /// Its metadata (labels in output order).
    pub meta: ModelMetadata,
    /// Its weights file.
    pub weights_path: PathBuf,
    /// Its weights, on the CPU.
    pub weights: HashMap<String, Tensor>,
    /// First-stage width of its ResNet, read from the weights.
    pub base_width: i64,
    /// Its learning curves, empty when it has no curves file.
    pub curves: Vec<EpochStats>,
}

impl Parent {
    /// Reads the metadata, weights and curves beside the model file `model`. Fails, naming
    /// the file, when the metadata or weights are missing or unreadable; the weights file is
    /// the one the metadata names, or [`weights::weights_path_for_model`].
    pub fn load(model: &Path) -> Result<Self> {
        let meta_path = ModelMetadata::path_for_model(model);
        let meta = ModelMetadata::load(&meta_path)
            .with_context(|| format!("cannot use {} as the parent model", model.display()))?;
        let weights_path = match &meta.training.weights {
            Some(name) => model.with_file_name(name),
            None => weights::weights_path_for_model(model),
        };
        let weights = weights::read(&weights_path).with_context(|| {
            format!(
                "parent model {} needs its weights file {} (written by `train` since \
                 two-stage training)",
                model.display(),
                weights_path.display()
            )
        })?;
        let conv1 = weights
            .get("conv1.weight")
            .with_context(|| format!("{} has no conv1.weight", weights_path.display()))?;
        let base_width = conv1.size().first().copied().unwrap_or(0);
        let curves_path = curves_path_for_model(model);
        let curves = if curves_path.exists() { read_csv(&curves_path)? } else { Vec::new() };
        Ok(Self { model: model.to_path_buf(), meta, weights_path, weights, base_width, curves })
    }
}

/// Where a new run's weights come from.
#[derive(Debug)]
pub enum Start<'a> {
    /// Random initialisation.
    Scratch,
    /// Random initialisation, then every variable of this file (torchvision names); the head
    /// only when its shape fits.
    Init(&'a Path),
    /// A parent model's backbone, and its head as `head` says.
    Parent {
        /// The parent.
        parent: &'a Parent,
        /// What to do with its head.
        head: Head,
    },
}

/// Builds a [`Model`] of `base_width` with one output per label of `labels`: initialised from
/// `seed` (see [`Model::new`]), then loaded as `start` says.
pub fn build(
    start: &Start,
    base_width: i64,
    labels: &[String],
    seed: u64,
    device: Device,
) -> Result<Model> {
    let model = Model::new(base_width, labels.len(), seed, device)?;
    let report = match start {
        Start::Scratch => return Ok(model),
        Start::Init(path) => {
            let source = weights::read(path)?;
            weights::copy_into(&model.vs, &source, path, &HeadRule::CopyIfSameShape)?
        }
        Start::Parent { parent, head } => {
            let rule = head.rule(&parent.meta.labels, labels)?;
            weights::copy_into(&model.vs, &parent.weights, &parent.weights_path, &rule)?
        }
    };
    tracing::info!(
        copied = report.copied,
        head_left_random = ?report.head_not_copied,
        unused = report.unused.len(),
        "loaded initial weights"
    );
    Ok(model)
}
