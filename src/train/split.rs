//! Train/validation split by source photo.
//!
//! Crops cut from one photo share lighting and background, so a split that puts crops of one
//! photo on both sides measures memory of the photo, not recognition of the coin. This split
//! keeps every group (source photo) whole.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Indices of samples on each side of a split, both sorted ascending.
///
/// Invariant: the sides are disjoint, together cover every sample, and no group has samples on
/// both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Samples to train on.
    pub train: Vec<usize>,
    /// Samples to select the best epoch on.
    pub val: Vec<usize>,
}

/// Splits samples, given as `(label, group)` in sample order, so that about `val_fraction` of
/// each label's groups go to validation.
///
/// Stratified per label (a group counts for the label of its first sample) so every class is
/// validated: a label with two or more groups puts at least one on each side; a label with a
/// single group keeps it for training. The result depends only on the keys, `val_fraction` and
/// `seed`. `val_fraction` must lie in `[0, 1)`.
pub fn split_by_group<'a>(
    keys: impl IntoIterator<Item = (usize, &'a str)>,
    val_fraction: f64,
    seed: u64,
) -> Result<Split> {
    ensure!(
        (0.0..1.0).contains(&val_fraction),
        "validation fraction {val_fraction} is not in [0, 1)"
    );
    let mut groups: BTreeMap<&str, (usize, Vec<usize>)> = BTreeMap::new();
    for (i, (label, group)) in keys.into_iter().enumerate() {
        groups.entry(group).or_insert((label, Vec::new())).1.push(i);
    }
    let mut by_label: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (name, (label, _)) in &groups {
        by_label.entry(*label).or_default().push(name);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split { train: Vec::new(), val: Vec::new() };
    for names in by_label.values_mut() {
        names.shuffle(&mut rng);
        let n = names.len();
        let wanted = (val_fraction * n as f64).round() as usize;
        let n_val = if val_fraction > 0.0 && n >= 2 { wanted.clamp(1, n - 1) } else { 0 };
        for (k, name) in names.iter().enumerate() {
            let side = if k < n_val { &mut split.val } else { &mut split.train };
            side.extend_from_slice(&groups[name].1);
        }
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_with_two_groups_is_on_both_sides() {
        let keys = [(0, "a"), (0, "a"), (0, "b"), (1, "c"), (1, "d"), (1, "d"), (2, "e")];
        let s = split_by_group(keys, 0.1, 3).unwrap();
        let labels = |idx: &[usize]| idx.iter().map(|&i| keys[i].0).collect::<Vec<_>>();
        assert!(labels(&s.val).contains(&0) && labels(&s.train).contains(&0));
        assert!(labels(&s.val).contains(&1) && labels(&s.train).contains(&1));
        assert_eq!(labels(&s.train).iter().filter(|&&l| l == 2).count(), 1);
        assert_eq!(s.train.len() + s.val.len(), keys.len());
    }

    #[test]
    fn zero_fraction_trains_on_everything() {
        let s = split_by_group([(0, "a"), (0, "b")], 0.0, 1).unwrap();
        assert_eq!(s.train, [0, 1]);
        assert!(s.val.is_empty());
    }

    #[test]
    fn rejects_fractions_outside_unit_interval() {
        assert!(split_by_group([(0, "a")], 1.0, 1).is_err());
        assert!(split_by_group([(0, "a")], -0.1, 1).is_err());
        assert!(split_by_group([(0, "a")], f64::NAN, 1).is_err());
    }
}
