//! Per-coin shift scores: how far a crop lies from the training data.

use std::str::FromStr;

use anyhow::{Context, Result, bail};

use super::stats::{MonitorStats, quantile};

/// Which number says "unlike the training data". Higher is always more unusual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// Squared Mahalanobis distance of the penultimate features to the nearest class mean,
    /// divided by the feature length (about 1 for a typical training crop).
    Mahalanobis,
    /// Energy: minus the log-sum-exp of the logits.
    Energy,
    /// One minus the largest softmax probability.
    MaxSoftmax,
}

impl ScoreKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [ScoreKind; 3] =
        [ScoreKind::Mahalanobis, ScoreKind::Energy, ScoreKind::MaxSoftmax];

    /// The name used in parameters and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Mahalanobis => "mahalanobis",
            Self::Energy => "energy",
            Self::MaxSoftmax => "max_softmax",
        }
    }

    /// The validation scores of this kind, sorted ascending.
    pub fn validation(self, stats: &MonitorStats) -> &[f32] {
        match self {
            Self::Mahalanobis => &stats.validation.mahalanobis,
            Self::Energy => &stats.validation.energy,
            Self::MaxSoftmax => &stats.validation.max_softmax,
        }
    }
}

impl FromStr for ScoreKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match Self::ALL.into_iter().find(|k| k.name() == s) {
            Some(k) => Ok(k),
            None => bail!("shift score {s:?} is not one of mahalanobis, energy, max_softmax"),
        }
    }
}

/// The three raw scores of one crop. `mahalanobis` is `None` when the model gives no features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawScores {
    pub mahalanobis: Option<f32>,
    pub energy: f32,
    pub max_softmax: f32,
}

impl RawScores {
    /// The score of one kind, if the crop has it.
    pub fn get(&self, kind: ScoreKind) -> Option<f32> {
        match kind {
            ScoreKind::Mahalanobis => self.mahalanobis,
            ScoreKind::Energy => Some(self.energy),
            ScoreKind::MaxSoftmax => Some(self.max_softmax),
        }
    }
}

/// Energy of a logit vector: `-log Σ exp(l)`, computed without overflow.
pub fn energy(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f32::INFINITY;
    }
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    -(max + sum.ln())
}

/// One minus the largest softmax probability of a logit vector.
pub fn max_softmax(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return 1.0;
    }
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    1.0 - 1.0 / sum
}

/// Scores crops against a model's [`MonitorStats`], with the projections it needs worked out
/// once at load time so that a coin costs about `(components + classes) × feature_dim`
/// multiplications.
#[derive(Debug, Clone)]
pub struct ShiftScorer {
    stats: MonitorStats,
    /// Each class mean projected on each component: `[class][component]`.
    mean_proj: Vec<Vec<f32>>,
    /// Squared length of each class mean.
    mean_sq: Vec<f32>,
}

impl ShiftScorer {
    /// Builds a scorer; fails when the statistics break their invariants.
    pub fn new(stats: MonitorStats) -> Result<Self> {
        stats.validate(stats.class_means.len()).context("monitor statistics are inconsistent")?;
        let mean_proj = stats
            .class_means
            .iter()
            .map(|m| stats.components.iter().map(|c| dot(c, m)).collect())
            .collect();
        let mean_sq = stats.class_means.iter().map(|m| dot(m, m)).collect();
        Ok(Self { stats, mean_proj, mean_sq })
    }

    /// The statistics the scorer was built from.
    pub fn stats(&self) -> &MonitorStats {
        &self.stats
    }

    /// The feature-space score of one feature vector (see [`ScoreKind::Mahalanobis`]); `None`
    /// when its length is not the statistics' `feature_dim`.
    pub fn mahalanobis(&self, features: &[f32]) -> Option<f32> {
        let s = &self.stats;
        if features.len() != s.feature_dim {
            return None;
        }
        let proj: Vec<f32> = s.components.iter().map(|c| dot(c, features)).collect();
        let f_sq = dot(features, features);
        let mut best = f32::INFINITY;
        for (class, mean) in s.class_means.iter().enumerate() {
            let total = f_sq - 2.0 * dot(features, mean) + self.mean_sq[class];
            let mut inside = 0.0f32;
            let mut explained = 0.0f32;
            for ((p, mp), v) in proj.iter().zip(&self.mean_proj[class]).zip(&s.variances) {
                let d = p - mp;
                explained += d * d;
                inside += d * d / v;
            }
            let outside = (total - explained).max(0.0) / s.residual_variance;
            let d = inside + outside;
            // Non-finite features (or overflow) make the crop infinitely unfamiliar, never
            // silently familiar.
            best = if d.is_nan() { f32::INFINITY } else { best.min(d) };
            if best == f32::INFINITY {
                break;
            }
        }
        Some(best / s.feature_dim as f32)
    }

    /// All three scores of one crop.
    pub fn scores(&self, logits: &[f32], features: &[f32]) -> RawScores {
        RawScores {
            mahalanobis: self.mahalanobis(features),
            energy: energy(logits),
            max_softmax: max_softmax(logits),
        }
    }
}

/// A score kind with the two validation points that scale it: the median and the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub kind: ScoreKind,
    /// Median validation score: scaled to 0.
    pub median: f32,
    /// The threshold quantile of the validation scores: scaled to 1.
    pub threshold: f32,
    /// The quantile the threshold was taken at.
    pub quantile: f64,
}

impl Threshold {
    /// The threshold at validation quantile `q` (e.g. 0.99 rejects about 1% of crops like the
    /// validation set) for `kind`. Fails when `q` is outside 0.5..=1.
    pub fn from_validation(stats: &MonitorStats, kind: ScoreKind, q: f64) -> Result<Self> {
        if !(0.5..=1.0).contains(&q) {
            bail!("shift_threshold_quantile {q} is outside 0.5..1");
        }
        let v = kind.validation(stats);
        let median = quantile(v, 0.5).context("no validation scores")?;
        let threshold = quantile(v, q).context("no validation scores")?;
        Ok(Self { kind, median, threshold, quantile: q })
    }

    /// `raw` scaled so that the median validation crop is 0 and the threshold is 1.
    pub fn scale(&self, raw: f32) -> f32 {
        let span = (self.threshold - self.median).max(1e-6 * self.threshold.abs().max(1.0));
        (raw - self.median) / span
    }
}

/// The dot product of the common length of `a` and `b`. Summed in [`DOT_LANES`] independent
/// running sums rather than one: a single sum makes every addition wait for the one before,
/// which made the shift monitor's 73 products of 2048 features cost 0.13 ms per coin.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (a[..n].chunks_exact(DOT_LANES), b[..n].chunks_exact(DOT_LANES));
    let tail: f32 = a.remainder().iter().zip(b.remainder()).map(|(x, y)| x * y).sum();
    let mut sums = [0.0f32; DOT_LANES];
    for (x, y) in a.zip(b) {
        for ((s, x), y) in sums.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Running sums in [`dot`]: enough to keep a core's vector adders busy.
const DOT_LANES: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::stats::ValidationScores;

    fn stats() -> MonitorStats {
        MonitorStats {
            feature_dim: 3,
            train_count: 10,
            class_means: vec![vec![0.0, 0.0, 0.0], vec![10.0, 0.0, 0.0]],
            components: vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]],
            variances: vec![4.0, 1.0],
            residual_variance: 0.25,
            validation: ValidationScores {
                count: 3,
                mahalanobis: vec![0.1, 0.5, 1.0],
                energy: vec![-9.0, -8.0, -2.0],
                max_softmax: vec![0.0, 0.1, 0.4],
            },
        }
    }

    #[test]
    fn dot_covers_every_element_of_the_common_length() {
        let a: Vec<f32> = (1..=37).map(|i| i as f32).collect();
        let b = vec![2.0f32; 40];
        assert_eq!(dot(&a, &b), (37 * 38) as f32);
        assert_eq!(dot(&b, &a), (37 * 38) as f32);
        assert_eq!(dot(&a[..16], &b), (16 * 17) as f32);
        assert_eq!(dot(&a[..3], &b), 12.0);
        assert_eq!(dot(&[], &b), 0.0);
    }

    #[test]
    fn distance_is_to_the_nearest_class_per_direction_variance() {
        let s = ShiftScorer::new(stats()).unwrap();
        // 2 along a variance-4 direction: 1; 1 along variance 1: 1; 1 outside (0.25): 4.
        let d = s.mahalanobis(&[2.0, 1.0, 1.0]).unwrap();
        assert!((d - 6.0 / 3.0).abs() < 1e-5, "{d}");
        let near_second = s.mahalanobis(&[10.0, 0.0, 0.5]).unwrap();
        assert!((near_second - 1.0 / 3.0).abs() < 1e-5, "{near_second}");
        assert_eq!(s.mahalanobis(&[1.0]), None);
    }

    #[test]
    fn logit_scores_grow_with_uncertainty() {
        assert!((energy(&[0.0, 0.0]) + 2f32.ln()).abs() < 1e-6);
        assert!(energy(&[10.0, 0.0]) < energy(&[1.0, 0.0]));
        assert!((max_softmax(&[0.0, 0.0]) - 0.5).abs() < 1e-6);
        assert!(max_softmax(&[1000.0, 0.0]) < 1e-6);
        assert_eq!(energy(&[f32::NAN]), f32::INFINITY);
    }

    #[test]
    fn thresholds_scale_median_to_zero_and_threshold_to_one() {
        let t = Threshold::from_validation(&stats(), ScoreKind::Energy, 1.0).unwrap();
        assert_eq!((t.median, t.threshold), (-8.0, -2.0));
        assert_eq!(t.scale(-8.0), 0.0);
        assert_eq!(t.scale(-2.0), 1.0);
        assert_eq!(t.scale(4.0), 2.0);
        assert!(Threshold::from_validation(&stats(), ScoreKind::Energy, 0.2).is_err());
        assert_eq!("energy".parse::<ScoreKind>().unwrap(), ScoreKind::Energy);
        assert!("bogus".parse::<ScoreKind>().unwrap_err().to_string().contains("bogus"));
    }
}
