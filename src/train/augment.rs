//! Training-time augmentation of square RGB coin crops.
//!
//! A coin seen from above is round, has no preferred orientation, and either face may show, so
//! any rotation about the centre and any mirror image is an equally valid sample. The robot's
//! camera differs from the phone that took the training crops in distance, exposure, white
//! balance, focus, sensor noise and compression; the photometric steps imitate those.
//!
//! Every random choice is drawn from the caller's generator into [`Params`] first, so one seed
//! gives one sequence of augmented images, and [`apply`] is a pure function of its inputs.

use anyhow::{Context, Result};
use image::ImageFormat;
use image::codecs::jpeg::JpegEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Zoom range: 0.85 shows more background, 1.15 cuts a little into the rim (the crops leave
/// about 10% margin around the coin).
pub const ZOOM_RANGE: (f32, f32) = (0.85, 1.15);
/// Brightness factor range (exposure differences).
pub const BRIGHTNESS_RANGE: (f32, f32) = (0.75, 1.25);
/// Contrast factor range, about the image's mean grey level.
pub const CONTRAST_RANGE: (f32, f32) = (0.75, 1.25);
/// Colour temperature shift range: red gain `1 + t`, blue gain `1 - t` (warm for `t > 0`).
pub const WARMTH_RANGE: (f32, f32) = (-0.12, 0.12);
/// Probability and sigma range (pixels) of a Gaussian blur (focus).
pub const BLUR: (f64, (f32, f32)) = (0.25, (0.4, 1.2));
/// Probability and sigma range (0..255 levels) of additive Gaussian noise (sensor noise).
pub const NOISE: (f64, (f32, f32)) = (0.3, (2.0, 8.0));
/// Probability and quality range of a JPEG re-encode (compressed camera streams).
pub const JPEG: (f64, (u8, u8)) = (0.3, (30, 90));

/// How much augmentation training applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// None: every crop as it is on disk.
    None,
    /// Geometry only: rotation by any angle and mirroring.
    Basic,
    /// Geometry plus zoom, brightness, contrast, colour temperature, blur, noise and JPEG.
    #[default]
    Full,
}

/// One draw of every augmentation parameter. [`Params::IDENTITY`] changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Rotation about the image centre, degrees clockwise.
    pub angle_deg: f32,
    /// Mirror left-right before rotating. With any-angle rotation, one mirror axis gives every
    /// mirror image.
    pub mirror: bool,
    /// Magnification about the centre (> 1 zooms in).
    pub zoom: f32,
    /// Multiplies every channel.
    pub brightness: f32,
    /// Scales the distance of each value from the image's mean grey level.
    pub contrast: f32,
    /// Colour temperature shift, see [`WARMTH_RANGE`].
    pub warmth: f32,
    /// Gaussian blur sigma in pixels; 0 for none.
    pub blur_sigma: f32,
    /// Gaussian noise sigma in 0..255 levels; 0 for none.
    pub noise_sigma: f32,
    /// Seed of the noise pattern.
    pub noise_seed: u64,
    /// JPEG re-encode quality, if any.
    pub jpeg_quality: Option<u8>,
}

impl Params {
    /// Parameters that leave an image unchanged.
    pub const IDENTITY: Params = Params {
        angle_deg: 0.0,
        mirror: false,
        zoom: 1.0,
        brightness: 1.0,
        contrast: 1.0,
        warmth: 0.0,
        blur_sigma: 0.0,
        noise_sigma: 0.0,
        noise_seed: 0,
        jpeg_quality: None,
    };

    /// Draws parameters for `level` from `rng`. [`Level::None`] draws nothing and returns
    /// [`Params::IDENTITY`]; the other levels draw a fixed sequence, so the generator advances
    /// the same way whatever the values are.
    pub fn sample(level: Level, rng: &mut impl Rng) -> Params {
        let mut p = Params::IDENTITY;
        if level == Level::None {
            return p;
        }
        p.angle_deg = rng.random_range(0.0..360.0);
        p.mirror = rng.random_bool(0.5);
        if level == Level::Basic {
            return p;
        }
        let mut between = |(lo, hi): (f32, f32)| rng.random_range(lo..=hi);
        p.zoom = between(ZOOM_RANGE);
        p.brightness = between(BRIGHTNESS_RANGE);
        p.contrast = between(CONTRAST_RANGE);
        p.warmth = between(WARMTH_RANGE);
        let (blur_p, blur_range) = BLUR;
        let blur_sigma = between(blur_range);
        let (noise_p, noise_range) = NOISE;
        let noise_sigma = between(noise_range);
        let (jpeg_p, (q_lo, q_hi)) = JPEG;
        let quality = rng.random_range(q_lo..=q_hi);
        p.noise_seed = rng.random();
        if rng.random_bool(blur_p) {
            p.blur_sigma = blur_sigma;
        }
        if rng.random_bool(noise_p) {
            p.noise_sigma = noise_sigma;
        }
        if rng.random_bool(jpeg_p) {
            p.jpeg_quality = Some(quality);
        }
        p
    }
}

/// Returns an augmented copy of a packed RGB `side`×`side` image, with parameters drawn for
/// `level` from `rng` (see [`Params::sample`]). `rgb.len()` must be `side * side * 3`.
pub fn augment(rgb: &[u8], side: usize, level: Level, rng: &mut impl Rng) -> Result<Vec<u8>> {
    if level == Level::None {
        return Ok(rgb.to_vec());
    }
    apply(rgb, side, &Params::sample(level, rng))
}

/// Applies `p` to a packed RGB `side`×`side` image: geometry (one bilinear resampling, with
/// the corners that rotation or zoom-out uncover filled by reflecting the image at its edges),
/// then brightness, contrast, warmth, blur and noise, rounding to 8 bits, then the JPEG
/// round trip. Fails only if JPEG encoding or decoding does.
pub fn apply(rgb: &[u8], side: usize, p: &Params) -> Result<Vec<u8>> {
    debug_assert_eq!(rgb.len(), side * side * 3);
    let mut px = warp(rgb, side, p.angle_deg, p.mirror, p.zoom);
    colour(&mut px, p.brightness, p.contrast, p.warmth);
    if p.blur_sigma > 0.0 {
        px = blur(&px, side, p.blur_sigma);
    }
    if p.noise_sigma > 0.0 {
        add_noise(&mut px, p.noise_sigma, p.noise_seed);
    }
    let bytes: Vec<u8> = px.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
    match p.jpeg_quality {
        Some(q) => jpeg_round_trip(&bytes, side, q),
        None => Ok(bytes),
    }
}

/// Reflects `v` into `[0, n - 1]` without repeating the edge pixel (…2 1 0 1 2…).
fn reflect(v: f32, n: usize) -> f32 {
    if n < 2 {
        return 0.0;
    }
    let last = (n - 1) as f32;
    let period = 2.0 * last;
    let v = v.abs() % period;
    if v > last { period - v } else { v }
}

/// Mirror, rotate and zoom about the centre, sampling bilinearly. Each output pixel is mapped
/// back to its source position: undo the zoom, undo the rotation, undo the mirror.
fn warp(rgb: &[u8], side: usize, angle_deg: f32, mirror: bool, zoom: f32) -> Vec<f32> {
    let c = (side as f32 - 1.0) / 2.0;
    let (sin, cos) = angle_deg.to_radians().sin_cos();
    let mut out = vec![0f32; rgb.len()];
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = ((x as f32 - c) / zoom, (y as f32 - c) / zoom);
            // Clockwise rotation on screen (y points down) is undone by the transposed matrix.
            let (rx, ry) = (cos * dx + sin * dy, -sin * dx + cos * dy);
            let rx = if mirror { -rx } else { rx };
            let (sx, sy) = (reflect(rx + c, side), reflect(ry + c, side));
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(side - 1), (y0 + 1).min(side - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let at = |yy: usize, xx: usize, ch: usize| f32::from(rgb[(yy * side + xx) * 3 + ch]);
            for ch in 0..3 {
                let top = at(y0, x0, ch) * (1.0 - fx) + at(y0, x1, ch) * fx;
                let bottom = at(y1, x0, ch) * (1.0 - fx) + at(y1, x1, ch) * fx;
                out[(y * side + x) * 3 + ch] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    out
}

/// Brightness, then contrast about the mean grey level, then the warm/cool channel gains.
fn colour(px: &mut [f32], brightness: f32, contrast: f32, warmth: f32) {
    if brightness == 1.0 && contrast == 1.0 && warmth == 0.0 {
        return;
    }
    let n = (px.len() / 3).max(1) as f32;
    let mean = px.iter().map(|v| v * brightness).sum::<f32>() / (3.0 * n);
    let gains = [1.0 + warmth, 1.0, 1.0 - warmth];
    for pixel in px.chunks_exact_mut(3) {
        for (v, gain) in pixel.iter_mut().zip(gains) {
            *v = ((*v * brightness - mean) * contrast + mean) * gain;
        }
    }
}

/// Separable Gaussian blur with a kernel of radius `ceil(2 sigma)`, reflecting at the edges.
fn blur(px: &[f32], side: usize, sigma: f32) -> Vec<f32> {
    let radius = (2.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> =
        (-radius..=radius).map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let index = |i: isize| reflect(i as f32, side) as usize;
    let pass = |src: &[f32], horizontal: bool| {
        let mut dst = vec![0f32; src.len()];
        for y in 0..side {
            for x in 0..side {
                for ch in 0..3 {
                    let mut acc = 0.0;
                    for (k, w) in kernel.iter().enumerate() {
                        let off = k as isize - radius;
                        let (sx, sy) = if horizontal {
                            (index(x as isize + off), y)
                        } else {
                            (x, index(y as isize + off))
                        };
                        acc += w * src[(sy * side + sx) * 3 + ch];
                    }
                    dst[(y * side + x) * 3 + ch] = acc;
                }
            }
        }
        dst
    };
    pass(&pass(px, true), false)
}

/// Adds zero-mean Gaussian noise (Box–Muller on a generator seeded with `seed`).
fn add_noise(px: &mut [f32], sigma: f32, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for v in px.iter_mut() {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let u1: f32 = 1.0 - rng.random::<f32>();
        let u2: f32 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
        *v += sigma * z;
    }
}

/// Encodes the image as JPEG at `quality` and decodes it again.
fn jpeg_round_trip(rgb: &[u8], side: usize, quality: u8) -> Result<Vec<u8>> {
    let dim = u32::try_from(side).with_context(|| format!("image side {side} is too large"))?;
    let mut encoded = Vec::new();
    JpegEncoder::new_with_quality(&mut encoded, quality)
        .encode(rgb, dim, dim, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot JPEG-encode a {side}px crop at quality {quality}"))?;
    let decoded = image::load_from_memory_with_format(&encoded, ImageFormat::Jpeg)
        .with_context(|| format!("cannot decode a {side}px crop JPEG-encoded at {quality}"))?;
    Ok(decoded.to_rgb8().into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(side: usize) -> Vec<u8> {
        (0..side * side * 3).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn geometry(angle_deg: f32, mirror: bool) -> Params {
        Params { angle_deg, mirror, ..Params::IDENTITY }
    }

    #[test]
    fn identity_changes_nothing() {
        let img = ramp(6);
        assert_eq!(apply(&img, 6, &Params::IDENTITY).unwrap(), img);
    }

    #[test]
    fn quarter_turn_and_mirror_move_pixels_exactly() {
        // 2x2 image with pixels a b / c d (all channels equal).
        let px = |v: u8| [v, v, v];
        let img: Vec<u8> = [px(1), px(2), px(3), px(4)].concat();
        let turned = apply(&img, 2, &geometry(90.0, false)).unwrap();
        assert_eq!(turned, [px(3), px(1), px(4), px(2)].concat());
        let mirrored = apply(&img, 2, &geometry(0.0, true)).unwrap();
        assert_eq!(mirrored, [px(2), px(1), px(4), px(3)].concat());
        let half = apply(&img, 2, &geometry(180.0, false)).unwrap();
        assert_eq!(half, [px(4), px(3), px(2), px(1)].concat());
    }

    #[test]
    fn four_quarter_turns_are_the_identity() {
        let img = ramp(5);
        let mut t = img.clone();
        for _ in 0..4 {
            t = apply(&t, 5, &geometry(90.0, false)).unwrap();
        }
        assert_eq!(t, img);
    }

    #[test]
    fn rotation_keeps_the_centre_and_fills_corners_by_reflection() {
        // A bright 3x3 centre on a dark 9x9 ground: turned by 45 degrees, the centre pixel
        // stays and the uncovered corners are reflected dark ground, not black.
        let side = 9;
        let mut img = vec![40u8; side * side * 3];
        for y in 3..6 {
            for x in 3..6 {
                img[(y * side + x) * 3..(y * side + x) * 3 + 3].copy_from_slice(&[200; 3]);
            }
        }
        let out = apply(&img, side, &geometry(45.0, false)).unwrap();
        assert_eq!(out[(4 * side + 4) * 3..(4 * side + 4) * 3 + 3], [200, 200, 200]);
        assert_eq!(out[0..3], [40, 40, 40]);
        assert_eq!(out.len(), img.len());
    }

    #[test]
    fn zoom_in_magnifies_about_the_centre() {
        // Columns 0..=4 hold 0, 10, 20, 30, 40. At zoom 2, output column 0 samples source
        // x = 2 + (0 - 2) / 2 = 1 and output column 4 samples x = 3.
        let side = 5;
        let img: Vec<u8> = (0..side * side).flat_map(|i| [(i % side * 10) as u8; 3]).collect();
        let p = Params { zoom: 2.0, ..Params::IDENTITY };
        let out = apply(&img, side, &p).unwrap();
        let row: Vec<u8> = (0..side).map(|x| out[x * 3]).collect();
        assert_eq!(row, [10, 15, 20, 25, 30]);
    }

    #[test]
    fn colour_steps_have_their_exact_effect_on_a_flat_image() {
        let img = vec![100u8; 4 * 4 * 3];
        let bright = Params { brightness: 1.2, ..Params::IDENTITY };
        assert!(apply(&img, 4, &bright).unwrap().iter().all(|&v| v == 120));
        // A flat image equals its mean, so contrast leaves it alone.
        let contrast = Params { contrast: 1.25, ..Params::IDENTITY };
        assert_eq!(apply(&img, 4, &contrast).unwrap(), img);
        let warm = Params { warmth: 0.1, ..Params::IDENTITY };
        let out = apply(&img, 4, &warm).unwrap();
        assert_eq!(out[0..3], [110, 100, 90]);
        let blurred = Params { blur_sigma: 1.0, ..Params::IDENTITY };
        assert_eq!(apply(&img, 4, &blurred).unwrap(), img);
    }

    #[test]
    fn noise_and_jpeg_change_values_but_not_the_shape() {
        let img = ramp(16);
        let noisy = apply(&img, 16, &Params { noise_sigma: 5.0, ..Params::IDENTITY }).unwrap();
        assert_eq!(noisy.len(), img.len());
        assert_ne!(noisy, img);
        let jpeg = apply(&img, 16, &Params { jpeg_quality: Some(30), ..Params::IDENTITY });
        let jpeg = jpeg.unwrap();
        assert_eq!(jpeg.len(), img.len());
        assert_ne!(jpeg, img);
    }

    #[test]
    fn same_seed_same_images_and_levels_draw_what_they_use() {
        let img = ramp(12);
        let run = |level: Level, seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..6).map(|_| augment(&img, 12, level, &mut rng).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(Level::Full, 5), run(Level::Full, 5));
        assert_ne!(run(Level::Full, 5), run(Level::Full, 6));
        assert!(run(Level::None, 5).iter().all(|a| *a == img));
        assert!(run(Level::Full, 5).iter().all(|a| a.len() == img.len()));

        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let basic = Params::sample(Level::Basic, &mut rng);
        assert_eq!((basic.zoom, basic.brightness, basic.jpeg_quality), (1.0, 1.0, None));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(Params::sample(Level::None, &mut rng), Params::IDENTITY);
        assert_eq!(rng.get_word_pos(), 0, "level none must not draw");
    }

    #[test]
    fn full_parameters_stay_in_their_ranges() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let draws: Vec<Params> = (0..400).map(|_| Params::sample(Level::Full, &mut rng)).collect();
        for p in &draws {
            assert!((0.0..360.0).contains(&p.angle_deg));
            assert!((ZOOM_RANGE.0..=ZOOM_RANGE.1).contains(&p.zoom));
            assert!((BRIGHTNESS_RANGE.0..=BRIGHTNESS_RANGE.1).contains(&p.brightness));
            assert!((WARMTH_RANGE.0..=WARMTH_RANGE.1).contains(&p.warmth));
            assert!(p.jpeg_quality.is_none_or(|q| (JPEG.1.0..=JPEG.1.1).contains(&q)));
        }
        let blurred = draws.iter().filter(|p| p.blur_sigma > 0.0).count();
        let mirrored = draws.iter().filter(|p| p.mirror).count();
        assert!((60..=140).contains(&blurred), "{blurred} of 400 blurred");
        assert!((160..=240).contains(&mirrored), "{mirrored} of 400 mirrored");
    }
}
