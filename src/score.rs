//! Scoring detections against ground truth: which labelled coin each detection belongs to,
//! and the counts accuracy figures are made of.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::msgs::coin_sorter::CoinDetection;

/// One labelled coin in a recorded frame (pixels of the recorded image).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TruthCoin {
    pub label: String,
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

/// The labelled coins of one frame, keyed by the frame's header stamp.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TruthFrame {
    pub stamp_ns: i64,
    pub source: String,
    pub coins: Vec<TruthCoin>,
}

/// Reads a `ground_truth.jsonl` file (one [`TruthFrame`] per line); errors name the line.
pub fn read_ground_truth(path: &Path) -> Result<Vec<TruthFrame>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read ground truth {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!("{} line {}: not a ground-truth frame", path.display(), i + 1)
            })
        })
        .collect()
}

/// Pairs detections with labelled coins: a detection matches a coin when its centre lies
/// within half the coin's radius; each coin and each detection is used at most once, closest
/// pairs first. Returns `(truth index, detection index)` pairs.
pub fn match_coins(truth: &[TruthCoin], dets: &[CoinDetection]) -> Vec<(usize, usize)> {
    let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
    for (ti, t) in truth.iter().enumerate() {
        for (di, d) in dets.iter().enumerate() {
            let dist = ((d.x - t.x).powi(2) + (d.y - t.y).powi(2)).sqrt();
            if dist <= 0.5 * t.r {
                candidates.push((dist, ti, di));
            }
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut t_used, mut d_used) = (vec![false; truth.len()], vec![false; dets.len()]);
    let mut pairs = Vec::new();
    for (_, ti, di) in candidates {
        if !t_used[ti] && !d_used[di] {
            t_used[ti] = true;
            d_used[di] = true;
            pairs.push((ti, di));
        }
    }
    pairs.sort_unstable();
    pairs
}

/// Running totals over frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Frames scored.
    pub frames: usize,
    /// Coins the detector reported.
    pub detections: usize,
    /// Labelled coins in the scored frames.
    pub labelled: usize,
    /// Labelled coins with a matching detection.
    pub matched: usize,
    /// Matched coins whose label was right.
    pub correct: usize,
}

impl Tally {
    /// Adds one frame's detections scored against its labelled coins.
    pub fn add(&mut self, truth: &[TruthCoin], dets: &[CoinDetection]) {
        let pairs = match_coins(truth, dets);
        self.frames += 1;
        self.detections += dets.len();
        self.labelled += truth.len();
        self.matched += pairs.len();
        self.correct += pairs.iter().filter(|(t, d)| truth[*t].label == dets[*d].label).count();
    }

    /// Share of matched coins labelled right (None when nothing matched).
    pub fn accuracy(&self) -> Option<f64> {
        (self.matched > 0).then(|| self.correct as f64 / self.matched as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, label: &str) -> CoinDetection {
        CoinDetection { x, y, label: label.into(), radius: 10.0, ..Default::default() }
    }

    #[test]
    fn matches_within_half_a_radius_once_each() {
        let truth = vec![
            TruthCoin { label: "1e".into(), x: 0.0, y: 0.0, r: 20.0 },
            TruthCoin { label: "2e".into(), x: 100.0, y: 0.0, r: 20.0 },
            TruthCoin { label: "5c".into(), x: 200.0, y: 0.0, r: 20.0 },
        ];
        let dets = vec![
            det(9.0, 0.0, "1e"),
            det(2.0, 0.0, "2c"),
            det(111.0, 0.0, "2e"),
            det(100.0, 9.9, "2c"),
        ];
        assert_eq!(match_coins(&truth, &dets), vec![(0, 1), (1, 3)]);
        let mut t = Tally::default();
        t.add(&truth, &dets);
        assert_eq!(t, Tally { frames: 1, detections: 4, labelled: 3, matched: 2, correct: 0 });
        t.add(&truth[..1], &[det(0.0, 0.0, "1e")]);
        assert_eq!((t.matched, t.correct), (3, 1));
        assert_eq!(t.accuracy(), Some(1.0 / 3.0));
    }
}
