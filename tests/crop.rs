//! Coin crops: the area-averaging shrink gives OpenCV's `INTER_AREA` pixels (which the crops
//! were made with before, so models trained then see the same crops), on the real photos'
//! coins and on squares leaving the frame.

mod common;

use coin_sorter::classify::crop::crop_coins;
use coin_sorter::decode::RgbImage;
use coin_sorter::locate::{Circle, DEFAULT_LOCATE, locate};
use opencv::core::{self, Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;

/// The crop of `c` as OpenCV makes it: the square padded by edge replication, then resized
/// with `INTER_AREA` when it shrinks, `INTER_LINEAR` when it grows.
fn opencv_crop(img: &RgbImage, c: &Circle, scale: f32, size: i32) -> Vec<u8> {
    let frame = Mat::new_rows_cols_with_data::<core::Vec3b>(
        img.height as i32,
        img.width as i32,
        bytemuck_pixels(&img.data),
    )
    .unwrap();
    let half = (c.r * scale).max(1.0);
    let (x0, y0) = ((c.x - half).floor() as i32, (c.y - half).floor() as i32);
    let side = ((2.0 * half).ceil() as i32).max(1);
    let (w, h) = (img.width as i32, img.height as i32);
    let (ix0, iy0) = (x0.clamp(0, w - 1), y0.clamp(0, h - 1));
    let (ix1, iy1) = ((x0 + side).clamp(ix0 + 1, w), (y0 + side).clamp(iy0 + 1, h));
    let roi = Mat::roi(&frame, Rect::new(ix0, iy0, ix1 - ix0, iy1 - iy0)).unwrap();
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
    )
    .unwrap();
    let mut out = Mat::default();
    let interp = if side > size { imgproc::INTER_AREA } else { imgproc::INTER_LINEAR };
    // (A square wholly outside the frame pads to more than `side`; resized whole all the same.)
    imgproc::resize(&square, &mut out, Size::new(size, size), 0.0, 0.0, interp).unwrap();
    out.data_bytes().unwrap().to_vec()
}

/// Packed RGB bytes as OpenCV pixels.
fn bytemuck_pixels(data: &[u8]) -> &[core::Vec3b] {
    // SAFETY: Vec3b is three u8 in a row (repr(C), alignment 1), so any byte slice whose
    // length is a multiple of 3 is a valid slice of them.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), data.len() / 3) }
}

/// Compares the two crops byte by byte: returns (largest difference, bytes that differ).
fn compare(ours: &[u8], theirs: &[u8]) -> (u8, usize) {
    assert_eq!(ours.len(), theirs.len());
    let diffs = ours.iter().zip(theirs).map(|(a, b)| a.abs_diff(*b));
    diffs.fold((0, 0), |(max, n), d| (max.max(d), n + usize::from(d > 0)))
}

#[test]
fn crops_of_the_photos_coins_are_opencvs_area_resize() {
    let (mut bytes, mut differing, mut largest, mut coins) = (0, 0, 0u8, 0);
    for (path, _) in common::photo_scenes() {
        let (img, _) = common::load_rgb(&path, 640);
        let circles = locate(&img, &DEFAULT_LOCATE).unwrap();
        let ours = crop_coins(&img, &circles, 1.1, 96).unwrap();
        for (c, crop) in circles.iter().zip(ours.chunks_exact(96 * 96 * 3)) {
            let (max, n) = compare(crop, &opencv_crop(&img, c, 1.1, 96));
            largest = largest.max(max);
            differing += n;
            bytes += crop.len();
            coins += 1;
        }
    }
    assert_eq!(coins, 53);
    // Float rounding may tip a value that OpenCV rounds the other way, nothing more (measured:
    // 3472 of 1465344 bytes, 0.24%, by 1).
    assert!(largest <= 1, "a crop byte differs from OpenCV's by {largest}");
    assert!(differing * 100 < bytes, "{differing} of {bytes} bytes differ from OpenCV's");
}

#[test]
fn squares_leaving_the_frame_and_odd_sizes_match_opencv_too() {
    let (w, h) = (203u32, 157u32);
    let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 256) as u8).collect();
    let img = RgbImage { width: w, height: h, data };
    let circles = [
        Circle { x: 100.3, y: 80.7, r: 60.2 },
        Circle { x: 5.0, y: 150.0, r: 47.9 },
        Circle { x: 190.5, y: 3.5, r: 71.0 },
        Circle { x: 101.0, y: 78.0, r: 30.0 },
        Circle { x: 60.0, y: 60.0, r: 10.0 },
        // Wholly outside the frame: the padding reaches from the frame's edge.
        Circle { x: -150.0, y: 300.0, r: 50.0 },
    ];
    for size in [32, 96, 97] {
        let ours = crop_coins(&img, &circles, 1.1, size).unwrap();
        let n = (size * size * 3) as usize;
        for (c, crop) in circles.iter().zip(ours.chunks_exact(n)) {
            let (max, _) = compare(crop, &opencv_crop(&img, c, 1.1, size as i32));
            assert!(max <= 1, "circle {c:?} at {size} px differs by {max}");
        }
    }
}

#[test]
fn a_square_out_of_all_proportion_to_the_frame_is_an_error_not_an_abort() {
    let img = RgbImage { width: 64, height: 48, data: vec![90; 64 * 48 * 3] };
    let coin = Circle { x: 30.0, y: 20.0, r: 10.0 };
    let err = crop_coins(&img, &[coin], 1e30, 96).unwrap_err().to_string();
    assert_eq!(
        err,
        "cannot crop the circle at (30, 20) of radius 10 (crop scale 1000000000000000000000000000000) \
         from a 64x48 frame: its square would not overlap the frame sensibly"
    );
    let far = Circle { x: 1e9, y: 20.0, r: 10.0 };
    assert!(crop_coins(&img, &[far], 1.1, 96).is_err());
    let nan = Circle { x: f32::NAN, y: 20.0, r: 10.0 };
    assert!(crop_coins(&img, &[nan], 1.1, 96).is_err());
    // Nearly four times the frame's longest side is still cropped.
    assert_eq!(crop_coins(&img, &[coin], 12.7, 96).unwrap().len(), 96 * 96 * 3);
}
