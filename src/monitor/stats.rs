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
        ensure!(
            self.components.len() == self.variances.len() && !self.components.is_empty(),
            "monitor has {} components but {} variances",
            self.components.len(),
            self.variances.len()
        );
        if let Some(c) = self.components.iter().find(|c| c.len() != d) {
            bail!("a monitor component has {} values, not feature_dim {d}", c.len());
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        ensure!(
            self.variances.iter().all(|&v| positive(v)) && positive(self.residual_variance),
            "monitor variances must be positive and finite"
        );
        let v = &self.validation;
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

/// The `q` quantile of an ascending list (the smallest value with at least `q` of the list
/// at or below it); `None` for an empty list. `q` is clamped to 0..1.
pub fn quantile(sorted: &[f32], q: f64) -> Option<f32> {
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

    #[test]
    fn quantile_picks_the_smallest_value_covering_q() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.5), Some(2.0));
        assert_eq!(quantile(&s, 0.51), Some(3.0));
        assert_eq!(quantile(&s, 0.99), Some(4.0));
        assert_eq!(quantile(&s, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
