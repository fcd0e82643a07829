//! Locate: find round coins in an RGB frame with OpenCV's Hough circle transform.
//!
//! Frames are converted to grey, shrunk so their longest side is at most `max_side` (Hough
//! cost grows with area and radius range, and coins stay tens of pixels wide), blurred, and
//! searched with the gradient-based `HOUGH_GRADIENT_ALT` method, whose threshold is a
//! circle-perfectness score and so does not depend on image contrast.

use anyhow::{Context, Result};
use opencv::core::{Mat, Size, Vec3f, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::RgbImage;

/// A circle in pixels of the source image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

/// Tuning of the coin finder. Radii are in pixels of the source image.
#[derive(Debug, Clone, PartialEq)]
pub struct LocateParams {
    /// Smallest coin radius searched for.
    pub min_radius: f64,
    /// Largest coin radius searched for.
    pub max_radius: f64,
    /// Frames whose longest side exceeds this are shrunk before the search. The default, 320,
    /// halves a 640 px camera frame: on the shared photos that finds every labelled coin
    /// (radii 18 to 275 px at 640) at a sixth of the full-size search's mean cost, and an
    /// eighth of its p99 (textured backgrounds); docs/performance.md has the figures.
    pub max_side: u32,
    /// Upper Canny threshold of the edge stage.
    pub canny_threshold: f64,
    /// Circle-perfectness a candidate needs, 0..1 (higher finds fewer, rounder circles).
    pub circularity: f64,
    /// Two coins' centres are at least this many (smaller) radii apart.
    pub min_separation: f64,
    /// At most this many coins are reported per frame (the most circular first).
    pub max_coins: usize,
}

/// Defaults tuned on the shared `coins-photos` set (see tests/locate.rs for the measurement).
pub const DEFAULT_LOCATE: LocateParams = LocateParams {
    min_radius: 12.0,
    max_radius: 320.0,
    max_side: 320,
    canny_threshold: 120.0,
    circularity: 0.80,
    min_separation: 1.0,
    max_coins: 64,
};

/// Converts packed RGB to 8-bit luma (BT.601 weights, integer arithmetic).
fn to_grey(img: &RgbImage) -> Vec<u8> {
    img.data
        .chunks_exact(3)
        .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32 + 128) >> 8) as u8)
        .collect()
}

/// Finds coins in `img`. Returns circles sorted by descending radius, at most `max_coins`.
pub fn locate(img: &RgbImage, p: &LocateParams) -> Result<Vec<Circle>> {
    let grey = to_grey(img);
    let src = Mat::new_rows_cols_with_data(img.height as i32, img.width as i32, &grey)
        .context("cannot wrap the frame for OpenCV")?;
    let longest = img.width.max(img.height) as f64;
    let scale = if longest > p.max_side as f64 { p.max_side as f64 / longest } else { 1.0 };
    let mut small = Mat::default();
    if scale < 1.0 {
        let size = Size::new(
            ((img.width as f64 * scale).round() as i32).max(1),
            ((img.height as f64 * scale).round() as i32).max(1),
        );
        imgproc::resize(&src, &mut small, size, 0.0, 0.0, imgproc::INTER_AREA)?;
    } else {
        src.copy_to(&mut small)?;
    }
    let mut blurred = Mat::default();
    imgproc::gaussian_blur_def(&small, &mut blurred, Size::new(5, 5), 1.5)?;

    let min_r = (p.min_radius * scale).max(1.0);
    let max_r = (p.max_radius * scale).max(min_r + 1.0);
    let max_r = max_r.min(small.rows().min(small.cols()) as f64 / 2.0 + 2.0).max(min_r + 1.0);
    let mut found = Vector::<Vec3f>::new();
    imgproc::hough_circles(
        &blurred,
        &mut found,
        imgproc::HOUGH_GRADIENT_ALT,
        1.5,
        (min_r * 2.0 * p.min_separation).max(1.0),
        p.canny_threshold,
        p.circularity,
        min_r.floor() as i32,
        max_r.ceil() as i32,
    )?;
    let mut circles: Vec<Circle> = found
        .iter()
        .map(|c| Circle { x: c[0] / scale as f32, y: c[1] / scale as f32, r: c[2] / scale as f32 })
        .collect();
    circles.retain(|c| c.r as f64 >= p.min_radius * 0.9 && c.r as f64 <= p.max_radius * 1.1);
    let circles = suppress_overlaps(circles, p.min_separation);
    let mut circles: Vec<Circle> = circles.into_iter().take(p.max_coins).collect();
    circles.sort_by(|a, b| b.r.total_cmp(&a.r));
    Ok(circles)
}

/// Drops circles whose centre lies within `sep` radii of an earlier (more circular) one, so one
/// coin's inner ring or rim is not reported as a second coin.
fn suppress_overlaps(circles: Vec<Circle>, sep: f64) -> Vec<Circle> {
    let mut kept: Vec<Circle> = Vec::with_capacity(circles.len());
    for c in circles {
        let clash = kept.iter().any(|k| {
            let d = ((k.x - c.x).powi(2) + (k.y - c.y).powi(2)).sqrt() as f64;
            d < sep * k.r.max(c.r) as f64
        });
        if !clash {
            kept.push(c);
        }
    }
    kept
}
