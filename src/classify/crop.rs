//! Cutting a square, model-sized crop around each located coin.

use anyhow::{Context, Result, bail};
use opencv::core::{self, Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::area::shrink_rgb;
use crate::decode::RgbImage;
use crate::frame_view::rgb_mat;
use crate::locate::Circle;

/// A crop square may be at most this many times the frame's longest side, and a circle's
/// centre at most this many frame sides away: anything beyond is not a coin of this frame.
const MAX_SIDE_PER_FRAME_SIDE: f64 = 4.0;

/// Cuts the square of half-side `crop_scale * r` centred on each circle, pads it by edge
/// replication where it leaves the frame, resizes it to `size`×`size` (area-averaged when it
/// shrinks, bilinear when it grows) and returns the packed RGB pixels of all crops, one after
/// another (`circles.len() * size * size * 3` bytes). A circle whose square is absurd for
/// the frame (see [`MAX_SIDE_PER_FRAME_SIDE`]) or not finite is an error naming it.
pub fn crop_coins(
    img: &RgbImage,
    circles: &[Circle],
    crop_scale: f32,
    size: u32,
) -> Result<Vec<u8>> {
    let frame = rgb_mat(img)?;
    let n = size as usize * size as usize * 3;
    let mut out = vec![0u8; circles.len() * n];
    let longest = f64::from(img.width.max(img.height));
    for (c, dst) in circles.iter().zip(out.chunks_exact_mut(n)) {
        // In f32, as the crops were always cut: a model saw crops cut this way in training.
        let half: f32 = (c.r * crop_scale).max(1.0);
        // Also keeps every coordinate below well inside i32.
        if !(half.is_finite() && c.x.is_finite() && c.y.is_finite())
            || 2.0 * f64::from(half) > MAX_SIDE_PER_FRAME_SIDE * longest
            || f64::from(c.x.abs().max(c.y.abs())) > MAX_SIDE_PER_FRAME_SIDE * longest
        {
            bail!(
                "cannot crop the circle at ({}, {}) of radius {} (crop scale {crop_scale}) \
                 from a {}x{} frame: its square would not overlap the frame sensibly",
                c.x,
                c.y,
                c.r,
                img.width,
                img.height
            );
        }
        let x0 = (c.x - half).floor() as i32;
        let y0 = (c.y - half).floor() as i32;
        let side = ((2.0 * half).ceil() as i32).max(1);
        let (w, h) = (img.width as i32, img.height as i32);
        let ix0 = x0.clamp(0, w - 1);
        let iy0 = y0.clamp(0, h - 1);
        let ix1 = (x0 + side).clamp(ix0 + 1, w);
        let iy1 = (y0 + side).clamp(iy0 + 1, h);
        let (top, bottom) = ((iy0 - y0).max(0), (y0 + side - iy1).max(0));
        let (left, right) = ((ix0 - x0).max(0), (x0 + side - ix1).max(0));
        let shrinks = side as u32 > size;
        if shrinks && top + bottom + left + right == 0 {
            // Inside the frame: shrunk straight from it, without a copy of the square.
            let stride = img.width as usize * 3;
            let start = iy0 as usize * stride + ix0 as usize * 3;
            let side = side as usize;
            shrink_rgb(&img.data[start..], stride, (side, side), size as usize, dst);
            continue;
        }
        let roi = Mat::roi(&frame, Rect::new(ix0, iy0, ix1 - ix0, iy1 - iy0))?;
        let mut square = Mat::default();
        let replicate = core::BORDER_REPLICATE;
        let b = core::Scalar::default();
        core::copy_make_border(&roi, &mut square, top, bottom, left, right, replicate, b)?;
        if shrinks {
            // Normally `side` square; wider or taller when the square lies wholly outside the
            // frame (the padding then reaches from the frame's edge), as OpenCV resized it.
            let (pw, ph) = (square.cols() as usize, square.rows() as usize);
            let bytes = square.data_bytes().context("padded crop is not contiguous")?;
            shrink_rgb(bytes, pw * 3, (pw, ph), size as usize, dst);
        } else {
            let mut resized = Mat::default();
            let to = Size::new(size as i32, size as i32);
            imgproc::resize(&square, &mut resized, to, 0.0, 0.0, imgproc::INTER_LINEAR)?;
            dst.copy_from_slice(resized.data_bytes().context("resized crop is not contiguous")?);
        }
    }
    Ok(out)
}
