//! Cutting a square, model-sized crop around each located coin.

use anyhow::{Context, Result};
use opencv::core::{self, Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::RgbImage;
use crate::frame_view::rgb_mat;
use crate::locate::Circle;

/// Cuts the square of half-side `crop_scale * r` centred on each circle, pads it by edge
/// replication where it leaves the frame, resizes it to `size`×`size` and returns the packed
/// RGB pixels of all crops, one after another (`circles.len() * size * size * 3` bytes).
pub fn crop_coins(
    img: &RgbImage,
    circles: &[Circle],
    crop_scale: f32,
    size: u32,
) -> Result<Vec<u8>> {
    let frame = rgb_mat(img)?;
    let n = size as usize * size as usize * 3;
    let mut out = vec![0u8; circles.len() * n];
    for (c, dst) in circles.iter().zip(out.chunks_exact_mut(n)) {
        let half: f32 = (c.r * crop_scale).max(1.0);
        let x0 = (c.x - half).floor() as i32;
        let y0 = (c.y - half).floor() as i32;
        let side = ((2.0 * half).ceil() as i32).max(1);
        let (w, h) = (img.width as i32, img.height as i32);
        let ix0 = x0.clamp(0, w - 1);
        let iy0 = y0.clamp(0, h - 1);
        let ix1 = (x0 + side).clamp(ix0 + 1, w);
        let iy1 = (y0 + side).clamp(iy0 + 1, h);
        let roi = Mat::roi(&frame, Rect::new(ix0, iy0, ix1 - ix0, iy1 - iy0))?;
        let mut square = Mat::default();
        core::copy_make_border(
            &roi,
            &mut square,
            (iy0 - y0).max(0),
            (y0 + side - iy1).max(0),
            (ix0 - x0).max(0),
            (x0 + side - ix1).max(0),
            core::BORDER_REPLICATE,
            core::Scalar::default(),
        )?;
        let mut resized = Mat::default();
        let interp = if side as u32 > size { imgproc::INTER_AREA } else { imgproc::INTER_LINEAR };
        imgproc::resize(
            &square,
            &mut resized,
            Size::new(size as i32, size as i32),
            0.0,
            0.0,
            interp,
        )?;
        let bytes = resized.data_bytes().context("resized crop is not contiguous")?;
        dst.copy_from_slice(bytes);
    }
    Ok(out)
}
