//! Turning RGB pixels into the normalised CHW floats the model reads.
//!
//! Training and inference both call [`normalise_rgb`], so a crop is prepared the same way in
//! both; a mismatch here is the classic silent accuracy loss.

/// Converts a packed RGB image (HWC, `u8`) into normalised planar floats (CHW), appending to
/// `out`. `rgb.len()` must be `width * height * 3`.
pub fn normalise_rgb(rgb: &[u8], mean: [f32; 3], std: [f32; 3], out: &mut Vec<f32>) {
    let n = rgb.len() / 3;
    let start = out.len();
    out.resize(start + 3 * n, 0.0);
    let planes = &mut out[start..];
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| mean[c] / std[c]);
    let (r, rest) = planes.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        r[i] = px[0] as f32 * scale[0] - shift[0];
        g[i] = px[1] as f32 * scale[1] - shift[1];
        b[i] = px[2] as f32 * scale[2] - shift[2];
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
}
