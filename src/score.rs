//! Scoring detections against ground truth: which labelled coin each detection belongs to.
//! The counts built on it are [`crate::eval::metrics::Scorer`].

use std::path::{Path, PathBuf};

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

/// Where a bag's ground truth is by default: `ground_truth.jsonl` in the bag folder, or
/// beside a bare storage file.
pub fn truth_beside(bag: &Path) -> PathBuf {
    let dir = if bag.is_dir() { bag } else { bag.parent().unwrap_or(Path::new(".")) };
    dir.join("ground_truth.jsonl")
}

/// Largest ground-truth file read: far above any recording's truth, and a guard against
/// being pointed at a device or a huge file by mistake.
const MAX_TRUTH_BYTES: u64 = 256 << 20;

/// Reads a `ground_truth.jsonl` file (one [`TruthFrame`] per line). Fails, naming the file and
/// line, on a malformed line, a stamp seen before, or a coin whose centre is not finite or
/// whose radius is not a positive finite number.
pub fn read_ground_truth(path: &Path) -> Result<Vec<TruthFrame>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read ground truth {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_TRUTH_BYTES,
        "ground truth {} is {size} bytes, more than the {MAX_TRUTH_BYTES} this reads",
        path.display()
    );
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read ground truth {}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    let mut frames = Vec::new();
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{} line {}", path.display(), i + 1);
        let f: TruthFrame = serde_json::from_str(l)
            .with_context(|| format!("{}: not a ground-truth frame", at()))?;
        anyhow::ensure!(seen.insert(f.stamp_ns), "{}: stamp {} appears twice", at(), f.stamp_ns);
        for c in &f.coins {
            anyhow::ensure!(
                c.x.is_finite() && c.y.is_finite() && c.r.is_finite() && c.r > 0.0,
                "{}: coin {:?} at ({}, {}) radius {} is not a coin",
                at(),
                c.label,
                c.x,
                c.y,
                c.r
            );
        }
        frames.push(f);
    }
    Ok(frames)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_refuses_repeated_stamps_and_impossible_coins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gt.jsonl");
        let line = |stamp: i64, r: &str| {
            let coin = format!(r#"{{"label": "1e", "x": 5, "y": 5, "r": {r}}}"#);
            format!(r#"{{"stamp_ns": {stamp}, "source": "s", "coins": [{coin}]}}"#)
        };
        std::fs::write(&path, format!("{}\n\n{}\n", line(1, "4"), line(2, "4.5"))).unwrap();
        assert_eq!(read_ground_truth(&path).unwrap().len(), 2);
        std::fs::write(&path, format!("{}\n{}\n", line(1, "4"), line(1, "4"))).unwrap();
        let err = format!("{:#}", read_ground_truth(&path).unwrap_err());
        assert!(err.contains("line 2") && err.contains("appears twice"), "{err}");
        for bad in ["0", "-3"] {
            std::fs::write(&path, line(3, bad)).unwrap();
            let err = format!("{:#}", read_ground_truth(&path).unwrap_err());
            assert!(err.contains("line 1") && err.contains("is not a coin"), "{err}");
        }
    }

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
        let mut t = crate::eval::metrics::Scorer::new(&[]);
        t.add(&truth, &dets);
        assert_eq!((t.frames, t.detections, t.labelled, t.matched, t.correct()), (1, 4, 3, 2, 0));
        t.add(&truth[..1], &[det(0.0, 0.0, "1e")]);
        assert_eq!((t.matched, t.correct()), (3, 1));
        assert_eq!(t.accuracy(), Some(1.0 / 3.0));
    }
}
