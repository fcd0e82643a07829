//! `coin_sorter_node`: images in, coin detections and sort commands out.
//!
//! This module holds the node's parameters and start-up (model, pipeline, shift monitor);
//! [`worker`] the part every backend shares; `dds` and `rcl` the two ROS 2 backends, of which
//! the `r2r` cargo feature picks the second.

pub(crate) mod dds;
#[cfg(feature = "r2r")]
mod rcl;
pub(crate) mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::classify::device::RunOptions;
use crate::classify::model::Classifier;
use crate::decide::BinTable;
use crate::locate::{DEFAULT_LOCATE, LocateParams};
use crate::monitor::check::{DEFAULT_SHIFT, ShiftSettings};
use crate::monitor::score::ScoreKind;
use crate::monitor::stream::StreamParams;
use crate::params::{Default as D, ParamSet, ParamSpec, RosArgs};
use crate::pipeline::{Pipeline, ShiftStatus};
use crate::track::{DEFAULT_TRACK, TrackParams};
use crate::transport::qos;

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
        name: "precision",
        default: D::Str("auto"),
        help: "forward pass precision: auto (fp16 on CUDA, fp32 on CPU), fp32 or fp16",
        dynamic: false,
    },
    ParamSpec {
        name: "memory_format",
        default: D::Str("auto"),
        help: "input batch layout: auto (channels_last on CUDA), channels_last or contiguous",
        dynamic: false,
    },
    ParamSpec {
        name: "graph_optimization",
        default: D::Str("auto"),
        help: "graph passes at model load: auto (inference on CPU, freeze on CUDA), inference, \
               freeze, none",
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
        help: "frames are shrunk by a whole factor to at most this longest side before the \
               circle search",
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
    /// Device, precision and memory layout of the model.
    pub run: RunOptions,
    pub num_threads: i64,
    pub locate: LocateParams,
    pub bins: BinTable,
    pub shift: ShiftSettings,
    /// `None` with tracking off.
    pub tracking: Option<TrackParams>,
    pub image_qos: qos::ImageQos,
    /// Whether `~/debug_image` is published.
    pub debug_image: bool,
    pub diagnostics_period: Duration,
    pub log_throttle_period: Duration,
}

/// Most coins a frame may report: far above any tray, low enough to bound a frame's work.
const MAX_COINS: usize = 1000;

/// A topic parameter, checked as a ROS 2 name (relative, absolute or `~/`).
fn topic(p: &ParamSet, name: &str) -> Result<String> {
    let t = p.string(name);
    crate::transport::names::expand(&t, "/", NODE_NAME).with_context(|| format!("{name} {t:?}"))?;
    Ok(t)
}

/// A period parameter: at least a millisecond (a zero tick would spin), at most
/// [`crate::params::MAX_SECONDS`].
fn positive_secs(name: &str, v: f64) -> Result<Duration> {
    crate::params::checked_seconds(name, v, 1e-3)
}

/// Largest `detect_max_side`. The search's cost grows with the area it covers, so a typo
/// of a few digits would stall every frame instead of being refused.
const MAX_DETECT_SIDE: u32 = 16_384;

/// Builds the locate settings from parameters, refusing impossible values.
pub fn locate_params(p: &ParamSet) -> Result<LocateParams> {
    let l = LocateParams {
        min_radius: p.double("min_radius"),
        max_radius: p.double("max_radius"),
        // Out of u32's range is out of the checked range below too.
        max_side: u32::try_from(p.integer("detect_max_side")).unwrap_or(u32::MAX),
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
        (32..=MAX_DETECT_SIDE).contains(&l.max_side),
        "detect_max_side {} must be between 32 and {MAX_DETECT_SIDE}",
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
    anyhow::ensure!(
        (1..=MAX_COINS).contains(&l.max_coins),
        "max_coins {} must be between 1 and {MAX_COINS}",
        p.integer("max_coins")
    );
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
            image_topic: topic(p, "image_topic")?,
            compressed_topic: {
                let c = topic(p, "compressed_topic")?;
                anyhow::ensure!(
                    c != p.string("image_topic"),
                    "compressed_topic {c:?} is image_topic too; one topic carries one type"
                );
                c
            },
            model_path: PathBuf::from(p.string("model_path")),
            run: RunOptions {
                device: p.string("device").parse()?,
                precision: p.string("precision").parse()?,
                memory_format: p.string("memory_format").parse()?,
                graph: p.string("graph_optimization").parse()?,
            },
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
            image_qos: qos::ImageQos::parse(
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

    /// Loads `model` as the node does: libtorch's thread count set from `num_threads` first,
    /// then the model on `device`, in `precision` and `memory_format`. The node, `eval`
    /// and `bench pipeline` share this.
    pub fn load_classifier(&self, model: &Path) -> Result<Classifier> {
        if self.num_threads > 0 {
            tch::set_num_threads(crate::params::checked_threads("num_threads", self.num_threads)?);
        }
        Classifier::load_with(model, self.run)
    }

    /// The node's pipeline around `classifier`: this coin finder, bin table, tracking and
    /// shift monitor. Also says what became of the monitor.
    pub fn pipeline(&self, classifier: Classifier) -> Result<(Pipeline, ShiftStatus)> {
        let mut pipeline = Pipeline::new(classifier, self.locate.clone(), self.bins.clone())
            .context("bin_table does not fit the model")?;
        pipeline.with_tracking(self.tracking)?;
        let status = pipeline.with_shift(&self.shift)?;
        Ok((pipeline, status))
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

/// Runs the node until SIGINT/SIGTERM.
pub fn run(args: RosArgs, params: ParamSet) -> Result<()> {
    // Before the model loads, so a wrong choice is reported at once.
    let backend = Backend::from_env()?;
    let cfg = SorterConfig::from_params(&params)?;
    tracing::info!("loading model {}", cfg.model_path.display());
    let classifier = cfg.load_classifier(&cfg.model_path)?;
    tracing::info!(
        "loaded model {} ({} labels, {}px input), {}",
        cfg.model_path.display(),
        classifier.metadata().labels.len(),
        classifier.metadata().input_size,
        classifier.run_mode()
    );
    let (mut pipeline, status) = cfg.pipeline(classifier)?;
    pipeline.keep_images(cfg.debug_image);
    let shift = ShiftInfo::of(&pipeline, status);
    match &shift {
        ShiftInfo::On { threshold: t, .. } => tracing::info!(
            "shift monitor on: {} score, coins above {:.4} (validation quantile {}) go to the \
             reject bin",
            t.kind.name(),
            t.threshold,
            t.quantile
        ),
        ShiftInfo::Off(_) if cfg.shift.kind.is_none() => {
            tracing::info!("shift monitor off (shift_score is off)")
        }
        ShiftInfo::Off(_) => tracing::warn!(
            "model metadata {} has no shift monitor statistics; the node cannot tell when the \
             camera stops looking like the training data. Re-export the model with \
             `coin_sorter monitor fit` to turn the monitor on",
            crate::classify::metadata::ModelMetadata::path_for_model(&cfg.model_path).display()
        ),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = match backend {
        Backend::Dds => rt.block_on(dds::serve(args, params, cfg, pipeline, shift)),
        #[cfg(feature = "r2r")]
        Backend::Rcl => rt.block_on(rcl::serve(args, params, cfg, pipeline, shift)),
    };
    // A reload still loading (a model whose graph never returns, say) must not keep the
    // stopped node alive: dropping the runtime would wait for it.
    rt.shutdown_timeout(RELOAD_GRACE);
    served
}

/// How long a stopping node waits for a model reload still in progress.
const RELOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The environment variable that picks the ROS 2 backend of a build with both.
pub const BACKEND_ENV: &str = "COIN_SORTER_BACKEND";

/// The ROS 2 library the node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ros2-client over RustDDS: no ROS installation needed.
    Dds,
    /// rcl through r2r (cargo feature `r2r`): any RMW of a sourced ROS 2 workspace.
    #[cfg(feature = "r2r")]
    Rcl,
}

impl Backend {
    /// The library, as logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dds => "ros2-client over RustDDS (dds)",
            #[cfg(feature = "r2r")]
            Self::Rcl => "rcl through r2r (rcl)",
        }
    }

    /// The build's default (rcl when built with `r2r`), unless [`BACKEND_ENV`] says `dds` or
    /// `rcl`; logs the choice.
    pub fn from_env() -> Result<Self> {
        let value = match std::env::var(BACKEND_ENV) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(v)) => {
                anyhow::bail!("{BACKEND_ENV}={v:?} is not a backend of this build")
            }
        };
        let backend = Self::parse(value.as_deref())?;
        tracing::info!("ROS 2 backend: {}", backend.name());
        Ok(backend)
    }

    /// The backend a [`BACKEND_ENV`] value picks (`None` or empty: the build's default). Any
    /// other value, or `rcl` in a build without r2r, is refused.
    pub fn parse(value: Option<&str>) -> Result<Self> {
        Ok(match value {
            Some("dds") => Self::Dds,
            #[cfg(feature = "r2r")]
            None | Some("" | "rcl") => Self::Rcl,
            #[cfg(not(feature = "r2r"))]
            None | Some("") => Self::Dds,
            Some(other) => anyhow::bail!(
                "{BACKEND_ENV}={other:?} is not a backend of this build (it has: {})",
                if cfg!(feature = "r2r") { "rcl, dds" } else { "dds; rcl needs the r2r feature" }
            ),
        })
    }
}

/// What the diagnostics say about the monitor besides the live stream state.
#[derive(Debug, Clone)]
pub enum ShiftInfo {
    On { threshold: crate::monitor::score::Threshold, stream: StreamParams },
    Off(String),
}

impl ShiftInfo {
    /// The monitor of `pipeline`, which `with_shift` or `replace_classifier` left at
    /// `status`.
    pub fn of(pipeline: &Pipeline, status: ShiftStatus) -> Self {
        match (status, pipeline.shift()) {
            (ShiftStatus::On, Some(check)) => {
                Self::On { threshold: *check.threshold(), stream: *check.stream_params() }
            }
            (ShiftStatus::NoStatistics, _) => Self::Off("model has no monitor statistics".into()),
            _ => Self::Off("turned off by shift_score".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str, value: crate::params::ParamValue) -> String {
        let mut p = ParamSet::defaults(PARAMS);
        p.set_value(name, value).unwrap();
        format!("{:#}", SorterConfig::from_params(&p).unwrap_err())
    }

    #[test]
    fn topics_and_sizes_are_checked_before_any_transport_exists() {
        use crate::params::ParamValue::{Integer, String as S};
        assert!(refused("image_topic", S(String::new())).starts_with("image_topic \"\""));
        assert!(refused("image_topic", S("a b".into())).starts_with("image_topic \"a b\""));
        let same = refused("compressed_topic", S("/camera/image_raw".into()));
        assert!(same.contains("is image_topic too"), "{same}");
        assert!(refused("max_coins", Integer(1001)).contains("between 1 and 1000"));
        assert!(refused("image_qos_depth", Integer(1 << 40)).contains("between 1 and 100"));
        for side in [31, -1, 16_385, 1 << 32] {
            let why = refused("detect_max_side", Integer(side));
            let want = format!("detect_max_side {side} must be between 32 and 16384");
            assert!(why.ends_with(&want), "{why}");
        }
        assert!(SorterConfig::from_params(&ParamSet::defaults(PARAMS)).is_ok());
    }

    #[test]
    fn the_backend_follows_the_build_and_the_environment() {
        assert_eq!(Backend::parse(Some("dds")).unwrap(), Backend::Dds);
        #[cfg(not(feature = "r2r"))]
        {
            assert_eq!(Backend::parse(None).unwrap(), Backend::Dds);
            assert_eq!(Backend::parse(Some("")).unwrap(), Backend::Dds);
            let e = Backend::parse(Some("rcl")).unwrap_err().to_string();
            assert!(e.contains("rcl needs the r2r feature"), "{e}");
        }
        #[cfg(feature = "r2r")]
        {
            assert_eq!(Backend::parse(None).unwrap(), Backend::Rcl);
            assert_eq!(Backend::parse(Some("")).unwrap(), Backend::Rcl);
            assert_eq!(Backend::parse(Some("rcl")).unwrap(), Backend::Rcl);
        }
        let e = Backend::parse(Some("fastdds")).unwrap_err().to_string();
        assert!(e.contains("COIN_SORTER_BACKEND=\"fastdds\" is not a backend"), "{e}");
    }
}
