//! Locate: find round coins in an RGB frame with OpenCV's Hough circle transform.
//!
//! The transform's cost grows with the number of edge points times the radius range it
//! searches, and a large coin's face is full of edges. So the frame is searched as a pyramid:
//! each level searches only the radii that are 10 to 40 of its own pixels wide, coarsest level
//! first, and every coin a level finds is painted over with its surroundings' grey in the finer
//! levels, which then no longer spend time on (or find circles in) that coin's face. Each level
//! uses the gradient-based `HOUGH_GRADIENT_ALT` method, whose threshold is a
//! circle-perfectness score and so does not depend on image contrast. Each circle found is
//! then fitted to its rim at the finest level (`refine`), since a coarse level places it only
//! to within its accumulator's cell.

use anyhow::Result;
use opencv::core::{
    BORDER_REPLICATE, Mat, Point, Rect, Scalar, Size, Vec3f, Vector, copy_make_border,
};
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::RgbImage;
use crate::frame_view::rgb_mat;

mod refine;

/// A circle in pixels of the source image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

impl Circle {
    /// This circle, given in source pixels, in the pixels of a level shrunk by the whole
    /// factor `f`. A level pixel's centre sits at (i + 0.5) * f - 0.5 in source pixels.
    fn in_level(self, f: f32) -> Circle {
        Circle { x: (self.x + 0.5) / f - 0.5, y: (self.y + 0.5) / f - 0.5, r: self.r / f }
    }

    /// This circle, given in the pixels of a level shrunk by `f`, in source pixels.
    fn in_source(self, f: f32) -> Circle {
        Circle { x: (self.x + 0.5) * f - 0.5, y: (self.y + 0.5) * f - 0.5, r: self.r * f }
    }
}

/// Tuning of the coin finder. Radii are in pixels of the source image.
#[derive(Debug, Clone, PartialEq)]
pub struct LocateParams {
    /// Smallest coin radius searched for.
    pub min_radius: f64,
    /// Largest coin radius searched for.
    pub max_radius: f64,
    /// Frames whose longest side exceeds this are shrunk by the smallest whole factor that
    /// brings it to at most this before the search. The default, 320, halves a 640 px camera
    /// frame: on the shared photos that finds every labelled coin (radii 18 to 275 px at 640)
    /// at a small part of the full-size search's cost; docs/performance.md has the figures.
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

/// Smallest radius, in a level's own pixels, that a level coarser than the first searches.
/// Below about 10 px a circle is too coarse for the transform's radius estimate; smaller
/// coins are left to the next finer level.
const LEVEL_MIN_PX: f64 = 10.0;
/// Largest radius, in a level's own pixels, that a level finer than the last searches.
/// Larger coins are left to the next coarser level, where they cost a quarter as much.
const LEVEL_MAX_PX: f64 = 40.0;
/// A found coin is painted over out to its radius plus this many level pixels, which the
/// smoothing spreads its rim's edge over. Not more: touching coins would lose their rims too.
const MASK_MARGIN_PX: f32 = 2.0;
/// Pixels by which each level is widened on every side before its search (see
/// `search_level`).
const BORDER_PX: i32 = 4;
/// The grey a coin is painted with is the median of this many samples on a ring at
/// `MASK_RING_RADII` radii around it: the coin's surroundings.
const MASK_SAMPLES: usize = 32;
const MASK_RING_RADII: f32 = 1.2;

/// One level of the search pyramid: the frame in grey, shrunk by `factor` (a whole number),
/// and smoothed once the pyramid is built.
struct Level {
    grey: Mat,
    factor: f64,
}

impl Level {
    /// Radius band `[lo, hi]` this level searches, in source pixels, given the search's
    /// overall band; `None` when it is empty.
    fn band(&self, finest: bool, coarsest: bool, min_r: f64, max_r: f64) -> Option<(f64, f64)> {
        let lo = if finest { min_r } else { min_r.max(LEVEL_MIN_PX * self.factor) };
        let hi = if coarsest { max_r } else { max_r.min(LEVEL_MAX_PX * self.factor) };
        (lo < hi).then_some((lo, hi))
    }
}

/// Converts packed RGB to grey and shrinks it by the smallest whole factor that brings its
/// longest side to at most `max_side`. A whole factor keeps OpenCV's area resize on its fast
/// path (0.08 ms for a 640 px frame here, against 0.6 ms for an arbitrary factor).
fn search_grey(img: &RgbImage, max_side: u32) -> Result<Level> {
    let mut grey = Mat::default();
    imgproc::cvt_color_def(&rgb_mat(img)?, &mut grey, imgproc::COLOR_RGB2GRAY)?;
    let longest = img.width.max(img.height);
    let factor = longest.div_ceil(max_side.max(1)).max(1);
    let grey = if factor > 1 { shrink(&grey, factor as i32)? } else { grey };
    Ok(Level { grey, factor: factor as f64 })
}

/// Area-averages `grey` down by the whole factor `k`, dropping the last rows and columns that
/// do not fill a whole `k`-by-`k` block.
fn shrink(grey: &Mat, k: i32) -> Result<Mat> {
    let (w, h) = ((grey.cols() / k).max(1), (grey.rows() / k).max(1));
    let whole = Rect::new(0, 0, (w * k).min(grey.cols()), (h * k).min(grey.rows()));
    let roi = Mat::roi(grey, whole)?;
    let mut out = Mat::default();
    imgproc::resize(&roi, &mut out, Size::new(w, h), 0.0, 0.0, imgproc::INTER_AREA)?;
    Ok(out)
}

/// Finds coins in `img`. Returns circles sorted by descending radius, at most `max_coins`.
pub fn locate(img: &RgbImage, p: &LocateParams) -> Result<Vec<Circle>> {
    let base = search_grey(img, p.max_side)?;
    // Radii beyond half the frame's shorter side cannot be whole coins in view.
    let shorter = img.width.min(img.height) as f64;
    let max_r = p.max_radius.min(shorter / 2.0 + 2.0 * base.factor).max(p.min_radius + 1.0);
    let mut levels = vec![base];
    while let Some(last) = levels.last() {
        let coarse_enough = max_r <= LEVEL_MAX_PX * last.factor;
        if coarse_enough || last.grey.rows().min(last.grey.cols()) < 4 * LEVEL_MIN_PX as i32 {
            break;
        }
        let next = Level { grey: shrink(&last.grey, 2)?, factor: last.factor * 2.0 };
        levels.push(next);
    }
    for level in &mut levels {
        level.grey = blur(&level.grey)?;
    }
    let coarsest = levels.len() - 1;
    // Rims are fitted in the finest level as it is before any coin is painted over.
    let rims = refine::Rims::new(&levels[0].grey, levels[0].factor)?;
    let mut found = Vec::new();
    for k in (0..levels.len()).rev() {
        let Some((lo, hi)) = levels[k].band(k == 0, k == coarsest, p.min_radius, max_r) else {
            continue;
        };
        let circles: Vec<Circle> =
            search_level(&levels[k], lo, hi, p)?.into_iter().map(|c| rims.refine(c)).collect();
        for finer in &mut levels[..k] {
            for c in &circles {
                paint_over(finer, c)?;
            }
        }
        found.extend(circles);
    }
    found.retain(|c| c.r as f64 >= p.min_radius * 0.9 && c.r as f64 <= p.max_radius * 1.1);
    let mut circles: Vec<Circle> =
        suppress_overlaps(found, p.min_separation).into_iter().take(p.max_coins).collect();
    circles.sort_by(|a, b| b.r.total_cmp(&a.r));
    Ok(circles)
}

/// Runs the Hough transform on one level for radii `lo..=hi` (source pixels) and returns the
/// circles in source pixels, in the transform's order (most circular first).
fn search_level(level: &Level, lo: f64, hi: f64, p: &LocateParams) -> Result<Vec<Circle>> {
    let f = level.factor;
    let (min_r, max_r) = ((lo / f).max(1.0), (hi / f).max(lo / f + 1.0));
    // A coin whose rim ran within a pixel of the level's edge (a pixel is 8 source pixels at
    // the coarsest level) was not found, and the relief on its face was reported as coins
    // instead: the transform takes no edge points from a frame's outermost pixels. With the
    // border pixels repeated outwards, those arcs count.
    let mut padded = Mat::default();
    let b = BORDER_PX;
    copy_make_border(&level.grey, &mut padded, b, b, b, b, BORDER_REPLICATE, Scalar::default())?;
    let mut found = Vector::<Vec3f>::new();
    imgproc::hough_circles(
        &padded,
        &mut found,
        imgproc::HOUGH_GRADIENT_ALT,
        1.5,
        (min_r * 2.0 * p.min_separation).max(1.0),
        p.canny_threshold,
        p.circularity,
        min_r.floor() as i32,
        max_r.ceil() as i32,
    )?;
    let b = b as f32;
    Ok(found
        .iter()
        .map(|c| Circle { x: c[0] - b, y: c[1] - b, r: c[2] }.in_source(f as f32))
        .collect())
}

/// Smooths a level before the search: JPEG blocks and sensor noise otherwise make edges.
fn blur(grey: &Mat) -> Result<Mat> {
    let mut blurred = Mat::default();
    imgproc::gaussian_blur_def(grey, &mut blurred, Size::new(5, 5), 1.5)?;
    Ok(blurred)
}

/// Paints the coin `c` (source pixels) over in `level` with the median grey of a ring just
/// outside it, so the finer search sees neither its face nor its rim.
fn paint_over(level: &mut Level, c: &Circle) -> Result<()> {
    let Circle { x: cx, y: cy, r } = c.in_level(level.factor as f32);
    let (w, h) = (level.grey.cols(), level.grey.rows());
    let mut ring: Vec<u8> = Vec::with_capacity(MASK_SAMPLES);
    for i in 0..MASK_SAMPLES {
        let t = i as f32 * std::f32::consts::TAU / MASK_SAMPLES as f32;
        let x = (cx + MASK_RING_RADII * r * t.cos()).round() as i32;
        let y = (cy + MASK_RING_RADII * r * t.sin()).round() as i32;
        if (0..w).contains(&x) && (0..h).contains(&y) {
            ring.push(*level.grey.at_2d::<u8>(y, x)?);
        }
    }
    if ring.is_empty() {
        // The coin fills the level; there are no surroundings to paint it with.
        return Ok(());
    }
    ring.sort_unstable();
    let grey = ring[ring.len() / 2] as f64;
    let centre = Point::new(cx.round() as i32, cy.round() as i32);
    let radius = (r + MASK_MARGIN_PX).round() as i32;
    imgproc::circle(&mut level.grey, centre, radius, Scalar::all(grey), -1, imgproc::LINE_8, 0)?;
    Ok(())
}

/// Drops circles whose centre lies within `sep` radii of an earlier one (a coarser level's, or
/// a more circular one of the same level), so one coin's inner ring or rim is not reported as
/// a second coin.
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
