//! `coin_sorter eval`: runs a recording, a LabelMe photo set or a class-per-folder crop set
//! through the node's own [`Pipeline`] (or, for crops, its classifier) without DDS, scores it
//! against the ground truth, times every stage, and writes an MCAP bag of what the node would
//! have published plus a report ([`report`]). Figures are in [`metrics`].

pub mod metrics;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::bag::BagReader;
use crate::bag::writer::McapBagWriter;
use crate::classify::model::Classifier;
use crate::dataset::labelme;
use crate::monitor::score::Threshold;
use crate::monitor::stream::StreamState;
use crate::msgs::sensor_msgs::CompressedImage;
use crate::msgs::std_msgs::{Header, Time};
use crate::nodes::sorter::{self, SorterConfig};
use crate::params::RosArgs;
use crate::pipeline::{Frame, Pipeline, ShiftStatus, StageTimes};
use crate::score::{TruthCoin, TruthFrame, read_ground_truth, truth_beside};
use crate::train::dataset::ImageSet;
use metrics::{Latency, Scorer, Scores};

/// Topic the detections go to in the output bag (the node's `~/detections`).
pub const DETECTIONS_TOPIC: &str = "/coin_sorter/detections";
/// Topic the sort commands go to in the output bag (the node's `~/sort_commands`).
pub const COMMANDS_TOPIC: &str = "/coin_sorter/sort_commands";
/// Topic LabelMe photos are written to in the output bag, as JPEG or PNG.
pub const PHOTOS_TOPIC: &str = "/camera/image_raw/compressed";

/// Options of `coin_sorter eval`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["bag", "labelme", "images"])))]
pub struct EvalArgs {
    /// rosbag2 folder, or a bare .mcap / .db3 file.
    #[arg(long, value_name = "PATH")]
    pub bag: Option<PathBuf>,
    /// Ground truth of the bag, one JSON frame per line keyed by header stamp [default:
    /// BAG/ground_truth.jsonl when it exists; without truth only speed is measured].
    #[arg(long, value_name = "FILE", requires = "bag")]
    pub truth: Option<PathBuf>,
    /// Image topic of the bag [default: its only Image or CompressedImage topic].
    #[arg(long, requires = "bag")]
    pub topic: Option<String>,
    /// LabelMe photo set: annotations/*.json naming their photos.
    #[arg(long, value_name = "DIR")]
    pub labelme: Option<PathBuf>,
    /// Class-per-folder crop set: every image is one coin, classified as it is.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// TorchScript model [default: the node's model_path parameter].
    #[arg(long, value_name = "FILE.pt")]
    pub model: Option<PathBuf>,
    /// The node's parameters file (locate settings, bins, confidence threshold, shift monitor,
    /// tracking, device, precision, memory_format, graph_optimization, num_threads).
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// Output folder: report.md, report.json, confusion.png, and eval.mcap for bags and
    /// photos (a crop set has no frames to record).
    #[arg(long, value_name = "DIR", default_value = "out/eval")]
    pub out: PathBuf,
    /// Do not write the output bag.
    #[arg(long)]
    pub no_bag: bool,
}

impl EvalArgs {
    /// Options evaluating the bag at `bag` into `out`, other options default.
    pub fn bag(bag: PathBuf, out: PathBuf) -> Self {
        Self {
            bag: Some(bag),
            truth: None,
            topic: None,
            labelme: None,
            images: None,
            model: None,
            params_file: None,
            out,
            no_bag: false,
        }
    }
}

/// Everything an evaluation measured. `report.json` is this, serialised.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// What was evaluated.
    pub input: PathBuf,
    /// `bag`, `labelme` or `images`.
    pub kind: &'static str,
    /// The image topic read (bags).
    pub topic: Option<String>,
    /// The model.
    pub model: PathBuf,
    /// How the model ran: device, precision, layout and graph (the classifier's run mode).
    pub model_run: String,
    /// The ground truth used, if any.
    pub truth: Option<PathBuf>,
    /// Frames (or crops) read.
    pub frames: usize,
    /// Frames the pipeline refused, per error kind (the node's `rejected_<kind>` counters).
    pub rejected: BTreeMap<String, usize>,
    /// Frames without ground truth (not scored).
    pub unlabelled_frames: usize,
    /// Counts scored against the truth.
    pub scorer: Scorer,
    /// Rates with intervals; None without ground truth.
    pub scores: Option<Scores>,
    /// Per stage (`decode`, `locate`, `crop`, `classify`, `total`) per frame.
    pub latency: BTreeMap<String, Latency>,
    /// Frames processed per second of pipeline time (reading the input excluded).
    pub fps: f64,
    /// Wall-clock seconds of the whole run, reading and writing included.
    pub wall_seconds: f64,
    /// The first error reading the input; everything before it is in these figures.
    pub input_error: Option<String>,
    /// The output bag written.
    pub out_bag: Option<PathBuf>,
    /// The node parameters file used (None: the node's defaults).
    pub params_file: Option<PathBuf>,
    /// Sort commands the pipeline gave (one per detection, or per tracked coin).
    pub sort_commands: usize,
    /// What the shift monitor did: its settings and final stream state, or why it was off.
    pub shift: String,
    /// Coins sent to the reject bin for low confidence (and familiar to the shift monitor).
    pub low_confidence: usize,
    /// Coins sent to the reject bin because the shift monitor found them unlike the training
    /// data.
    pub unfamiliar: usize,
    /// Ground-truth labels the model cannot answer (each of their coins counts as wrong).
    pub labels_unknown_to_model: Vec<String>,
    /// The report files written.
    pub report_md: PathBuf,
}

fn progress(len: u64, what: &str) -> Result<ProgressBar> {
    let style = ProgressStyle::with_template(
        "{prefix:>8} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
    )
    .context("invalid progress bar template")?;
    Ok(ProgressBar::new(len).with_style(style).with_prefix(what.to_owned()))
}

/// The node's settings: its parameter defaults, then `params_file`.
pub(crate) fn node_config(params_file: Option<&Path>) -> Result<SorterConfig> {
    let mut argv = vec!["--ros-args".to_owned()];
    if let Some(f) = params_file {
        argv.extend(["--params-file".to_owned(), f.display().to_string()]);
    }
    let args = RosArgs::parse(argv)?;
    let params = args.resolve_params(sorter::PARAMS, &format!("/{}", sorter::NODE_NAME))?;
    SorterConfig::from_params(&params).with_context(|| match params_file {
        Some(f) => format!("node parameters from {}", f.display()),
        None => "the node's default parameters".to_owned(),
    })
}

/// Stage times of every processed frame.
#[derive(Default)]
struct Timings {
    frames: Vec<StageTimes>,
}

impl Timings {
    fn summary(&self) -> (BTreeMap<String, Latency>, f64) {
        let pick = |f: fn(&StageTimes) -> Duration| -> Vec<Duration> {
            self.frames.iter().map(f).collect()
        };
        let mut m = BTreeMap::new();
        m.insert("decode".to_owned(), Latency::of(&pick(|t| t.decode)));
        m.insert("locate".to_owned(), Latency::of(&pick(|t| t.locate)));
        m.insert("crop".to_owned(), Latency::of(&pick(|t| t.crop)));
        m.insert("classify".to_owned(), Latency::of(&pick(|t| t.classify)));
        m.insert("total".to_owned(), Latency::of(&pick(|t| t.total)));
        let busy: f64 = self.frames.iter().map(|t| t.total.as_secs_f64()).sum();
        let fps = if busy > 0.0 { self.frames.len() as f64 / busy } else { 0.0 };
        (m, fps)
    }
}

/// The state of a frame-by-frame evaluation.
struct Run {
    pipeline: Pipeline,
    scorer: Scorer,
    timings: Timings,
    rejected: BTreeMap<String, usize>,
    frames: usize,
    unlabelled: usize,
    low_confidence: usize,
    unfamiliar: usize,
    sort_commands: usize,
    bag: Option<McapBagWriter>,
    /// Header of the last frame, for the commands of coins still tracked at the end.
    last_header: Header,
}

impl Run {
    /// Processes one frame (received on `topic`), scores it against `truth` when given, and
    /// records the input and the node's output in the output bag.
    fn frame(&mut self, frame: &Frame, topic: &str, truth: Option<&[TruthCoin]>) -> Result<()> {
        self.frames += 1;
        self.last_header = frame.header().clone();
        let stamp = frame.header().stamp.as_nanos();
        if let Some(bag) = &mut self.bag {
            match frame {
                Frame::Raw(m) => bag.write(topic, stamp, m)?,
                Frame::Compressed(m) => bag.write(topic, stamp, m)?,
            }
        }
        let out = match self.pipeline.process(frame) {
            Ok(out) => out,
            Err(e) => {
                let name = &frame.header().frame_id;
                tracing::warn!("frame {name:?} at {stamp} ns rejected ({}): {e}", e.kind());
                *self.rejected.entry(e.kind().to_owned()).or_default() += 1;
                // Its labelled coins were not found: they count against recall.
                if let Some(t) = truth {
                    self.scorer.add(t, &[]);
                }
                return Ok(());
            }
        };
        self.timings.frames.push(out.times);
        self.sort_commands += out.commands.len();
        let dets = &out.detections.detections;
        self.unfamiliar += dets.iter().filter(|d| d.out_of_distribution).count();
        self.low_confidence += dets.iter().filter(|d| d.rejected && !d.out_of_distribution).count();
        match truth {
            Some(t) => self.scorer.add(t, &out.detections.detections),
            None => self.unlabelled += 1,
        }
        if let Some(bag) = &mut self.bag {
            bag.write(DETECTIONS_TOPIC, stamp, &out.detections)?;
            for c in &out.commands {
                bag.write(COMMANDS_TOPIC, stamp, c)?;
            }
        }
        Ok(())
    }
}

/// The image topic to read: `wanted`, or the bag's only image topic.
pub(crate) fn image_topic(
    reader: &BagReader,
    wanted: Option<&str>,
    bag: &Path,
) -> Result<(String, String)> {
    let topics = &reader.info().topics;
    if let Some(w) = wanted {
        let t = topics.iter().find(|t| t.name == w).with_context(|| {
            let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
            format!("bag {} has no topic {w} (it has {names:?})", bag.display())
        })?;
        ensure!(
            Frame::is_image_type(&t.type_name),
            "topic {w} of {} carries {}, not sensor_msgs/msg/Image or CompressedImage",
            bag.display(),
            t.type_name
        );
        return Ok((t.name.clone(), t.type_name.clone()));
    }
    let images: Vec<_> = topics.iter().filter(|t| Frame::is_image_type(&t.type_name)).collect();
    match images.as_slice() {
        [one] => Ok((one.name.clone(), one.type_name.clone())),
        [] => bail!("bag {} has no sensor_msgs Image or CompressedImage topic", bag.display()),
        many => {
            let names: Vec<&str> = many.iter().map(|t| t.name.as_str()).collect();
            bail!(
                "bag {} has several image topics {names:?}; choose one with --topic",
                bag.display()
            )
        }
    }
}

fn eval_bag(
    run: &mut Run,
    bag: &Path,
    args: &EvalArgs,
) -> Result<(Option<PathBuf>, String, Option<String>)> {
    let reader = BagReader::open(bag)?;
    for w in &reader.info().warnings {
        tracing::warn!("{w}");
    }
    let (topic, type_name) = image_topic(&reader, args.topic.as_deref(), bag)?;
    let truth_path = match &args.truth {
        Some(t) => Some(t.clone()),
        None => Some(truth_beside(bag)).filter(|p| p.is_file()),
    };
    let truth: BTreeMap<i64, TruthFrame> = match &truth_path {
        Some(p) => read_ground_truth(p)?.into_iter().map(|f| (f.stamp_ns, f)).collect(),
        None => BTreeMap::new(),
    };
    let total =
        reader.info().topics.iter().find(|t| t.name == topic).map_or(0, |t| t.message_count);
    let bar = progress(total, "frames")?;
    let mut input_error = None;
    for msg in reader.messages(Some(std::slice::from_ref(&topic)))? {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                input_error = Some(format!("{e:#}"));
                break;
            }
        };
        bar.inc(1);
        let at = || format!("{topic} message at {} ns in {}", msg.log_time_ns, bag.display());
        let frame = match Frame::from_cdr(&type_name, &msg.data).with_context(at) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("{e:#}; skipping it");
                run.frames += 1;
                *run.rejected.entry("malformed_message".to_owned()).or_default() += 1;
                continue;
            }
        };
        let coins = truth.get(&frame.header().stamp.as_nanos()).map(|t| t.coins.as_slice());
        run.frame(&frame, &topic, coins)?;
    }
    bar.finish();
    Ok((truth_path, topic, input_error))
}

fn eval_labelme(run: &mut Run, dir: &Path) -> Result<()> {
    let jsons = labelme::annotation_files(dir)?;
    let bar = progress(jsons.len() as u64, "photos")?;
    for (i, json) in jsons.iter().enumerate() {
        bar.inc(1);
        let a = labelme::read(json)?;
        let data = std::fs::read(&a.image).with_context(|| {
            format!("cannot read photo {} of {}", a.image.display(), json.display())
        })?;
        let ext = a.image.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        let format = if ext.as_deref() == Some("png") { "png" } else { "jpeg" };
        let stem = json.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // Photos have no stamps: number them half a second apart, as a 2 Hz camera would.
        let stamp = Time::from_nanos(i as i64 * 500_000_000);
        let frame = Frame::Compressed(CompressedImage {
            header: Header { stamp, frame_id: stem },
            format: format.to_owned(),
            data,
        });
        let truth: Vec<TruthCoin> = a
            .coins
            .iter()
            .map(|c| TruthCoin {
                label: c.label.clone(),
                x: c.circle.x,
                y: c.circle.y,
                r: c.circle.r,
            })
            .collect();
        run.frame(&frame, PHOTOS_TOPIC, Some(&truth))?;
    }
    bar.finish();
    Ok(())
}

/// Classifies every crop of a class-per-folder set; one "frame" per batch of crops for timing.
fn eval_images(
    classifier: &Classifier,
    dir: &Path,
    scorer: &mut Scorer,
    timings: &mut Timings,
) -> Result<usize> {
    let meta = classifier.metadata().clone();
    let set = ImageSet::load(dir, meta.input_size)
        .with_context(|| format!("cannot load crop set {}", dir.display()))?;
    let bar = progress(set.samples.len() as u64, "crops")?;
    for s in &set.samples {
        let t0 = Instant::now();
        let p = classifier.classify_rgb(s.rgb())?;
        let took = t0.elapsed();
        let predicted = p.first().map(|p| meta.labels[p.class].as_str()).unwrap_or("");
        scorer.add_crop(&set.labels[s.label], predicted);
        timings.frames.push(StageTimes { classify: took, total: took, ..StageTimes::default() });
        bar.inc(1);
    }
    bar.finish();
    Ok(set.samples.len())
}

/// Runs the evaluation `args` asks for, writes the report (and bag) under `args.out`, and
/// returns the figures. An error reading the input part-way is kept in
/// [`EvalReport::input_error`] with the figures of everything before it; any other failure
/// is an error.
pub fn run(args: &EvalArgs) -> Result<EvalReport> {
    let start = Instant::now();
    ensure!(
        args.bag.is_some() || (args.truth.is_none() && args.topic.is_none()),
        "--truth and --topic are for --bag"
    );
    let cfg = node_config(args.params_file.as_deref())?;
    let model = args.model.clone().unwrap_or_else(|| cfg.model_path.clone());
    let classifier = cfg.load_classifier(&model)?;
    let model_run = classifier.run_mode();
    let mut scorer = Scorer::new(&classifier.metadata().labels);
    let model_label_count = scorer.labels.len();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;

    let (kind, input) = match (&args.bag, &args.labelme, &args.images) {
        (Some(b), None, None) => ("bag", b.clone()),
        (None, Some(l), None) => ("labelme", l.clone()),
        (None, None, Some(i)) => ("images", i.clone()),
        _ => bail!("give exactly one of --bag, --labelme and --images"),
    };
    let mut timings = Timings::default();
    let (mut truth, mut topic, mut input_error, mut out_bag) = (None, None, None, None);
    let (frames, rejected, unlabelled);
    let (mut low_confidence, mut unfamiliar, mut sort_commands) = (0, 0, 0);
    let mut shift_status = ShiftStatus::Off;
    let mut shift_state = None;
    if kind == "images" {
        frames = eval_images(&classifier, &input, &mut scorer, &mut timings)?;
        (rejected, unlabelled) = (BTreeMap::new(), 0);
    } else {
        let bag_path = args.out.join("eval.mcap");
        let bag = if args.no_bag { None } else { Some(McapBagWriter::create(&bag_path)?) };
        let pipeline;
        (pipeline, shift_status) = cfg.pipeline(classifier)?;
        if shift_status == ShiftStatus::NoStatistics {
            tracing::warn!(
                "model {} has no shift monitor statistics: the monitor is off and no coin is \
                 checked against the training data (`coin_sorter monitor fit` adds them)",
                model.display()
            );
        }
        let mut run = Run {
            pipeline,
            scorer,
            timings,
            rejected: BTreeMap::new(),
            frames: 0,
            unlabelled: 0,
            low_confidence: 0,
            unfamiliar: 0,
            sort_commands: 0,
            bag,
            last_header: Header::default(),
        };
        if kind == "bag" {
            let (t, name, err) = eval_bag(&mut run, &input, args)?;
            (truth, topic, input_error) = (t, Some(name), err);
        } else {
            eval_labelme(&mut run, &input)?;
        }
        let last = run.last_header.clone();
        let flushed = run.pipeline.finish(&last);
        if let Some(bag) = &mut run.bag {
            for c in &flushed {
                bag.write(COMMANDS_TOPIC, c.header.stamp.as_nanos(), c)?;
            }
        }
        if let Some(bag) = run.bag.take() {
            out_bag = Some(bag.finish()?);
        }
        (scorer, timings) = (run.scorer, run.timings);
        (frames, rejected, unlabelled) = (run.frames, run.rejected, run.unlabelled);
        (low_confidence, unfamiliar) = (run.low_confidence, run.unfamiliar);
        sort_commands = run.sort_commands + flushed.len();
        shift_state = run.pipeline.shift().map(|c| (*c.threshold(), c.state()));
    }
    let scored = scorer.frames > 0;
    let model_labels_missing: Vec<String> =
        scorer.labels.iter().skip(model_label_count).cloned().collect();
    let (latency, fps) = timings.summary();
    let report = EvalReport {
        input,
        kind,
        topic,
        model,
        model_run,
        truth: truth.or_else(|| args.labelme.clone()),
        frames,
        rejected,
        unlabelled_frames: unlabelled,
        scores: scored.then(|| scorer.summary()),
        scorer,
        latency,
        fps,
        wall_seconds: start.elapsed().as_secs_f64(),
        input_error,
        out_bag,
        params_file: args.params_file.clone(),
        low_confidence,
        unfamiliar,
        sort_commands,
        shift: shift_words(kind, &shift_status, shift_state.as_ref()),
        labels_unknown_to_model: model_labels_missing,
        report_md: report::markdown_path(&args.out),
    };
    report::write(&report, &args.out)?;
    Ok(report)
}

/// One line on the shift monitor for the report.
fn shift_words(
    kind: &str,
    status: &ShiftStatus,
    state: Option<&(Threshold, StreamState)>,
) -> String {
    match (status, state) {
        _ if kind == "images" => "not run (crop sets are classified only)".to_owned(),
        (ShiftStatus::On, Some((t, s))) => format!(
            "{} score, threshold {:.4} (validation quantile {}): {} of {} coins unlike the \
             training data; final state {} ({} of the last {})",
            t.kind.name(),
            t.threshold,
            t.quantile,
            s.total_flagged,
            s.total_coins,
            s.level.name(),
            s.flagged,
            s.coins
        ),
        (ShiftStatus::NoStatistics, _) => {
            "off: the model has no monitor statistics (`coin_sorter monitor fit`)".to_owned()
        }
        _ => "off (shift_score is off)".to_owned(),
    }
}
