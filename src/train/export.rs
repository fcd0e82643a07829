//! Export of a trained network as TorchScript plus its [`ModelMetadata`] file.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use tch::nn::{self, ModuleT};
use tch::{CModule, Kind, Tensor};

use crate::classify::metadata::{
    DEFAULT_CROP_SCALE, DataSummary, IMAGENET_MEAN, IMAGENET_STD, ModelMetadata, TrainingRecord,
};
use crate::train::resnet::ResNet;

/// Architecture name written into the metadata of every exported model.
pub const ARCH: &str = "resnet50";

/// Batch size of the dummy input used for tracing. Anything but 1 guards against a trace
/// that silently specialises on a batch of one.
const TRACE_BATCH: i64 = 2;

/// Freezes `vs` and traces `net` in evaluation mode on an `input_size`² RGB batch, giving a
/// TorchScript module whose `forward` takes `[N, 3, input_size, input_size]` for any `N`.
pub fn trace(vs: &mut nn::VarStore, net: &ResNet, input_size: u32) -> Result<CModule> {
    ensure!(input_size > 0, "input size must be positive");
    vs.freeze();
    let side = i64::from(input_size);
    let dummy = Tensor::zeros([TRACE_BATCH, 3, side, side], (Kind::Float, vs.device()));
    tch::no_grad(|| {
        CModule::create_by_tracing("CoinResNet", "forward", &[dummy], &mut |xs| {
            vec![net.forward_t(&xs[0], false)]
        })
    })
    .context("cannot trace the network")
}

/// Traces `net` (see [`trace`]) and saves the TorchScript module to `out` atomically.
pub fn save_torchscript(
    vs: &mut nn::VarStore,
    net: &ResNet,
    input_size: u32,
    out: &Path,
) -> Result<()> {
    let module = trace(vs, net, input_size)?;
    crate::fsutil::write_atomic_path(out, |tmp| {
        module.save(tmp).with_context(|| format!("cannot save TorchScript to {}", tmp.display()))
    })
    .with_context(|| format!("cannot write model {}", out.display()))
}

/// Writes the metadata of the model at `model` to [`ModelMetadata::path_for_model`]: `arch`
/// [`ARCH`], ImageNet mean/std (the constants training normalises with), the default crop
/// scale, and `training`. Returns what it wrote; fails if the metadata would be invalid.
pub fn write_metadata(
    model: &Path,
    labels: &[String],
    input_size: u32,
    data: DataSummary,
    training: TrainingRecord,
) -> Result<ModelMetadata> {
    let meta = ModelMetadata {
        arch: ARCH.to_owned(),
        labels: labels.to_vec(),
        input_size,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        crop_scale: DEFAULT_CROP_SCALE,
        data,
        training,
    };
    meta.validate().context("metadata of the trained model is inconsistent")?;
    let path = ModelMetadata::path_for_model(model);
    meta.save(&path).with_context(|| format!("cannot write model metadata {}", path.display()))?;
    Ok(meta)
}
