//! `coin_sorter bench e2e`: a running sorter node (ours or the Python reference) measured
//! from outside over DDS. Publishes a bag's frames as a camera would (best-effort, depth one)
//! at a fixed rate, or closed-loop (the next frame as soon as the last is answered), stamps
//! each with its send time, and reads the node's detections and sort commands: latency from
//! image published to detections received, frames the node skipped, sort commands lost, and
//! the node's resident memory. Run it and the node in one scripts/netns.sh call (each call is
//! its own network), and the node with `tracking:=false` for the sort-command count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::rss::resident_bytes;
use crate::eval::metrics::Latency;
use crate::msgs::coin_sorter::{CoinDetectionArray, SortCommand};
use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::msgs::std_msgs::Time;
use crate::params::RosArgs;
use crate::pipeline::Frame;
use crate::transport::{RosNode, qos};

/// Options of `coin_sorter bench e2e`.
#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    /// rosbag2 recording whose image frames are sent, in order, round and round.
    #[arg(long, value_name = "PATH")]
    pub bag: PathBuf,
    /// Image topic of the bag [default: its only image topic].
    #[arg(long)]
    pub topic: Option<String>,
    /// Frames per second to send (0: closed loop, the next frame once the last is answered
    /// or after `--answer-wait`).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of sending, after the warm-up.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Frames of the bag sent in closed loop once the node has answered its first, before
    /// anything is counted and before the memory baseline: a node's first frames of each
    /// coin count allocate what later frames reuse.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Seconds a frame waits for its answer, in the warm-up and in closed loop, before the
    /// next is sent. Raise it for a node whose forward pass takes longer (a loaded machine, a
    /// large model): the warm-up gives up after 5 frames in a row go unanswered this long.
    #[arg(long, default_value_t = 1.0)]
    pub answer_wait: f64,
    /// The node under test, fully qualified: its `~/detections` and `~/sort_commands` are
    /// read.
    #[arg(long, default_value = "/coin_sorter")]
    pub node: String,
    /// Where raw frames are sent (the node's image_topic).
    #[arg(long, default_value = "/camera/image_raw")]
    pub image_topic: String,
    /// Where compressed frames are sent (the node's compressed_topic).
    #[arg(long, default_value = "/camera/image_raw/compressed")]
    pub compressed_topic: String,
    /// DDS domain [default: ROS_DOMAIN_ID, else 0].
    #[arg(long)]
    pub domain: Option<u16>,
    /// Process id of the node, to report its resident memory.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Also write the figures as JSON here (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Every figure of a run; `--json` writes this.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    pub node: String,
    pub rate: f64,
    pub seconds: f64,
    pub frames_sent: usize,
    /// Frames whose detections came back.
    pub frames_answered: usize,
    /// Frames the node never answered: skipped while busy (it works on the newest) or lost.
    pub frames_skipped: usize,
    /// Image published to detections received, per answered frame.
    pub latency: Latency,
    /// Answered frames per second of sending.
    pub answered_fps: f64,
    /// Frames sent per second: the rate achieved, which a busy machine can hold below the
    /// one asked for.
    pub sent_fps: f64,
    /// Coins in the answered frames' detections.
    pub coins: usize,
    /// Sort commands received for those coins; with `tracking:=false` one per coin.
    pub sort_commands: usize,
    /// Coins of answered frames without their sort command. Meaningful only for a node with
    /// `tracking:=false`: with tracking one command goes out per physical coin, later.
    pub sort_commands_lost: usize,
    /// The node's resident bytes after the warm-up and at the end.
    pub memory: Option<(u64, u64)>,
    /// The node's resident bytes once it has answered its first frame.
    pub memory_after_first_frame: Option<u64>,
}

/// Warm-up frames unanswered in a row (1 s each) after which the node is taken for gone.
const WARMUP_UNANSWERED: usize = 5;

/// The resident bytes of the node `pid`, when given; a node that has exited is an error that
/// says so, `when`.
fn node_memory(pid: Option<u32>, when: &str) -> Result<Option<u64>> {
    pid.map(|p| {
        resident_bytes(Some(p)).map_err(|_| anyhow::anyhow!("process {p} (--pid) exited {when}"))
    })
    .transpose()
}

/// Wall-clock now as a header stamp; strictly later than `after`, so every frame's stamp is
/// its own.
fn stamp_after(after: i64) -> i64 {
    wall_ns().max(after + 1)
}

fn wall_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// What came back for the frames sent, keyed by their stamps.
#[derive(Default)]
struct Tally {
    sent: BTreeSet<i64>,
    /// Latency and coin count of each answered frame.
    answered: BTreeMap<i64, (Duration, usize)>,
    /// (frame stamp, coin id) of each sort command.
    commands: BTreeSet<(i64, u32)>,
}

impl Tally {
    /// Counts detections answering a frame we sent; whether they did.
    fn answer(&mut self, d: &CoinDetectionArray) -> bool {
        let received = wall_ns();
        let stamp = d.header.stamp.as_nanos();
        if !self.sent.contains(&stamp) {
            return false;
        }
        let took = Duration::from_nanos(received.saturating_sub(stamp) as u64);
        self.answered.insert(stamp, (took, d.detections.len()));
        true
    }

    fn command(&mut self, c: &SortCommand) {
        self.commands.insert((c.header.stamp.as_nanos(), c.coin_id));
    }
}

/// The camera side: one publisher per frame kind.
struct Camera {
    raw: ros2_client::Publisher<Image>,
    compressed: ros2_client::Publisher<CompressedImage>,
}

impl Camera {
    fn send(&self, frame: &Frame, stamp_ns: i64) -> Result<()> {
        let stamp = Time::from_nanos(stamp_ns);
        let failed = |e: &dyn std::fmt::Debug| anyhow::anyhow!("cannot publish a frame: {e:?}");
        match frame {
            Frame::Raw(m) => {
                let mut m = m.clone();
                m.header.stamp = stamp;
                self.raw.publish(m).map_err(|e| failed(&e))
            }
            Frame::Compressed(m) => {
                let mut m = m.clone();
                m.header.stamp = stamp;
                self.compressed.publish(m).map_err(|e| failed(&e))
            }
        }
    }
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &E2eArgs) -> Result<E2eReport> {
    crate::transport::netns::require_loopback_only("bench e2e")?;
    ensure!(
        args.rate == 0.0 || (0.01..=1000.0).contains(&args.rate),
        "--rate {} must be 0 (closed loop) or between 0.01 and 1000 Hz",
        args.rate
    );
    ensure!(args.domain.is_none_or(|d| d <= 232), "--domain must be at most 232, as in ROS 2");
    if let Some(pid) = args.pid {
        resident_bytes(Some(pid)).with_context(|| format!("--pid {pid}: no such process"))?;
    }
    ensure!(
        args.duration > 0.0 && args.duration <= 86_400.0,
        "--duration {} must be in (0, 86400] seconds",
        args.duration
    );
    ensure!(args.warmup <= 100_000, "--warmup must be at most 100,000");
    ensure!(
        args.answer_wait > 0.0 && args.answer_wait <= 600.0,
        "--answer-wait {} must be in (0, 600] seconds",
        args.answer_wait
    );
    let frames = super::frames::load(&args.bag, args.topic.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt.block_on(measure(args, &frames))?;
    print(&report);
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("cannot serialise the figures")?;
        crate::fsutil::write_atomic(path, &json)?;
    }
    Ok(report)
}

async fn measure(args: &E2eArgs, frames: &[Frame]) -> Result<E2eReport> {
    let mut node = match args.domain {
        Some(d) => RosNode::in_domain("coin_sorter_bench", &RosArgs::default(), d)?,
        None => RosNode::new("coin_sorter_bench", &RosArgs::default())?,
    };
    let camera = Camera {
        raw: node.publisher(&args.image_topic, qos::image("best_effort", 1)?)?,
        compressed: node.publisher(&args.compressed_topic, qos::image("best_effort", 1)?)?,
    };
    let node_name = args.node.trim_end_matches('/');
    let det_sub =
        node.subscription::<CoinDetectionArray>(&format!("{node_name}/detections"), qos::output())?;
    let cmd_sub =
        node.subscription::<SortCommand>(&format!("{node_name}/sort_commands"), qos::output())?;
    let mut dets = std::pin::pin!(det_sub.async_stream());
    let mut cmds = std::pin::pin!(cmd_sub.async_stream());

    // Warm-up: the first frame again and again until the node answers (discovery, the
    // model's first calls), then `--warmup` frames in closed loop; nothing of it is counted.
    let mut last_stamp = 0;
    tracing::info!("waiting up to 60 s for {node_name} to answer a frame");
    let warm = Instant::now() + Duration::from_secs(60);
    let mut warm_stamps = BTreeSet::new();
    'warm: loop {
        if Instant::now() > warm {
            bail!("{node_name} did not answer a frame within 60 s; is it running?");
        }
        last_stamp = stamp_after(last_stamp);
        warm_stamps.insert(last_stamp);
        camera.send(&frames[0], last_stamp)?;
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok(Some(next)) = tokio::time::timeout_at(until, dets.next()).await {
            if let Ok((d, _)) = next
                && warm_stamps.contains(&d.header.stamp.as_nanos())
            {
                break 'warm;
            }
        }
    }
    let mem_first = node_memory(args.pid, "after its first frame")?;
    let wait = Duration::from_secs_f64(args.answer_wait);
    let mut unanswered = 0;
    for k in 0..args.warmup {
        last_stamp = stamp_after(last_stamp);
        camera.send(&frames[k % frames.len()], last_stamp)?;
        let until = Instant::now() + wait;
        unanswered += 1;
        while let Ok(Some(next)) = tokio::time::timeout_at(until, dets.next()).await {
            if next.is_ok_and(|(d, _)| d.header.stamp.as_nanos() == last_stamp) {
                unanswered = 0;
                break;
            }
        }
        node_memory(args.pid, "during the warm-up")?;
        ensure!(
            unanswered < WARMUP_UNANSWERED,
            "{node_name} stopped answering during the warm-up ({unanswered} frames in a row \
             unanswered for {} s each; a slow node needs a longer --answer-wait)",
            args.answer_wait
        );
    }
    // Let the answers to the other warm-up frames arrive, then start clean.
    let settle = Instant::now() + Duration::from_secs(2);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(settle) => break,
            _ = dets.next() => {}
            _ = cmds.next() => {}
        }
    }
    let mem_start = node_memory(args.pid, "during the warm-up")?;

    let mut tally = Tally::default();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let period = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut next_send = start;
    let mut outstanding: Option<(i64, Instant)> = None;
    let mut i = 0usize;
    while Instant::now() < end {
        let due = match (period, outstanding) {
            (Some(_), _) => next_send,
            // Closed loop: send when the last frame is answered, or `wait` after it.
            (None, Some((_, at))) => at + wait,
            (None, None) => Instant::now(),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due.min(end)) => {
                if Instant::now() >= end {
                    break;
                }
                last_stamp = stamp_after(last_stamp);
                camera.send(&frames[i % frames.len()], last_stamp)?;
                i += 1;
                tally.sent.insert(last_stamp);
                outstanding = Some((last_stamp, Instant::now()));
                if let Some(p) = period {
                    next_send += p;
                }
            }
            Some(d) = dets.next() => {
                if let Ok((d, _)) = d
                    && tally.answer(&d)
                    && outstanding.map(|o| o.0) == Some(d.header.stamp.as_nanos())
                {
                    outstanding = None;
                }
            }
            Some(c) = cmds.next() => {
                if let Ok((c, _)) = c {
                    tally.command(&c);
                }
            }
        }
    }
    // Answers to the last frames still on their way.
    let drain = Instant::now() + Duration::from_secs(3);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(drain) => break,
            Some(d) = dets.next() => {
                if let Ok((d, _)) = d {
                    tally.answer(&d);
                }
            }
            Some(c) = cmds.next() => {
                if let Ok((c, _)) = c {
                    tally.command(&c);
                }
            }
        }
    }
    let mem_end = match args.pid {
        Some(p) => match resident_bytes(Some(p)) {
            Ok(b) => Some(b),
            Err(_) => {
                tracing::warn!("process {p} (--pid) exited during the run; no memory figure");
                None
            }
        },
        None => None,
    };
    let Tally { sent, answered, commands } = tally;
    let coins: usize = answered.values().map(|(_, n)| n).sum();
    let for_answered = commands.iter().filter(|(stamp, _)| answered.contains_key(stamp)).count();
    let seconds = args.duration;
    let lat: Vec<Duration> = answered.values().map(|(d, _)| *d).collect();
    drop(camera);
    node.shutdown().await;
    Ok(E2eReport {
        node: node_name.to_owned(),
        rate: args.rate,
        seconds,
        frames_sent: sent.len(),
        frames_answered: answered.len(),
        frames_skipped: sent.len() - answered.len(),
        latency: Latency::of(&lat),
        answered_fps: answered.len() as f64 / seconds,
        sent_fps: sent.len() as f64 / seconds,
        coins,
        sort_commands: for_answered,
        sort_commands_lost: coins.saturating_sub(for_answered),
        memory: mem_start.zip(mem_end),
        memory_after_first_frame: mem_first,
    })
}

fn print(r: &E2eReport) {
    let rate = if r.rate > 0.0 { format!("{} Hz", r.rate) } else { "closed loop".to_owned() };
    println!("{} at {rate} for {} s", r.node, r.seconds);
    println!(
        "frames: {} sent ({:.2}/s), {} answered ({:.2}/s), {} skipped",
        r.frames_sent, r.sent_fps, r.frames_answered, r.answered_fps, r.frames_skipped
    );
    println!(
        "image published to detections received: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms",
        r.latency.p50_ms, r.latency.p95_ms, r.latency.p99_ms, r.latency.max_ms
    );
    println!(
        "sort commands: {} for {} coins detected, {} lost (counted for a node with \
         tracking:=false, one command per detection)",
        r.sort_commands, r.coins, r.sort_commands_lost
    );
    if let (Some((a, b)), Some(first)) = (r.memory, r.memory_after_first_frame) {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "node resident memory: {:.1} MiB after its first frame, {:.1} MiB after warm-up, \
             {:.1} MiB at the end ({:+.2}% since warm-up)",
            mib(first),
            mib(a),
            mib(b),
            100.0 * (b as f64 - a as f64) / a as f64
        );
    }
}
