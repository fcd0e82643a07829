//! Which training images each optimiser step sees, and class balancing.
//!
//! A target set from the robot's camera may hold far more of one coin than of another. Left
//! alone, the network learns the majority class best; [`Balance`] evens the classes out either
//! by drawing images with weights inverse to their class frequency or by weighting the loss.

use anyhow::{Context, Result};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Class balancing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Every training image once per epoch, in shuffled order.
    #[default]
    None,
    /// Each epoch draws as many images as the training side holds, with replacement, each
    /// class equally likely.
    Sampler,
    /// Every image once per epoch; the loss weights each class inverse to its frequency.
    Loss,
}

/// Training batches of one epoch, from the training indices `train` whose labels are
/// `labels[i]` for `train[i]`. The order is shuffled ([`Balance::None`], [`Balance::Loss`]) or
/// drawn with class-balanced weights ([`Balance::Sampler`]), then cut into `batch_size` pieces.
/// A final piece of one image is dropped, since BatchNorm cannot normalise a single value per
/// channel, so every mode gives the same number of batches.
pub fn epoch_batches(
    train: &[usize],
    labels: &[usize],
    batch_size: usize,
    balance: Balance,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Vec<usize>>> {
    let order = match balance {
        Balance::None | Balance::Loss => {
            let mut order = train.to_vec();
            order.shuffle(rng);
            order
        }
        Balance::Sampler => {
            let classes = labels.iter().max().map_or(0, |&m| m + 1);
            let weights = inverse_frequency(labels, classes);
            let per_image: Vec<f64> = labels.iter().map(|&l| weights[l]).collect();
            let dist = WeightedIndex::new(&per_image)
                .context("cannot build the class-balanced sampler: no training images")?;
            (0..train.len()).map(|_| train[dist.sample(rng)]).collect()
        }
    };
    Ok(order.chunks(batch_size).filter(|c| c.len() > 1).map(<[usize]>::to_vec).collect())
}

/// Per-class weight `n / (k * n_c)` for the labels `labels` (each below `classes`) of `n`
/// images in `k` present classes, indexed by label, 0 for a label that does not occur: the
/// weights of all images sum to `n`, and every present class carries the same total weight.
pub fn inverse_frequency(labels: &[usize], classes: usize) -> Vec<f64> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f64;
    let n = labels.len() as f64;
    counts.iter().map(|&c| if c == 0 { 0.0 } else { n / (present * c as f64) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn inverse_frequency_gives_every_class_the_same_total() {
        let w = inverse_frequency(&[0, 0, 0, 2], 4);
        assert_eq!(w, [4.0 / 6.0, 0.0, 2.0, 0.0]);
    }

    #[test]
    fn plain_batches_cover_the_side_and_drop_a_lone_last_image() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let train = [10, 11, 12, 13, 14];
        let batches = epoch_batches(&train, &[0; 5], 2, Balance::None, &mut rng).unwrap();
        assert_eq!(batches.len(), 2);
        let mut seen: Vec<usize> = batches.concat();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4);
        assert!(seen.iter().all(|i| train.contains(i)));
    }

    #[test]
    fn sampler_evens_out_a_rare_class() {
        // 90 images of class 0 and 10 of class 1: balanced draws give about half of each.
        let train: Vec<usize> = (0..100).collect();
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i >= 90)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut rare = 0;
        for _ in 0..20 {
            let batches = epoch_batches(&train, &labels, 10, Balance::Sampler, &mut rng).unwrap();
            assert_eq!(batches.len(), 10);
            rare += batches.concat().iter().filter(|&&i| i >= 90).count();
        }
        assert!((850..=1150).contains(&rare), "{rare} of 2000 draws from the rare class");
        let mut a = ChaCha8Rng::seed_from_u64(4);
        let mut b = ChaCha8Rng::seed_from_u64(4);
        assert_eq!(
            epoch_batches(&train, &labels, 10, Balance::Sampler, &mut a).unwrap(),
            epoch_batches(&train, &labels, 10, Balance::Sampler, &mut b).unwrap()
        );
    }
}
