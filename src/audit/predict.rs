//! Classifying a folder of crops with an exported model, as they are or with the coin hidden.

use anyhow::{Result, bail};
use indicatif::ProgressBar;

use crate::classify::model::Classifier;
use crate::train::dataset::ImageSet;

/// Crops classified per model call.
pub const BATCH: usize = 64;

/// True and predicted labels of a classified set, as indices into the model's labels.
///
/// Invariant: `truth.len() == predicted.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicted {
    /// The label each crop's folder names.
    pub truth: Vec<usize>,
    /// The label the model chose.
    pub predicted: Vec<usize>,
}

impl Predicted {
    /// Crops whose predicted label is the true one.
    pub fn correct(&self) -> usize {
        self.truth.iter().zip(&self.predicted).filter(|(t, p)| t == p).count()
    }
}

/// For each label of `set`, its index among `model_labels`; fails naming the first folder the
/// model has no label for.
pub fn label_map(set: &ImageSet, model_labels: &[String]) -> Result<Vec<usize>> {
    set.labels
        .iter()
        .map(|l| match model_labels.iter().position(|m| m == l) {
            Some(i) => Ok(i),
            None => bail!(
                "class folder {} has no label in the model (its labels are {model_labels:?})",
                set.root.join(l).display()
            ),
        })
        .collect()
}

/// Fills the disc of `radius` pixels at the centre of a `side`×`side` packed RGB crop with the
/// mean colour of the pixels outside it. The background's own mean is used, not the whole
/// crop's: that would paint the hidden coin's average colour (copper, brass, two-tone) back
/// into the hole.
pub fn mask_coin(rgb: &mut [u8], side: usize, radius: f32) {
    let c = side as f32 / 2.0;
    let inside = |x: usize, y: usize| {
        let (dx, dy) = (x as f32 + 0.5 - c, y as f32 + 0.5 - c);
        dx * dx + dy * dy <= radius * radius
    };
    let (mut sum, mut n) = ([0u64; 3], 0u64);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        if !inside(i % side, i / side) {
            for (s, &v) in sum.iter_mut().zip(px) {
                *s += u64::from(v);
            }
            n += 1;
        }
    }
    let fill: [u8; 3] =
        if n == 0 { [128; 3] } else { std::array::from_fn(|ch| ((sum[ch] + n / 2) / n) as u8) };
    for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
        if inside(i % side, i / side) {
            px.copy_from_slice(&fill);
        }
    }
}

/// Classifies every crop of `set` (already at the model's input size) in batches of
/// [`BATCH`]; with `mask_radius`, the central coin disc is hidden first ([`mask_coin`]).
/// `bar` advances by one per crop.
pub fn predict(
    classifier: &Classifier,
    set: &ImageSet,
    mask_radius: Option<f32>,
    bar: &ProgressBar,
) -> Result<Predicted> {
    let meta = classifier.metadata();
    if set.side != meta.input_size {
        bail!(
            "images of {} were loaded at {} px but the model {} takes {} px",
            set.root.display(),
            set.side,
            classifier.path().display(),
            meta.input_size
        );
    }
    let map = label_map(set, &meta.labels)?;
    let side = set.side as usize;
    let mut predicted = Vec::with_capacity(set.samples.len());
    for chunk in set.samples.chunks(BATCH) {
        let mut pixels = Vec::with_capacity(chunk.len() * side * side * 3);
        for s in chunk {
            let start = pixels.len();
            pixels.extend_from_slice(s.rgb());
            if let Some(r) = mask_radius {
                mask_coin(&mut pixels[start..], side, r);
            }
        }
        predicted.extend(classifier.classify_rgb(&pixels)?.into_iter().map(|p| p.class));
        bar.inc(chunk.len() as u64);
    }
    let truth = set.samples.iter().map(|s| map[s.label]).collect();
    Ok(Predicted { truth, predicted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_paints_the_disc_with_the_background_mean() {
        let side = 8;
        let mut rgb = vec![0u8; side * side * 3];
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % side, i / side);
            let dx = x as f32 + 0.5 - 4.0;
            let dy = y as f32 + 0.5 - 4.0;
            let coin = dx * dx + dy * dy <= 4.0;
            px.copy_from_slice(if coin { &[250, 200, 0] } else { &[10, 20, 30] });
        }
        mask_coin(&mut rgb, side, 2.0);
        assert!(rgb.chunks_exact(3).all(|p| p == [10, 20, 30]), "{rgb:?}");
    }
}
