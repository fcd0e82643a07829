//! Running the exported TorchScript classifier on a batch of crops.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tch::{CModule, Device, Kind, Tensor};

use super::device::{self, DevicePref};
use super::metadata::ModelMetadata;
use super::preprocess::normalise_rgb;

/// The class scores of one crop.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index into the model's labels of the most probable class.
    pub class: usize,
    /// Softmax probability of that class.
    pub confidence: f32,
    /// Softmax probabilities of every class, in label order.
    pub probs: Vec<f32>,
}

/// A loaded TorchScript model and its metadata. Invariant: the model's output has one column
/// per label (checked at load time with a warm-up batch).
pub struct Classifier {
    module: CModule,
    meta: ModelMetadata,
    device: Device,
    path: PathBuf,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("path", &self.path)
            .field("device", &self.device)
            .field("labels", &self.meta.labels)
            .finish()
    }
}

impl Classifier {
    /// Loads `model` and the metadata beside it, on the preferred device, and runs one warm-up
    /// batch. Every error names the file that was wrong.
    pub fn load(model: &Path, pref: DevicePref) -> Result<Self> {
        if model.is_dir() {
            bail!("model file {} is a folder, not a TorchScript file", model.display());
        }
        if !model.is_file() {
            bail!("model file {} does not exist", model.display());
        }
        let meta_path = ModelMetadata::path_for_model(model);
        let meta = ModelMetadata::load(&meta_path)?;
        let device = device::select(pref)?;
        let mut module = CModule::load_on_device(model, device)
            .with_context(|| format!("cannot load TorchScript model {}", model.display()))?;
        module.set_eval();
        let this = Self { module, meta, device, path: model.to_path_buf() };
        let s = this.meta.input_size as i64;
        let out = this
            .forward(&Tensor::zeros([1, 3, s, s], (Kind::Float, device)))
            .with_context(|| format!("model {} fails on a {s}x{s} input", model.display()))?;
        let classes = out.size().last().copied().unwrap_or(0);
        if out.dim() != 2 || classes != this.meta.labels.len() as i64 {
            bail!(
                "model {} outputs shape {:?} but its metadata {} lists {} labels",
                model.display(),
                out.size(),
                meta_path.display(),
                this.meta.labels.len()
            );
        }
        Ok(this)
    }

    /// The model's metadata (labels, input size, normalisation).
    pub fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        Ok(self.module.forward_ts(&[input])?)
    }

    /// Classifies crops given as packed RGB bytes of `input_size`² pixels each, in one batch.
    pub fn classify_rgb(&self, crops: &[u8]) -> Result<Vec<Prediction>> {
        let s = self.meta.input_size as usize;
        let per = s * s * 3;
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        if !crops.len().is_multiple_of(per) {
            bail!(
                "crop buffer of {} bytes is not a whole number of {s}x{s} RGB crops",
                crops.len()
            );
        }
        let n = crops.len() / per;
        let mut planes = Vec::with_capacity(crops.len());
        for crop in crops.chunks_exact(per) {
            normalise_rgb(crop, self.meta.mean, self.meta.std, &mut planes);
        }
        let input = Tensor::from_slice(&planes)
            .view([n as i64, 3, s as i64, s as i64])
            .to_device(self.device);
        let probs = self.forward(&input)?.softmax(-1, Kind::Float).to_device(Device::Cpu);
        let flat: Vec<f32> = Vec::try_from(probs.flatten(0, -1))?;
        let k = self.meta.labels.len();
        Ok(flat
            .chunks_exact(k)
            .map(|p| {
                let (class, &confidence) =
                    p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap_or((0, &0.0));
                Prediction { class, confidence, probs: p.to_vec() }
            })
            .collect())
    }
}
