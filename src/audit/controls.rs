//! Negative controls: runs that should score no better than chance. A control that beats
//! chance shows the score comes from something other than the coin: labels leaking into the
//! test, or a model reading the background.

use anyhow::{Context, Result, ensure};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::Device;
use tch::nn::ModuleT;

use super::Verdict;
use super::predict::Predicted;
use super::stats::{CONFIDENCE, Interval, clopper_pearson};
use crate::classify::metadata::{IMAGENET_MEAN, IMAGENET_STD};
use crate::train::augment::Level;
use crate::train::dataset::ImageSet;
use crate::train::fit::{FitConfig, Model, Progress, fit};
use crate::train::optim::Optim;
use crate::train::sampler::Balance;
use crate::train::split::Split;

/// Share of the shuffled training set's groups held out to pick the epoch.
const HOLDOUT_FRACTION: f64 = 0.2;

/// How a control scored on the test set, and what chance would score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlScore {
    /// Test accuracy with its exact 95% interval.
    pub accuracy: Interval,
    /// 1 / number of classes the control's model can answer.
    pub chance: f64,
    /// Share of the test set's most common class: what answering one class for every crop
    /// scores without looking at anything.
    pub majority: f64,
}

impl ControlScore {
    /// Scores `p` for a model answering `classes` classes.
    pub fn new(p: &Predicted, classes: usize) -> Self {
        let n = p.truth.len();
        let mut counts = std::collections::HashMap::<usize, usize>::new();
        for &t in &p.truth {
            *counts.entry(t).or_default() += 1;
        }
        let top = counts.values().copied().max().unwrap_or(0);
        Self {
            accuracy: clopper_pearson(p.correct(), n, CONFIDENCE),
            chance: 1.0 / classes.max(1) as f64,
            majority: if n == 0 { 0.0 } else { top as f64 / n as f64 },
        }
    }

    /// The best a model that learned nothing about the coin can be expected to score: chance,
    /// or the majority share when the test set is unbalanced.
    pub fn baseline(&self) -> f64 {
        self.chance.max(self.majority)
    }

    /// FAIL when the whole interval lies above the baseline (the control beats it at 95%),
    /// WARN when the interval is too wide to say anything (it reaches halfway from the
    /// baseline to 100%, so even a strong leak would pass unseen), PASS otherwise. `what`
    /// names the suspected cause for the FAIL message.
    pub fn verdict(&self, what: &str) -> (Verdict, String) {
        let a = &self.accuracy;
        let base = self.baseline();
        let line = format!(
            "{a} vs chance {:.1}% (majority class {:.1}%)",
            self.chance * 100.0,
            self.majority * 100.0
        );
        if a.n == 0 {
            (Verdict::Warn, "no test images to run the control on".into())
        } else if a.low > base {
            (Verdict::Fail, format!("{line}: above chance at 95%; {what}"))
        } else if a.high >= (base + 1.0) / 2.0 {
            (Verdict::Warn, format!("{line}: the test set is too small to show chance level"))
        } else {
            (Verdict::Pass, format!("{line}: consistent with chance"))
        }
    }
}

/// Settings of the shuffled-label retrain: small and short on purpose.
#[derive(Debug, Clone, PartialEq)]
pub struct ShuffleConfig {
    /// Passes over the shuffled training set.
    pub epochs: usize,
    /// Width of the first ResNet stage (64 = ResNet-50; small values train fast).
    pub base_width: i64,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Stop after this many steps in total.
    pub max_steps: Option<usize>,
    /// Seeds the shuffle, the hold-out and the training run.
    pub seed: u64,
}

/// Holds out about [`HOLDOUT_FRACTION`] of the groups (at least one, and never all) to pick
/// the epoch on. Shuffled labels make a per-label stratified split pointless, so groups are
/// drawn regardless of label.
fn group_holdout(set: &ImageSet, seed: u64) -> Result<Split> {
    let mut groups: Vec<&str> = set.samples.iter().map(|s| s.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    ensure!(
        groups.len() >= 2,
        "the training set {} has {} source photo(s); the control needs 2",
        set.root.display(),
        groups.len()
    );
    groups.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed));
    let n_val =
        ((groups.len() as f64 * HOLDOUT_FRACTION).round() as usize).clamp(1, groups.len() - 1);
    let val: std::collections::HashSet<&str> = groups[..n_val].iter().copied().collect();
    let (mut split_val, mut split_train) = (Vec::new(), Vec::new());
    for (i, s) in set.samples.iter().enumerate() {
        if val.contains(s.group.as_str()) { split_val.push(i) } else { split_train.push(i) }
    }
    Ok(Split { train: split_train, val: split_val })
}

/// Retrains a network from scratch on `train` with its labels shuffled among the images (the
/// class frequencies stay), then classifies `test` with it. Test labels are matched to
/// training labels by name. `bar` follows the training steps.
pub fn shuffled_label_run(
    train: &ImageSet,
    test: &ImageSet,
    cfg: &ShuffleConfig,
    device: Device,
    bar: &ProgressBar,
) -> Result<Predicted> {
    let map: Vec<usize> = test
        .labels
        .iter()
        .map(|l| {
            train.labels.iter().position(|t| t == l).with_context(|| {
                format!(
                    "test class {} has no training class of the same name",
                    test.root.join(l).display()
                )
            })
        })
        .collect::<Result<_>>()?;
    let mut shuffled = train.clone();
    let mut labels: Vec<usize> = shuffled.samples.iter().map(|s| s.label).collect();
    labels.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
    for (s, l) in shuffled.samples.iter_mut().zip(labels) {
        s.label = l;
    }
    let split = group_holdout(&shuffled, cfg.seed)?;
    let fit_cfg = FitConfig {
        stage: 1,
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: Optim::Adamw.default_lr(),
        seed: cfg.seed,
        max_steps: cfg.max_steps,
        optim: Optim::Adamw,
        augment: Level::None,
        balance: Balance::None,
        patience: None,
        stop_after: None,
        checkpoint: None,
    };
    let model = Model::new(cfg.base_width, shuffled.labels.len(), cfg.seed, device)?;
    let fitted = fit(model, &shuffled, &split, &fit_cfg, device, None, |p| {
        if let Progress::Step { step, total, loss } = p {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.3}"));
        }
        Ok(())
    })
    .with_context(|| format!("shuffled-label retrain on {} failed", train.root.display()))?;
    let indices: Vec<usize> = (0..test.samples.len()).collect();
    let mut predicted = Vec::with_capacity(indices.len());
    tch::no_grad(|| -> Result<()> {
        for chunk in indices.chunks(cfg.batch_size.max(2) * 2) {
            let no_augment = None::<(Level, &mut ChaCha8Rng)>;
            let (xs, _) = test.batch(chunk, IMAGENET_MEAN, IMAGENET_STD, no_augment, device)?;
            let out = fitted.net.forward_t(&xs, false).argmax(-1, false).to_device(Device::Cpu);
            let classes: Vec<i64> = Vec::try_from(out)?;
            predicted.extend(classes.into_iter().map(|c| c as usize));
        }
        Ok(())
    })?;
    let truth = test.samples.iter().map(|s| map[s.label]).collect();
    Ok(Predicted { truth, predicted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(correct: usize, n: usize, classes: usize, majority: f64) -> ControlScore {
        ControlScore {
            accuracy: clopper_pearson(correct, n, CONFIDENCE),
            chance: 1.0 / classes as f64,
            majority,
        }
    }

    #[test]
    fn beats_chance_only_when_the_whole_interval_does() {
        assert_eq!(score(30, 100, 8, 0.125).verdict("x").0, Verdict::Fail);
        assert_eq!(score(15, 100, 8, 0.125).verdict("x").0, Verdict::Pass);
        // 30% on a set whose largest class is 30% is what a constant answer scores.
        assert_eq!(score(30, 100, 8, 0.3).verdict("x").0, Verdict::Pass);
        assert_eq!(score(2, 4, 8, 0.25).verdict("x").0, Verdict::Warn);
        assert_eq!(score(0, 0, 8, 0.0).verdict("x").0, Verdict::Warn);
    }
}
