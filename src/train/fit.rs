//! The training loop: trains a [`Model`] on a split [`ImageSet`], checkpointing after every
//! epoch, and keeps the epoch with the best validation accuracy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::classify::metadata::{IMAGENET_MEAN, IMAGENET_STD};
use crate::train::augment::Level;
use crate::train::checkpoint;
use crate::train::curves::EpochStats;
use crate::train::dataset::ImageSet;
use crate::train::optim::{Optim, Optimizer};
use crate::train::resnet::ResNet;
use crate::train::sampler::{Balance, epoch_batches, inverse_frequency};
use crate::train::split::Split;
use crate::train::weights::{self, HeadRule};

/// A network and the store holding its variables.
#[derive(Debug)]
pub struct Model {
    /// The variables of `net`.
    pub vs: nn::VarStore,
    /// The network.
    pub net: ResNet,
}

impl Model {
    /// A freshly initialised [`ResNet`] of `base_width` with `classes` outputs on `device`.
    /// Seeds libtorch's global generator with `seed` first, so the initial weights depend on
    /// the seed alone, provided nothing else draws from that generator meanwhile.
    pub fn new(base_width: i64, classes: usize, seed: u64, device: Device) -> Result<Self> {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let net = ResNet::new(&vs.root(), base_width, classes as i64)?;
        Ok(Self { vs, net })
    }
}

/// Where to write checkpoints, and the settings to record in them.
#[derive(Debug, Clone)]
pub struct CheckpointTo {
    /// Checkpoint folder.
    pub dir: PathBuf,
    /// Settings of the run (see [`checkpoint::StateFile::settings`]).
    pub settings: serde_json::Value,
}

/// Everything [`fit`] needs besides the model and the data.
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Stage written into every curve row (1 or 2).
    pub stage: u8,
    /// Planned passes over the training side. Must be positive.
    pub epochs: usize,
    /// Images per optimiser step. Must be at least 2 (BatchNorm needs two values).
    pub batch_size: usize,
    /// Peak learning rate of the warm-up + cosine schedule.
    pub lr: f64,
    /// Seeds the shuffling, sampling and augmentation generator.
    pub seed: u64,
    /// Stops after this many optimiser steps in total, mid-epoch if need be.
    pub max_steps: Option<usize>,
    /// Optimiser.
    pub optim: Optim,
    /// Augmentation of the training crops.
    pub augment: Level,
    /// Class balancing.
    pub balance: Balance,
    /// Stop when validation accuracy has not improved for this many epochs.
    pub patience: Option<usize>,
    /// Stop after this epoch, leaving the checkpoint to resume from (the schedule still
    /// follows `epochs`).
    pub stop_after: Option<usize>,
    /// Checkpoint after every epoch here.
    pub checkpoint: Option<CheckpointTo>,
}

/// What one optimiser step or epoch reports while [`fit`] runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Step `step` (1-based) of `total` finished with this batch loss.
    Step { step: usize, total: usize, loss: f64 },
    /// An epoch finished (its checkpoint, if any, is written); `all` holds it and every epoch
    /// of the run before it.
    Epoch { all: &'a [EpochStats] },
}

/// The epoch with the best validation accuracy so far (lower loss breaks ties).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Its validation accuracy.
    pub val_acc: f64,
    /// Its validation loss.
    pub val_loss: f64,
}

/// Where a run is between epochs: everything besides tensors needed to continue it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Seed of the shuffling/augmentation generator.
    pub rng_seed: u64,
    /// Position of that generator in its stream (ChaCha word position).
    pub rng_word_pos: u128,
    /// One row per finished epoch.
    pub curves: Vec<EpochStats>,
    /// Best epoch so far.
    pub best: Option<BestEpoch>,
    /// Epochs since validation accuracy last rose.
    pub epochs_since_improvement: usize,
}

impl TrainState {
    /// The state before the first epoch.
    pub fn new(seed: u64) -> Self {
        Self {
            epochs_done: 0,
            steps: 0,
            rng_seed: seed,
            rng_word_pos: 0,
            curves: Vec::new(),
            best: None,
            epochs_since_improvement: 0,
        }
    }
}

/// A checkpoint to continue from: its state and tensors (see [`checkpoint::load`]).
#[derive(Debug)]
pub struct Resume {
    /// The state after its last epoch.
    pub state: TrainState,
    /// Variables after its last epoch.
    pub weights: HashMap<String, Tensor>,
    /// Optimiser buffers after its last epoch.
    pub optimizer: HashMap<String, Tensor>,
    /// Variables of its best epoch.
    pub best: HashMap<String, Tensor>,
    /// Where it was read from, for errors.
    pub origin: PathBuf,
}

impl From<checkpoint::Loaded> for Resume {
    fn from(c: checkpoint::Loaded) -> Self {
        Self {
            state: c.file.state,
            weights: c.weights,
            optimizer: c.optimizer,
            best: c.best,
            origin: c.dir,
        }
    }
}

/// Why training stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every planned epoch ran.
    Completed,
    /// Validation accuracy stopped improving (`patience`).
    Patience,
    /// The step limit (`max_steps`) was reached.
    MaxSteps,
    /// Stopped after the `stop_after` epoch; the checkpoint continues it.
    Paused,
}

/// A trained network with the weights of its best validation epoch loaded.
#[derive(Debug)]
pub struct Fitted {
    /// The variables of `net`.
    pub vs: nn::VarStore,
    /// The network.
    pub net: ResNet,
    /// One entry per epoch run (resumed runs include the epochs before the resume).
    pub curves: Vec<EpochStats>,
    /// 1-based epoch whose weights `vs` holds.
    pub best_epoch: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Why training ended.
    pub stop: Stop,
    /// Validation confusion matrix of the best epoch: `[true label][predicted label]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Linear warm-up over the first `warmup` steps, then cosine decay to zero at `total`.
/// Warm-up keeps the first large updates of a freshly initialised deep net from blowing up
/// the BatchNorm statistics.
fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    0.5 * peak * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// Deep copies of every variable (BatchNorm running statistics included).
fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

/// Validation figures of one pass.
struct Evaluation {
    loss: f64,
    accuracy: f64,
    confusion: Vec<Vec<usize>>,
}

/// Mean loss, accuracy and confusion matrix of `net` in evaluation mode over `indices`.
fn evaluate(
    net: &ResNet,
    set: &ImageSet,
    indices: &[usize],
    batch_size: usize,
    device: Device,
) -> Result<Evaluation> {
    let k = set.labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss_sum = 0.0;
    tch::no_grad(|| -> Result<()> {
        for chunk in indices.chunks(batch_size) {
            let (xs, ys) = set.batch(
                chunk,
                IMAGENET_MEAN,
                IMAGENET_STD,
                None::<(Level, &mut ChaCha8Rng)>,
                device,
            )?;
            let logits = net.forward_t(&xs, false);
            let loss =
                logits.cross_entropy_loss::<Tensor>(&ys, None, tch::Reduction::Sum, -100, 0.0);
            loss_sum += f64::try_from(&loss)?;
            let predicted = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?;
            for (&i, p) in chunk.iter().zip(predicted) {
                let p = usize::try_from(p).context("negative class index")?;
                confusion[set.samples[i].label][p] += 1;
            }
        }
        Ok(())
    })?;
    let n = indices.len().max(1) as f64;
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    Ok(Evaluation { loss: loss_sum / n, accuracy: correct as f64 / n, confusion })
}

fn restore(
    vs: &nn::VarStore,
    saved: &HashMap<String, Tensor>,
    origin: &std::path::Path,
) -> Result<()> {
    weights::copy_into(vs, saved, origin, &HeadRule::Copy).map(|_| ())
}

/// Trains `model` on `split.train`, validates after each epoch on `split.val`, and returns it
/// with the weights of the epoch with the best validation accuracy (lower validation loss
/// breaks ties). Variables that do not require gradients (frozen parts) are not trained.
///
/// With `resume`, the model's variables, the optimiser and the generator continue from that
/// checkpoint, so the run ends exactly as the uninterrupted one would have (on CPU; same data,
/// config and device). Nothing here draws from libtorch's global generator.
/// `on_progress` sees every step and epoch; an error from it stops training.
pub fn fit(
    model: Model,
    set: &ImageSet,
    split: &Split,
    cfg: &FitConfig,
    device: Device,
    resume: Option<Resume>,
    mut on_progress: impl FnMut(Progress) -> Result<()>,
) -> Result<Fitted> {
    ensure!(cfg.epochs > 0, "epochs must be positive");
    ensure!(cfg.batch_size >= 2, "batch size {} must be at least 2", cfg.batch_size);
    ensure!(cfg.lr.is_finite() && cfg.lr > 0.0, "learning rate {} must be positive", cfg.lr);
    ensure!(split.train.len() >= 2, "training side has {} images, need 2", split.train.len());
    ensure!(!split.val.is_empty(), "validation side is empty: need 2 photos in some class");

    let Model { vs, net } = model;
    let mut opt = Optimizer::new(&vs, cfg.optim)?;
    tracing::info!(
        variables = opt.len(),
        parameters = opt.parameter_count(),
        frozen_until = ?net.frozen_until(),
        "optimising"
    );
    let train_labels: Vec<usize> = split.train.iter().map(|&i| set.samples[i].label).collect();
    let class_weights = match cfg.balance {
        Balance::Loss => {
            let w = inverse_frequency(&train_labels, set.labels.len());
            let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
            Some(Tensor::from_slice(&w).to_device(device))
        }
        Balance::None | Balance::Sampler => None,
    };

    let n_train = split.train.len();
    let per_epoch = n_train / cfg.batch_size + usize::from(n_train % cfg.batch_size > 1);
    let total = (per_epoch * cfg.epochs).min(cfg.max_steps.unwrap_or(usize::MAX));
    let warmup = (total / 20).clamp(1, per_epoch.max(1));

    let (mut state, mut best_weights) = match resume {
        Some(r) => {
            restore(&vs, &r.weights, &r.origin)?;
            opt.load_state(&r.optimizer, r.state.steps as u64)?;
            tracing::info!(epochs_done = r.state.epochs_done, steps = r.state.steps, "resuming");
            (r.state, Some(r.best))
        }
        None => (TrainState::new(cfg.seed), None),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(state.rng_seed);
    rng.set_word_pos(state.rng_word_pos);

    let mut stop = Stop::Completed;
    for epoch in state.epochs_done + 1..=cfg.epochs {
        if state.steps >= total {
            stop = Stop::MaxSteps;
            break;
        }
        if cfg.patience.is_some_and(|p| state.epochs_since_improvement >= p) {
            stop = Stop::Patience;
            break;
        }
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
        let batches =
            epoch_batches(&split.train, &train_labels, cfg.batch_size, cfg.balance, &mut rng)?;
        for chunk in batches {
            if state.steps >= total {
                break;
            }
            let (xs, ys) = set.batch(
                &chunk,
                IMAGENET_MEAN,
                IMAGENET_STD,
                Some((cfg.augment, &mut rng)),
                device,
            )?;
            let logits = net.forward_t(&xs, true);
            let loss = logits.cross_entropy_loss(
                &ys,
                class_weights.as_ref(),
                tch::Reduction::Mean,
                -100,
                0.0,
            );
            opt.backward_step(&loss, lr_at(state.steps, total, warmup, cfg.lr))?;
            state.steps += 1;
            let batch_loss = f64::try_from(&loss)?;
            ensure!(
                batch_loss.is_finite(),
                "training loss became {batch_loss} at step {}: lower the learning rate",
                state.steps
            );
            loss_sum += batch_loss * chunk.len() as f64;
            correct += i64::try_from(logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64))?;
            seen += chunk.len();
            on_progress(Progress::Step { step: state.steps, total, loss: batch_loss })?;
        }
        let val = evaluate(&net, set, &split.val, cfg.batch_size * 2, device)?;
        state.curves.push(EpochStats {
            stage: cfg.stage,
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss: val.loss,
            val_acc: val.accuracy,
            seconds: start.elapsed().as_secs_f64(),
        });
        let previous = state.best.clone();
        let improved = previous.as_ref().is_none_or(|b| val.accuracy > b.val_acc);
        let better = improved
            || previous
                .as_ref()
                .is_some_and(|b| val.accuracy == b.val_acc && val.loss < b.val_loss);
        state.epochs_since_improvement =
            if improved { 0 } else { state.epochs_since_improvement + 1 };
        if better {
            state.best = Some(BestEpoch { epoch, val_acc: val.accuracy, val_loss: val.loss });
            best_weights = Some(snapshot(&vs));
        }
        state.epochs_done = epoch;
        state.rng_word_pos = rng.get_word_pos();
        if let (Some(to), Some(best)) = (&cfg.checkpoint, &best_weights) {
            checkpoint::save(&to.dir, &to.settings, &state, &vs, &opt, best)?;
        }
        on_progress(Progress::Epoch { all: &state.curves })?;
        if cfg.stop_after == Some(epoch) && epoch < cfg.epochs {
            stop = Stop::Paused;
            break;
        }
    }
    if stop == Stop::Completed && total < per_epoch * cfg.epochs {
        stop = Stop::MaxSteps;
    }
    let best = state.best.clone().context("no epoch ran")?;
    let best_weights = best_weights.context("no epoch ran")?;
    restore(&vs, &best_weights, std::path::Path::new("the best epoch's snapshot"))?;
    let confusion = evaluate(&net, set, &split.val, cfg.batch_size * 2, device)?.confusion;
    Ok(Fitted {
        vs,
        net,
        curves: state.curves,
        best_epoch: best.epoch,
        steps: state.steps,
        stop,
        confusion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((lr_at(0, 100, 5, 1.0) - 0.2).abs() < 1e-12);
        assert!((lr_at(4, 100, 5, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(5, 100, 5, 1.0) - 1.0).abs() < 1e-12);
        assert!(lr_at(52, 100, 5, 1.0) < 0.55 && lr_at(52, 100, 5, 1.0) > 0.45);
        assert!(lr_at(99, 100, 5, 1.0) < 1e-3);
    }
}
