//! The demo: a live ROS 2 graph on the shared data. A player publishes a recorded bag, the
//! sorter node classifies it, the reference actuator executes the commands, and the demo
//! listens to all of it and scores the detections against the bag's ground truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use crate::eval::metrics::Scorer;
use crate::monitor::stream::ShiftLevel;
use crate::msgs::coin_sorter::{ActuatorState, CoinDetectionArray};
use crate::msgs::diagnostic_msgs::DiagnosticArray;
use crate::nodes::player::{self, PlayOptions};
use crate::params::RosArgs;
use crate::score;
use crate::transport::{RosNode, netns, qos};

/// Options of `coin_sorter demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The shared data folder (holds coins-mobile/ and bags/).
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Bag to play, relative to --data unless absolute.
    #[arg(long, default_value = "bags/bgr8-mcap")]
    pub bag: PathBuf,
    /// Model to use; trained on coins-mobile first if it does not exist.
    #[arg(long, default_value = "models/coin_resnet50.pt")]
    pub model: PathBuf,
    /// Node parameters file.
    #[arg(long, default_value = "config/coin_sorter.yaml")]
    pub params_file: PathBuf,
    /// Playback speed as a multiple of the recorded 2 Hz.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds to wait for the last results after playback.
    #[arg(long, default_value_t = 30.0)]
    pub settle_timeout: f64,
}

/// What the listener saw.
#[derive(Debug, Default)]
struct Seen {
    frames: BTreeMap<i64, CoinDetectionArray>,
    actuator: Option<ActuatorState>,
    diagnostics: BTreeMap<String, String>,
    /// The shift monitor's last status: level name and message.
    shift: Option<(String, String)>,
}

impl Seen {
    /// A counter of the sorter node's last /diagnostics message (0 before the first).
    fn counter(&self, key: &str) -> u64 {
        self.diagnostics.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Coins in all detections received.
    fn coins(&self) -> usize {
        self.frames.values().map(|f| f.detections.len()).sum()
    }

    /// Whether every published frame was handled by the node, its detections arrived, and the
    /// actuator executed one command per coin.
    fn settled(&self, published: u64) -> bool {
        let processed = self.counter("frames_processed");
        let handled = processed + self.counter("frames_skipped") + self.counter("frames_rejected");
        let moved = self.actuator.as_ref().map_or(0, |a| a.commands_received as usize);
        handled >= published && self.frames.len() as u64 >= processed && moved == self.coins()
    }
}

/// A child node process, stopped with SIGINT (then killed) when dropped.
struct NodeProcess {
    name: &'static str,
    child: Child,
}

impl NodeProcess {
    fn spawn(name: &'static str, exe: &Path, args: &[String]) -> Result<Self> {
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        Ok(Self { name, child })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: kill() with a pid we own (our child, not yet reaped) and a valid signal.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        for _ in 0..50 {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::warn!("{} did not stop within 5 s of SIGINT; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sibling_exe(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the running executable")?;
    let p = me.with_file_name(name);
    if !p.is_file() {
        bail!("{} not found next to {}; build all binaries first", name, me.display());
    }
    Ok(p)
}

/// Runs the demo; the model must exist (the CLI trains it first when missing).
pub fn run(args: &DemoArgs) -> Result<()> {
    netns::require_loopback_only("the demo")?;
    let bag = if args.bag.is_absolute() { args.bag.clone() } else { args.data.join(&args.bag) };
    let truth = score::read_ground_truth(&score::truth_beside(&bag))?;
    let model = std::fs::canonicalize(&args.model)
        .with_context(|| format!("model {} does not exist", args.model.display()))?;
    // Checked before any process starts.
    let settle = crate::params::checked_seconds("--settle-timeout", args.settle_timeout, 0.0)?;
    let opts = PlayOptions {
        rate: args.rate,
        topics: Vec::new(),
        wait_subscribers: 1,
        wait_timeout: 120.0,
    };
    opts.check()?;
    anyhow::ensure!(
        args.params_file.is_file(),
        "params file {} does not exist",
        args.params_file.display()
    );
    let mut node_args = vec![
        "--ros-args".to_string(),
        "--params-file".to_string(),
        args.params_file.display().to_string(),
    ];
    node_args.extend(["-p".to_string(), format!("model_path:={}", model.display())]);
    // Every frame of the shared bags is a different photo: no coin is seen twice, so the node
    // sends one command per detection (config/photo_bags.yaml says the same for other tools).
    node_args.extend(["-p".to_string(), "tracking:=false".to_string()]);
    let mut actuator = NodeProcess::spawn("actuator", &sibling_exe("coin_sorter_actuator")?, &[])?;
    let mut sorter = NodeProcess::spawn("sorter", &sibling_exe("coin_sorter_node")?, &node_args)?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let result = rt.block_on(listen_and_play(
        &opts,
        settle,
        &bag,
        &truth,
        seen.clone(),
        [&mut sorter, &mut actuator],
    ));
    drop(sorter);
    drop(actuator);
    let report = result?;
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("listener state poisoned"))?;
    print_summary(&report, &seen, &truth);
    Ok(())
}

/// Plays `bag` with `opts` while listening to the graph, then waits up to `settle` for the
/// last results; fails as soon as one of `nodes` exits.
async fn listen_and_play(
    opts: &PlayOptions,
    settle: Duration,
    bag: &Path,
    truth: &[score::TruthFrame],
    seen: Arc<Mutex<Seen>>,
    mut nodes: [&mut NodeProcess; 2],
) -> Result<player::PlayReport> {
    let mut node = RosNode::new("coin_sorter_demo", &RosArgs::default())?;
    let det_sub =
        node.subscription::<CoinDetectionArray>("/coin_sorter/detections", qos::output())?;
    let state_sub =
        node.subscription::<ActuatorState>("/coin_sorter_actuator/state", qos::latched())?;
    let diag_sub = node.subscription::<DiagnosticArray>("/diagnostics", qos::output())?;
    let labels: BTreeMap<i64, &score::TruthFrame> = truth.iter().map(|f| (f.stamp_ns, f)).collect();
    let listen = async {
        let mut dets = std::pin::pin!(det_sub.async_stream());
        let mut states = std::pin::pin!(state_sub.async_stream());
        let mut diags = std::pin::pin!(diag_sub.async_stream());
        loop {
            tokio::select! {
                Some(Ok((d, _))) = dets.next() => {
                    let stamp = d.header.stamp.as_nanos();
                    print_frame(&d, labels.get(&stamp).copied());
                    if let Ok(mut s) = seen.lock() {
                        s.frames.insert(stamp, d);
                    }
                }
                Some(Ok((a, _))) = states.next() => {
                    if let Ok(mut s) = seen.lock() {
                        s.actuator = Some(a);
                    }
                }
                Some(Ok((g, _))) = diags.next() => {
                    let Ok(mut s) = seen.lock() else { continue };
                    for st in g.status.into_iter().filter(|s| s.hardware_id == "/coin_sorter") {
                        if st.name.ends_with("domain shift") {
                            let level = ShiftLevel::from_diagnostic_level(st.level)
                                .map_or("STALE", ShiftLevel::name);
                            s.shift = Some((level.to_string(), st.message));
                        } else {
                            let values = st.values.into_iter().map(|kv| (kv.key, kv.value));
                            s.diagnostics = values.collect();
                        }
                    }
                }
                else => break,
            }
        }
    };
    let play = async {
        println!(
            "playing {} at {}x; waiting for coin_sorter_node to subscribe",
            bag.display(),
            opts.rate
        );
        let report = player::play(&mut node, bag, opts).await?;
        let published: u64 = report.published.iter().map(|(_, n)| n).sum();
        // Results trail the last frame by one classification; wait until every frame and every
        // command is accounted for, or the settle timeout passes.
        let deadline = tokio::time::Instant::now() + settle;
        while tokio::time::Instant::now() < deadline {
            let done = seen.lock().map(|s| s.settled(published)).unwrap_or(false);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(report)
    };
    // A node that dies (a bad model or parameter stops start-up with exit code 1) ends the
    // demo at once instead of after the subscriber wait.
    let watch = async {
        loop {
            for p in nodes.iter_mut() {
                if let Some(status) = p.exited() {
                    return anyhow::anyhow!(
                        "{} exited ({status}) during the demo; see its log above",
                        p.name
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let result = tokio::select! {
        r = play => r,
        _ = listen => Err(anyhow::anyhow!("the demo's subscriptions closed early")),
        e = watch => Err(e),
    };
    drop((det_sub, state_sub, diag_sub));
    node.shutdown().await;
    result
}

fn print_frame(d: &CoinDetectionArray, truth: Option<&score::TruthFrame>) {
    let source = truth.map_or("?", |t| t.source.as_str());
    let coins: Vec<String> = d
        .detections
        .iter()
        .map(|c| {
            let unfamiliar = if c.out_of_distribution {
                format!(" (unlike training, shift {:.1})", c.shift_score)
            } else {
                String::new()
            };
            format!("{} {:.2} -> {}{unfamiliar}", c.label, c.confidence, c.bin)
        })
        .collect();
    println!(
        "frame {}.{:09} ({source}): {} coins [{}]",
        d.header.stamp.sec,
        d.header.stamp.nanosec,
        coins.len(),
        coins.join(", ")
    );
}

fn print_summary(report: &player::PlayReport, seen: &Seen, truth: &[score::TruthFrame]) {
    let published: u64 = report.published.iter().map(|(_, n)| n).sum();
    let mut tally = Scorer::new(&[]);
    for f in truth {
        if let Some(d) = seen.frames.get(&f.stamp_ns) {
            tally.add(&f.coins, &d.detections);
        }
    }
    let counter = |k: &str| seen.counter(k);
    let coins = seen.coins();
    println!("\n=== coin_sorter demo summary ===");
    println!("frames published by the player:   {published}");
    println!("frames received by the node:       {}", counter("frames_received"));
    println!("frames skipped (newer one waiting): {}", counter("frames_skipped"));
    println!("frames with detections received:   {}", seen.frames.len());
    println!("coins found:                       {coins}");
    println!("labelled coins in those frames:    {}", tally.labelled);
    println!("labelled coins matched:            {} (centre within half a radius)", tally.matched);
    match tally.accuracy() {
        Some(a) => println!(
            "accuracy on matched coins:         {:.1}% ({}/{})",
            a * 100.0,
            tally.correct(),
            tally.matched
        ),
        None => println!("accuracy on matched coins:         n/a (no coin matched)"),
    }
    let unfamiliar: usize =
        seen.frames.values().flat_map(|f| &f.detections).filter(|c| c.out_of_distribution).count();
    println!("coins unlike the training data:    {unfamiliar} (sent to the reject bin)");
    match &seen.shift {
        Some((level, message)) => println!("shift monitor at the end:          {level}: {message}"),
        None => println!("shift monitor at the end:          no status received"),
    }
    match &seen.actuator {
        Some(a) => {
            let bins: Vec<String> =
                a.bins.iter().zip(&a.counts).map(|(b, n)| format!("{b}={n}")).collect();
            println!(
                "sort commands the actuator received: {} [{}]",
                a.commands_received,
                bins.join(", ")
            );
        }
        None => println!("sort commands the actuator received: 0"),
    }
}
