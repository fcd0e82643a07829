//! The `train` command: load the set, split it, build the starting network (stage 1 or 2),
//! train with checkpoints, and export the model with its weights, metadata, curves, plots and
//! report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::Device;

use crate::classify::device::{DevicePref, select};
use crate::classify::metadata::{DEFAULT_INPUT_SIZE, DataSummary, ModelMetadata, TrainingRecord};
use crate::train::augment::Level;
use crate::train::checkpoint;
use crate::train::curves::{EpochStats, curves_path_for_model, write_csv};
use crate::train::dataset::ImageSet;
use crate::train::export;
use crate::train::fit::{CheckpointTo, FitConfig, Fitted, Model, Progress, Resume, Stop, fit};
use crate::train::optim::Optim;
use crate::train::report::{Report, report_path_for_model};
use crate::train::resnet::{Part, RESNET50_BASE_WIDTH};
use crate::train::sampler::Balance;
use crate::train::split::{Split, split_by_group};
use crate::train::start::{self, Parent, Start};
use crate::train::weights::{self, Head};

/// Default output path of the trained model.
pub const DEFAULT_OUT: &str = "models/coin_resnet50.pt";
/// Default number of epochs: on coins-mobile at 112 px, 6 epochs reach about 70% validation
/// accuracy from scratch in about 6 minutes on two otherwise idle CPU cores.
pub const DEFAULT_EPOCHS: usize = 6;
/// Default images per optimiser step.
pub const DEFAULT_BATCH_SIZE: usize = 32;
/// Default fraction of each class's photos held out for validation.
pub const DEFAULT_VAL_FRACTION: f64 = 0.2;

/// Widest first ResNet stage `--base-width` accepts (ResNet-50 is 64; 256 is already a
/// 370-million-parameter network).
pub const MAX_BASE_WIDTH: i64 = 256;

/// Options of the `train` command.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Class-per-folder image set: `<DIR>/<label>/<photo>_<k>.jpg`.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// TorchScript model to write; weights, metadata, curves, plots, report and the checkpoint
    /// folder go beside it.
    #[arg(long, value_name = "FILE.pt", default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// 1: train on the source set (every class it has); 2: fine-tune the model given by
    /// --from on a target set, which may hold only some of its classes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub stage: u8,
    /// Stage 2: the stage-1 model to start from (its .json and .safetensors beside it).
    #[arg(long, value_name = "MODEL.pt")]
    pub from: Option<PathBuf>,
    /// Stage 2: keep the stage-1 head's rows of the target labels (narrow) or start a new
    /// random head (replace) [default: narrow when every target label is a stage-1 label,
    /// else replace].
    #[arg(long, value_enum)]
    pub head: Option<Head>,
    /// Freeze the network up to and including this part: no gradient, BatchNorm statistics
    /// kept.
    #[arg(long, value_enum, value_name = "LAYER")]
    pub freeze_until: Option<Part>,
    /// Stage 1: initial weights with torchvision's resnet50 names (.safetensors or tch .ot,
    /// see docs/training.md); the head is skipped when its class count differs.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Side of the square model input in pixels.
    #[arg(long, default_value_t = DEFAULT_INPUT_SIZE)]
    pub input_size: u32,
    /// Planned passes over the training images (the learning-rate schedule spans them).
    #[arg(long, default_value_t = DEFAULT_EPOCHS)]
    pub epochs: usize,
    /// Images per optimiser step (at least 2).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Peak learning rate [default: 0.002 for adamw, 0.05 for sgd].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = Optim::Adamw)]
    pub optim: Optim,
    /// Seed of the split, the initial weights, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of each class's source photos held out for validation, in [0, 1).
    #[arg(long, default_value_t = DEFAULT_VAL_FRACTION)]
    pub val_fraction: f64,
    /// Augmentation of the training crops.
    #[arg(long, value_enum, default_value_t = Level::Full)]
    pub augment: Level,
    /// Class balancing; `--balance` alone means `sampler`.
    #[arg(long, value_enum, default_value_t = Balance::None, num_args = 0..=1,
          default_missing_value = "sampler")]
    pub balance: Balance,
    /// Stop when validation accuracy has not improved for this many epochs.
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// Continue the run whose checkpoint folder (`<out>.ckpt`) this is; every other option
    /// must be as in the run that wrote it.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// End this session after this epoch, keeping the checkpoint for --resume (the schedule
    /// still spans --epochs).
    #[arg(long, value_name = "EPOCH")]
    pub stop_after_epoch: Option<usize>,
    /// Where to train: auto (CUDA when usable, else CPU), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch intra-op threads [default: libtorch's choice, one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop after this many optimiser steps in total (for quick checks).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Width of the first ResNet stage; 64 is ResNet-50, smaller values a tiny net. Stage 2
    /// must use the stage-1 model's width.
    #[arg(long, default_value_t = RESNET50_BASE_WIDTH)]
    pub base_width: i64,
}

impl TrainArgs {
    /// The options with every default, for callers that do not parse a command line.
    pub fn new(data: PathBuf) -> Self {
        Self {
            data,
            out: PathBuf::from(DEFAULT_OUT),
            stage: 1,
            from: None,
            head: None,
            freeze_until: None,
            init: None,
            input_size: DEFAULT_INPUT_SIZE,
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            lr: None,
            optim: Optim::Adamw,
            seed: 0,
            val_fraction: DEFAULT_VAL_FRACTION,
            augment: Level::Full,
            balance: Balance::None,
            patience: None,
            resume: None,
            stop_after_epoch: None,
            device: "auto".to_owned(),
            threads: None,
            max_steps: None,
            base_width: RESNET50_BASE_WIDTH,
        }
    }

    /// Checks the options that only make sense together.
    fn check(&self) -> Result<()> {
        match self.stage {
            1 => {
                ensure!(self.from.is_none(), "--from is for --stage 2");
                ensure!(self.head.is_none(), "--head is for --stage 2");
            }
            2 => {
                ensure!(self.from.is_some(), "--stage 2 needs --from MODEL.pt");
                ensure!(self.init.is_none(), "--init is for stage 1; stage 2 starts from --from");
            }
            s => bail!("stage {s} does not exist; use 1 or 2"),
        }
        ensure!(self.patience != Some(0), "--patience must be at least 1");
        ensure!(self.stop_after_epoch != Some(0), "--stop-after-epoch must be at least 1");
        crate::params::checked_side("--input-size", self.input_size)?;
        ensure!(
            (1..=MAX_BASE_WIDTH).contains(&self.base_width),
            "--base-width {} must be between 1 and {MAX_BASE_WIDTH}",
            self.base_width
        );
        Ok(())
    }
}

/// The settings that decide a run's course, as recorded in its checkpoint and report. Paths
/// are canonical, so a resume from another folder compares equal.
#[derive(Debug, Serialize)]
struct Settings {
    data: String,
    stage: u8,
    from: Option<String>,
    head: Option<Head>,
    freeze_until: Option<Part>,
    init: Option<String>,
    input_size: u32,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    optim: Optim,
    seed: u64,
    val_fraction: f64,
    augment: Level,
    balance: Balance,
    patience: Option<usize>,
    max_steps: Option<usize>,
    base_width: i64,
}

fn canonical(p: &Path) -> Result<String> {
    let c = std::fs::canonicalize(p).with_context(|| format!("cannot find {}", p.display()))?;
    Ok(c.display().to_string())
}

impl Settings {
    fn new(args: &TrainArgs, head: Option<Head>) -> Result<Self> {
        Ok(Self {
            data: canonical(&args.data)?,
            stage: args.stage,
            from: args.from.as_deref().map(canonical).transpose()?,
            head,
            freeze_until: args.freeze_until,
            init: args.init.as_deref().map(canonical).transpose()?,
            input_size: args.input_size,
            epochs: args.epochs,
            batch_size: args.batch_size,
            lr: args.lr.unwrap_or(args.optim.default_lr()),
            optim: args.optim,
            seed: args.seed,
            val_fraction: args.val_fraction,
            augment: args.augment,
            balance: args.balance,
            patience: args.patience,
            max_steps: args.max_steps,
            base_width: args.base_width,
        })
    }
}

/// Fails, listing each difference, unless `now` equals the settings `recorded` in the
/// checkpoint at `origin`.
fn same_settings(
    recorded: &serde_json::Value,
    now: &serde_json::Value,
    origin: &Path,
) -> Result<()> {
    let empty = serde_json::Map::new();
    let (old, new) = (recorded.as_object().unwrap_or(&empty), now.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("absent".into(), |v| v.to_string());
            format!("{k}: checkpoint {}, now {}", show(old.get(k)), show(new.get(k)))
        })
        .collect();
    ensure!(
        diffs.is_empty(),
        "cannot resume {}: the run's settings differ ({})",
        origin.display(),
        diffs.join("; ")
    );
    Ok(())
}

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The TorchScript model written.
    pub model: PathBuf,
    /// Its metadata file.
    pub metadata: PathBuf,
    /// Its VarStore weights (safetensors), which stage 2 and `--init` read.
    pub weights: PathBuf,
    /// Its learning-curves CSV (earlier stages' rows first).
    pub curves_csv: PathBuf,
    /// The curves plot.
    pub curves_png: PathBuf,
    /// The validation confusion matrix plot of the best epoch.
    pub confusion_png: PathBuf,
    /// The Markdown report.
    pub report: PathBuf,
    /// The checkpoint folder.
    pub checkpoint: PathBuf,
    /// Labels in output order.
    pub labels: Vec<String>,
    /// Stage trained.
    pub stage: u8,
    /// Stage 2's head mode.
    pub head: Option<Head>,
    /// One entry per epoch of this stage.
    pub curves: Vec<EpochStats>,
    /// 1-based epoch whose weights were exported.
    pub best_epoch: usize,
    /// Validation accuracy of that epoch, 0..1.
    pub best_val_accuracy: f64,
    /// Validation confusion matrix of that epoch, `[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Why training ended.
    pub stop: Stop,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Seconds spent loading and decoding the images.
    pub load_seconds: f64,
    /// Wall-clock seconds of the whole run.
    pub total_seconds: f64,
}

/// Trains on the device `args.device` names; see [`run_on`].
pub fn run(args: &TrainArgs) -> Result<TrainReport> {
    let pref: DevicePref = args.device.parse()?;
    let device = select(pref)?;
    tracing::info!(?device, "training device");
    run_on(args, device)
}

fn progress_bar() -> Result<ProgressBar> {
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} steps, {msg} (eta {eta})",
    )
    .context("invalid progress bar template")?;
    Ok(ProgressBar::new(0).with_style(style).with_prefix("epoch 1"))
}

fn stop_words(stop: Stop, args: &TrainArgs, epochs_run: usize) -> String {
    match stop {
        Stop::Completed => "all planned epochs".to_owned(),
        Stop::Patience => format!(
            "stopped early: no validation gain for {} epochs",
            args.patience.unwrap_or_default()
        ),
        Stop::MaxSteps => "stopped at the step limit".to_owned(),
        Stop::Paused => format!("paused after epoch {epochs_run}; continue with --resume"),
    }
}

/// Removes a checkpoint left in `dir` by an earlier run, unless `dir` is the one being resumed.
fn clear_stale_checkpoint(dir: &Path, resuming: Option<&Path>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if resuming.is_some_and(|r| same(r, dir)) {
        return Ok(());
    }
    tracing::info!("replacing the old checkpoint in {}", dir.display());
    checkpoint::clear(dir)
}

/// Trains a model on `args.data` on `device` (stage 1, or stage 2 from `args.from`) and writes
/// beside `args.out`: the TorchScript model, its weights and metadata, the curves CSV (rewritten
/// after every epoch, with the parent's rows first in stage 2) and PNG, the confusion matrix
/// PNG and the report, and a checkpoint after every epoch in [`checkpoint::dir_for_model`].
/// The exported weights are those of the best validation epoch.
pub fn run_on(args: &TrainArgs, device: Device) -> Result<TrainReport> {
    let start = Instant::now();
    args.check()?;
    if let Some(n) = args.threads {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        tch::set_num_threads(crate::params::checked_threads("--threads", n)?);
    }
    let resume = args.resume.as_deref().map(checkpoint::load).transpose()?;
    let set = ImageSet::load(&args.data, args.input_size)
        .with_context(|| format!("cannot load training images from {}", args.data.display()))?;
    let load_seconds = start.elapsed().as_secs_f64();
    ensure!(
        set.labels.len() >= 2,
        "{} has only the class {:?}: a classifier needs at least two",
        args.data.display(),
        set.labels
    );
    let split = split_by_group(set.keys(), args.val_fraction, args.seed)?;
    tracing::info!(
        images = set.samples.len(),
        classes = set.labels.len(),
        train = split.train.len(),
        val = split.val.len(),
        load_seconds,
        "loaded training set {}",
        args.data.display()
    );

    let parent = args.from.as_deref().map(Parent::load).transpose()?;
    let head = match &parent {
        Some(p) => {
            ensure!(
                p.base_width == args.base_width,
                "{} has base width {}, but --base-width is {}",
                p.model.display(),
                p.base_width,
                args.base_width
            );
            Some(Head::choose(args.head, &p.meta.labels, &set.labels)?)
        }
        None => None,
    };
    let settings = serde_json::to_value(Settings::new(args, head)?)?;
    if let Some(r) = &resume {
        same_settings(&r.file.settings, &settings, &r.dir)?;
    }
    let ckpt_dir = checkpoint::dir_for_model(&args.out);
    clear_stale_checkpoint(&ckpt_dir, resume.as_ref().map(|r| r.dir.as_path()))?;

    let from = match (&parent, head, &args.init) {
        (Some(parent), Some(head), _) => Start::Parent { parent, head },
        (_, _, Some(init)) => Start::Init(init),
        _ => Start::Scratch,
    };
    let mut model = start::build(&from, args.base_width, &set.labels, args.seed, device)?;
    if let Some(part) = args.freeze_until {
        let frozen = model.net.freeze_until(&model.vs, part)?;
        tracing::info!(frozen, "froze the network up to and including {part}");
    }

    let cfg = FitConfig {
        stage: args.stage,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr.unwrap_or(args.optim.default_lr()),
        seed: args.seed,
        max_steps: args.max_steps,
        optim: args.optim,
        augment: args.augment,
        balance: args.balance,
        patience: args.patience,
        stop_after: args.stop_after_epoch,
        checkpoint: Some(CheckpointTo { dir: ckpt_dir.clone(), settings: settings.clone() }),
    };
    let earlier: Vec<EpochStats> = parent.as_ref().map(|p| p.curves.clone()).unwrap_or_default();
    let curves_csv = curves_path_for_model(&args.out);
    let resume = resume.map(Resume::from);
    let mut fitted = train(model, &set, &split, &cfg, device, resume, &earlier, &curves_csv)?;

    let outputs = Outputs::for_model(&args.out);
    let best =
        fitted.curves.iter().find(|e| e.epoch == fitted.best_epoch).cloned().with_context(
            || format!("the curves have no row for best epoch {}", fitted.best_epoch),
        )?;
    let summary = DataSummary {
        source: set.root.display().to_string(),
        train_per_class: set.per_class(&split.train),
        val_per_class: set.per_class(&split.val),
        train_groups: set.group_count(&split.train),
        val_groups: set.group_count(&split.val),
        val_accuracy: best.val_acc,
        epochs: fitted.curves.len(),
        seed: args.seed,
    };
    let all_curves: Vec<EpochStats> = earlier.iter().chain(&fitted.curves).cloned().collect();
    let stop = stop_words(fitted.stop, args, fitted.curves.len());
    let record = TrainingRecord {
        stage: args.stage,
        parent: args.from.as_ref().map(|p| p.display().to_string()),
        weights: outputs.weights.file_name().map(|n| n.to_string_lossy().into_owned()),
        base_width: Some(args.base_width),
    };
    outputs.write(&mut fitted, args, &set, &split, &summary, record)?;
    write_csv(&curves_csv, &all_curves)?;
    crate::plots::curves_png(&all_curves, &outputs.curves_png)?;
    let title = format!("validation, stage {} epoch {}", args.stage, fitted.best_epoch);
    crate::plots::confusion_png(&fitted.confusion, &set.labels, &title, &outputs.confusion_png)?;
    Report {
        model: &args.out,
        stage: args.stage,
        parent: args.from.as_deref(),
        settings: &settings,
        data: &summary,
        labels: &set.labels,
        confusion: &fitted.confusion,
        curves: &all_curves,
        best_epoch: fitted.best_epoch,
        stop: &stop,
        plots: [&file_label(&outputs.curves_png), &file_label(&outputs.confusion_png)],
    }
    .write_to(&outputs.report)?;
    tracing::info!(
        best_epoch = fitted.best_epoch,
        val_acc = best.val_acc,
        stop,
        "wrote model {}",
        args.out.display()
    );
    Ok(TrainReport {
        model: args.out.clone(),
        metadata: ModelMetadata::path_for_model(&args.out),
        weights: outputs.weights,
        curves_csv,
        curves_png: outputs.curves_png,
        confusion_png: outputs.confusion_png,
        report: outputs.report,
        checkpoint: ckpt_dir,
        labels: set.labels.clone(),
        stage: args.stage,
        head,
        best_epoch: fitted.best_epoch,
        best_val_accuracy: best.val_acc,
        curves: fitted.curves,
        confusion: fitted.confusion,
        stop: fitted.stop,
        steps: fitted.steps,
        load_seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    })
}

fn file_label(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Runs [`fit`] with a progress bar, logging each epoch and rewriting the curves CSV at
/// `curves_csv` (`earlier` rows first) after it.
#[allow(clippy::too_many_arguments)]
fn train(
    model: Model,
    set: &ImageSet,
    split: &Split,
    cfg: &FitConfig,
    device: Device,
    resume: Option<Resume>,
    earlier: &[EpochStats],
    curves_csv: &Path,
) -> Result<Fitted> {
    let bar = progress_bar()?;
    let mut last_val = String::new();
    let fitted = fit(model, set, split, cfg, device, resume, |p| {
        match p {
            Progress::Step { step, total, loss } => {
                bar.set_length(total as u64);
                bar.set_position(step as u64);
                bar.set_message(format!("loss {loss:.3}{last_val}"));
            }
            Progress::Epoch { all } => {
                let Some(e) = all.last() else { return Ok(()) };
                tracing::info!(
                    stage = e.stage,
                    epoch = e.epoch,
                    train_loss = e.train_loss,
                    train_acc = e.train_acc,
                    val_loss = e.val_loss,
                    val_acc = e.val_acc,
                    seconds = e.seconds,
                    "epoch done"
                );
                bar.set_prefix(format!("epoch {}/{}", (e.epoch + 1).min(cfg.epochs), cfg.epochs));
                last_val = format!(", epoch {} val_acc {:.3}", e.epoch, e.val_acc);
                let rows: Vec<EpochStats> = earlier.iter().chain(all).cloned().collect();
                write_csv(curves_csv, &rows)?;
            }
        }
        Ok(())
    })?;
    bar.finish();
    Ok(fitted)
}

/// The files written beside a model besides the model itself, its metadata and curves CSV.
struct Outputs {
    weights: PathBuf,
    curves_png: PathBuf,
    confusion_png: PathBuf,
    report: PathBuf,
}

impl Outputs {
    fn for_model(model: &Path) -> Self {
        Self {
            weights: weights::weights_path_for_model(model),
            curves_png: model.with_extension("curves.png"),
            confusion_png: model.with_extension("confusion.png"),
            report: report_path_for_model(model),
        }
    }

    /// Writes the weights, the metadata (with the shift monitor's statistics, fitted on the
    /// training split and thresholded on the validation split) and the TorchScript model.
    fn write(
        &self,
        fitted: &mut Fitted,
        args: &TrainArgs,
        set: &ImageSet,
        split: &Split,
        summary: &DataSummary,
        record: TrainingRecord,
    ) -> Result<()> {
        weights::save_store(&fitted.vs, &self.weights)?;
        let device = fitted.vs.device();
        // A model is still worth exporting when its set is too small for the statistics
        // (e.g. one crop per class); it then runs with the monitor off, and says so.
        let monitor =
            match export::monitor_stats(&fitted.net, set, &split.train, &split.val, device) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(
                        "exporting {} without shift monitor statistics: {e:#}. The node will run \
                     with the monitor off; add crops and run `coin_sorter monitor fit`",
                        args.out.display()
                    );
                    None
                }
            };
        export::write_metadata(
            &args.out,
            &fitted.net,
            &set.labels,
            args.input_size,
            summary.clone(),
            record,
            monitor,
        )?;
        export::save_torchscript(&mut fitted.vs, &fitted.net, args.input_size, &args.out)
    }
}
