//! Writing coin crops into the class-per-folder layout training reads:
//! `OUT/<label>/<source>_<k>.jpg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;

use super::LabelledCircle;
use crate::classify::crop::crop_coins;
use crate::decode::RgbImage;
use crate::locate::Circle;

/// JPEG quality of written crops: high enough that re-encoding adds no visible artefacts to
/// what the camera delivered.
pub const JPEG_QUALITY: u8 = 95;

/// Encodes packed RGB pixels as a JPEG file image in memory.
pub fn encode_jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode(rgb, width, height, ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot encode a {width}x{height} JPEG"))?;
    Ok(bytes)
}

/// Cuts crops with the node's geometry and writes them, counting files per label.
///
/// Invariant: every file written is a complete `size`×`size` JPEG (written atomically), and
/// `per_class` counts exactly the files this writer wrote.
#[derive(Debug)]
pub struct CropWriter {
    out: PathBuf,
    size: u32,
    crop_scale: f32,
    per_class: BTreeMap<String, usize>,
    sources: usize,
    /// Coins written per source so far: a source seen again (two frames of one photo) goes on
    /// numbering instead of overwriting.
    next_k: std::collections::HashMap<String, usize>,
}

impl CropWriter {
    /// A writer into `out` of `size`-pixel crops of half-side `crop_scale` radii.
    pub fn new(out: &Path, size: u32, crop_scale: f32) -> Result<Self> {
        crate::params::checked_side("crop size", size)?;
        ensure!(
            crop_scale.is_finite() && crop_scale > 0.0,
            "crop scale {crop_scale} must be positive"
        );
        Ok(Self {
            out: out.to_path_buf(),
            size,
            crop_scale,
            per_class: BTreeMap::new(),
            sources: 0,
            next_k: std::collections::HashMap::new(),
        })
    }

    /// Crops `coins` out of `img` and writes coin `k` (0-based, in the given order, continuing
    /// after the coins of earlier calls with the same `source`) to
    /// `OUT/<label>/<source>_<k>.jpg`. Returns the files written, in coin order. Fails, writing
    /// nothing, when a circle lies off the image or has a radius under 1 px or over the image.
    pub fn write(
        &mut self,
        img: &RgbImage,
        coins: &[LabelledCircle],
        source: &str,
    ) -> Result<Vec<PathBuf>> {
        super::check_source(source)?;
        let (w, h) = (img.width as f32, img.height as f32);
        for (k, c) in coins.iter().enumerate() {
            let Circle { x, y, r } = c.circle;
            let inside = (0.0..=w).contains(&x) && (0.0..=h).contains(&y);
            ensure!(
                inside && r.is_finite() && r >= 1.0 && r <= w.max(h),
                "coin {k} ({:?}) of {source}: circle at ({x}, {y}) radius {r} does not fit the \
                 {}x{} image",
                c.label,
                img.width,
                img.height
            );
        }
        let circles: Vec<_> = coins.iter().map(|c| c.circle).collect();
        let pixels = crop_coins(img, &circles, self.crop_scale, self.size)
            .with_context(|| format!("cannot crop the coins of {source}"))?;
        let per = (self.size * self.size * 3) as usize;
        let mut files = Vec::with_capacity(coins.len());
        let first = self.next_k.get(source).copied().unwrap_or(0);
        for (i, (coin, rgb)) in coins.iter().zip(pixels.chunks_exact(per)).enumerate() {
            let k = first + i;
            super::check_label(&coin.label)?;
            let path = self.out.join(&coin.label).join(format!("{source}_{k}.jpg"));
            let jpeg = encode_jpeg(rgb, self.size, self.size, JPEG_QUALITY)?;
            crate::fsutil::write_atomic(&path, &jpeg)
                .with_context(|| format!("cannot write crop {}", path.display()))?;
            *self.per_class.entry(coin.label.clone()).or_default() += 1;
            files.push(path);
        }
        if !coins.is_empty() {
            if first == 0 {
                self.sources += 1;
            }
            self.next_k.insert(source.to_owned(), first + coins.len());
        }
        Ok(files)
    }

    /// Files written per label, sorted by label.
    pub fn per_class(&self) -> &BTreeMap<String, usize> {
        &self.per_class
    }

    /// Sources (photos or frames) that gave at least one crop.
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Files written in all.
    pub fn total(&self) -> usize {
        self.per_class.values().sum()
    }

    /// A per-class summary, one `label count` line each, then the total, saying the crops
    /// are in `shown` (the writer's folder, or where its files were moved).
    pub fn summary(&self, shown: &Path) -> String {
        let mut s = String::new();
        for (label, n) in &self.per_class {
            s.push_str(&format!("  {label:<8} {n:>6}\n"));
        }
        s.push_str(&format!(
            "  {:<8} {:>6} crops from {} sources in {}\n",
            "total",
            self.total(),
            self.sources,
            shown.display()
        ));
        s
    }
}
