//! What the monitor keeps about the training data, stored in the model's metadata.

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// Statistics of the penultimate features of the training crops, and the scores of the
/// validation crops, written at export and read by the node.
///
/// The feature-space score is a Mahalanobis distance to the nearest class mean under one
/// covariance shared by all classes. A full 2048×2048 covariance would not fit a metadata
/// file and cannot be estimated from a thousand crops, so it is kept as its leading principal
/// directions plus one variance for every other direction.
///
/// Invariant (checked by [`MonitorStats::validate`]): every mean and component has
/// `feature_dim` values, components and variances pair up, variances are positive and finite,
/// and every validation list is sorted and non-empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorStats {
    /// Length of the feature vector the model gives per crop (its second output).
    pub feature_dim: usize,
    /// Training crops the statistics were computed from.
    pub train_count: usize,
    /// Mean feature vector of each class, in label order.
    pub class_means: Vec<Vec<f32>>,
    /// Leading principal directions of the within-class covariance (unit vectors, largest
    /// variance first).
    pub components: Vec<Vec<f32>>,
    /// Variance along each component.
    pub variances: Vec<f32>,
    /// Mean variance along every direction outside the components.
    pub residual_variance: f32,
    /// Scores of the validation crops, for setting thresholds.
    pub validation: ValidationScores,
}

/// Scores of the validation crops under each score kind, each list sorted ascending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationScores {
    /// Crops the lists come from (held out from the statistics).
    pub count: usize,
    /// Feature-space distances (see [`crate::monitor::score::ScoreKind::Mahalanobis`]).
    pub mahalanobis: Vec<f32>,
    /// Negative log-sum-exp of the logits.
    pub energy: Vec<f32>,
    /// One minus the largest softmax probability.
    pub max_softmax: Vec<f32>,
}

impl MonitorStats {
    /// Checks the invariants listed on the type; `classes` is the model's label count.
    pub fn validate(&self, classes: usize) -> Result<()> {
        let d = self.feature_dim;
        ensure!(d > 0, "monitor feature_dim is 0");
        ensure!(
            self.class_means.len() == classes,
            "monitor has {} class means for {classes} labels",
            self.class_means.len()
        );
        if let Some(m) = self.class_means.iter().find(|m| m.len() != d) {
            bail!("a monitor class mean has {} values, not feature_dim {d}", m.len());
        }
        ensure!(!self.components.is_empty(), "monitor has no components");
        ensure!(
            self.components.len() == self.variances.len(),
            "monitor has {} components but {} variances",
            self.components.len(),
            self.variances.len()
        );
        if let Some(c) = self.components.iter().find(|c| c.len() != d) {
            bail!("a monitor component has {} values, not feature_dim {d}", c.len());
        }
        let bounded = |v: &f32| v.is_finite() && v.abs() <= MAX_FEATURE;
        ensure!(
            self.class_means.iter().flatten().all(bounded),
            "monitor class means must be finite and within ±{MAX_FEATURE}"
        );
        for (i, c) in self.components.iter().enumerate() {
            let norm = c.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            ensure!(
                c.iter().all(bounded) && (norm - 1.0).abs() <= 1e-2,
                "monitor component {i} is not a unit vector (length {norm})"
            );
        }
        let all = || self.variances.iter().chain(std::iter::once(&self.residual_variance));
        ensure!(
            all().all(|&v| v.is_finite() && v > 0.0 && v <= MAX_FEATURE * MAX_FEATURE),
            "monitor variances must be positive, finite and at most {:e}",
            MAX_FEATURE * MAX_FEATURE
        );
        let (min, max) = all().fold((f32::INFINITY, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
        ensure!(
            min >= MIN_VARIANCE_RATIO * max,
            "monitor variances span {min:e} to {max:e}: the smallest would make any crop look \
             infinitely far (fitting shrinks them to within {MIN_VARIANCE_RATIO:e} of the largest)"
        );
        ensure!(self.train_count > 0, "monitor train_count is 0");
        let v = &self.validation;
        ensure!(
            v.count > 0 && v.count == v.mahalanobis.len(),
            "monitor validation count {} does not match its {} scores",
            v.count,
            v.mahalanobis.len()
        );
        for (name, list) in [
            ("mahalanobis", &v.mahalanobis),
            ("energy", &v.energy),
            ("max_softmax", &v.max_softmax),
        ] {
            ensure!(!list.is_empty(), "monitor has no validation {name} scores");
            ensure!(
                list.iter().all(|s| s.is_finite()) && list.is_sorted(),
                "monitor validation {name} scores must be finite and sorted"
            );
        }
        Ok(())
    }
}

/// Largest magnitude a stored feature statistic may have. Penultimate ResNet features are
/// averages of ReLU outputs, far below this; larger values would overflow `f32` squares.
pub const MAX_FEATURE: f32 = 1e6;

/// Smallest variance a set may hold relative to its largest. Fitting shrinks every variance
/// towards the mean one (see [`crate::monitor::fit::SHRINKAGE`]), which keeps them far above
/// this.
pub const MIN_VARIANCE_RATIO: f32 = 1e-7;

/// The `q` quantile of an ascending list (the smallest value with at least `q` of the list
/// at or below it); `None` for an empty list. `q` is clamped to 0..1.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> MonitorStats {
        MonitorStats {
            feature_dim: 2,
            train_count: 4,
            class_means: vec![vec![0.0, 0.0], vec![1.0, 1.0]],
            components: vec![vec![1.0, 0.0]],
            variances: vec![2.0],
            residual_variance: 0.5,
            validation: ValidationScores {
                count: 2,
                mahalanobis: vec![0.5, 1.0],
                energy: vec![-2.0, -1.0],
                max_softmax: vec![0.1, 0.2],
            },
        }
    }

    #[test]
    fn values_that_would_make_every_coin_unfamiliar_are_refused() {
        stats().validate(2).unwrap();
        let tiny = MonitorStats { residual_variance: 1e-30, ..stats() };
        assert!(tiny.validate(2).unwrap_err().to_string().contains("variances span"));
        let mut huge = stats();
        huge.class_means[1][0] = 1e20;
        assert!(huge.validate(2).unwrap_err().to_string().contains("class means"));
        let not_unit = MonitorStats { components: vec![vec![0.0, 0.0]], ..stats() };
        assert!(not_unit.validate(2).unwrap_err().to_string().contains("unit vector"));
        let mut count = stats();
        count.validation.count = 0;
        assert!(count.validate(2).unwrap_err().to_string().contains("validation count"));
        let none = MonitorStats { components: vec![], variances: vec![], ..stats() };
        assert_eq!(none.validate(2).unwrap_err().to_string(), "monitor has no components");
    }

    #[test]
    fn quantile_picks_the_smallest_value_covering_q() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.5), Some(2.0));
        assert_eq!(quantile(&s, 0.51), Some(3.0));
        assert_eq!(quantile(&s, 0.99), Some(4.0));
        assert_eq!(quantile(&s, 0.0), Some(1.0));
        assert_eq!(quantile::<f32>(&[], 0.5), None);
        assert_eq!(quantile(&[3usize, 5, 9], 0.9), Some(9), "coin counts too");
    }
}
