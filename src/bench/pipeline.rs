//! `coin_sorter bench pipeline`: the node's pipeline on a bag's frames, in this process. Prints
//! each stage's percentiles, the share of the frame spent outside the forward pass, the
//! sustained frame rate of one stream, crops per second at a fixed batch, and resident memory
//! from start to the last frame.
//!
//! The pipeline is the node's own ([`Pipeline`] with the node's parameters). With `--publish`
//! (inside scripts/netns.sh) the node's three per-frame publishers are timed too, through
//! ros2-client as the node sends them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use super::rss::resident_bytes;
use crate::classify::model::Classifier;
use crate::eval::metrics::Latency;
use crate::msgs::vision_msgs::Detection2DArray;
use crate::nodes::sorter::dds::DdsOutlets;
use crate::nodes::sorter::worker::Outlets;
use crate::pipeline::{FrameOutput, StageTimes};
use crate::transport::RosNode;

/// Options of `coin_sorter bench pipeline`.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// rosbag2 recording whose image frames are replayed, in order, round and round.
    #[arg(long, value_name = "PATH")]
    pub bag: PathBuf,
    /// Image topic of the bag [default: its only image topic].
    #[arg(long)]
    pub topic: Option<String>,
    /// TorchScript model [default: the node's model_path parameter].
    #[arg(long, value_name = "FILE.pt")]
    pub model: Option<PathBuf>,
    /// The node's parameters file (coin finder, bins, shift monitor, tracking, device,
    /// precision, memory_format, graph_optimization, num_threads) [default: the node's
    /// defaults].
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// Frames timed, after the warm-up.
    #[arg(long, default_value_t = 300)]
    pub frames: usize,
    /// Frames run before timing starts and before the memory baseline: the first frames of
    /// each coin count allocate what later frames reuse (100: a 30-frame bag three times).
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Also time publishing each frame's messages through ros2-client (a DDS participant:
    /// run inside scripts/netns.sh).
    #[arg(long)]
    pub publish: bool,
    /// Crops per batch of the crops-per-second figure (0: not measured).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Batches timed for crops per second.
    #[arg(long, default_value_t = 10)]
    pub batches: usize,
    /// Resident memory is sampled every this many frames.
    #[arg(long, default_value_t = 1000)]
    pub memory_every: usize,
    /// Also write the figures as JSON here (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Every figure of a run; `--json` writes this.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub frames: usize,
    pub coins: usize,
    /// Where and how the model ran ([`Classifier::run_mode`]).
    pub run_mode: String,
    pub threads: i32,
    pub input_size: u32,
    /// Per stage, per frame: `decode`, `locate`, `crop_normalise`, `forward`,
    /// `classify_other`, `decide`, `publish`, `total`.
    pub stages: Vec<(String, Latency)>,
    /// Mean time outside the forward pass over mean forward time, per frame.
    pub non_forward_share: f64,
    /// Frames per second one stream sustains: frames over the time they took, publishing
    /// included when measured.
    pub sustained_fps: f64,
    /// Per-frame time (`total`, plus publishing) of frames by coin count.
    pub by_coins: Vec<(usize, Latency)>,
    /// Crops per second at `batch`, and the batch's latency.
    pub batch: Option<(usize, f64, Latency)>,
    /// Resident bytes with the model loaded, before the first frame.
    pub memory_before_frames: u64,
    /// Resident bytes after the warm-up, then every `memory_every` frames, then at the end.
    pub memory: Vec<(usize, u64)>,
}

/// The node's publishers of one frame, timed.
struct Publishers {
    _node: RosNode,
    out: DdsOutlets,
}

impl Publishers {
    fn new() -> Result<Self> {
        crate::transport::netns::require_loopback_only("bench pipeline --publish")?;
        let args = crate::params::RosArgs::default();
        let mut node = RosNode::new("coin_sorter", &args)?;
        Ok(Self { out: DdsOutlets::new(&mut node, false)?, _node: node })
    }

    /// Sends one frame's messages through the node's own publishers, in the node's order;
    /// how long it took.
    fn send(&self, out: FrameOutput) -> Result<Duration> {
        let t = Instant::now();
        self.out.detections_2d(Detection2DArray::from(&out.detections))?;
        self.out.detections(out.detections)?;
        for c in out.commands {
            self.out.sort_command(c)?;
        }
        Ok(t.elapsed())
    }
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &PipelineArgs) -> Result<PipelineReport> {
    ensure!((1..=10_000_000).contains(&args.frames), "--frames must be 1 to 10,000,000");
    ensure!(args.warmup <= 100_000, "--warmup must be at most 100,000");
    ensure!(args.batch <= 4096, "--batch must be at most 4096 crops");
    ensure!((1..=100_000).contains(&args.batches), "--batches must be 1 to 100,000");
    ensure!(args.memory_every > 0, "--memory-every must be at least 1");
    let cfg = crate::eval::node_config(args.params_file.as_deref())?;
    let model = args.model.clone().unwrap_or_else(|| cfg.model_path.clone());
    let frames = super::frames::load(&args.bag, args.topic.as_deref())?;
    let classifier = cfg.load_classifier(&model)?;
    let (run_mode, input_size) = (classifier.run_mode(), classifier.metadata().input_size);
    let (mut pipeline, _) = cfg.pipeline(classifier)?;
    // Async runtime for the DDS participant's spinner, when publishing is timed.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _guard = rt.enter();
    let publishers = args.publish.then(Publishers::new).transpose()?;

    // One stream round and round the bag: the timed frames follow the warm-up's.
    let mut stream = frames.iter().cycle();
    let before_frames = resident_bytes(None)?;
    for frame in stream.by_ref().take(args.warmup) {
        pipeline.process(frame).map_err(|e| anyhow::anyhow!("warm-up frame: {e}"))?;
    }
    let mut memory = vec![(0, resident_bytes(None)?)];
    let mut times: Vec<(StageTimes, Duration, usize)> = Vec::with_capacity(args.frames);
    let bar = crate::progress::bar(args.frames, "frames", "bench pipeline");
    let wall = Instant::now();
    for (i, frame) in stream.take(args.frames).enumerate() {
        let out = pipeline.process(frame).map_err(|e| anyhow::anyhow!("frame {i}: {e}"))?;
        let (t, coins) = (out.times, out.detections.detections.len());
        let publish = match &publishers {
            Some(p) => p.send(out)?,
            None => Duration::ZERO,
        };
        times.push((t, publish, coins));
        if (i + 1) % args.memory_every == 0 {
            memory.push((i + 1, resident_bytes(None)?));
        }
        bar.inc(1);
    }
    let elapsed = wall.elapsed();
    bar.finish_and_clear();
    if memory.last().map(|m| m.0) != Some(args.frames) {
        memory.push((args.frames, resident_bytes(None)?));
    }
    let batch = match args.batch {
        0 => None,
        n => Some(crops_per_second(pipeline.classifier(), n, args.batches)?),
    };
    let memory = (before_frames, memory);
    let report = summarise(&times, elapsed, args.publish, batch, memory, run_mode, input_size);
    print(&report);
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("cannot serialise the figures")?;
        crate::fsutil::write_atomic(path, &json)?;
    }
    Ok(report)
}

/// Crops per second of the classifier on `batches` batches of `n` crops (the first, a
/// warm-up, not timed).
fn crops_per_second(c: &Classifier, n: usize, batches: usize) -> Result<(usize, f64, Latency)> {
    let s = c.metadata().input_size as usize;
    // A mid-grey crop with a gradient: the forward pass costs the same whatever the pixels.
    let crop: Vec<u8> = (0..s * s * 3).map(|i| (i % 251) as u8).collect();
    let crops: Vec<u8> = crop.iter().copied().cycle().take(crop.len() * n).collect();
    c.classify_rgb(&crops)?;
    let mut took = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        c.classify_rgb(&crops)?;
        took.push(t.elapsed());
    }
    let total: Duration = took.iter().sum();
    Ok((n, (n * took.len()) as f64 / total.as_secs_f64(), Latency::of(&took)))
}

fn summarise(
    times: &[(StageTimes, Duration, usize)],
    elapsed: Duration,
    published: bool,
    batch: Option<(usize, f64, Latency)>,
    (memory_before_frames, memory): (u64, Vec<(usize, u64)>),
    run_mode: String,
    input_size: u32,
) -> PipelineReport {
    let pick = |f: &dyn Fn(&StageTimes, Duration) -> Duration| -> Latency {
        Latency::of(&times.iter().map(|(t, p, _)| f(t, *p)).collect::<Vec<_>>())
    };
    let other = |t: &StageTimes| t.classify.saturating_sub(t.normalise + t.forward);
    let decide = |t: &StageTimes| t.total.saturating_sub(t.decode + t.locate + t.crop + t.classify);
    let mut stages = vec![
        ("decode".to_owned(), pick(&|t, _| t.decode)),
        ("locate".to_owned(), pick(&|t, _| t.locate)),
        ("crop_normalise".to_owned(), pick(&|t, _| t.crop + t.normalise)),
        ("forward".to_owned(), pick(&|t, _| t.forward)),
        ("classify_other".to_owned(), pick(&|t, _| other(t))),
        ("decide".to_owned(), pick(&|t, _| decide(t))),
    ];
    if published {
        stages.push(("publish".to_owned(), pick(&|_, p| p)));
    }
    stages.push(("total".to_owned(), pick(&|t, p| t.total + p)));
    let sum = |f: &dyn Fn(&StageTimes, Duration) -> Duration| -> f64 {
        times.iter().map(|(t, p, _)| f(t, *p).as_secs_f64()).sum()
    };
    let forward = sum(&|t, _| t.forward);
    let outside = sum(&|t, p| (t.total + p).saturating_sub(t.forward));
    let mut counts: Vec<usize> = times.iter().map(|(_, _, c)| *c).collect();
    counts.sort_unstable();
    counts.dedup();
    let by_coins = counts
        .into_iter()
        .map(|n| {
            let of: Vec<Duration> =
                times.iter().filter(|(_, _, c)| *c == n).map(|(t, p, _)| t.total + *p).collect();
            (n, Latency::of(&of))
        })
        .collect();
    PipelineReport {
        frames: times.len(),
        coins: times.iter().map(|(_, _, c)| c).sum(),
        run_mode,
        threads: tch::get_num_threads(),
        input_size,
        stages,
        non_forward_share: if forward > 0.0 { outside / forward } else { f64::NAN },
        sustained_fps: times.len() as f64 / elapsed.as_secs_f64(),
        by_coins,
        batch,
        memory_before_frames,
        memory,
    }
}

fn print(r: &PipelineReport) {
    println!(
        "frames timed: {} ({} coins, {:.2} per frame); model input {} px, {}, {} threads",
        r.frames,
        r.coins,
        r.coins as f64 / r.frames.max(1) as f64,
        r.input_size,
        r.run_mode,
        r.threads
    );
    println!("{:<16}{:>10}{:>10}{:>10}{:>10}", "stage (ms)", "p50", "p95", "p99", "mean");
    for (name, l) in &r.stages {
        println!(
            "{name:<16}{:>10.2}{:>10.2}{:>10.2}{:>10.2}",
            l.p50_ms, l.p95_ms, l.p99_ms, l.mean_ms
        );
    }
    println!(
        "outside the forward pass: {:.1}% of the forward pass's time (target at most 10%)",
        100.0 * r.non_forward_share
    );
    println!("sustained: {:.2} frames/s on one stream", r.sustained_fps);
    for (n, l) in &r.by_coins {
        println!(
            "frames with {n:>2} coins: p50 {:.2} ms, p99 {:.2} ms ({})",
            l.p50_ms, l.p99_ms, l.n
        );
    }
    if let Some((n, rate, l)) = &r.batch {
        println!("batch of {n} crops: {rate:.1} crops/s (p50 {:.2} ms per batch)", l.p50_ms);
    }
    if let (Some(first), Some(last)) = (r.memory.first(), r.memory.last()) {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "resident memory: {:.1} MiB before the first frame, {:.1} MiB after warm-up, {:.1} MiB \
             after {} frames ({:+.2}% since warm-up)",
            mib(r.memory_before_frames),
            mib(first.1),
            mib(last.1),
            last.0,
            100.0 * (last.1 as f64 - first.1 as f64) / first.1 as f64
        );
    }
}
