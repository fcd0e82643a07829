//! The figures of an evaluation: detection and classification counts scored against labelled
//! coins, per-class rates and the confusion matrix, each rate with its exact 95% interval, and
//! per-stage latency percentiles.

use std::time::Duration;

use serde::Serialize;

use crate::audit::stats::{CONFIDENCE, Interval, clopper_pearson};
use crate::msgs::coin_sorter::CoinDetection;
use crate::score::{TruthCoin, match_coins};

/// Running counts over the scored frames.
///
/// Detections are scored only against labelled coins. Photos may hold coins nobody labelled,
/// so a detection without a labelled coin is not necessarily false: `unmatched_detections`
/// counts them, and the precision built on it is a lower bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scorer {
    /// Labels in confusion order: the model's, then any truth label the model lacks.
    pub labels: Vec<String>,
    /// Frames scored against ground truth.
    pub frames: usize,
    /// Labelled coins in those frames.
    pub labelled: usize,
    /// Detections in those frames.
    pub detections: usize,
    /// Labelled coins with a detection within half a radius of their centre.
    pub matched: usize,
    /// Detections matching no labelled coin.
    pub unmatched_detections: usize,
    /// `[true][predicted]` over matched coins.
    pub confusion: Vec<Vec<usize>>,
    /// Labelled coins per true label, detected or not (same order as `labels`).
    pub labelled_per_class: Vec<usize>,
}

impl Scorer {
    /// A scorer for a model answering `model_labels`.
    pub fn new(model_labels: &[String]) -> Self {
        let n = model_labels.len();
        Self {
            labels: model_labels.to_vec(),
            confusion: vec![vec![0; n]; n],
            labelled_per_class: vec![0; n],
            ..Self::default()
        }
    }

    fn index(&mut self, label: &str) -> usize {
        if let Some(i) = self.labels.iter().position(|l| l == label) {
            return i;
        }
        self.labels.push(label.to_owned());
        for row in &mut self.confusion {
            row.push(0);
        }
        self.confusion.push(vec![0; self.labels.len()]);
        self.labelled_per_class.push(0);
        self.labels.len() - 1
    }

    /// Scores one frame's detections against its labelled coins.
    pub fn add(&mut self, truth: &[TruthCoin], dets: &[CoinDetection]) {
        let pairs = match_coins(truth, dets);
        self.frames += 1;
        self.labelled += truth.len();
        self.detections += dets.len();
        self.matched += pairs.len();
        self.unmatched_detections += dets.len() - pairs.len();
        for t in truth {
            let i = self.index(&t.label);
            self.labelled_per_class[i] += 1;
        }
        for (ti, di) in pairs {
            let (t, p) = (self.index(&truth[ti].label), self.index(&dets[di].label));
            self.confusion[t][p] += 1;
        }
    }

    /// Scores one crop whose true label is `truth` and predicted label `predicted` (an image
    /// set: every crop is one detected coin).
    pub fn add_crop(&mut self, truth: &str, predicted: &str) {
        let (t, p) = (self.index(truth), self.index(predicted));
        self.frames += 1;
        self.labelled += 1;
        self.detections += 1;
        self.matched += 1;
        self.labelled_per_class[t] += 1;
        self.confusion[t][p] += 1;
    }

    /// Matched coins labelled right.
    pub fn correct(&self) -> usize {
        (0..self.labels.len()).map(|i| self.confusion[i][i]).sum()
    }

    /// Share of matched coins labelled right (None when nothing matched).
    pub fn accuracy(&self) -> Option<f64> {
        (self.matched > 0).then(|| self.correct() as f64 / self.matched as f64)
    }

    /// The rates with intervals.
    pub fn summary(&self) -> Scores {
        let k = self.labels.len();
        let classes = (0..k)
            .map(|c| {
                let true_n: usize = self.confusion[c].iter().sum();
                let pred_n: usize = (0..k).map(|t| self.confusion[t][c]).sum();
                let hit = self.confusion[c][c];
                ClassScore {
                    label: self.labels[c].clone(),
                    labelled: self.labelled_per_class[c],
                    matched: true_n,
                    predicted: pred_n,
                    precision: clopper_pearson(hit, pred_n, CONFIDENCE),
                    recall: clopper_pearson(hit, true_n, CONFIDENCE),
                }
            })
            .collect();
        Scores {
            detection_recall: clopper_pearson(self.matched, self.labelled, CONFIDENCE),
            detection_precision_lower_bound: clopper_pearson(
                self.matched,
                self.detections,
                CONFIDENCE,
            ),
            accuracy: clopper_pearson(self.correct(), self.matched, CONFIDENCE),
            classes,
        }
    }
}

/// One class's classification figures over matched coins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// The label.
    pub label: String,
    /// Labelled coins of this class, detected or not.
    pub labelled: usize,
    /// Of those, detected (matched).
    pub matched: usize,
    /// Matched coins of any class predicted as this one.
    pub predicted: usize,
    /// Right among `predicted`.
    pub precision: Interval,
    /// Right among `matched`.
    pub recall: Interval,
}

/// Every rate of an evaluation, with exact 95% intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Labelled coins detected.
    pub detection_recall: Interval,
    /// Detections that hit a labelled coin: a lower bound of precision when photos hold
    /// unlabelled coins.
    pub detection_precision_lower_bound: Interval,
    /// Matched coins labelled right.
    pub accuracy: Interval,
    /// Per class, in confusion order.
    pub classes: Vec<ClassScore>,
}

/// Percentiles of one stage's time per frame, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (all zero when empty).
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            n: ms.len(),
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coin(label: &str, x: f32) -> TruthCoin {
        TruthCoin { label: label.into(), x, y: 0.0, r: 20.0 }
    }

    fn det(label: &str, x: f32) -> CoinDetection {
        CoinDetection { label: label.into(), x, radius: 20.0, ..Default::default() }
    }

    /// Two frames worked out by hand: 5 labelled coins, 5 detections, 4 matches, 3 right.
    #[test]
    fn hand_checked_two_frames() {
        let labels: Vec<String> = ["1e", "2e"].iter().map(|s| s.to_string()).collect();
        let mut s = Scorer::new(&labels);
        // Frame 1: 1e found and right, 2e found but called 1e, a detection on no labelled coin.
        s.add(
            &[coin("1e", 0.0), coin("2e", 100.0)],
            &[det("1e", 5.0), det("1e", 104.0), det("2e", 300.0)],
        );
        // Frame 2: 2e right, 1e right, a 5c (unknown to the model) missed.
        s.add(
            &[coin("2e", 0.0), coin("1e", 100.0), coin("5c", 200.0)],
            &[det("2e", 2.0), det("1e", 95.0)],
        );
        assert_eq!((s.frames, s.labelled, s.detections, s.matched), (2, 5, 5, 4));
        assert_eq!(s.unmatched_detections, 1);
        assert_eq!(s.labels, ["1e", "2e", "5c"]);
        assert_eq!(s.confusion, [[2, 0, 0], [1, 1, 0], [0, 0, 0]]);
        let sc = s.summary();
        assert_eq!((sc.accuracy.successes, sc.accuracy.n), (3, 4));
        assert_eq!((sc.detection_recall.successes, sc.detection_recall.n), (4, 5));
        assert_eq!(sc.detection_precision_lower_bound.n, 5);
        // 3 of 4: exact 95% interval [0.1941, 0.9937].
        assert!((sc.accuracy.low - 0.19412).abs() < 1e-4, "{}", sc.accuracy.low);
        assert!((sc.accuracy.high - 0.99369).abs() < 1e-4, "{}", sc.accuracy.high);
        let one_e = &sc.classes[0];
        assert_eq!((one_e.labelled, one_e.matched, one_e.predicted), (2, 2, 3));
        assert_eq!((one_e.precision.successes, one_e.recall.successes), (2, 2));
        assert_eq!(sc.classes[2].labelled, 1);
        assert_eq!(sc.classes[2].matched, 0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&samples);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms), (50.0, 95.0, 99.0, 100.0));
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(Latency::of(&[]).n, 0);
    }
}
