//! Refine: fit a circle the pyramid search found to the coin's rim at the finest level.
//!
//! The transform reports centres on its accumulator's grid, which at a coarse level is several
//! source pixels wide, so a coin's circle would jump by that much between two nearly equal
//! frames. Here rays from the found centre look for the strongest radial edge near the found
//! radius, and a least-squares circle through those rim points replaces the found one.

use anyhow::{Context, Result};
use opencv::core::Mat;
use opencv::prelude::*;

use super::Circle;

/// Rays cast from a found centre.
const RAYS: usize = 64;
/// The rim is looked for between these fractions of the found radius. The coarsest level's
/// centres are off by up to about a third of the radius on the shared photos.
const SEARCH_FROM: f32 = 0.6;
const SEARCH_TO: f32 = 1.4;
/// Weakest radial Sobel response taken as a rim point: a step of about 10 grey levels.
const EDGE_MIN: f32 = 40.0;
/// A fit needs rim points on at least this share of the rays.
const MIN_SHARE: f32 = 0.5;
/// A fit that moves the centre by more than this many found radii, or changes the radius by
/// more than this share, found something else than the coin's rim and is not used.
const MAX_CHANGE: f32 = 0.35;
/// Rounds of dropping far-off rim points and fitting again.
const REFITS: usize = 3;

/// The finest level, smoothed, in which rims are looked for.
pub(super) struct Rims {
    grey: Vec<u8>,
    width: usize,
    height: usize,
    /// Source pixels per pixel of this level.
    factor: f32,
}

impl Rims {
    /// Keeps a copy of `smooth`, a smoothed level shrunk by `factor` from the source.
    pub(super) fn new(smooth: &Mat, factor: f64) -> Result<Self> {
        let grey = smooth.data_bytes().context("the finest level is not one u8 plane")?;
        Ok(Self {
            grey: grey.to_vec(),
            width: smooth.cols() as usize,
            height: smooth.rows() as usize,
            factor: factor as f32,
        })
    }

    /// Radial edge strength (the 3x3 Sobel gradient along the unit direction (`ux`, `uy`)) at
    /// level pixel (`x`, `y`); `None` where the kernel does not fit in the level.
    fn radial(&self, x: f32, y: f32, ux: f32, uy: f32) -> Option<f32> {
        let (xi, yi) = (x.round() as isize, y.round() as isize);
        if xi < 1 || yi < 1 || xi + 1 >= self.width as isize || yi + 1 >= self.height as isize {
            return None;
        }
        let w = self.width;
        let at =
            |dx: isize, dy: isize| self.grey[(yi + dy) as usize * w + (xi + dx) as usize] as f32;
        let gx = at(1, -1) + 2.0 * at(1, 0) + at(1, 1) - at(-1, -1) - 2.0 * at(-1, 0) - at(-1, 1);
        let gy = at(-1, 1) + 2.0 * at(0, 1) + at(1, 1) - at(-1, -1) - 2.0 * at(0, -1) - at(1, -1);
        Some((gx * ux + gy * uy).abs())
    }

    /// Returns `c` (source pixels) fitted to its rim, or `c` itself when too little of a rim
    /// is found or the fit strays too far from it.
    pub(super) fn refine(&self, c: Circle) -> Circle {
        let Circle { x: cx, y: cy, r } = c.in_level(self.factor);
        if r < 2.0 {
            return c;
        }
        let mut rim: Vec<(f32, f32)> = Vec::with_capacity(RAYS);
        for i in 0..RAYS {
            let (uy, ux) = (i as f32 * std::f32::consts::TAU / RAYS as f32).sin_cos();
            if let Some(t) = self.strongest_edge(cx, cy, ux, uy, r) {
                rim.push((cx + t * ux, cy + t * uy));
            }
        }
        let Some(fit) = fit_robust(&rim) else { return c };
        let moved = ((fit.x - cx).powi(2) + (fit.y - cy).powi(2)).sqrt();
        if moved > MAX_CHANGE * r || (fit.r - r).abs() > MAX_CHANGE * r {
            return c;
        }
        fit.in_source(self.factor)
    }

    /// Distance from (`cx`, `cy`) along (`ux`, `uy`) of the strongest radial edge between
    /// `SEARCH_FROM` and `SEARCH_TO` radii, to a fraction of a pixel.
    fn strongest_edge(&self, cx: f32, cy: f32, ux: f32, uy: f32, r: f32) -> Option<f32> {
        let (from, to) = ((SEARCH_FROM * r).floor() as i32, (SEARCH_TO * r).ceil() as i32);
        let at = |t: i32| self.radial(cx + t as f32 * ux, cy + t as f32 * uy, ux, uy);
        let (mut best_t, mut best) = (0, EDGE_MIN);
        for t in from..=to {
            if let Some(s) = at(t).filter(|&s| s > best) {
                (best_t, best) = (t, s);
            }
        }
        if best_t == 0 {
            return None;
        }
        // A parabola through the peak and its neighbours places the edge between pixels.
        let (a, b) = (at(best_t - 1).unwrap_or(best), at(best_t + 1).unwrap_or(best));
        let curve = a - 2.0 * best + b;
        let shift = if curve < 0.0 { (0.5 * (a - b) / curve).clamp(-0.5, 0.5) } else { 0.0 };
        Some(best_t as f32 + shift)
    }
}

/// Least-squares circle through `pts`, fitted again (`REFITS` times) to the points that lie
/// near the previous fit, so a neighbouring coin's rim or a shadow does not pull it. `None`
/// with too few points.
fn fit_robust(pts: &[(f32, f32)]) -> Option<Circle> {
    let need = (MIN_SHARE * RAYS as f32) as usize;
    if pts.len() < need {
        return None;
    }
    let mut circle = fit(pts)?;
    for _ in 0..REFITS {
        let off = |p: &(f32, f32)| (p.0 - circle.x).hypot(p.1 - circle.y) - circle.r;
        let mut residuals: Vec<f32> = pts.iter().map(|p| off(p).abs()).collect();
        residuals.sort_unstable_by(f32::total_cmp);
        let limit = 2.0 * residuals[residuals.len() / 2] + 0.5;
        let kept: Vec<(f32, f32)> = pts.iter().copied().filter(|p| off(p).abs() <= limit).collect();
        if kept.len() < need {
            return None;
        }
        circle = fit(&kept)?;
    }
    Some(circle)
}

/// Algebraic (Kåsa) least-squares circle: solves for D, E, F in x² + y² + Dx + Ey + F = 0.
fn fit(pts: &[(f32, f32)]) -> Option<Circle> {
    let n = pts.len() as f64;
    let (mx, my) = pts.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0 as f64, b + p.1 as f64));
    let (mx, my) = (mx / n, my / n);
    // Centred coordinates keep the normal equations well conditioned.
    let (mut suu, mut suv, mut svv, mut suuu, mut svvv, mut suvv, mut svuu) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for p in pts {
        let (u, v) = (p.0 as f64 - mx, p.1 as f64 - my);
        suu += u * u;
        suv += u * v;
        svv += v * v;
        suuu += u * u * u;
        svvv += v * v * v;
        suvv += u * v * v;
        svuu += v * u * u;
    }
    let det = suu * svv - suv * suv;
    if det.abs() < 1e-9 {
        return None;
    }
    let (bu, bv) = (0.5 * (suuu + suvv), 0.5 * (svvv + svuu));
    let uc = (bu * svv - bv * suv) / det;
    let vc = (bv * suu - bu * suv) / det;
    let r2 = uc * uc + vc * vc + (suu + svv) / n;
    (r2 > 0.0).then(|| Circle { x: (uc + mx) as f32, y: (vc + my) as f32, r: r2.sqrt() as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_circle_from_its_points() {
        let pts: Vec<(f32, f32)> = (0..40)
            .map(|i| (i as f32 * 0.157).sin_cos())
            .map(|(s, c)| (30.0 + 12.5 * c, -4.0 + 12.5 * s))
            .collect();
        let c = fit(&pts).unwrap();
        assert!((c.x - 30.0).abs() < 1e-3 && (c.y + 4.0).abs() < 1e-3, "{c:?}");
        assert!((c.r - 12.5).abs() < 1e-3, "{c:?}");
    }

    #[test]
    fn outliers_off_the_rim_are_dropped() {
        let mut pts: Vec<(f32, f32)> = (0..64)
            .map(|i| (i as f32 * std::f32::consts::TAU / 64.0).sin_cos())
            .map(|(s, c)| (50.0 + 20.0 * c, 50.0 + 20.0 * s))
            .collect();
        for p in pts.iter_mut().take(10) {
            p.0 += 9.0;
        }
        let c = fit_robust(&pts).unwrap();
        assert!((c.x - 50.0).abs() < 0.05 && (c.y - 50.0).abs() < 0.05, "{c:?}");
        assert!((c.r - 20.0).abs() < 0.05, "{c:?}");
    }

    #[test]
    fn too_few_rim_points_give_no_fit() {
        let pts = vec![(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)];
        assert!(fit_robust(&pts).is_none());
    }
}
