//! The training loop: from-scratch training of a [`ResNet`] on a split [`ImageSet`], keeping
//! the epoch with the best validation accuracy.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::classify::metadata::{IMAGENET_MEAN, IMAGENET_STD};
use crate::train::curves::EpochStats;
use crate::train::dataset::ImageSet;
use crate::train::resnet::{NO_DECAY_GROUP, ResNet};
use crate::train::split::Split;

/// Name of the only training phase so far: every layer trained from scratch.
pub const STAGE_FULL: &str = "full";

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Optim {
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with Nesterov momentum 0.9.
    Sgd,
}

impl Optim {
    /// Peak learning rate used when none is given. For SGD, 0.1 (the batch-256 ImageNet
    /// value) made the first epoch diverge at batch 32.
    pub fn default_lr(self) -> f64 {
        match self {
            Optim::Adamw => 2e-3,
            Optim::Sgd => 0.05,
        }
    }

    fn weight_decay(self) -> f64 {
        match self {
            Optim::Adamw => 0.05,
            Optim::Sgd => 5e-4,
        }
    }
}

/// Everything [`fit`] needs besides the data.
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Passes over the training side. Must be positive.
    pub epochs: usize,
    /// Images per optimiser step. Must be at least 2 (BatchNorm needs two values).
    pub batch_size: usize,
    /// Peak learning rate of the warm-up + cosine schedule.
    pub lr: f64,
    /// Seeds weight initialisation (`tch::manual_seed`) and the shuffling/augmentation RNG.
    pub seed: u64,
    /// Stops after this many optimiser steps in total, mid-epoch if need be.
    pub max_steps: Option<usize>,
    /// First-stage width of the [`ResNet`] (64 = ResNet-50).
    pub base_width: i64,
    /// Optimiser.
    pub optim: Optim,
}

/// What one optimiser step or epoch reports while [`fit`] runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Step `step` (1-based) of `total` finished with this batch loss.
    Step { step: usize, total: usize, loss: f64 },
    /// An epoch finished; `all` holds it and every epoch before it.
    Epoch { all: &'a [EpochStats] },
}

/// A trained network with the weights of its best validation epoch loaded.
#[derive(Debug)]
pub struct Fitted {
    /// The variables of `net`.
    pub vs: nn::VarStore,
    /// The network.
    pub net: ResNet,
    /// One entry per epoch run.
    pub curves: Vec<EpochStats>,
    /// 1-based epoch whose weights `vs` holds.
    pub best_epoch: usize,
    /// Optimiser steps taken.
    pub steps: usize,
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

fn restore(vs: &nn::VarStore, saved: &HashMap<String, Tensor>) -> Result<()> {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let src = saved.get(&name).with_context(|| format!("no saved copy of {name}"))?;
            var.f_copy_(src).with_context(|| format!("cannot restore {name}"))?;
        }
        Ok(())
    })
}

/// Mean loss and accuracy of `net` in evaluation mode over `indices`.
fn evaluate(
    net: &ResNet,
    set: &ImageSet,
    indices: &[usize],
    batch_size: usize,
    device: Device,
) -> Result<(f64, f64)> {
    tch::no_grad(|| {
        let (mut loss_sum, mut correct) = (0.0, 0i64);
        for chunk in indices.chunks(batch_size) {
            let (xs, ys) =
                set.batch(chunk, IMAGENET_MEAN, IMAGENET_STD, None::<&mut ChaCha8Rng>, device);
            let logits = net.forward_t(&xs, false);
            let loss =
                logits.cross_entropy_loss::<Tensor>(&ys, None, tch::Reduction::Sum, -100, 0.0);
            loss_sum += f64::try_from(&loss)?;
            correct += i64::try_from(logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64))?;
        }
        let n = indices.len().max(1) as f64;
        Ok((loss_sum / n, correct as f64 / n))
    })
}

/// Training batches of one epoch: a shuffled order cut into `batch_size` pieces. A final piece
/// of one image is dropped, since BatchNorm cannot normalise a single value per channel.
fn epoch_batches(train: &[usize], batch_size: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let mut order = train.to_vec();
    order.shuffle(rng);
    order.chunks(batch_size).filter(|c| c.len() > 1).map(<[usize]>::to_vec).collect()
}

/// Trains a new network on `split.train`, validates after each epoch on `split.val`, and
/// returns it with the weights of the epoch with the best validation accuracy (lower
/// validation loss breaks ties). Same data, config and device give the same weights on CPU,
/// provided nothing else draws from libtorch's global generator while it runs (it seeds that
/// generator with `cfg.seed`).
/// `on_progress` sees every step and epoch; an error from it stops training.
pub fn fit(
    set: &ImageSet,
    split: &Split,
    cfg: &FitConfig,
    device: Device,
    mut on_progress: impl FnMut(Progress) -> Result<()>,
) -> Result<Fitted> {
    ensure!(cfg.epochs > 0, "epochs must be positive");
    ensure!(cfg.batch_size >= 2, "batch size {} must be at least 2", cfg.batch_size);
    ensure!(cfg.lr.is_finite() && cfg.lr > 0.0, "learning rate {} must be positive", cfg.lr);
    ensure!(split.train.len() >= 2, "training side has {} images, need 2", split.train.len());
    ensure!(!split.val.is_empty(), "validation side is empty: need 2 photos in some class");

    tch::manual_seed(cfg.seed as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let vs = nn::VarStore::new(device);
    let net = ResNet::new(&vs.root(), cfg.base_width, set.labels.len() as i64)?;
    let mut opt = match cfg.optim {
        Optim::Adamw => nn::AdamW::default().build(&vs, cfg.lr)?,
        Optim::Sgd => {
            nn::Sgd { momentum: 0.9, nesterov: true, ..Default::default() }.build(&vs, cfg.lr)?
        }
    };
    // zero_grad registers the variables' groups with the optimiser, so groups exist to configure.
    opt.zero_grad();
    opt.set_weight_decay_group(0, cfg.optim.weight_decay());
    opt.set_weight_decay_group(NO_DECAY_GROUP, 0.0);

    let n_train = split.train.len();
    let per_epoch = n_train / cfg.batch_size + usize::from(n_train % cfg.batch_size > 1);
    let total = (per_epoch * cfg.epochs).min(cfg.max_steps.unwrap_or(usize::MAX));
    let warmup = (total / 20).clamp(1, per_epoch.max(1));
    let mut curves: Vec<EpochStats> = Vec::new();
    let mut best: Option<(usize, f64, f64, HashMap<String, Tensor>)> = None;
    let mut step = 0;
    for epoch in 1..=cfg.epochs {
        if step >= total {
            break;
        }
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
        for chunk in epoch_batches(&split.train, cfg.batch_size, &mut rng) {
            if step >= total {
                break;
            }
            let (xs, ys) = set.batch(&chunk, IMAGENET_MEAN, IMAGENET_STD, Some(&mut rng), device);
            opt.set_lr(lr_at(step, total, warmup, cfg.lr));
            let logits = net.forward_t(&xs, true);
            let loss = logits.cross_entropy_for_logits(&ys);
            opt.backward_step(&loss);
            step += 1;
            let batch_loss = f64::try_from(&loss)?;
            loss_sum += batch_loss * chunk.len() as f64;
            correct += i64::try_from(logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64))?;
            seen += chunk.len();
            on_progress(Progress::Step { step, total, loss: batch_loss })?;
        }
        let (val_loss, val_acc) = evaluate(&net, set, &split.val, cfg.batch_size * 2, device)?;
        curves.push(EpochStats {
            stage: STAGE_FULL.to_owned(),
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_acc,
            seconds: start.elapsed().as_secs_f64(),
        });
        let better = best.as_ref().is_none_or(|(_, acc, loss, _)| {
            val_acc > *acc || (val_acc == *acc && val_loss < *loss)
        });
        if better {
            best = Some((epoch, val_acc, val_loss, snapshot(&vs)));
        }
        on_progress(Progress::Epoch { all: &curves })?;
    }
    let (best_epoch, _, _, weights) = best.context("no epoch ran")?;
    restore(&vs, &weights)?;
    Ok(Fitted { vs, net, curves, best_epoch, steps: step })
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

    #[test]
    fn epoch_batches_cover_the_side_and_drop_a_lone_last_image() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let batches = epoch_batches(&[0, 1, 2, 3, 4], 2, &mut rng);
        assert_eq!(batches.len(), 2);
        let mut seen: Vec<usize> = batches.concat();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4);
    }
}
