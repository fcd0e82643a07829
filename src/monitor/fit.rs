//! Fitting the monitor's statistics from the features of training and validation crops.

use anyhow::{Context, Result, ensure};
use tch::{Device, Kind, Tensor};

use super::score::ShiftScorer;
use super::stats::{MonitorStats, ValidationScores};
use crate::classify::model::rows;

/// Most principal directions kept. 64 of 2048 hold the directions a class varies along most;
/// more would grow the metadata file without changing which crops look unusual.
pub const MAX_COMPONENTS: usize = 64;

/// Weight of the isotropic target the covariance is shrunk towards. With fewer crops than
/// feature dimensions most eigenvalues are zero, and an unshrunk distance would call every
/// crop outside the training span infinitely far.
pub const SHRINKAGE: f64 = 0.1;

/// Features and logits of a set of crops, one row per crop.
#[derive(Debug)]
pub struct Embedded {
    /// `[N, feature_dim]` penultimate features.
    pub features: Tensor,
    /// `[N, classes]` logits.
    pub logits: Tensor,
}

/// Computes [`MonitorStats`] from the training crops' features and labels, and scores the
/// validation crops with them. Without validation crops the training crops are scored instead
/// (their scores run low, so thresholds come out strict). Fails when a class has no crop.
pub fn fit(
    train: &Embedded,
    labels: &[usize],
    classes: usize,
    val: Option<&Embedded>,
) -> Result<MonitorStats> {
    let f = train.features.to_device(Device::Cpu).to_kind(Kind::Double);
    let (n, d) = f.size2().context("training features must be a [N, D] tensor")?;
    ensure!(n as usize == labels.len(), "{n} feature rows for {} labels", labels.len());
    ensure!(n > 0 && d > 0, "no training features to fit the monitor on");
    ensure!(
        n as usize > classes,
        "the monitor needs more training crops than classes to see how a class varies; it \
         got {n} crops of {classes} classes"
    );
    let mut means = Vec::with_capacity(classes);
    for c in 0..classes {
        let rows: Vec<i64> =
            labels.iter().enumerate().filter(|(_, l)| **l == c).map(|(i, _)| i as i64).collect();
        ensure!(!rows.is_empty(), "class {c} has no training crop for the monitor");
        means.push(f.index_select(0, &Tensor::from_slice(&rows)).mean_dim(0, false, Kind::Double));
    }
    let means = Tensor::stack(&means, 0);
    let label_idx: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let centred = &f - means.index_select(0, &Tensor::from_slice(&label_idx));
    let cov = centred.tr().matmul(&centred) / n as f64;
    let (eigenvalues, eigenvectors) = cov.f_linalg_eigh("L").context("eigendecomposition")?;
    let k = MAX_COMPONENTS.min(d as usize).min((n as usize).saturating_sub(classes).max(1));
    let ki = k as i64;
    let all: Vec<f64> = Vec::try_from(eigenvalues.flip([0]))?;
    let vectors = eigenvectors.flip([1]).narrow(1, 0, ki).tr().contiguous();
    let trace: f64 = all.iter().map(|v| v.max(0.0)).sum();
    ensure!(
        trace.is_finite() && trace > 0.0,
        "the {n} training crops' features do not vary within their classes (variance {trace}); \
         the monitor needs at least two different crops of some class"
    );
    let iso = (trace / d as f64).max(f64::MIN_POSITIVE);
    let rest = &all[k..];
    let rest_mean = if rest.is_empty() {
        iso
    } else {
        rest.iter().map(|v| v.max(0.0)).sum::<f64>() / rest.len() as f64
    };
    let shrink = |v: f64| ((1.0 - SHRINKAGE) * v.max(0.0) + SHRINKAGE * iso) as f32;
    let mut stats = MonitorStats {
        feature_dim: d as usize,
        train_count: n as usize,
        class_means: rows(&means)?,
        components: rows(&vectors)?,
        variances: all[..k].iter().map(|&v| shrink(v)).collect(),
        residual_variance: shrink(rest_mean),
        validation: ValidationScores::default(),
    };
    let scored = val.unwrap_or(train);
    stats.validation = validation_scores(&ShiftScorer::new(placeholder(&stats))?, scored)?;
    Ok(stats)
}

/// `stats` with a stand-in validation list, so a scorer can be built to produce the real one.
fn placeholder(stats: &MonitorStats) -> MonitorStats {
    let one = vec![0.0];
    MonitorStats {
        validation: ValidationScores {
            count: 1,
            mahalanobis: one.clone(),
            energy: one.clone(),
            max_softmax: one,
        },
        ..stats.clone()
    }
}

/// Scores every crop of `set` and returns the sorted lists.
fn validation_scores(scorer: &ShiftScorer, set: &Embedded) -> Result<ValidationScores> {
    let features = rows(&set.features)?;
    let logits = rows(&set.logits)?;
    let mut v = ValidationScores { count: features.len(), ..Default::default() };
    for (f, l) in features.iter().zip(&logits) {
        let s = scorer.scores(l, f);
        v.mahalanobis.push(s.mahalanobis.context("validation features have the wrong length")?);
        v.energy.push(s.energy);
        v.max_softmax.push(s.max_softmax);
    }
    ensure!(
        [&v.mahalanobis, &v.energy, &v.max_softmax].iter().all(|l| l.iter().all(|x| x.is_finite())),
        "a validation crop has a non-finite score (non-finite features or logits)"
    );
    for list in [&mut v.mahalanobis, &mut v.energy, &mut v.max_softmax] {
        list.sort_by(f32::total_cmp);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes on a plane inside 3-D space: crops off the plane must score far higher than
    /// crops on it, and the validation lists must be sorted and complete.
    #[test]
    fn off_plane_crops_score_far_higher() {
        let mut feats = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let c = i % 2;
            let t = (i as f32 * 0.37).sin();
            let u = (i as f32 * 0.91).cos();
            feats.extend([c as f32 * 5.0 + t, u, 0.01 * t * u]);
            labels.push(c);
        }
        let train = Embedded {
            features: Tensor::from_slice(&feats).view([40, 3]),
            logits: Tensor::zeros([40, 2], (Kind::Float, Device::Cpu)),
        };
        let stats = fit(&train, &labels, 2, None).unwrap();
        stats.validate(2).unwrap();
        assert_eq!(stats.validation.count, 40);
        assert_eq!(stats.components.len(), 3);
        let s = ShiftScorer::new(stats).unwrap();
        let on = s.mahalanobis(&[0.5, 0.2, 0.0]).unwrap();
        let off = s.mahalanobis(&[0.5, 0.2, 3.0]).unwrap();
        assert!(off > 100.0 * on, "on-plane {on}, off-plane {off}");
    }

    #[test]
    fn a_class_without_crops_is_refused() {
        let train = Embedded {
            features: Tensor::ones([4, 2], (Kind::Float, Device::Cpu)),
            logits: Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)),
        };
        let err = fit(&train, &[0, 0, 1, 1], 3, None).unwrap_err().to_string();
        assert!(err.contains("class 2"), "{err}");
    }
}
