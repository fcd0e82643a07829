//! `coin_sorter_node`: images in, coin detections and sort commands out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use ros2_client::Publisher;

use super::latest::Latest;
use crate::classify::device::DevicePref;
use crate::classify::model::Classifier;
use crate::decide::BinTable;
use crate::locate::{DEFAULT_LOCATE, LocateParams};
use crate::monitor::check::{DEFAULT_SHIFT, ShiftSettings};
use crate::monitor::score::ScoreKind;
use crate::monitor::stream::{ShiftLevel, StreamParams, StreamState};
use crate::msgs::coin_sorter::{CoinDetectionArray, SortCommand};
use crate::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus, KeyValue};
use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::msgs::std_msgs::{Header, Time};
use crate::msgs::std_srvs::{
    SET_BOOL, SetBoolRequest, SetBoolResponse, TRIGGER, TriggerRequest, TriggerResponse,
};
use crate::msgs::vision_msgs::Detection2DArray;
use crate::params::{Default as D, ParamSet, ParamSpec, RosArgs};
use crate::pipeline::{Frame, Pipeline, ShiftStatus};
use crate::track::{DEFAULT_TRACK, TrackParams};
use crate::transport::throttle::Throttle;
use crate::transport::{Counters, RosNode, qos};

/// Default node name.
pub const NODE_NAME: &str = "coin_sorter";

/// Tracking is on by default: an overhead camera sees each coin in many frames, and the
/// actuator must move it once.
pub const DEFAULT_TRACKING: bool = true;

/// Every parameter of the node, with its default: the one place defaults are written.
pub const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "image_topic",
        default: D::Str("/camera/image_raw"),
        help: "sensor_msgs/Image topic to classify",
        dynamic: false,
    },
    ParamSpec {
        name: "compressed_topic",
        default: D::Str("/camera/image_raw/compressed"),
        help: "sensor_msgs/CompressedImage topic (jpeg, png) to classify",
        dynamic: false,
    },
    ParamSpec {
        name: "model_path",
        default: D::Str("models/coin_resnet50.pt"),
        help: "TorchScript model; its metadata is the .json beside it",
        dynamic: false,
    },
    ParamSpec {
        name: "device",
        default: D::Str("auto"),
        help: "where the model runs: auto, cpu or cuda",
        dynamic: false,
    },
    ParamSpec {
        name: "num_threads",
        default: D::Integer(0),
        help: "CPU threads for the model (0: libtorch's default)",
        dynamic: false,
    },
    ParamSpec {
        name: "min_radius",
        default: D::Double(DEFAULT_LOCATE.min_radius),
        help: "smallest coin radius in image pixels",
        dynamic: true,
    },
    ParamSpec {
        name: "max_radius",
        default: D::Double(DEFAULT_LOCATE.max_radius),
        help: "largest coin radius in image pixels",
        dynamic: true,
    },
    ParamSpec {
        name: "detect_max_side",
        default: D::Integer(DEFAULT_LOCATE.max_side as i64),
        help: "frames are shrunk to this longest side before the circle search",
        dynamic: true,
    },
    ParamSpec {
        name: "circularity",
        default: D::Double(DEFAULT_LOCATE.circularity),
        help: "circle perfectness a coin needs, 0..1",
        dynamic: true,
    },
    ParamSpec {
        name: "canny_threshold",
        default: D::Double(DEFAULT_LOCATE.canny_threshold),
        help: "upper Canny edge threshold of the circle search",
        dynamic: true,
    },
    ParamSpec {
        name: "max_coins",
        default: D::Integer(DEFAULT_LOCATE.max_coins as i64),
        help: "most coins reported per frame",
        dynamic: true,
    },
    ParamSpec {
        name: "confidence_threshold",
        default: D::Double(0.5),
        help: "coins classified below this probability go to the reject bin",
        dynamic: true,
    },
    ParamSpec {
        name: "bin_table",
        default: D::StrArray(&[
            "1c:bin_1c",
            "2c:bin_2c",
            "5c:bin_5c",
            "10c:bin_10c",
            "20c:bin_20c",
            "50c:bin_50c",
            "1e:bin_1e",
            "2e:bin_2e",
        ]),
        help: "label:bin for every label the model knows",
        dynamic: true,
    },
    ParamSpec {
        name: "reject_bin",
        default: D::Str("reject"),
        help: "bin for unsure coins",
        dynamic: true,
    },
    ParamSpec {
        name: "shift_score",
        default: D::Str(match DEFAULT_SHIFT.kind {
            Some(k) => k.name(),
            None => "off",
        }),
        help: "shift monitor score: mahalanobis, energy, max_softmax, or off",
        dynamic: false,
    },
    ParamSpec {
        name: "shift_threshold_quantile",
        default: D::Double(DEFAULT_SHIFT.quantile),
        help: "coins scoring above this quantile of validation crops go to the reject bin",
        dynamic: true,
    },
    ParamSpec {
        name: "shift_window",
        default: D::Integer(DEFAULT_SHIFT.stream.window as i64),
        help: "coins the stream state looks back over",
        dynamic: true,
    },
    ParamSpec {
        name: "shift_min_coins",
        default: D::Integer(DEFAULT_SHIFT.stream.min_coins as i64),
        help: "coins needed before the stream state can leave OK",
        dynamic: true,
    },
    ParamSpec {
        name: "shift_warn_fraction",
        default: D::Double(DEFAULT_SHIFT.stream.warn_fraction),
        help: "share of unfamiliar coins in the window that makes the stream state WARN",
        dynamic: true,
    },
    ParamSpec {
        name: "shift_error_fraction",
        default: D::Double(DEFAULT_SHIFT.stream.error_fraction),
        help: "share of unfamiliar coins in the window that makes the stream state ERROR",
        dynamic: true,
    },
    ParamSpec {
        name: "tracking",
        default: D::Bool(DEFAULT_TRACKING),
        help: "one sort command per physical coin tracked across frames (false: one per detection)",
        dynamic: false,
    },
    ParamSpec {
        name: "conveyor_direction_deg",
        default: D::Double(DEFAULT_TRACK.direction_deg),
        help: "direction the scene moves in, degrees (0: image right, 90: image down)",
        dynamic: true,
    },
    ParamSpec {
        name: "conveyor_speed",
        default: D::Double(DEFAULT_TRACK.speed),
        help: "speed the scene moves at, image pixels per second (0: static scene)",
        dynamic: true,
    },
    ParamSpec {
        name: "track_gate",
        default: D::Double(DEFAULT_TRACK.gate),
        help: "a detection continues a track within this many radii of its predicted centre",
        dynamic: true,
    },
    ParamSpec {
        name: "track_max_missed",
        default: D::Integer(DEFAULT_TRACK.max_missed as i64),
        help: "frames a tracked coin may go unseen before it counts as gone",
        dynamic: true,
    },
    ParamSpec {
        name: "track_commit_frames",
        default: D::Integer(DEFAULT_TRACK.commit_frames as i64),
        help: "frames a coin must be seen in before its vote may be confident",
        dynamic: true,
    },
    ParamSpec {
        name: "track_commit_confidence",
        default: D::Double(DEFAULT_TRACK.commit_confidence),
        help: "mean probability of the voted label that sends the command before the coin leaves",
        dynamic: true,
    },
    ParamSpec {
        name: "track_min_frames",
        default: D::Integer(DEFAULT_TRACK.min_frames as i64),
        help: "fewest frames a coin must be seen in to get a sort command",
        dynamic: true,
    },
    ParamSpec {
        name: "debug_image",
        default: D::Bool(false),
        help: "publish ~/debug_image: the frame with each coin's circle and label drawn",
        dynamic: false,
    },
    ParamSpec {
        name: "image_qos_reliability",
        default: D::Str("best_effort"),
        help: "image subscription reliability: best_effort or reliable",
        dynamic: false,
    },
    ParamSpec {
        name: "image_qos_depth",
        default: D::Integer(1),
        help: "image subscription keep-last depth",
        dynamic: false,
    },
    ParamSpec {
        name: "diagnostics_period",
        default: D::Double(1.0),
        help: "seconds between /diagnostics messages",
        dynamic: false,
    },
    ParamSpec {
        name: "log_throttle_period",
        default: D::Double(5.0),
        help: "seconds between two log lines about the same kind of bad input",
        dynamic: false,
    },
];

/// The node's settings, checked and typed.
#[derive(Debug, Clone)]
pub struct SorterConfig {
    pub image_topic: String,
    pub compressed_topic: String,
    pub model_path: PathBuf,
    pub device: DevicePref,
    pub num_threads: i64,
    pub locate: LocateParams,
    pub bins: BinTable,
    pub shift: ShiftSettings,
    /// `None` with tracking off.
    pub tracking: Option<TrackParams>,
    pub image_qos: ros2_client::QosProfile,
    /// Whether `~/debug_image` is published.
    pub debug_image: bool,
    pub diagnostics_period: Duration,
    pub log_throttle_period: Duration,
}

/// A period parameter: at least a millisecond (a zero tick would spin), at most
/// [`crate::params::MAX_SECONDS`].
fn positive_secs(name: &str, v: f64) -> Result<Duration> {
    crate::params::checked_seconds(name, v, 1e-3)
}

/// Builds the locate settings from parameters, refusing impossible values.
pub fn locate_params(p: &ParamSet) -> Result<LocateParams> {
    let l = LocateParams {
        min_radius: p.double("min_radius"),
        max_radius: p.double("max_radius"),
        max_side: u32::try_from(p.integer("detect_max_side")).unwrap_or(0),
        canny_threshold: p.double("canny_threshold"),
        circularity: p.double("circularity"),
        max_coins: usize::try_from(p.integer("max_coins")).unwrap_or(0),
        ..DEFAULT_LOCATE
    };
    anyhow::ensure!(l.min_radius >= 1.0, "min_radius {} must be at least 1", l.min_radius);
    anyhow::ensure!(
        l.max_radius > l.min_radius,
        "max_radius {} must exceed min_radius {}",
        l.max_radius,
        l.min_radius
    );
    anyhow::ensure!(
        l.max_side >= 32,
        "detect_max_side {} must be at least 32",
        p.integer("detect_max_side")
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&l.circularity),
        "circularity {} is outside 0..1",
        l.circularity
    );
    // Gradients of 8-bit images stay far below 1e4; a larger threshold finds no coin at all.
    anyhow::ensure!(
        l.canny_threshold > 0.0 && l.canny_threshold <= 1e4,
        "canny_threshold {} must be in (0, 10000]",
        l.canny_threshold
    );
    anyhow::ensure!(
        l.max_radius <= f64::from(crate::params::MAX_IMAGE_SIDE),
        "max_radius {} is larger than any image ({} px)",
        l.max_radius,
        crate::params::MAX_IMAGE_SIDE
    );
    anyhow::ensure!(l.max_coins >= 1, "max_coins {} must be at least 1", p.integer("max_coins"));
    Ok(l)
}

/// An integer parameter as a count in `min..=max`; errors name the parameter and value.
fn count(p: &ParamSet, name: &str, min: i64, max: i64) -> Result<u32> {
    let v = p.integer(name);
    anyhow::ensure!((min..=max).contains(&v), "{name} {v} must be between {min} and {max}");
    Ok(v as u32)
}

/// Builds the shift monitor settings from parameters, refusing impossible values.
pub fn shift_settings(p: &ParamSet) -> Result<ShiftSettings> {
    let kind = match p.string("shift_score").as_str() {
        "off" => None,
        other => Some(other.parse::<ScoreKind>().map_err(|_| {
            anyhow::anyhow!(
                "shift_score {other:?} is not one of mahalanobis, energy, max_softmax, off"
            )
        })?),
    };
    let settings = ShiftSettings {
        kind,
        quantile: p.double("shift_threshold_quantile"),
        stream: StreamParams {
            window: count(p, "shift_window", 1, 100_000)? as usize,
            min_coins: count(p, "shift_min_coins", 1, 100_000)? as usize,
            warn_fraction: p.double("shift_warn_fraction"),
            error_fraction: p.double("shift_error_fraction"),
        },
    };
    anyhow::ensure!(
        (0.5..=1.0).contains(&settings.quantile),
        "shift_threshold_quantile {} is outside 0.5..1",
        settings.quantile
    );
    settings.stream.check()?;
    Ok(settings)
}

/// Builds the tracking settings from parameters, refusing impossible values.
pub fn track_params(p: &ParamSet) -> Result<TrackParams> {
    let t = TrackParams {
        direction_deg: p.double("conveyor_direction_deg"),
        speed: p.double("conveyor_speed"),
        gate: p.double("track_gate"),
        max_missed: count(p, "track_max_missed", 0, 1000)?,
        commit_frames: count(p, "track_commit_frames", 1, 1_000_000)?,
        commit_confidence: p.double("track_commit_confidence"),
        min_frames: count(p, "track_min_frames", 1, 1_000_000)?,
    };
    t.check()?;
    Ok(t)
}

impl SorterConfig {
    /// Checks and types the resolved parameters; errors name the parameter and value.
    pub fn from_params(p: &ParamSet) -> Result<Self> {
        Ok(Self {
            image_topic: p.string("image_topic"),
            compressed_topic: p.string("compressed_topic"),
            model_path: PathBuf::from(p.string("model_path")),
            device: p.string("device").parse()?,
            num_threads: match p.integer("num_threads") {
                0 => 0,
                n => i64::from(crate::params::checked_threads("num_threads", n)?),
            },
            locate: locate_params(p)?,
            bins: BinTable::parse(
                &p.strings("bin_table"),
                &p.string("reject_bin"),
                p.double("confidence_threshold"),
            )?,
            shift: shift_settings(p)?,
            // Checked even when off, so a bad value cannot wait for tracking to be turned on.
            tracking: {
                let track = track_params(p)?;
                p.boolean("tracking").then_some(track)
            },
            debug_image: p.boolean("debug_image"),
            image_qos: qos::image(
                &p.string("image_qos_reliability"),
                p.integer("image_qos_depth"),
            )?,
            diagnostics_period: positive_secs(
                "diagnostics_period",
                p.double("diagnostics_period"),
            )?,
            log_throttle_period: positive_secs(
                "log_throttle_period",
                p.double("log_throttle_period"),
            )?,
        })
    }
}

/// Counters reported on /diagnostics from start-up, so a zero is shown rather than missing.
const COUNTERS: &[&str] = &[
    "frames_received",
    "frames_processed",
    "frames_skipped",
    "frames_paused",
    "frames_rejected",
    "coins_detected",
    "sort_commands_sent",
    "malformed_messages",
    "publish_failures",
];

/// A received frame and where it came from.
struct Arrival {
    frame: Frame,
    topic: &'static str,
}

/// Runs the node until SIGINT/SIGTERM.
pub fn run(args: RosArgs, params: ParamSet) -> Result<()> {
    let cfg = SorterConfig::from_params(&params)?;
    if cfg.num_threads > 0 {
        tch::set_num_threads(crate::params::checked_threads("num_threads", cfg.num_threads)?);
    }
    let classifier = Classifier::load(&cfg.model_path, cfg.device)?;
    tracing::info!(
        "loaded model {} ({} labels, {}px input) on {:?}",
        cfg.model_path.display(),
        classifier.metadata().labels.len(),
        classifier.metadata().input_size,
        classifier.device()
    );
    let mut pipeline = Pipeline::new(classifier, cfg.locate.clone(), cfg.bins.clone())
        .context("bin_table does not fit the model")?;
    pipeline.with_tracking(cfg.tracking)?;
    pipeline.keep_images(cfg.debug_image);
    let shift = match pipeline.with_shift(&cfg.shift)? {
        ShiftStatus::On => {
            let check = pipeline.shift().context("the shift monitor is on but has no check")?;
            let t = check.threshold();
            tracing::info!(
                "shift monitor on: {} score, coins above {:.4} (validation quantile {}) go to \
                 the reject bin",
                t.kind.name(),
                t.threshold,
                t.quantile
            );
            ShiftInfo::On { threshold: *t, stream: *check.stream_params() }
        }
        ShiftStatus::Off => {
            tracing::info!("shift monitor off (shift_score is off)");
            ShiftInfo::Off("turned off by shift_score".into())
        }
        ShiftStatus::NoStatistics => {
            tracing::warn!(
                "model metadata {} has no shift monitor statistics; the node cannot tell when \
                 the camera stops looking like the training data. Re-export the model with \
                 `coin_sorter monitor fit` to turn the monitor on",
                crate::classify::metadata::ModelMetadata::path_for_model(&cfg.model_path).display()
            );
            ShiftInfo::Off("model has no monitor statistics".into())
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(args, params, cfg, pipeline, shift))
}

/// What the diagnostics say about the monitor besides the live stream state.
#[derive(Debug, Clone)]
enum ShiftInfo {
    On { threshold: crate::monitor::score::Threshold, stream: StreamParams },
    Off(String),
}

async fn serve(
    args: RosArgs,
    params: ParamSet,
    cfg: SorterConfig,
    pipeline: Pipeline,
    shift: ShiftInfo,
) -> Result<()> {
    let (params_tx, params_rx) = std::sync::mpsc::channel::<ParamSet>();
    // The running model's labels; a reload replaces them, so a bin table is always checked
    // against the model that will use it.
    let labels = Arc::new(Mutex::new(pipeline.classifier().metadata().labels.clone()));
    let check = {
        let labels = labels.clone();
        move |p: &ParamSet| {
            let cfg = SorterConfig::from_params(p)?;
            cfg.bins.check_labels(&labels.lock().unwrap_or_else(|e| e.into_inner()))
        }
    };
    let options = super::live_params::node_options(&params, PARAMS, check, params_tx);
    let mut node = RosNode::with_options(NODE_NAME, &args, options)?;
    let det_pub = node.publisher::<CoinDetectionArray>("~/detections", qos::output())?;
    let vision_pub = node.publisher::<Detection2DArray>("~/detections_2d", qos::output())?;
    // Off by default: no publisher exists and no frame is kept or drawn.
    let debug_pub = match cfg.debug_image {
        true => Some(node.publisher::<Image>("~/debug_image", qos::image("best_effort", 1)?)?),
        false => None,
    };
    let cmd_pub = node.publisher::<SortCommand>("~/sort_commands", qos::output())?;
    let diag_pub = node.publisher::<DiagnosticArray>("/diagnostics", qos::output())?;
    let counters = Counters::with_keys(COUNTERS);
    let latest = Arc::new(Latest::<Arrival>::new());
    let stop = Arc::new(AtomicBool::new(false));
    let stream_state = Arc::new(Mutex::new(None::<StreamState>));
    let (swap_tx, swap_rx) = std::sync::mpsc::channel::<Swap>();

    let worker = {
        let (latest, stop, counters) = (latest.clone(), stop.clone(), counters.clone());
        let state = stream_state.clone();
        let period = cfg.log_throttle_period;
        let shift = cfg.shift;
        std::thread::Builder::new()
            .name("classify".into())
            .spawn(move || {
                let out = Outputs { det_pub, vision_pub, debug_pub, cmd_pub, state };
                let mut controls = Controls { swaps: swap_rx, params: params_rx, shift, labels };
                classify_loop(pipeline, &latest, &stop, &counters, period, out, &mut controls)
            })
            .context("cannot start the classification thread")?
    };

    let enabled = Arc::new(AtomicBool::new(true));
    let enable_srv = node.server::<SetBoolRequest, SetBoolResponse>("~/enable", SET_BOOL)?;
    let reload_srv = node.server::<TriggerRequest, TriggerResponse>("~/reload_model", TRIGGER)?;
    let raw_sub = node.subscription::<Image>(&cfg.image_topic, cfg.image_qos.clone())?;
    let comp_sub =
        node.subscription::<CompressedImage>(&cfg.compressed_topic, cfg.image_qos.clone())?;
    tracing::info!(
        "{} ready: classifying {} and {}, publishing {} (and {}) and {}",
        node.fully_qualified_name(),
        node.resolve(&cfg.image_topic)?,
        node.resolve(&cfg.compressed_topic)?,
        node.resolve("~/detections")?,
        node.resolve("~/detections_2d")?,
        node.resolve("~/sort_commands")?
    );
    let receive = async {
        let mut raw = std::pin::pin!(raw_sub.async_stream());
        let mut comp = std::pin::pin!(comp_sub.async_stream());
        let mut throttle = Throttle::new(cfg.log_throttle_period);
        loop {
            let (arrival, topic) = tokio::select! {
                r = raw.next() => (r.map(|r| r.map(|(m, _)| Frame::Raw(m))), "image"),
                r = comp.next() => (r.map(|r| r.map(|(m, _)| Frame::Compressed(m))), "compressed"),
            };
            match arrival {
                Some(Ok(_)) if !enabled.load(Ordering::SeqCst) => {
                    counters.add("frames_received", 1);
                    counters.add("frames_paused", 1);
                }
                Some(Ok(frame)) => {
                    counters.add("frames_received", 1);
                    if latest.put(Arrival { frame, topic }) {
                        counters.add("frames_skipped", 1);
                    }
                }
                Some(Err(e)) => {
                    counters.add("malformed_messages", 1);
                    if let Some(held) = throttle.allow("malformed") {
                        tracing::warn!(
                            "dropped a malformed {topic} message ({e:?}; {held} more since the \
                             last report); waiting for the next one"
                        );
                    }
                }
                None => break,
            }
        }
    };
    let diagnostics = async {
        let mut tick = tokio::time::interval(cfg.diagnostics_period);
        let hardware_id = node.fully_qualified_name();
        loop {
            tick.tick().await;
            let state = *stream_state.lock().unwrap_or_else(|p| p.into_inner());
            let mut msg = diagnostics_message(&hardware_id, &counters, &cfg);
            msg.status[0].values.push(KeyValue {
                key: "enabled".into(),
                value: enabled.load(Ordering::SeqCst).to_string(),
            });
            msg.status.push(shift_status(&hardware_id, &shift, state.as_ref()));
            if let Err(e) = diag_pub.publish(msg) {
                tracing::debug!("could not publish diagnostics: {e:?}");
            }
        }
    };
    let enable = serve_enable(&enable_srv, &enabled);
    let reload = serve_reload(&reload_srv, &cfg, swap_tx);
    tokio::select! {
        _ = super::shutdown_signal() => tracing::info!("shutdown requested; stopping"),
        _ = enable => {}
        _ = reload => {}
        _ = receive => tracing::warn!("image subscriptions closed; stopping"),
        _ = diagnostics => {}
    }
    stop.store(true, Ordering::SeqCst);
    if worker.join().is_err() {
        tracing::error!("classification thread panicked");
    }
    let c = counters.snapshot();
    tracing::info!(
        "stopped after {} frames received, {} processed, {} skipped",
        c["frames_received"],
        c["frames_processed"],
        c["frames_skipped"]
    );
    drop((raw_sub, comp_sub, diag_pub, enable_srv, reload_srv));
    node.shutdown().await;
    Ok(())
}

/// Where the classification thread sends its results.
struct Outputs {
    det_pub: Publisher<CoinDetectionArray>,
    /// The same detections as `vision_msgs`, for rviz, Foxglove and generic consumers.
    vision_pub: Publisher<Detection2DArray>,
    /// `~/debug_image`, when the `debug_image` parameter is on.
    debug_pub: Option<Publisher<Image>>,
    cmd_pub: Publisher<SortCommand>,
    /// The shift monitor's stream state after the last frame, for `/diagnostics`.
    state: Arc<Mutex<Option<StreamState>>>,
}

/// A loaded model waiting to replace the running one, and where to say how it went.
struct Swap {
    classifier: Classifier,
    reply: tokio::sync::oneshot::Sender<Result<ShiftStatus, String>>,
}

/// What changes the classification thread's pipeline between frames: model swaps, parameter
/// changes, and the monitor settings in force (which a new model gets).
struct Controls {
    swaps: std::sync::mpsc::Receiver<Swap>,
    params: std::sync::mpsc::Receiver<ParamSet>,
    shift: ShiftSettings,
    /// The running model's labels, which the parameter check reads.
    labels: Arc<Mutex<Vec<String>>>,
}

impl Controls {
    /// Applies every waiting swap and parameter change to `pipeline`.
    fn apply(&mut self, pipeline: &mut Pipeline, state: &Mutex<Option<StreamState>>) {
        while let Ok(p) = self.params.try_recv() {
            // The set was checked whole before it was sent; a failure here is a bug.
            let applied = SorterConfig::from_params(&p).and_then(|cfg| {
                pipeline.set_locate(cfg.locate);
                pipeline.set_bins(cfg.bins)?;
                if let Some(t) = cfg.tracking {
                    pipeline.set_track_params(t)?;
                }
                if cfg.shift != self.shift {
                    pipeline.with_shift(&cfg.shift)?;
                    self.shift = cfg.shift;
                    *state.lock().unwrap_or_else(|e| e.into_inner()) =
                        pipeline.shift().map(|c| c.state());
                }
                Ok(())
            });
            if let Err(e) = applied {
                tracing::error!("could not apply a parameter change ({e:#}); keeping the rest");
            }
        }
        while let Ok(Swap { classifier, reply }) = self.swaps.try_recv() {
            let result = pipeline.replace_classifier(classifier, &self.shift);
            if result.is_ok() {
                *self.labels.lock().unwrap_or_else(|e| e.into_inner()) =
                    pipeline.classifier().metadata().labels.clone();
                *state.lock().unwrap_or_else(|e| e.into_inner()) =
                    pipeline.shift().map(|c| c.state());
            }
            let _ = reply.send(result.map_err(|e| format!("{e:#}")));
        }
    }
}

fn classify_loop(
    mut pipeline: Pipeline,
    latest: &Latest<Arrival>,
    stop: &AtomicBool,
    counters: &Counters,
    throttle_period: Duration,
    out_to: Outputs,
    controls: &mut Controls,
) {
    let Outputs { det_pub, vision_pub, debug_pub, cmd_pub, state } = out_to;
    let mut throttle = Throttle::new(throttle_period);
    while !stop.load(Ordering::SeqCst) {
        // Between two frames, so no frame is half processed under one model or setting and
        // half under another.
        controls.apply(&mut pipeline, &state);
        let Some(Arrival { frame, topic }) = latest.take_timeout(Duration::from_millis(100)) else {
            continue;
        };
        // A change acknowledged while we waited applies to this frame already.
        controls.apply(&mut pipeline, &state);
        let stamp = frame.header().stamp;
        match pipeline.process(&frame) {
            Ok(out) => {
                counters.add("frames_processed", 1);
                counters.add("coins_detected", out.detections.detections.len() as u64);
                if let Some(level) = out.shift_change
                    && let Some(now) = &out.shift
                {
                    log_shift_change(level, now);
                }
                if out.shift.is_some() {
                    *state.lock().unwrap_or_else(|p| p.into_inner()) = out.shift;
                }
                tracing::debug!(
                    "frame {}.{:09}: {} coins in {:?}",
                    stamp.sec,
                    stamp.nanosec,
                    out.commands.len(),
                    out.times.total
                );
                if let (Some(publisher), Some(img)) = (&debug_pub, &out.image) {
                    let drawn = crate::annotate::draw(img, &out.detections)
                        .and_then(|m| publisher.publish(m).map_err(|e| anyhow::anyhow!("{e:?}")));
                    if let Err(e) = drawn {
                        counters.add("publish_failures", 1);
                        if let Some(held) = throttle.allow("debug_image") {
                            tracing::warn!(
                                "could not publish the debug image ({e:#}; {held} more since the \
                                 last report); going on without it"
                            );
                        }
                    }
                }
                if let Err(e) = vision_pub.publish(Detection2DArray::from(&out.detections)) {
                    counters.add("publish_failures", 1);
                    tracing::warn!("could not publish vision_msgs detections: {e:?}");
                }
                if let Err(e) = det_pub.publish(out.detections) {
                    counters.add("publish_failures", 1);
                    tracing::warn!("could not publish detections: {e:?}");
                }
                for cmd in out.commands {
                    match cmd_pub.publish(cmd) {
                        Ok(()) => counters.add("sort_commands_sent", 1),
                        Err(e) => {
                            counters.add("publish_failures", 1);
                            tracing::warn!("could not publish a sort command: {e:?}");
                        }
                    }
                }
            }
            Err(e) => {
                let kind = e.kind();
                counters.add("frames_rejected", 1);
                counters.add(&format!("rejected_{kind}"), 1);
                if let Some(held) = throttle.allow(kind) {
                    let more = if held > 0 {
                        format!(" ({held} more of this kind since the last report)")
                    } else {
                        String::new()
                    };
                    tracing::warn!(
                        "dropped {topic} frame stamped {}.{:09}: {e}{more}; \
                         waiting for the next frame",
                        stamp.sec,
                        stamp.nanosec
                    );
                }
            }
        }
    }
}

fn diagnostics_message(
    hardware_id: &str,
    counters: &Counters,
    cfg: &SorterConfig,
) -> DiagnosticArray {
    let c = counters.snapshot();
    let rejected = c.get("frames_rejected").copied().unwrap_or(0);
    let (level, message) = if rejected > 0 {
        (DiagnosticStatus::WARN, format!("{rejected} bad frames dropped since start"))
    } else {
        (DiagnosticStatus::OK, "classifying".to_string())
    };
    let mut values: Vec<KeyValue> =
        c.into_iter().map(|(key, v)| KeyValue { key, value: v.to_string() }).collect();
    values.push(KeyValue { key: "model_path".into(), value: cfg.model_path.display().to_string() });
    DiagnosticArray {
        header: Header { stamp: Time::now(), frame_id: String::new() },
        status: vec![DiagnosticStatus {
            level,
            name: format!("{}: pipeline", hardware_id.trim_start_matches('/')),
            message,
            hardware_id: hardware_id.to_string(),
            values,
        }],
    }
}

/// Logs a change of the stream state once, with what to do about it.
fn log_shift_change(level: ShiftLevel, s: &StreamState) {
    let what = format!(
        "{} of the last {} coins look unlike the training data (median shift score {:.2})",
        s.flagged, s.coins, s.median_score
    );
    match level {
        ShiftLevel::Ok => tracing::info!("shift monitor back to OK: {what}"),
        ShiftLevel::Warn => tracing::warn!(
            "shift monitor WARN: {what}. The camera may no longer look like the training \
             images; unfamiliar coins go to the reject bin. Record images from this camera \
             (`coin_sorter dataset capture`) and fine-tune with `coin_sorter train --stage 2`"
        ),
        ShiftLevel::Error => tracing::error!(
            "shift monitor ERROR: {what}. Labels from this camera are not to be trusted; \
             unfamiliar coins go to the reject bin. Check the camera and lighting, then record \
             images from this camera (`coin_sorter dataset capture`) and fine-tune with \
             `coin_sorter train --stage 2`"
        ),
    }
}

/// The `/diagnostics` status of the shift monitor: its level and the numbers behind it.
fn shift_status(
    hardware_id: &str,
    info: &ShiftInfo,
    state: Option<&StreamState>,
) -> DiagnosticStatus {
    let kv = |key: &str, value: String| KeyValue { key: key.into(), value };
    let name = format!("{}: domain shift", hardware_id.trim_start_matches('/'));
    let (threshold, stream) = match info {
        ShiftInfo::On { threshold, stream } => (threshold, stream),
        ShiftInfo::Off(why) => {
            return DiagnosticStatus {
                level: DiagnosticStatus::OK,
                name,
                message: format!("monitor off: {why}"),
                hardware_id: hardware_id.to_string(),
                values: vec![kv("monitor", "off".into())],
            };
        }
    };
    let s = state.copied().unwrap_or(StreamState {
        level: ShiftLevel::Ok,
        coins: 0,
        flagged: 0,
        median_score: 0.0,
        total_coins: 0,
        total_flagged: 0,
    });
    let message = match s.level {
        ShiftLevel::Ok => {
            format!("{} of the last {} coins unlike the training data", s.flagged, s.coins)
        }
        ShiftLevel::Warn | ShiftLevel::Error => format!(
            "{} of the last {} coins unlike the training data: collect images from this camera \
             and run training stage 2",
            s.flagged, s.coins
        ),
    };
    DiagnosticStatus {
        level: s.level.diagnostic_level(),
        name,
        message,
        hardware_id: hardware_id.to_string(),
        values: vec![
            kv("monitor", "on".into()),
            kv("state", s.level.name().into()),
            kv("score", threshold.kind.name().into()),
            kv("threshold", threshold.threshold.to_string()),
            kv("threshold_quantile", threshold.quantile.to_string()),
            kv("window_coins", s.coins.to_string()),
            kv("window_flagged", s.flagged.to_string()),
            kv("window_fraction", format!("{:.3}", s.fraction())),
            kv("median_shift_score", format!("{:.3}", s.median_score)),
            kv("warn_fraction", stream.warn_fraction.to_string()),
            kv("error_fraction", stream.error_fraction.to_string()),
            kv("coins_scored", s.total_coins.to_string()),
            kv("coins_flagged", s.total_flagged.to_string()),
        ],
    }
}

/// Answers `~/enable` (`std_srvs/srv/SetBool`): `false` pauses classification (frames are
/// received and counted as `frames_paused`, nothing is classified or published), `true`
/// resumes it. Runs until the node stops.
async fn serve_enable(
    server: &ros2_client::service::Server<SetBoolRequest, SetBoolResponse>,
    enabled: &AtomicBool,
) {
    loop {
        let (id, req) = match server.async_receive_request().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("could not read an ~/enable request ({e:?}); waiting for the next");
                // A broken reader would otherwise fail again at once.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let was = enabled.swap(req.data, Ordering::SeqCst);
        let message = match (was, req.data) {
            (true, false) => "classification paused; incoming frames are counted and dropped",
            (false, true) => "classification resumed",
            (true, true) => "already classifying",
            (false, false) => "already paused",
        };
        tracing::info!("~/enable {}: {message}", req.data);
        let resp = SetBoolResponse { success: true, message: message.to_string() };
        if let Err(e) = server.async_send_response(id, resp).await {
            tracing::warn!("could not answer an ~/enable request: {e:?}");
        }
    }
}

/// Answers `~/reload_model` (`std_srvs/srv/Trigger`): loads the file at `model_path` again
/// (e.g. after training wrote a new model there) off the classification thread, then swaps it
/// in between two frames. A model that fails to load, or whose labels the bin table does not
/// cover, is refused with the reason and the running one stays.
async fn serve_reload(
    server: &ros2_client::service::Server<TriggerRequest, TriggerResponse>,
    cfg: &SorterConfig,
    swaps: std::sync::mpsc::Sender<Swap>,
) {
    loop {
        let id = match server.async_receive_request().await {
            Ok((id, _)) => id,
            Err(e) => {
                tracing::warn!("could not read a ~/reload_model request ({e:?}); waiting");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (path, device) = (cfg.model_path.clone(), cfg.device);
        let loaded = tokio::task::spawn_blocking(move || Classifier::load(&path, device)).await;
        let outcome: Result<ShiftStatus, String> = match loaded {
            Ok(Ok(classifier)) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                match swaps.send(Swap { classifier, reply }) {
                    Ok(()) => answer
                        .await
                        .unwrap_or_else(|_| Err("the classification thread has stopped".into())),
                    Err(_) => Err("the classification thread has stopped".into()),
                }
            }
            // libtorch errors carry a C++ backtrace after their first line; the reason is there.
            Ok(Err(e)) => Err(format!("{e:#}").lines().next().unwrap_or_default().to_string()),
            Err(e) => Err(format!("loading panicked: {e}")),
        };
        let resp = match outcome {
            Ok(status) => {
                let monitor = match status {
                    ShiftStatus::On => "shift monitor on",
                    ShiftStatus::Off => "shift monitor off",
                    ShiftStatus::NoStatistics => "shift monitor off: no statistics in the model",
                };
                let message = format!("loaded {} ({monitor})", cfg.model_path.display());
                tracing::info!("~/reload_model: {message}");
                TriggerResponse { success: true, message }
            }
            Err(why) => {
                tracing::warn!("~/reload_model refused; the running model stays: {why}");
                TriggerResponse { success: false, message: why }
            }
        };
        if let Err(e) = server.async_send_response(id, resp).await {
            tracing::warn!("could not answer a ~/reload_model request: {e:?}");
        }
    }
}
