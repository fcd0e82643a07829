//! Audit: tries to prove a model's test score wrong before anyone believes it.
//!
//! Checks, each with a verdict: the test set shares no files ([`leakage`], exact and
//! perceptual hashes) and no source photos with the training set; the test accuracy comes with
//! its exact interval ([`stats`]) and a warning when the set is too small; two negative
//! controls ([`controls`]) — a retrain on shuffled labels and the model on crops with the
//! coin hidden — stay at chance; the learning curves ([`curves`]) look like learning; and the
//! per-class [`confusion`]. [`report`] writes it all as Markdown and JSON.

pub mod confusion;
pub mod controls;
pub mod curves;
pub mod leakage;
pub mod phash;
pub mod predict;
pub mod report;
pub mod stats;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::classify::device::DevicePref;
use crate::classify::model::Classifier;
use crate::train::curves::{EpochStats, curves_path_for_model, read_csv};
use crate::train::dataset::ImageSet;
use confusion::Confusion;
use controls::{ControlScore, ShuffleConfig};
use leakage::{DEFAULT_NEAR_THRESHOLD, Leakage};
use stats::{CONFIDENCE, Interval};

/// Accuracy a perfect score must be told apart from for a test set to count as big enough.
pub const TELL_APART_FROM: f64 = 0.9;

/// The outcome of one check. Ordered: `Pass < Warn < Fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Nothing found.
    Pass,
    /// Cannot vouch for the score: look at it.
    Warn,
    /// The score is wrong or not meaningful as it stands.
    Fail,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        })
    }
}

/// One check's verdict and the reason in a sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `exact_duplicates`.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, with the numbers.
    pub why: String,
}

/// The test accuracy and how far it can be trusted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccuracyResult {
    /// Correct crops of the test set, with the exact 95% interval.
    pub interval: Interval,
    /// Test-set size from which a perfect score excludes [`TELL_APART_FROM`] at 95%.
    pub n_needed: usize,
}

/// Everything the audit measured. The JSON report is this, serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// The model audited.
    pub model: PathBuf,
    /// The training set it is compared with.
    pub train: PathBuf,
    /// The test set.
    pub test: PathBuf,
    /// The model's labels, in output order.
    pub labels: Vec<String>,
    /// Images in the training set.
    pub train_images: usize,
    /// Images in the test set.
    pub test_images: usize,
    /// Every check's verdict, in report order.
    pub checks: Vec<Check>,
    /// The worst verdict of all checks.
    pub overall: Verdict,
    /// Duplicates and shared groups.
    pub leakage: Leakage,
    /// Test accuracy.
    pub accuracy: AccuracyResult,
    /// Shuffled-label control (None when skipped with `--control-epochs 0`).
    pub shuffled: Option<ControlScore>,
    /// Background-only control.
    pub background: ControlScore,
    /// Radius of the disc hidden in each crop for the background control, in input pixels.
    pub mask_radius_px: f32,
    /// The curves file read (None when the model has none).
    pub curves_file: Option<PathBuf>,
    /// Its rows.
    pub curves: Vec<EpochStats>,
    /// Per-class results on the test set.
    pub confusion: Confusion,
}

impl AuditReport {
    /// The check named `name`, if the report has it.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Options of `coin_sorter audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// TorchScript model; its metadata (.json) and curves (.curves.csv) are read beside it.
    #[arg(long, value_name = "FILE.pt")]
    pub model: PathBuf,
    /// Class-per-folder set the model was trained on: `<DIR>/<label>/<photo>_<k>.jpg`.
    #[arg(long, value_name = "DIR")]
    pub train: PathBuf,
    /// Class-per-folder set the model is scored on.
    #[arg(long, value_name = "DIR")]
    pub test: PathBuf,
    /// Folder for audit.md and audit.json.
    #[arg(long, value_name = "DIR", default_value = "out/audit")]
    pub out: PathBuf,
    /// Where the model and the control retrain run: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// pHash bits (of 1023) within which two pictures count as near-duplicates.
    #[arg(long, default_value_t = DEFAULT_NEAR_THRESHOLD)]
    pub near_threshold: u32,
    /// Epochs of the shuffled-label retrain; 0 skips that control.
    #[arg(long, default_value_t = 3)]
    pub control_epochs: usize,
    /// First-stage width of the retrained ResNet (64 = ResNet-50; small is fast).
    #[arg(long, default_value_t = 16)]
    pub control_base_width: i64,
    /// Images per step of the retrain.
    #[arg(long, default_value_t = 32)]
    pub control_batch_size: usize,
    /// Stop the retrain after this many steps.
    #[arg(long)]
    pub control_max_steps: Option<usize>,
    /// Seed of the label shuffle and the retrain.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch intra-op threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

impl AuditArgs {
    /// The options with every default, for callers that do not parse a command line.
    pub fn new(model: PathBuf, train: PathBuf, test: PathBuf) -> Self {
        Self {
            model,
            train,
            test,
            out: PathBuf::from("out/audit"),
            device: "auto".into(),
            near_threshold: DEFAULT_NEAR_THRESHOLD,
            control_epochs: 3,
            control_base_width: 16,
            control_batch_size: 32,
            control_max_steps: None,
            seed: 0,
            threads: None,
        }
    }
}

fn bar(len: usize, prefix: &str) -> Result<ProgressBar> {
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
    )
    .context("invalid progress bar template")?;
    Ok(ProgressBar::new(len as u64).with_style(style).with_prefix(prefix.to_owned()))
}

/// Runs every check, writes [`report::markdown_path`] and [`report::json_path`] under
/// `args.out`, and returns the report. Verdicts do not make it fail; unreadable inputs do.
pub fn run(args: &AuditArgs) -> Result<AuditReport> {
    if let Some(n) = args.threads {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        tch::set_num_threads(crate::params::checked_threads("--threads", n)?);
    }
    let pref: DevicePref = args.device.parse()?;
    let classifier = Classifier::load(&args.model, pref)?;
    let meta = classifier.metadata().clone();
    let load = |dir: &Path, what: &str| {
        ImageSet::load(dir, meta.input_size)
            .with_context(|| format!("cannot load the {what} set {}", dir.display()))
    };
    let train = load(&args.train, "training")?;
    let test = load(&args.test, "test")?;
    tracing::info!(
        train = train.samples.len(),
        test = test.samples.len(),
        "auditing {} on {}",
        args.model.display(),
        args.test.display()
    );

    let leakage = leakage_of(&train, &test, args.near_threshold)?;

    let b = bar(test.samples.len(), "classify")?;
    let predicted = predict::predict(&classifier, &test, None, &b)?;
    b.finish();
    let interval = stats::clopper_pearson(predicted.correct(), predicted.truth.len(), CONFIDENCE);
    let accuracy =
        AccuracyResult { interval, n_needed: stats::n_to_exclude(TELL_APART_FROM, CONFIDENCE) };
    let confusion = Confusion::new(&meta.labels, &predicted);

    let mask_radius_px = meta.input_size as f32 / (2.0 * meta.crop_scale);
    let b = bar(test.samples.len(), "background")?;
    let hidden = predict::predict(&classifier, &test, Some(mask_radius_px), &b)?;
    b.finish();
    let background = ControlScore::new(&hidden, meta.labels.len());

    let shuffled = if args.control_epochs == 0 {
        None
    } else {
        let cfg = ShuffleConfig {
            epochs: args.control_epochs,
            base_width: args.control_base_width,
            batch_size: args.control_batch_size,
            max_steps: args.control_max_steps,
            seed: args.seed,
        };
        let b = bar(0, "shuffled")?;
        let p = controls::shuffled_label_run(&train, &test, &cfg, classifier.device(), &b)?;
        b.finish();
        Some(ControlScore::new(&p, train.labels.len()))
    };

    let curves_path = curves_path_for_model(&args.model);
    let (curves_file, curves) = if curves_path.is_file() {
        (Some(curves_path.clone()), read_csv(&curves_path)?)
    } else {
        (None, Vec::new())
    };

    let mut report = AuditReport {
        model: args.model.clone(),
        train: args.train.clone(),
        test: args.test.clone(),
        labels: meta.labels.clone(),
        train_images: train.samples.len(),
        test_images: test.samples.len(),
        checks: Vec::new(),
        overall: Verdict::Pass,
        leakage,
        accuracy,
        shuffled,
        background,
        mask_radius_px,
        curves_file,
        curves,
        confusion,
    };
    report.checks = report::judge(&report);
    report.overall = report.checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Pass);
    report::write(&report, &args.out)?;
    Ok(report)
}

fn leakage_of(train: &ImageSet, test: &ImageSet, threshold: u32) -> Result<Leakage> {
    let paths = |s: &ImageSet| s.samples.iter().map(|x| x.path.clone()).collect::<Vec<_>>();
    let (train_paths, test_paths) = (paths(train), paths(test));
    let b = bar(train_paths.len() + test_paths.len(), "hash")?;
    let tick = || b.inc(1);
    let train_h = leakage::hash_files(&train_paths, &tick)?;
    let test_h = leakage::hash_files(&test_paths, &tick)?;
    b.finish();
    Ok(leakage::find_leakage(&train_h, &test_h, threshold))
}
