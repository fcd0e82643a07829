//! Helpers shared by the integration tests: where the shared data lives and how to read it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use coin_sorter::decode::RgbImage;

/// The read-only shared data folder beside the repository.
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// A labelled coin: label, centre and mean radius in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub label: String,
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

/// Reads a LabelMe annotation: each polygon becomes its centroid and mean centre distance.
pub fn read_labelme(path: &Path) -> Vec<Labelled> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pts: Vec<(f32, f32)> = s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32))
                .collect();
            let n = pts.len() as f32;
            let cx = pts.iter().map(|p| p.0).sum::<f32>() / n;
            let cy = pts.iter().map(|p| p.1).sum::<f32>() / n;
            let r = pts.iter().map(|p| ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()).sum::<f32>() / n;
            Labelled { label: s["label"].as_str().unwrap().to_string(), x: cx, y: cy, r }
        })
        .collect()
}

/// Loads an image file as RGB, shrunk (if needed) so its longest side is `max_side`; returns
/// the image and the scale applied.
pub fn load_rgb(path: &Path, max_side: u32) -> (RgbImage, f32) {
    let img = image::open(path).unwrap().into_rgb8();
    let (w, h) = img.dimensions();
    let scale = (max_side as f32 / w.max(h) as f32).min(1.0);
    let img = if scale < 1.0 {
        let (nw, nh) = ((w as f32 * scale).round() as u32, (h as f32 * scale).round() as u32);
        image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let (width, height) = img.dimensions();
    (RgbImage { width, height, data: img.into_raw() }, scale)
}

/// The `coins-photos` scenes: image path and labelled coins, sorted by file name.
pub fn photo_scenes() -> Vec<(PathBuf, Vec<Labelled>)> {
    let dir = shared_data().join("coins-photos/annotations");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            let img = f.parent().unwrap().join(v["imagePath"].as_str().unwrap());
            (img, read_labelme(&f))
        })
        .collect()
}
