//! The metadata file that travels beside every exported TorchScript model.
//!
//! Training writes it; the node, `eval` and `audit` read it. It is the single place that says
//! which label each output index means and how a crop must be prepared for the model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::monitor::stats::MonitorStats;

/// Default side of the square model input in pixels.
pub const DEFAULT_INPUT_SIZE: u32 = 112;
/// ImageNet channel means (RGB, 0..1 scale); used unless training says otherwise.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, 0..1 scale).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Half the side of a coin crop, in coin radii. The `coins-mobile` crops frame each coin with
/// about 10% margin, so crops cut from camera frames use the same framing.
pub const DEFAULT_CROP_SCALE: f32 = 1.1;

/// What the training data looked like, kept for audits and for the people reading the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Root folder of the class-per-folder image set the model was trained on.
    pub source: String,
    /// Number of training images per label, in label order.
    pub train_per_class: Vec<usize>,
    /// Number of validation images per label, in label order.
    pub val_per_class: Vec<usize>,
    /// Number of distinct source photos (groups) on the training side.
    pub train_groups: usize,
    /// Number of distinct source photos (groups) on the validation side.
    pub val_groups: usize,
    /// Best validation accuracy reached, 0..1.
    pub val_accuracy: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Random seed of the run.
    pub seed: u64,
}

/// How a model came about: its training stage and what it started from. Models exported before
/// two-stage training have none of it in their file and read as stage 1 without a parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// 1: trained on the source set; 2: fine-tuned from `parent` on a target set.
    pub stage: u8,
    /// Path of the model this one was fine-tuned from (stage 2).
    #[serde(default)]
    pub parent: Option<String>,
    /// File name of the VarStore weights beside the model (safetensors), which a later stage
    /// starts from.
    #[serde(default)]
    pub weights: Option<String>,
    /// First-stage width of the ResNet (64 for ResNet-50).
    #[serde(default)]
    pub base_width: Option<i64>,
}

impl Default for TrainingRecord {
    fn default() -> Self {
        Self { stage: 1, parent: None, weights: None, base_width: None }
    }
}

/// Metadata of one exported model, stored as JSON next to the TorchScript file.
///
/// Invariant (checked by [`ModelMetadata::validate`]): `labels` is non-empty and unique, the
/// model's output has exactly `labels.len()` columns, `input_size > 0`, `std` has no zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Network architecture, e.g. `resnet50`.
    pub arch: String,
    /// Class label of each output index.
    pub labels: Vec<String>,
    /// Side of the square RGB input in pixels.
    pub input_size: u32,
    /// Per-channel mean subtracted after scaling pixels to 0..1 (RGB order).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean (RGB order).
    pub std: [f32; 3],
    /// Half the side of the crop cut around a detected coin, in coin radii.
    #[serde(default = "default_crop_scale")]
    pub crop_scale: f32,
    /// What the model was trained on.
    #[serde(default)]
    pub data: DataSummary,
    /// Training stage and origin.
    #[serde(default)]
    pub training: TrainingRecord,
    /// Columns after the logits in the model's output: its penultimate features, which the
    /// shift monitor reads (0: the model outputs logits only, as models exported before the
    /// monitor did). TorchScript methods return one tensor, so both travel in one.
    #[serde(default)]
    pub feature_columns: usize,
    /// What the shift monitor needs about the training data; absent in models exported
    /// before the monitor existed, which then run without it.
    #[serde(default)]
    pub monitor: Option<MonitorStats>,
}

fn default_crop_scale() -> f32 {
    DEFAULT_CROP_SCALE
}

impl ModelMetadata {
    /// Path of the metadata file that belongs to a model file: `model.pt` → `model.json`.
    pub fn path_for_model(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    /// Reads and validates the metadata at `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_bounded(path)
            .with_context(|| format!("cannot read model metadata {}", path.display()))?;
        let meta: Self = serde_json::from_str(&text)
            .with_context(|| format!("model metadata {} is not valid JSON", path.display()))?;
        meta.validate()
            .with_context(|| format!("model metadata {} is inconsistent", path.display()))?;
        Ok(meta)
    }

    /// Writes the metadata to `path` atomically (temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    /// Checks the invariants listed on the type.
    pub fn validate(&self) -> Result<()> {
        if self.labels.is_empty() {
            bail!("labels is empty");
        }
        let mut seen = std::collections::HashSet::new();
        for l in &self.labels {
            if !seen.insert(l) {
                bail!("label {l:?} appears twice");
            }
        }
        crate::params::checked_side("input_size", self.input_size)?;
        if self.std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            bail!("std {:?} has a zero or non-finite value", self.std);
        }
        if !(self.crop_scale.is_finite() && self.crop_scale > 0.0) {
            bail!("crop_scale {} must be positive", self.crop_scale);
        }
        if let Some(m) = &self.monitor {
            m.validate(self.labels.len())?;
            if m.feature_dim != self.feature_columns {
                bail!(
                    "monitor statistics are for {} features but the model gives {}",
                    m.feature_dim,
                    self.feature_columns
                );
            }
        }
        Ok(())
    }
}

/// Metadata files larger than this are refused. A model's is a few MB, most of it the shift
/// monitor's statistics; a device file or a runaway file would otherwise be read forever.
const MAX_METADATA_BYTES: u64 = 256 << 20;

/// The text of the regular file `path`, of at most [`MAX_METADATA_BYTES`]. A FIFO or device
/// is refused before it is opened, as opening a FIFO waits for a writer.
fn read_bounded(path: &Path) -> Result<String> {
    use std::io::Read;
    let kind = std::fs::metadata(path)?;
    if !kind.is_file() {
        bail!("it is not a regular file");
    }
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_METADATA_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_METADATA_BYTES {
        bail!("it is larger than {} MiB", MAX_METADATA_BYTES >> 20);
    }
    Ok(text)
}
