//! A class-per-folder image set, decoded once and kept in memory at the model's input size.
//!
//! Layout: `<root>/<label>/<photo>_<k>.{jpg,jpeg,png}`. Folder names are the labels, in
//! sorted order, and the output index of each label in the trained model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use image::imageops::FilterType;
use rand::Rng;
use tch::{Device, Tensor};

use crate::classify::preprocess::normalise_rgb;
use crate::train::augment::{self, Level};

const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One image of the set.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File the image was read from.
    pub path: PathBuf,
    /// Index into [`ImageSet::labels`].
    pub label: usize,
    /// Source photo the crop came from (see [`group_id`]).
    pub group: String,
    /// Packed RGB pixels, `side * side * 3` bytes.
    rgb: Vec<u8>,
}

impl Sample {
    /// Packed RGB pixels at the set's side length.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }
}

/// All images of a class-per-folder set, resized to `side`×`side`.
///
/// Invariant: `labels` is sorted, unique and non-empty; every label has at least one sample;
/// samples are ordered by label, then by file name.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Folder the set was read from.
    pub root: PathBuf,
    /// Class names (sub-folder names), sorted.
    pub labels: Vec<String>,
    /// Side of every cached image in pixels.
    pub side: u32,
    /// The images.
    pub samples: Vec<Sample>,
}

/// The source-photo id of a crop file: its stem without a trailing `_<digits>`
/// (`IMG_1_12.jpg` → `IMG_1`); a stem without such a suffix is its own group.
pub fn group_id(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
    match stem.rsplit_once('_') {
        Some((photo, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
            photo.to_owned()
        }
        _ => stem.into_owned(),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot list folder {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list folder {}", dir.display()))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// Decodes one file and resizes it to `side`×`side`. Triangle (bilinear with a support widened
/// by the scale factor) averages every source pixel when shrinking, so it does not alias, and
/// unlike Lanczos it adds no ringing at the sharp coin rim.
fn decode(path: &Path, side: u32) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    let rgb = crate::decode::decode_bytes(&bytes, &ext)
        .with_context(|| format!("cannot decode image {}", path.display()))?;
    let img = image::RgbImage::from_raw(rgb.width, rgb.height, rgb.data)
        .with_context(|| format!("{} decoded to a wrong pixel count", path.display()))?;
    let img = if img.dimensions() == (side, side) {
        img
    } else {
        image::imageops::resize(&img, side, side, FilterType::Triangle)
    };
    Ok(img.into_raw())
}

/// Decodes `paths` on all cores, keeping their order.
fn decode_all(paths: &[PathBuf], side: u32) -> Result<Vec<Vec<u8>>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = paths.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|p| decode(p, side)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(paths.len());
        for h in handles {
            let part = h.join().map_err(|_| anyhow::anyhow!("image decoding thread panicked"))?;
            for img in part {
                out.push(img?);
            }
        }
        Ok(out)
    })
}

/// Class labels, and `(class index, path)` of every image.
pub type ClassFiles = (Vec<String>, Vec<(usize, PathBuf)>);

/// The class folders of a class-per-folder set at `root` (sorted) and every image in them as
/// `(class index, path)`, sorted by class then name. Fails, naming the path, on a missing or
/// empty folder or a class folder without images.
pub fn list_class_files(root: &Path) -> Result<ClassFiles> {
    let mut labels = Vec::new();
    let mut files = Vec::new();
    for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let label = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(label) = label else { continue };
        let images: Vec<PathBuf> =
            sorted_entries(&dir)?.into_iter().filter(|p| is_image(p)).collect();
        if images.is_empty() {
            bail!("class folder {} holds no JPEG or PNG images", dir.display());
        }
        files.extend(images.into_iter().map(|p| (labels.len(), p)));
        labels.push(label);
    }
    if labels.is_empty() {
        bail!("{} has no class folders", root.display());
    }
    Ok((labels, files))
}

impl ImageSet {
    /// Reads every image under `root`, resizing to `side`×`side`. Fails, naming the path, on a
    /// missing or empty folder, a class folder without images, or an undecodable image.
    pub fn load(root: &Path, side: u32) -> Result<Self> {
        ensure!(side > 0, "image side must be positive");
        let (labels, files) = list_class_files(root)?;
        let paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
        let pixels = decode_all(&paths, side)?;
        let samples = files
            .into_iter()
            .zip(pixels)
            .map(|((label, path), rgb)| Sample { group: group_id(&path), path, label, rgb })
            .collect();
        Ok(Self { root: root.to_path_buf(), labels, side, samples })
    }

    /// `(label, group)` of every sample, in sample order: the input of
    /// [`crate::train::split::split_by_group`].
    pub fn keys(&self) -> impl Iterator<Item = (usize, &str)> {
        self.samples.iter().map(|s| (s.label, s.group.as_str()))
    }

    /// Number of samples of each label among `indices`, in label order.
    pub fn per_class(&self, indices: &[usize]) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for &i in indices {
            counts[self.samples[i].label] += 1;
        }
        counts
    }

    /// Number of distinct groups among `indices`.
    pub fn group_count(&self, indices: &[usize]) -> usize {
        let groups: std::collections::HashSet<&str> =
            indices.iter().map(|&i| self.samples[i].group.as_str()).collect();
        groups.len()
    }

    /// Builds a batch from `indices`: images `[N, 3, side, side]` (float, normalised with
    /// `mean`/`std` through [`normalise_rgb`]) and labels `[N]` (int64), on `device`. With
    /// `augmentation`, each image in turn gets an augmentation of that level drawn from that
    /// generator (see [`augment::augment`]); fails only if augmenting fails.
    pub fn batch(
        &self,
        indices: &[usize],
        mean: [f32; 3],
        std: [f32; 3],
        mut augmentation: Option<(Level, &mut impl Rng)>,
        device: Device,
    ) -> Result<(Tensor, Tensor)> {
        let side = self.side as usize;
        let mut pixels = Vec::with_capacity(indices.len() * 3 * side * side);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let s = &self.samples[i];
            let augmented = match augmentation.as_mut() {
                Some((level, rng)) => Some(
                    augment::augment(&s.rgb, side, *level, rng)
                        .with_context(|| format!("cannot augment {}", s.path.display()))?,
                ),
                None => None,
            };
            normalise_rgb(augmented.as_deref().unwrap_or(&s.rgb), mean, std, &mut pixels);
            labels.push(s.label as i64);
        }
        let n = indices.len() as i64;
        let side = side as i64;
        let xs = Tensor::from_slice(&pixels).view([n, 3, side, side]).to_device(device);
        let ys = Tensor::from_slice(&labels).to_device(device);
        Ok((xs, ys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_drops_only_a_numeric_suffix() {
        assert_eq!(group_id(Path::new("a/IMG_20190707_010436_12.jpg")), "IMG_20190707_010436");
        assert_eq!(group_id(Path::new("coin_x.png")), "coin_x");
        assert_eq!(group_id(Path::new("coin_.png")), "coin_");
        assert_eq!(group_id(Path::new("plain.jpg")), "plain");
    }

    #[test]
    fn image_extensions_ignore_case() {
        assert!(is_image(Path::new("x/A.JPG")));
        assert!(is_image(Path::new("x/a.png")));
        assert!(!is_image(Path::new("x/a.txt")));
        assert!(!is_image(Path::new("x/jpg")));
    }
}
