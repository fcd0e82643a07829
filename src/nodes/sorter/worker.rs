//! The part of the sorter node every ROS 2 backend shares: the classification thread (the
//! pipeline on the newest frame, model swaps and parameter changes between frames), the pause
//! switch, model reloads and the `/diagnostics` message. A backend only makes its node,
//! subscriptions, publishers ([`Outlets`]) and services, and hands what arrives to a [`Core`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{COUNTERS, PARAMS, ShiftInfo, SorterConfig};
use crate::classify::model::Classifier;
use crate::monitor::check::ShiftSettings;
use crate::monitor::stream::{ShiftLevel, StreamState};
use crate::msgs::coin_sorter::{CoinDetectionArray, SortCommand};
use crate::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus, KeyValue};
use crate::msgs::sensor_msgs::Image;
use crate::msgs::std_msgs::{Header, Time};
use crate::msgs::vision_msgs::Detection2DArray;
use crate::nodes::latest::Latest;
use crate::nodes::live_params::LiveParams;
use crate::params::ParamSet;
use crate::pipeline::{Frame, Pipeline, ShiftStatus};
use crate::transport::Counters;
use crate::transport::throttle::Throttle;

/// A received frame and where it came from.
pub struct Arrival {
    pub frame: Frame,
    pub topic: &'static str,
}

/// Where the classification thread sends a frame's results: one implementation per ROS 2
/// backend, so that the thread, and everything it runs, is shared by all of them.
pub trait Outlets: Send {
    /// `~/detections`.
    fn detections(&self, m: CoinDetectionArray) -> Result<()>;
    /// `~/detections_2d`: the same coins as `vision_msgs`.
    fn detections_2d(&self, m: Detection2DArray) -> Result<()>;
    /// `~/sort_commands`.
    fn sort_command(&self, m: SortCommand) -> Result<()>;
    /// Whether `~/debug_image` is published; when not, no frame is drawn.
    fn wants_debug_image(&self) -> bool;
    /// `~/debug_image`.
    fn debug_image(&self, m: Image) -> Result<()>;
}

/// The reply to a `std_srvs` request (`SetBool`, `Trigger`): whether it succeeded and what
/// happened, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub success: bool,
    pub message: String,
}

/// The first half of starting a [`Core`]: the live parameters a backend serves. It exists
/// before the backend's node, whose parameter services need it.
pub struct Pending {
    pipeline: Pipeline,
    labels: Arc<Mutex<Vec<String>>>,
    params_rx: Receiver<ParamSet>,
    /// The node's parameters as served to `ros2 param`: changes are checked against the
    /// running model's labels and reach the classification thread before its next frame.
    pub live: Arc<LiveParams>,
}

impl Pending {
    /// Wraps a loaded pipeline whose node started with `params`.
    pub fn new(params: &ParamSet, pipeline: Pipeline) -> Self {
        let (params_tx, params_rx) = std::sync::mpsc::channel::<ParamSet>();
        // The running model's labels; a reload replaces them, so a bin table is always
        // checked against the model that will use it.
        let labels = Arc::new(Mutex::new(pipeline.classifier().metadata().labels.clone()));
        let check = {
            let labels = labels.clone();
            move |p: &ParamSet| {
                let cfg = SorterConfig::from_params(p)?;
                cfg.bins.check_labels(&labels.lock().unwrap_or_else(|e| e.into_inner()))
            }
        };
        let live = Arc::new(LiveParams::new(params, PARAMS, check, params_tx));
        Self { pipeline, labels, params_rx, live }
    }

    /// Starts the classification thread, which sends its results to `out`.
    pub fn start(
        self,
        cfg: SorterConfig,
        shift: ShiftInfo,
        out: impl Outlets + 'static,
    ) -> Result<Core> {
        let counters = Counters::with_keys(COUNTERS);
        let latest = Arc::new(Latest::<Arrival>::new());
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(None::<StreamState>));
        let shift = Arc::new(Mutex::new(shift));
        let (swaps, swap_rx) = std::sync::mpsc::channel::<Swap>();
        let worker = {
            let (latest, stop, counters) = (latest.clone(), stop.clone(), counters.clone());
            let mut controls = Controls {
                swaps: swap_rx,
                params: self.params_rx,
                shift: cfg.shift,
                labels: self.labels,
                state: state.clone(),
                info: shift.clone(),
            };
            let period = cfg.log_throttle_period;
            let pipeline = self.pipeline;
            std::thread::Builder::new()
                .name("classify".into())
                .spawn(move || {
                    classify_loop(pipeline, &latest, &stop, &counters, period, &out, &mut controls)
                })
                .context("cannot start the classification thread")?
        };
        Ok(Core {
            throttle: Mutex::new(Throttle::new(cfg.log_throttle_period)),
            cfg,
            shift,
            counters,
            latest,
            stop,
            enabled: AtomicBool::new(true),
            state,
            swaps,
            worker,
        })
    }
}

/// The running node, whatever its backend: frames go in through [`Core::admit`], service
/// requests through [`Core::set_enabled`] and [`Core::reload`].
pub struct Core {
    cfg: SorterConfig,
    /// The shift monitor's settings in force.
    shift: Arc<Mutex<ShiftInfo>>,
    counters: Counters,
    latest: Arc<Latest<Arrival>>,
    stop: Arc<AtomicBool>,
    enabled: AtomicBool,
    /// The shift monitor's stream state after the last frame.
    state: Arc<Mutex<Option<StreamState>>>,
    swaps: Sender<Swap>,
    worker: JoinHandle<()>,
    /// Rate limit of the log lines about malformed messages.
    throttle: Mutex<Throttle>,
}

impl Core {
    /// The node's checked start-up settings.
    pub fn cfg(&self) -> &SorterConfig {
        &self.cfg
    }

    /// Takes a received frame: counted, then dropped while paused, else handed to the
    /// classification thread (replacing a frame it has not started, which counts as skipped).
    pub fn admit(&self, frame: Frame, topic: &'static str) {
        self.counters.add("frames_received", 1);
        if !self.enabled.load(Ordering::SeqCst) {
            self.counters.add("frames_paused", 1);
        } else if self.latest.put(Arrival { frame, topic }) {
            self.counters.add("frames_skipped", 1);
        }
    }

    /// Counts a message on `topic` that could not be read, and says so at most once per
    /// `log_throttle_period`.
    pub fn malformed(&self, topic: &str, why: &dyn std::fmt::Debug) {
        self.counters.add("malformed_messages", 1);
        let held = self.throttle.lock().unwrap_or_else(|e| e.into_inner()).allow("malformed");
        if let Some(held) = held {
            tracing::warn!(
                "dropped a malformed {topic} message ({why:?}; {held} more since the last \
                 report); waiting for the next one"
            );
        }
    }

    /// `~/enable`: `false` pauses classification (frames are received and counted as
    /// `frames_paused`, nothing is classified or published), `true` resumes it.
    pub fn set_enabled(&self, on: bool) -> Answer {
        let was = self.enabled.swap(on, Ordering::SeqCst);
        let message = match (was, on) {
            (true, false) => "classification paused; incoming frames are counted and dropped",
            (false, true) => "classification resumed",
            (true, true) => "already classifying",
            (false, false) => "already paused",
        };
        tracing::info!("~/enable {on}: {message}");
        Answer { success: true, message: message.to_string() }
    }

    /// `~/reload_model`: loads the file at `model_path` again (e.g. after training wrote a
    /// new model there) off the classification thread, then swaps it in between two frames.
    /// A model that fails to load, or whose labels the bin table does not cover, is refused
    /// with the reason and the running one stays.
    pub async fn reload(&self) -> Answer {
        let (path, run) = (self.cfg.model_path.clone(), self.cfg.run);
        let loaded = tokio::task::spawn_blocking(move || Classifier::load_with(&path, run)).await;
        let outcome: Result<ShiftStatus, String> = match loaded {
            Ok(Ok(classifier)) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                match self.swaps.send(Swap { classifier, reply }) {
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
        match outcome {
            Ok(status) => {
                let monitor = match status {
                    ShiftStatus::On => "shift monitor on",
                    ShiftStatus::Off => "shift monitor off",
                    ShiftStatus::NoStatistics => "shift monitor off: no statistics in the model",
                };
                let message = format!("loaded {} ({monitor})", self.cfg.model_path.display());
                tracing::info!("~/reload_model: {message}");
                Answer { success: true, message }
            }
            Err(why) => {
                tracing::warn!("~/reload_model refused; the running model stays: {why}");
                Answer { success: false, message: why }
            }
        }
    }

    /// The `/diagnostics` message: the pipeline's counters and the shift monitor's state.
    pub fn diagnostics(&self, hardware_id: &str) -> DiagnosticArray {
        let state = *self.state.lock().unwrap_or_else(|p| p.into_inner());
        let shift = self.shift.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut msg = diagnostics_message(hardware_id, &self.counters, &self.cfg);
        msg.status[0].values.push(KeyValue {
            key: "enabled".into(),
            value: self.enabled.load(Ordering::SeqCst).to_string(),
        });
        msg.status.push(shift_status(hardware_id, &shift, state.as_ref()));
        msg
    }

    /// Stops the classification thread after its current frame and logs the totals.
    pub fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.worker.join().is_err() {
            tracing::error!("classification thread panicked");
        }
        let c = self.counters.snapshot();
        tracing::info!(
            "stopped after {} frames received, {} processed, {} skipped",
            c["frames_received"],
            c["frames_processed"],
            c["frames_skipped"]
        );
    }
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
    /// The shift monitor's stream state after the last frame, for `/diagnostics`.
    state: Arc<Mutex<Option<StreamState>>>,
    /// The shift monitor's settings in force (they change with parameters and models).
    info: Arc<Mutex<ShiftInfo>>,
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
                    let status = pipeline.with_shift(&cfg.shift)?;
                    self.shift = cfg.shift;
                    *state.lock().unwrap_or_else(|e| e.into_inner()) =
                        pipeline.shift().map(|c| c.state());
                    *self.info.lock().unwrap_or_else(|e| e.into_inner()) =
                        ShiftInfo::of(pipeline, status);
                }
                Ok(())
            });
            if let Err(e) = applied {
                tracing::error!("could not apply a parameter change ({e:#}); keeping the rest");
            }
        }
        while let Ok(Swap { classifier, reply }) = self.swaps.try_recv() {
            let result = pipeline.replace_classifier(classifier, &self.shift);
            if let Ok(status) = &result {
                *self.labels.lock().unwrap_or_else(|e| e.into_inner()) =
                    pipeline.classifier().metadata().labels.clone();
                *state.lock().unwrap_or_else(|e| e.into_inner()) =
                    pipeline.shift().map(|c| c.state());
                *self.info.lock().unwrap_or_else(|e| e.into_inner()) =
                    ShiftInfo::of(pipeline, status.clone());
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
    out: &impl Outlets,
    controls: &mut Controls,
) {
    let state = controls.state.clone();
    let state = state.as_ref();
    let mut throttle = Throttle::new(throttle_period);
    while !stop.load(Ordering::SeqCst) {
        // Between two frames, so no frame is half processed under one model or setting and
        // half under another.
        controls.apply(&mut pipeline, state);
        let Some(Arrival { frame, topic }) = latest.take_timeout(Duration::from_millis(100)) else {
            continue;
        };
        // A change acknowledged while we waited applies to this frame already.
        controls.apply(&mut pipeline, state);
        let stamp = frame.header().stamp;
        // libtorch's and OpenCV's bindings panic where they run out of memory in calls that
        // have no fallible form; one frame is lost, not the node's only classifying thread.
        let processed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipeline.process(&frame)));
        let processed = match processed {
            Ok(processed) => processed,
            Err(panic) => {
                counters.add("frames_rejected", 1);
                counters.add("rejected_panic", 1);
                if let Some(held) = throttle.allow("panic") {
                    let why = crate::panics::panic_message(panic.as_ref());
                    tracing::error!(
                        "processing the {topic} frame stamped {}.{:09} panicked ({why}; {held} \
                         more since the last report); dropped it, waiting for the next frame",
                        stamp.sec,
                        stamp.nanosec
                    );
                }
                continue;
            }
        };
        match processed {
            Ok(result) => {
                counters.add("frames_processed", 1);
                counters.add("coins_detected", result.detections.detections.len() as u64);
                if let Some(level) = result.shift_change
                    && let Some(now) = &result.shift
                {
                    log_shift_change(level, now);
                }
                if result.shift.is_some() {
                    *state.lock().unwrap_or_else(|p| p.into_inner()) = result.shift;
                }
                tracing::debug!(
                    "frame {}.{:09}: {} coins in {:?}",
                    stamp.sec,
                    stamp.nanosec,
                    result.commands.len(),
                    result.times.total
                );
                if let (true, Some(img)) = (out.wants_debug_image(), &result.image) {
                    let drawn = crate::annotate::draw(img, &result.detections)
                        .and_then(|m| out.debug_image(m));
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
                if let Err(e) = out.detections_2d(Detection2DArray::from(&result.detections)) {
                    counters.add("publish_failures", 1);
                    tracing::warn!("could not publish vision_msgs detections: {e:#}");
                }
                if let Err(e) = out.detections(result.detections) {
                    counters.add("publish_failures", 1);
                    tracing::warn!("could not publish detections: {e:#}");
                }
                for cmd in result.commands {
                    match out.sort_command(cmd) {
                        Ok(()) => counters.add("sort_commands_sent", 1),
                        Err(e) => {
                            counters.add("publish_failures", 1);
                            tracing::warn!("could not publish a sort command: {e:#}");
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
