//! Export of a trained network as TorchScript plus its [`ModelMetadata`] file.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use indicatif::ProgressBar;
use tch::nn;
use tch::{CModule, Device, Kind, Tensor};

use crate::classify::metadata::{
    DEFAULT_CROP_SCALE, DataSummary, IMAGENET_MEAN, IMAGENET_STD, ModelMetadata, TrainingRecord,
};
use crate::monitor::fit::Embedded;
use crate::monitor::stats::MonitorStats;
use crate::train::augment::Level;
use crate::train::dataset::ImageSet;
use crate::train::resnet::ResNet;

/// Architecture name written into the metadata of every exported model.
pub const ARCH: &str = "resnet50";

/// Batch size of the dummy input used for tracing. Anything but 1 guards against a trace
/// that silently specialises on a batch of one.
const TRACE_BATCH: i64 = 2;

/// Freezes `vs` and traces `net` in evaluation mode on an `input_size`² RGB batch, giving a
/// TorchScript module whose `forward` takes `[N, 3, input_size, input_size]` for any `N` and
/// returns `[N, classes + feature_columns]`: the logits, then the penultimate features the
/// monitor reads (TorchScript methods return a single tensor).
pub fn trace(vs: &mut nn::VarStore, net: &ResNet, input_size: u32) -> Result<CModule> {
    ensure!(input_size > 0, "input size must be positive");
    vs.freeze();
    let side = i64::from(input_size);
    let dummy = Tensor::zeros([TRACE_BATCH, 3, side, side], (Kind::Float, vs.device()));
    tch::no_grad(|| {
        CModule::create_by_tracing("CoinResNet", "forward", &[dummy], &mut |xs| {
            let features = net.features_t(&xs[0], false);
            vec![Tensor::cat(&[net.head(&features), features], 1)]
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
/// scale, `training`, the feature columns of `net` (see [`trace`]) and `monitor`. Returns
/// what it wrote; fails if the metadata would be invalid.
pub fn write_metadata(
    model: &Path,
    net: &ResNet,
    labels: &[String],
    input_size: u32,
    data: DataSummary,
    training: TrainingRecord,
    monitor: Option<MonitorStats>,
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
        feature_columns: net.feature_dim(),
        monitor,
    };
    meta.validate().context("metadata of the trained model is inconsistent")?;
    let path = ModelMetadata::path_for_model(model);
    meta.save(&path).with_context(|| format!("cannot write model metadata {}", path.display()))?;
    Ok(meta)
}

/// Crops per forward pass when embedding a set; small enough for two CPU cores' caches.
const EMBED_BATCH: usize = 32;

/// Runs `net` in evaluation mode on the samples `indices` of `set` (no augmentation) and
/// returns their features and logits on the CPU, advancing `bar` by one per crop.
pub fn embed(
    net: &ResNet,
    set: &ImageSet,
    indices: &[usize],
    device: Device,
    bar: &ProgressBar,
) -> Result<Embedded> {
    let _guard = tch::no_grad_guard();
    let (mut features, mut logits) = (Vec::new(), Vec::new());
    for chunk in indices.chunks(EMBED_BATCH) {
        let (xs, _) = set.batch(
            chunk,
            IMAGENET_MEAN,
            IMAGENET_STD,
            None::<(Level, &mut rand::rngs::StdRng)>,
            device,
        )?;
        let f = net.features_t(&xs, false);
        logits.push(net.head(&f).to_device(Device::Cpu));
        features.push(f.to_device(Device::Cpu));
        bar.inc(chunk.len() as u64);
    }
    ensure!(!features.is_empty(), "no crops to embed");
    Ok(Embedded { features: Tensor::cat(&features, 0), logits: Tensor::cat(&logits, 0) })
}

/// The monitor statistics of a trained network: fitted on the training crops `train`, with
/// thresholds from the validation crops `val` (the training crops when `val` is empty).
pub fn monitor_stats(
    net: &ResNet,
    set: &ImageSet,
    train: &[usize],
    val: &[usize],
    device: Device,
) -> Result<MonitorStats> {
    let bar = crate::progress::crops_bar(train.len() + val.len(), "shift monitor statistics");
    let fitted = embed(net, set, train, device, &bar)?;
    let labels: Vec<usize> = train.iter().map(|&i| set.samples[i].label).collect();
    let held_out = if val.is_empty() { None } else { Some(embed(net, set, val, device, &bar)?) };
    bar.finish_and_clear();
    if held_out.is_none() {
        tracing::warn!(
            "no validation crops: the shift monitor's thresholds come from the training crops \
             and will flag more coins than they should"
        );
    }
    crate::monitor::fit::fit(&fitted, &labels, set.labels.len(), held_out.as_ref())
        .context("cannot fit the shift monitor")
}
