//! `coin_sorter dataset capture`: collects stage-2 training crops from a live camera topic.
//!
//! Each frame goes through the node's own [`Pipeline`], so the coins found and their crops are
//! exactly what the robot would classify. Crops are saved as `OUT/<guessed label>/<stamp>_<k>.jpg`
//! and listed in `OUT/captured.jsonl`; an operator corrects a label by moving the file to the
//! right folder. The run ends after `--max-frames` frames, after `--timeout` seconds, or on
//! SIGINT/SIGTERM, whichever comes first.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::LabelledCircle;
use super::crops::DEFAULT_SIZE;
use super::writer::CropWriter;
use crate::classify::device::DevicePref;
use crate::classify::model::Classifier;
use crate::decide::BinTable;
use crate::locate::{Circle, DEFAULT_LOCATE};
use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::params::RosArgs;
use crate::pipeline::{Frame, Pipeline};
use crate::transport::{RosNode, qos};

/// Name of the capture's ROS 2 node.
pub const NODE_NAME: &str = "coin_sorter_capture";
/// Name of the record of captured crops inside the output folder.
pub const RECORD_FILE: &str = "captured.jsonl";

/// Options of `coin_sorter dataset capture`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// TorchScript model whose guesses sort the crops (metadata .json beside it).
    #[arg(long, value_name = "FILE.pt")]
    pub model: PathBuf,
    /// Output folder: OUT/<guessed label>/<stamp>_<k>.jpg and OUT/captured.jsonl.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// sensor_msgs/Image topic to capture from.
    #[arg(long, default_value = "/camera/image_raw")]
    pub topic: String,
    /// sensor_msgs/CompressedImage topic to capture from [default: TOPIC/compressed].
    #[arg(long)]
    pub compressed_topic: Option<String>,
    /// Stop after this many frames.
    #[arg(long, default_value_t = 100)]
    pub max_frames: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Subscription reliability: best_effort (matches every camera) or reliable (loses no
    /// frame of a reliable publisher such as a bag player, as long as no more than --depth
    /// frames wait while one is processed).
    #[arg(long, default_value = "best_effort")]
    pub reliability: String,
    /// Frames the subscription keeps while one is being processed; older ones are dropped.
    #[arg(long, default_value_t = 10)]
    pub depth: i64,
    /// Where the model runs: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Side of the saved crops in pixels.
    #[arg(long, default_value_t = DEFAULT_SIZE)]
    pub size: u32,
}

/// One saved crop, one line of `captured.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureRecord {
    /// Header stamp of the source frame in nanoseconds.
    pub stamp_ns: i64,
    /// Index of the coin in the frame (the pipeline's order), as in the file name.
    pub k: usize,
    /// The model's guess, and the folder the crop was saved in.
    pub label: String,
    /// Softmax probability of the guess.
    pub confidence: f32,
    /// Coin centre x in frame pixels.
    pub x: f32,
    /// Coin centre y in frame pixels.
    pub y: f32,
    /// Coin radius in frame pixels.
    pub r: f32,
    /// The crop, relative to the output folder.
    pub file: PathBuf,
}

/// What a capture run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaptureSummary {
    /// Frames received.
    pub frames: usize,
    /// Frames the pipeline could not process (bad image data).
    pub rejected: usize,
    /// Crops saved in this run, in order.
    pub records: Vec<CaptureRecord>,
}

/// Reads a `captured.jsonl`; errors name the file and line.
pub fn read_records(path: &Path) -> Result<Vec<CaptureRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read capture record {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a capture record", path.display(), i + 1))
        })
        .collect()
}

/// The capture's state between frames.
struct Capture {
    pipeline: Pipeline,
    writer: CropWriter,
    out: PathBuf,
    /// Lines of `captured.jsonl`: those of earlier runs, then this run's.
    lines: String,
    summary: CaptureSummary,
}

impl Capture {
    /// Runs the pipeline on one frame, saves its crops and rewrites the record.
    fn frame(&mut self, frame: &Frame) -> Result<()> {
        self.summary.frames += 1;
        let stamp = frame.header().stamp.as_nanos();
        let out = match self.pipeline.process(frame) {
            Ok(out) => out,
            Err(e) => {
                self.summary.rejected += 1;
                tracing::warn!("frame stamped {stamp} ns dropped: {e}");
                return Ok(());
            }
        };
        let dets = &out.detections.detections;
        // The pipeline keeps only model-sized crops; cut the larger saved ones from the same
        // frame at the same circles.
        let img = frame.decode().with_context(|| format!("frame stamped {stamp} ns"))?;
        let coins: Vec<LabelledCircle> = dets
            .iter()
            .map(|d| LabelledCircle {
                label: d.label.clone(),
                circle: Circle { x: d.x, y: d.y, r: d.radius },
            })
            .collect();
        let files = self.writer.write(&img, &coins, &stamp.to_string())?;
        for (k, (d, file)) in dets.iter().zip(files).enumerate() {
            let rel = file.strip_prefix(&self.out).unwrap_or(&file).to_path_buf();
            let rec = CaptureRecord {
                stamp_ns: stamp,
                k,
                label: d.label.clone(),
                confidence: d.confidence,
                x: d.x,
                y: d.y,
                r: d.radius,
                file: rel,
            };
            self.lines.push_str(&serde_json::to_string(&rec)?);
            self.lines.push('\n');
            self.summary.records.push(rec);
        }
        let record = self.out.join(RECORD_FILE);
        crate::fsutil::write_atomic(&record, self.lines.as_bytes())
            .with_context(|| format!("cannot write {}", record.display()))
    }
}

/// Every model label in a bin of its own name: capture sorts into folders, not bins.
fn identity_bins(labels: &[String]) -> Result<BinTable> {
    let entries: Vec<String> = labels.iter().map(|l| format!("{l}:{l}")).collect();
    BinTable::parse(&entries, "reject", 0.0)
}

/// Runs `dataset capture` until a bound is reached; prints and returns what was saved.
pub fn run(args: &CaptureArgs) -> Result<CaptureSummary> {
    ensure!(args.max_frames >= 1, "--max-frames {} must be at least 1", args.max_frames);
    ensure!(
        args.timeout.is_finite() && args.timeout > 0.0,
        "--timeout {} must be a positive number of seconds",
        args.timeout
    );
    let image_qos = qos::image(&args.reliability, args.depth)?;
    let pref: DevicePref = args.device.parse()?;
    let classifier = Classifier::load(&args.model, pref)?;
    let labels = classifier.metadata().labels.clone();
    let crop_scale = classifier.metadata().crop_scale;
    let pipeline = Pipeline::new(classifier, DEFAULT_LOCATE, identity_bins(&labels)?)?;
    let record = args.out.join(RECORD_FILE);
    let lines = if record.is_file() {
        let n = read_records(&record)?.len();
        tracing::info!("{} holds {n} crops from earlier runs; adding to it", record.display());
        std::fs::read_to_string(&record)
            .with_context(|| format!("cannot read {}", record.display()))?
    } else {
        String::new()
    };
    let mut capture = Capture {
        pipeline,
        writer: CropWriter::new(&args.out, args.size, crop_scale)?,
        out: args.out.clone(),
        lines,
        summary: CaptureSummary::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(listen(args, image_qos, &mut capture))?;
    let s = capture.summary;
    println!(
        "captured {} crops from {} frames ({} rejected) into {}",
        s.records.len(),
        s.frames,
        s.rejected,
        args.out.display()
    );
    print!("{}", capture.writer.summary(&args.out));
    Ok(s)
}

async fn listen(
    args: &CaptureArgs,
    image_qos: ros2_client::QosProfile,
    capture: &mut Capture,
) -> Result<()> {
    let compressed = args
        .compressed_topic
        .clone()
        .unwrap_or_else(|| format!("{}/compressed", args.topic.trim_end_matches('/')));
    let mut node = RosNode::new(NODE_NAME, &RosArgs::default())?;
    let raw_sub = node.subscription::<Image>(&args.topic, image_qos.clone())?;
    let comp_sub = node.subscription::<CompressedImage>(&compressed, image_qos)?;
    tracing::info!(
        "capturing up to {} frames from {} and {} for at most {} s",
        args.max_frames,
        node.resolve(&args.topic)?,
        node.resolve(&compressed)?,
        args.timeout
    );
    let style = ProgressStyle::with_template(
        "capture [{elapsed_precise}] {bar:30} {pos}/{len} frames {msg}",
    )
    .context("invalid progress bar template")?;
    let bar = ProgressBar::new(args.max_frames as u64).with_style(style);
    let timeout = crate::params::checked_seconds("--timeout", args.timeout, 1e-3)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let result = async {
        let mut raw = std::pin::pin!(raw_sub.async_stream());
        let mut comp = std::pin::pin!(comp_sub.async_stream());
        let mut shutdown = std::pin::pin!(crate::nodes::shutdown_signal());
        while capture.summary.frames < args.max_frames {
            let frame = tokio::select! {
                r = raw.next() => r.map(|r| r.map(|(m, _)| Frame::Raw(m))),
                r = comp.next() => r.map(|r| r.map(|(m, _)| Frame::Compressed(m))),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!("timeout of {} s reached", args.timeout);
                    break;
                }
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested; stopping");
                    break;
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    // The pipeline blocks for a while; let the runtime move other tasks off
                    // this worker meanwhile. Frames arriving now wait in the subscription.
                    tokio::task::block_in_place(|| capture.frame(&frame))?;
                    bar.set_position(capture.summary.frames as u64);
                    bar.set_message(format!("{} crops", capture.summary.records.len()));
                }
                Some(Err(e)) => tracing::warn!("dropped a malformed image message: {e:?}"),
                None => {
                    tracing::warn!("image subscriptions closed; stopping");
                    break;
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    bar.finish();
    drop((raw_sub, comp_sub));
    node.shutdown().await;
    result
}
