//! Training-time augmentation of square RGB crops.
//!
//! A coin seen from above has no preferred orientation and either face may show, so every
//! rotation by a multiple of 90 degrees and every mirror image is an equally valid sample.

use rand::Rng;

/// Number of distinct symmetries of a square (4 rotations, each optionally mirrored).
pub const DIHEDRAL_COUNT: u8 = 8;

/// Applies symmetry `k` (0..[`DIHEDRAL_COUNT`]) of the square to a packed RGB image of
/// `side`×`side` pixels: `k % 4` quarter turns clockwise after a left-right mirror when
/// `k >= 4`. `k == 0` is the identity. `rgb.len()` must be `side * side * 3`.
pub fn dihedral(rgb: &[u8], side: usize, k: u8) -> Vec<u8> {
    debug_assert_eq!(rgb.len(), side * side * 3);
    let last = side.saturating_sub(1);
    let mut out = vec![0u8; rgb.len()];
    for y in 0..side {
        for x in 0..side {
            // Walk back from output (y, x) to the source pixel: undo the turns, then the mirror.
            let (sy, sx) = match k % 4 {
                0 => (y, x),
                1 => (last - x, y),
                2 => (last - y, last - x),
                _ => (x, last - y),
            };
            let sx = if k >= 4 { last - sx } else { sx };
            let src = (sy * side + sx) * 3;
            let dst = (y * side + x) * 3;
            out[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
        }
    }
    out
}

/// Returns a randomly augmented copy of a packed RGB `side`×`side` image: one of the
/// [`DIHEDRAL_COUNT`] symmetries, each equally likely.
pub fn augment_rgb(rgb: &[u8], side: usize, rng: &mut impl Rng) -> Vec<u8> {
    dihedral(rgb, side, rng.random_range(0..DIHEDRAL_COUNT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(side: usize) -> Vec<u8> {
        (0..side * side * 3).map(|i| i as u8).collect()
    }

    #[test]
    fn quarter_turn_moves_top_left_to_top_right() {
        // 2x2 image with pixels a b / c d (one byte per channel value, all channels equal).
        let px = |v: u8| [v, v, v];
        let img: Vec<u8> = [px(1), px(2), px(3), px(4)].concat();
        let turned = dihedral(&img, 2, 1);
        assert_eq!(turned, [px(3), px(1), px(4), px(2)].concat());
        let mirrored = dihedral(&img, 2, 4);
        assert_eq!(mirrored, [px(2), px(1), px(4), px(3)].concat());
    }

    #[test]
    fn all_symmetries_are_distinct_and_identity_is_first() {
        let img = ramp(5);
        let all: Vec<Vec<u8>> = (0..DIHEDRAL_COUNT).map(|k| dihedral(&img, 5, k)).collect();
        assert_eq!(all[0], img);
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "symmetries {i} and {j} coincide");
            }
        }
    }

    #[test]
    fn four_quarter_turns_are_the_identity() {
        let img = ramp(4);
        let mut t = img.clone();
        for _ in 0..4 {
            t = dihedral(&t, 4, 1);
        }
        assert_eq!(t, img);
    }
}
