//! `coin_sorter dataset split`: copies a class-per-folder set into `OUT/train` and `OUT/test`,
//! by source photo (the honest split) or by crop (the leaky one, kept so an audit can be shown
//! a planted leak), optionally keeping only some classes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::train::dataset::{group_id, list_class_files};
use crate::train::split::split_by_group;

/// What a split keeps whole on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitBy {
    /// Every crop of one source photo on the same side.
    Photo,
    /// Each crop on its own: crops of one photo land on both sides (leaks; for audits).
    Crop,
}

/// Options of `coin_sorter dataset split`.
#[derive(Debug, Clone, clap::Args)]
pub struct SplitArgs {
    /// Class-per-folder set: `<DIR>/<label>/<photo>_<k>.jpg`.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Output folder; `OUT/train` and `OUT/test` must not exist yet.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Fraction of each class's photos (or crops, with --by crop) that go to the test side,
    /// in (0, 1).
    #[arg(long, default_value_t = 0.25)]
    pub test_fraction: f64,
    /// Keep photos whole (photo) or split crops freely (crop).
    #[arg(long, value_enum, default_value_t = SplitBy::Photo)]
    pub by: SplitBy,
    /// Keep only these classes (comma-separated) [default: every class].
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// What a split wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    /// Class folders written, sorted.
    pub labels: Vec<String>,
    /// Files copied to `OUT/train`.
    pub train: Vec<PathBuf>,
    /// Files copied to `OUT/test`.
    pub test: Vec<PathBuf>,
}

fn copy_to(files: &[&Path], dir: &Path) -> Result<()> {
    for f in files {
        let class = f.parent().and_then(|p| p.file_name()).context("file without a class")?;
        let name = f.file_name().with_context(|| format!("{} has no file name", f.display()))?;
        let to = dir.join(class).join(name);
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        crate::fsutil::write_atomic(&to, &bytes)
            .with_context(|| format!("cannot write {}", to.display()))?;
    }
    Ok(())
}

/// Runs `dataset split`; prints and returns what it wrote.
pub fn run(args: &SplitArgs) -> Result<SplitSummary> {
    ensure!(
        args.test_fraction > 0.0 && args.test_fraction < 1.0,
        "--test-fraction {} is not in (0, 1)",
        args.test_fraction
    );
    let (train_dir, test_dir) = (args.out.join("train"), args.out.join("test"));
    for d in [&train_dir, &test_dir] {
        ensure!(!d.exists(), "{} exists already; remove it or choose another --out", d.display());
    }
    let (labels, files) = list_class_files(&args.data)?;
    let wanted: BTreeSet<&str> = args.classes.iter().map(String::as_str).collect();
    if let Some(missing) = wanted.iter().find(|w| !labels.iter().any(|l| l == *w)) {
        bail!("class {missing:?} is not a folder of {} (it has {labels:?})", args.data.display());
    }
    let files: Vec<(usize, PathBuf)> = files
        .into_iter()
        .filter(|(l, _)| wanted.is_empty() || wanted.contains(labels[*l].as_str()))
        .collect();
    let keys: Vec<(usize, String)> = files
        .iter()
        .map(|(l, p)| match args.by {
            SplitBy::Photo => (*l, group_id(p)),
            SplitBy::Crop => (*l, p.display().to_string()),
        })
        .collect();
    let split =
        split_by_group(keys.iter().map(|(l, g)| (*l, g.as_str())), args.test_fraction, args.seed)?;
    let pick =
        |idx: &[usize]| -> Vec<&Path> { idx.iter().map(|&i| files[i].1.as_path()).collect() };
    let staging = crate::fsutil::staging_dir(&args.out, "split-")?;
    copy_to(&pick(&split.train), &staging.path().join("train"))?;
    copy_to(&pick(&split.val), &staging.path().join("test"))?;
    for (side, dir) in [("train", &train_dir), ("test", &test_dir)] {
        let from = staging.path().join(side);
        std::fs::create_dir_all(&from)
            .with_context(|| format!("cannot create {}", from.display()))?;
        std::fs::rename(&from, dir)
            .with_context(|| format!("cannot move {} to {}", from.display(), dir.display()))?;
    }
    let moved = |idx: &[usize], dir: &Path| -> Vec<PathBuf> {
        pick(idx)
            .iter()
            .filter_map(|f| Some(dir.join(f.parent()?.file_name()?).join(f.file_name()?)))
            .collect()
    };
    let train = moved(&split.train, &train_dir);
    let test = moved(&split.val, &test_dir);
    let kept: BTreeSet<String> = files.iter().map(|(l, _)| labels[*l].clone()).collect();
    let groups = |f: &[PathBuf]| f.iter().map(|p| group_id(p)).collect::<BTreeSet<_>>().len();
    println!(
        "split {} by {:?}: {} crops of {} photos to {}, {} crops of {} photos to {}",
        args.data.display(),
        args.by,
        train.len(),
        groups(&train),
        train_dir.display(),
        test.len(),
        groups(&test),
        test_dir.display()
    );
    Ok(SplitSummary { labels: kept.into_iter().collect(), train, test })
}
