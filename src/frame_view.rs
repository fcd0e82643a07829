//! OpenCV's view of a decoded frame, shared by the steps that hand it to OpenCV (locate,
//! crop, annotate).

use anyhow::{Context, Result};
use opencv::boxed_ref::BoxedRef;
use opencv::core::{Mat, Vec3b};

use crate::decode::RgbImage;

/// Borrows `img`'s packed RGB bytes as a 3-channel `Mat`, without copying. Fails, naming the
/// frame's size, when the buffer does not hold `width * height * 3` bytes.
pub fn rgb_mat(img: &RgbImage) -> Result<BoxedRef<'_, Mat>> {
    let (w, h) = (img.width as i32, img.height as i32);
    Mat::new_rows_cols_with_bytes::<Vec3b>(h, w, &img.data)
        .with_context(|| format!("cannot view the {w}x{h} frame as RGB for OpenCV"))
}
