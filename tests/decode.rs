//! Image conversion: every supported encoding, with and without row padding, against known
//! pixel values; compressed JPEG and PNG; and each kind of bad input.

use coin_sorter::decode::{DecodeError, decode_compressed, decode_image};
use coin_sorter::msgs::sensor_msgs::{CompressedImage, Image};

/// A 2x2 test picture in RGB: red, green / blue, (10,20,30).
const RGB: [[u8; 3]; 4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]];

fn image(encoding: &str, pixel: impl Fn([u8; 3]) -> Vec<u8>, pad: usize) -> Image {
    let bpp = pixel([0, 0, 0]).len();
    let step = 2 * bpp + pad;
    let mut data = Vec::new();
    for row in RGB.chunks(2) {
        for p in row {
            data.extend(pixel(*p));
        }
        data.extend(std::iter::repeat_n(0xAB, pad));
    }
    Image {
        height: 2,
        width: 2,
        encoding: encoding.into(),
        step: step as u32,
        data,
        ..Default::default()
    }
}

fn expected() -> Vec<u8> {
    RGB.concat()
}

#[test]
fn every_encoding_with_and_without_padding_decodes_to_the_same_rgb() {
    type Pack = fn([u8; 3]) -> Vec<u8>;
    let cases: [(&str, Pack); 4] = [
        ("rgb8", |p| p.to_vec()),
        ("bgr8", |p| vec![p[2], p[1], p[0]]),
        ("rgba8", |p| vec![p[0], p[1], p[2], 7]),
        ("bgra8", |p| vec![p[2], p[1], p[0], 7]),
    ];
    for (enc, pack) in cases {
        for pad in [0, 3] {
            let out = decode_image(&image(enc, pack, pad)).unwrap();
            assert_eq!((out.width, out.height), (2, 2), "{enc} pad {pad}");
            assert_eq!(out.data, expected(), "{enc} pad {pad}");
        }
    }
}

#[test]
fn mono8_with_and_without_padding_repeats_grey_in_each_channel() {
    for pad in [0, 5] {
        let out = decode_image(&image("mono8", |p| vec![p[0]], pad)).unwrap();
        assert_eq!(out.data, vec![255, 255, 255, 0, 0, 0, 0, 0, 0, 10, 10, 10], "pad {pad}");
    }
}

fn encode(format: image::ImageFormat) -> Vec<u8> {
    let mut img = image::RgbImage::new(16, 8);
    for (x, _, p) in img.enumerate_pixels_mut() {
        *p = if x < 8 { image::Rgb([200, 40, 40]) } else { image::Rgb([30, 60, 220]) };
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

#[test]
fn compressed_png_decodes_exactly() {
    let msg = CompressedImage {
        format: "png".into(),
        data: encode(image::ImageFormat::Png),
        ..Default::default()
    };
    let out = decode_compressed(&msg).unwrap();
    assert_eq!((out.width, out.height), (16, 8));
    assert_eq!(&out.data[..3], &[200, 40, 40]);
    assert_eq!(&out.data[(8 * 16 - 1) * 3..], &[30, 60, 220]);
}

#[test]
fn compressed_jpeg_decodes_within_jpeg_error() {
    let msg = CompressedImage {
        format: "jpeg".into(),
        data: encode(image::ImageFormat::Jpeg),
        ..Default::default()
    };
    let out = decode_compressed(&msg).unwrap();
    assert_eq!((out.width, out.height), (16, 8));
    let close = |got: &[u8], want: [u8; 3]| {
        got.iter().zip(want).all(|(g, w)| (*g as i32 - w as i32).abs() <= 12)
    };
    assert!(close(&out.data[..3], [200, 40, 40]), "{:?}", &out.data[..3]);
    assert!(
        close(&out.data[(8 * 16 - 1) * 3..], [30, 60, 220]),
        "{:?}",
        &out.data[(8 * 16 - 1) * 3..]
    );
}

#[test]
fn short_data_is_refused_with_both_sizes() {
    let mut msg = image("rgb8", |p| p.to_vec(), 2);
    msg.data.truncate(msg.data.len() - 1);
    assert_eq!(decode_image(&msg), Err(DecodeError::DataTooShort { got: 15, need: 16 }));
}

#[test]
fn unknown_encoding_zero_size_and_small_step_are_refused() {
    let mut msg = image("rgb8", |p| p.to_vec(), 0);
    msg.encoding = "yuv422".into();
    let e = decode_image(&msg).unwrap_err();
    assert_eq!(e, DecodeError::UnknownEncoding("yuv422".into()));
    assert!(e.to_string().contains("\"yuv422\""));
    let zero = Image { encoding: "rgb8".into(), ..Default::default() };
    assert_eq!(decode_image(&zero), Err(DecodeError::ZeroSize { width: 0, height: 0 }));
    let mut msg = image("rgb8", |p| p.to_vec(), 0);
    msg.step = 5;
    assert_eq!(
        decode_image(&msg),
        Err(DecodeError::StepTooSmall { step: 5, width: 2, bytes_per_pixel: 3 })
    );
}

#[test]
fn corrupt_and_unknown_compressed_payloads_are_refused() {
    let mut jpeg = encode(image::ImageFormat::Jpeg);
    jpeg.truncate(jpeg.len() / 2);
    jpeg.extend_from_slice(&[0u8; 16]);
    let e = decode_compressed(&CompressedImage {
        format: "jpeg".into(),
        data: jpeg,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.kind(), "corrupt_compressed", "{e}");
    let e = decode_compressed(&CompressedImage {
        format: "tiff".into(),
        data: vec![1, 2, 3],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e, DecodeError::UnknownFormat("tiff".into()));
    let e = decode_compressed(&CompressedImage::default()).unwrap_err();
    assert_eq!(e.kind(), "unknown_format");
}

#[test]
fn real_photo_cut_short_or_with_a_broken_header_is_corrupt() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/coins-photos/images");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let jpeg = std::fs::read(&files[0]).unwrap();
    let decode = |data: Vec<u8>| {
        decode_compressed(&CompressedImage { format: "jpeg".into(), data, ..Default::default() })
    };
    let whole = decode(jpeg.clone()).unwrap();
    assert_eq!((whole.width, whole.height), (1200, 1600));
    let mut padded = jpeg.clone();
    padded.extend_from_slice(&[0, 0, 0]);
    assert!(decode(padded).is_ok(), "zero padding after the end marker is legal");
    let cut = decode(jpeg[..jpeg.len() * 3 / 5].to_vec()).unwrap_err();
    assert_eq!(cut.kind(), "corrupt_compressed");
    assert!(cut.to_string().contains("cut short"), "{cut}");
    let mut header = jpeg.clone();
    header[4..200].iter_mut().for_each(|b| *b = 0xFF);
    assert_eq!(decode(header).unwrap_err().kind(), "corrupt_compressed");
}
