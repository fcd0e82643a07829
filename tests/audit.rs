//! The audit: leakage checks on planted copies, the exact interval, and the pHash threshold.

mod common;

use std::path::{Path, PathBuf};

use coin_sorter::audit::leakage::{self, DEFAULT_NEAR_THRESHOLD};
use coin_sorter::audit::phash::{self, PHash};
use coin_sorter::train::dataset::group_id;

fn images_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for d in dirs.into_iter().filter(|d| d.is_dir()) {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        out.extend(files);
    }
    out
}

fn variant_hash(path: &Path, f: &dyn Fn(image::RgbImage) -> image::RgbImage, q: u8) -> PHash {
    let img = f(image::open(path).unwrap().to_rgb8());
    let (w, h) = img.dimensions();
    let jpeg = coin_sorter::dataset::writer::encode_jpeg(img.as_raw(), w, h, q).unwrap();
    let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    phash::phash_rgb(img.as_raw(), w, h).unwrap()
}

#[test]
fn measure() {
    let files = images_under(&common::shared_data().join("coins-mobile"));
    let hashes: Vec<leakage::FileHashes> = leakage::hash_files(&files, &|| {}).unwrap();
    let class = |p: &Path| p.parent().unwrap().file_name().unwrap().to_owned();
    let mut diff_class_min = u32::MAX;
    let mut near = Vec::new();
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            let d = phash::distance(&a.phash, &b.phash);
            if class(&a.path) != class(&b.path) {
                diff_class_min = diff_class_min.min(d);
            } else if group_id(&a.path) != group_id(&b.path) && d <= DEFAULT_NEAR_THRESHOLD {
                near.push((d, a.path.clone(), b.path.clone()));
            }
        }
    }
    near.sort();
    println!(
        "diff class min {diff_class_min}; same-class cross-photo within threshold {}",
        near.len()
    );
    println!("{:?}", near.first());
    let brighten = |mut i: image::RgbImage| {
        for p in i.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = ((*c as f32) * 1.1).min(255.0) as u8;
            }
        }
        i
    };
    let shift = |mut i: image::RgbImage| {
        for p in i.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = c.saturating_add(25);
            }
        }
        i
    };
    let half = |i: image::RgbImage| {
        let s = image::imageops::resize(&i, 128, 128, image::imageops::FilterType::Triangle);
        image::imageops::resize(&s, 256, 256, image::imageops::FilterType::Triangle)
    };
    let variants: [(&dyn Fn(image::RgbImage) -> image::RgbImage, u8); 4] =
        [(&|i| i, 60), (&brighten, 95), (&half, 90), (&shift, 95)];
    let mut worst = [0u32; 4];
    for h in hashes.iter().step_by(5) {
        for (w, (f, q)) in worst.iter_mut().zip(&variants) {
            *w = (*w).max(phash::distance(&h.phash, &variant_hash(&h.path, *f, *q)));
        }
    }
    println!("worst variant distances {worst:?}");
}
