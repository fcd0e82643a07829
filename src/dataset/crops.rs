//! `coin_sorter dataset crops`: labelled coin crops from LabelMe-annotated photos or from a
//! recorded bag and its ground truth, cut with the node's crop geometry.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::writer::CropWriter;
use super::{LabelledCircle, labelme};
use crate::bag::BagReader;
use crate::classify::metadata::DEFAULT_CROP_SCALE;
use crate::decode::RgbImage;
use crate::locate::Circle;
use crate::pipeline::Frame;
use crate::score::{TruthFrame, read_ground_truth, truth_beside};

/// Side of written crops by default: that of the `coins-mobile` crops.
pub const DEFAULT_SIZE: u32 = 256;

/// Options of `coin_sorter dataset crops`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["labelme", "bag"])))]
pub struct CropsArgs {
    /// LabelMe folder: annotations/*.json (or *.json), each naming its photo in imagePath.
    #[arg(long, value_name = "DIR")]
    pub labelme: Option<PathBuf>,
    /// rosbag2 recording (folder or file) whose image frames have ground truth.
    #[arg(long, value_name = "DIR")]
    pub bag: Option<PathBuf>,
    /// Ground truth of the bag, one JSON frame per line [default: ground_truth.jsonl in the
    /// bag folder, or beside a bare storage file].
    #[arg(long, value_name = "FILE", requires = "bag")]
    pub truth: Option<PathBuf>,
    /// Image topic of the bag to read [default: every Image and CompressedImage topic].
    #[arg(long, requires = "bag")]
    pub topic: Option<String>,
    /// Output folder: OUT/<label>/<source>_<k>.jpg.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Side of the written crops in pixels.
    #[arg(long, default_value_t = DEFAULT_SIZE)]
    pub size: u32,
    /// Half the crop side in coin radii (the node's geometry).
    #[arg(long, default_value_t = DEFAULT_CROP_SCALE)]
    pub crop_scale: f32,
}

impl CropsArgs {
    /// Options for cutting crops from a LabelMe folder into `out`, other options default.
    pub fn labelme(dir: PathBuf, out: PathBuf) -> Self {
        Self {
            labelme: Some(dir),
            bag: None,
            truth: None,
            topic: None,
            out,
            size: DEFAULT_SIZE,
            crop_scale: DEFAULT_CROP_SCALE,
        }
    }

    /// Options for cutting crops from a bag (truth beside it) into `out`, other options
    /// default.
    pub fn bag(bag: PathBuf, out: PathBuf) -> Self {
        Self { labelme: None, bag: Some(bag), ..Self::labelme(PathBuf::new(), out) }
    }
}

/// What a run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CropsSummary {
    /// Crops written per label.
    pub per_class: BTreeMap<String, usize>,
    /// Photos or frames that gave at least one crop.
    pub sources: usize,
    /// Every file written, in the order written.
    pub files: Vec<PathBuf>,
}

fn progress(len: u64, prefix: &str) -> Result<ProgressBar> {
    let style = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
    )
    .context("invalid progress bar template")?;
    Ok(ProgressBar::new(len).with_style(style).with_prefix(prefix.to_owned()))
}

/// Runs `dataset crops`, prints the per-class summary and returns it.
pub fn run(args: &CropsArgs) -> Result<CropsSummary> {
    let staging = crate::fsutil::staging_dir(&args.out, "crops-")?;
    let mut writer = CropWriter::new(staging.path(), args.size, args.crop_scale)?;
    let staged = match (&args.labelme, &args.bag) {
        (Some(dir), None) => from_labelme(dir, &mut writer)?,
        (None, Some(bag)) => {
            let truth = args.truth.clone().unwrap_or_else(|| truth_beside(bag));
            from_bag(bag, &truth, args.topic.as_deref(), &mut writer)?
        }
        _ => bail!("give exactly one of --labelme and --bag"),
    };
    let mut files = Vec::with_capacity(staged.len());
    for f in staged {
        let rel = f.strip_prefix(staging.path()).with_context(|| {
            format!("{} is not inside {}", f.display(), staging.path().display())
        })?;
        let to = args.out.join(rel);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::rename(&f, &to)
            .with_context(|| format!("cannot move {} to {}", f.display(), to.display()))?;
        files.push(to);
    }
    print!("{}", writer.summary(&args.out));
    Ok(CropsSummary { per_class: writer.per_class().clone(), sources: writer.sources(), files })
}

/// Loads a photo as packed RGB, in its stored pixel order (EXIF orientation is not applied:
/// LabelMe coordinates refer to the stored pixels).
fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read photo {}", path.display()))?;
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    crate::decode::decode_bytes(&bytes, &ext)
        .with_context(|| format!("cannot decode photo {}", path.display()))
}

/// Crops every annotated coin of every photo of a LabelMe folder; the source name is the
/// annotation's file stem.
pub fn from_labelme(dir: &Path, writer: &mut CropWriter) -> Result<Vec<PathBuf>> {
    let jsons = labelme::annotation_files(dir)?;
    let bar = progress(jsons.len() as u64, "photos")?;
    let mut files = Vec::new();
    for json in &jsons {
        let a = labelme::read(json)?;
        let img = load_rgb(&a.image)
            .with_context(|| format!("photo of annotation {}", json.display()))?;
        if let Some((w, h)) = a.size
            && (w, h) != (img.width, img.height)
        {
            bail!(
                "{} is {}x{} but its annotation {} says {w}x{h}",
                a.image.display(),
                img.width,
                img.height,
                json.display()
            );
        }
        let source = json.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        files.extend(writer.write(&img, &a.coins, &source)?);
        bar.inc(1);
    }
    bar.finish();
    Ok(files)
}

/// Crops the labelled coins of every bag frame that has ground truth (matched by header
/// stamp); the source name is the truth's `source`, or the stamp when it has none. Frames
/// without truth are counted and skipped; truth frames never seen are reported.
pub fn from_bag(
    bag: &Path,
    truth_path: &Path,
    topic: Option<&str>,
    writer: &mut CropWriter,
) -> Result<Vec<PathBuf>> {
    let truth = read_ground_truth(truth_path)?;
    let by_stamp: HashMap<i64, &TruthFrame> = truth.iter().map(|f| (f.stamp_ns, f)).collect();
    let reader = BagReader::open(bag)?;
    let topics: Vec<String> = reader
        .info()
        .topics
        .iter()
        .filter(|t| topic.map_or(Frame::is_image_type(&t.type_name), |want| t.name == want))
        .map(|t| t.name.clone())
        .collect();
    if topics.is_empty() {
        bail!("bag {} has no image topic {}", bag.display(), topic.unwrap_or(""));
    }
    let total: u64 = reader
        .info()
        .topics
        .iter()
        .filter(|t| topics.contains(&t.name))
        .map(|t| t.message_count)
        .sum();
    let bar = progress(total, "frames")?;
    let (mut files, mut unlabelled) = (Vec::new(), 0usize);
    let mut seen = std::collections::HashSet::new();
    for msg in reader.messages(Some(&topics))? {
        let msg = msg?;
        bar.inc(1);
        let at = || format!("{} message at {} ns in {}", msg.topic, msg.log_time_ns, bag.display());
        let frame = Frame::from_cdr(&msg.type_name, &msg.data).with_context(at)?;
        let stamp = frame.header().stamp.as_nanos();
        let Some(t) = by_stamp.get(&stamp) else {
            unlabelled += 1;
            continue;
        };
        seen.insert(stamp);
        let img = frame.decode().with_context(at)?;
        let coins: Vec<LabelledCircle> = t
            .coins
            .iter()
            .map(|c| LabelledCircle {
                label: c.label.clone(),
                circle: Circle { x: c.x, y: c.y, r: c.r },
            })
            .collect();
        let source = if t.source.is_empty() { stamp.to_string() } else { t.source.clone() };
        files.extend(writer.write(&img, &coins, &source)?);
    }
    bar.finish();
    if unlabelled > 0 {
        tracing::info!("{unlabelled} frames have no ground truth in {}", truth_path.display());
    }
    let missing = truth.len() - seen.len();
    if missing > 0 {
        tracing::warn!(
            "{missing} of {} ground-truth frames of {} match no frame of {}",
            truth.len(),
            truth_path.display(),
            bag.display()
        );
    }
    Ok(files)
}
