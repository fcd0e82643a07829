//! Annotate: the frame with each coin's circle and label drawn, for `~/debug_image`.
//!
//! Sorted coins are drawn green, coins sent to the reject bin red (orange when the shift
//! monitor found them unfamiliar), each with `id label confidence` above it.

use anyhow::{Context, Result, ensure};
use opencv::core::{Point, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

use crate::decode::RgbImage;
use crate::frame_view::rgb_mat;
use crate::msgs::coin_sorter::CoinDetectionArray;
use crate::msgs::sensor_msgs::Image;

const SORTED: (f64, f64, f64) = (40.0, 200.0, 40.0);
const REJECTED: (f64, f64, f64) = (220.0, 40.0, 40.0);
const UNFAMILIAR: (f64, f64, f64) = (240.0, 150.0, 20.0);

/// Draws `detections` on a copy of `img` and returns it as an rgb8 `Image` with the
/// detections' header.
pub fn draw(img: &RgbImage, detections: &CoinDetectionArray) -> Result<Image> {
    let (w, h) = (img.width as i32, img.height as i32);
    ensure!(img.data.len() == img.width as usize * img.height as usize * 3, "bad RGB buffer");
    let mut canvas = rgb_mat(img)?.try_clone().context("cannot copy the frame")?;
    // Lines and text scale with the frame so they stay readable on large images.
    let thick = ((w.max(h) as f64 / 400.0).round() as i32).max(1);
    let font = (w.max(h) as f64 / 1000.0).max(0.4);
    for d in &detections.detections {
        let (r, g, b) = match (d.out_of_distribution, d.rejected) {
            (true, _) => UNFAMILIAR,
            (false, true) => REJECTED,
            (false, false) => SORTED,
        };
        // The canvas holds RGB bytes, so the scalar is in RGB order too.
        let colour = Scalar::new(r, g, b, 0.0);
        let centre = Point::new(d.x.round() as i32, d.y.round() as i32);
        imgproc::circle(
            &mut canvas,
            centre,
            d.radius.round().max(1.0) as i32,
            colour,
            thick,
            imgproc::LINE_8,
            0,
        )?;
        let text = format!("{} {} {:.2}", d.coin_id, d.label, d.confidence);
        let at = Point::new(
            (d.x - d.radius).round() as i32,
            ((d.y - d.radius).round() as i32 - 4 * thick).max(12),
        );
        imgproc::put_text(
            &mut canvas,
            &text,
            at,
            imgproc::FONT_HERSHEY_SIMPLEX,
            font,
            colour,
            thick,
            imgproc::LINE_AA,
            false,
        )?;
    }
    let data = canvas.data_bytes().context("cannot read the drawn frame")?.to_vec();
    Ok(Image {
        header: detections.header.clone(),
        height: img.height,
        width: img.width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: img.width * 3,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::coin_sorter::CoinDetection;

    #[test]
    fn circles_are_drawn_in_the_colour_of_the_decision_and_nothing_else_changes() {
        let img = RgbImage { width: 200, height: 100, data: vec![0; 200 * 100 * 3] };
        let coin = |x, rejected, ood| CoinDetection {
            coin_id: 1,
            label: "1e".into(),
            x,
            y: 50.0,
            radius: 20.0,
            rejected,
            out_of_distribution: ood,
            ..Default::default()
        };
        let dets = CoinDetectionArray {
            detections: vec![coin(40.0, false, false), coin(140.0, true, false)],
            ..Default::default()
        };
        let out = draw(&img, &dets).unwrap();
        assert_eq!((out.width, out.height, out.step), (200, 100, 600));
        let px = |x: usize, y: usize| &out.data[(y * 200 + x) * 3..(y * 200 + x) * 3 + 3];
        // The rightmost point of each circle: x + r.
        assert_eq!(px(60, 50), [40, 200, 40]);
        assert_eq!(px(160, 50), [220, 40, 40]);
        assert_eq!(px(40, 50), [0, 0, 0], "the inside of a coin is left alone");
        assert_eq!(px(100, 90), [0, 0, 0]);
    }
}
