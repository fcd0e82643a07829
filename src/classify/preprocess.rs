//! Turning RGB pixels into the normalised CHW floats the model reads.
//!
//! Training and inference both call [`normalise_rgb`], so a crop is prepared the same way in
//! both; a mismatch here is the classic silent accuracy loss.

/// Converts a packed RGB image (HWC, `u8`) into normalised planar floats (CHW), appending to
/// `out`. `rgb.len()` must be `width * height * 3`.
pub fn normalise_rgb(rgb: &[u8], mean: [f32; 3], std: [f32; 3], out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + rgb.len() / 3 * 3, 0.0);
    normalise_rgb_planar(rgb, mean, std, &mut out[start..]);
}

/// Per-channel `(scale, shift)` so that a byte `v` normalises to `v * scale - shift`.
fn affine(mean: [f32; 3], std: [f32; 3]) -> ([f32; 3], [f32; 3]) {
    (std::array::from_fn(|c| 1.0 / (255.0 * std[c])), std::array::from_fn(|c| mean[c] / std[c]))
}

/// [`normalise_rgb`] into `out`, which holds exactly the three planes (`rgb.len()` floats).
pub fn normalise_rgb_planar(rgb: &[u8], mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let n = rgb.len() / 3;
    let (scale, shift) = affine(mean, std);
    let (r, rest) = out.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        r[i] = px[0] as f32 * scale[0] - shift[0];
        g[i] = px[1] as f32 * scale[1] - shift[1];
        b[i] = px[2] as f32 * scale[2] - shift[2];
    }
}

/// Normalises packed RGB into packed floats (HWC, the channels-last layout), into `out`, which
/// holds exactly `rgb.len()` floats. Same values as [`normalise_rgb_planar`], other order.
pub fn normalise_rgb_interleaved(rgb: &[u8], mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let (scale, shift) = affine(mean, std);
    for (px, o) in rgb.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
        for c in 0..3 {
            o[c] = px[c] as f32 * scale[c] - shift[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_channel_into_its_plane() {
        let rgb = [255u8, 0, 51, 0, 255, 102];
        let mut out = Vec::new();
        normalise_rgb(&rgb, [0.5, 0.5, 0.0], [0.5, 0.25, 0.2], &mut out);
        let want = [1.0, -1.0, -2.0, 2.0, 1.0, 2.0];
        assert_eq!(out.len(), 6);
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn interleaved_holds_the_planar_values_pixel_by_pixel() {
        let rgb = [255u8, 0, 51, 0, 255, 102];
        let (mean, std) = ([0.5, 0.5, 0.0], [0.5, 0.25, 0.2]);
        let mut planar = [0.0; 6];
        normalise_rgb_planar(&rgb, mean, std, &mut planar);
        let mut packed = [0.0; 6];
        normalise_rgb_interleaved(&rgb, mean, std, &mut packed);
        assert_eq!(packed, [planar[0], planar[2], planar[4], planar[1], planar[3], planar[5]]);
    }
}
