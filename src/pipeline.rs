//! The node's work on one frame, free of any transport: decode → locate → crop → classify →
//! monitor → track → decide. The ROS node, `eval` and the benchmarks all call
//! [`Pipeline::process`], so offline figures describe exactly what the robot runs.

use std::time::{Duration, Instant};

use crate::bag::cdr::decode_cdr;
use crate::classify::crop::crop_coins;
use crate::classify::model::Classifier;
use crate::decide::BinTable;
use crate::decode::{self, DecodeError, RgbImage};
use crate::locate::{self, LocateParams};
use crate::monitor::check::{ShiftCheck, ShiftSettings};
use crate::monitor::stream::{ShiftLevel, StreamState};
use crate::msgs::RosMessage;
use crate::msgs::coin_sorter::{CoinDetection, CoinDetectionArray, SortCommand};
use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::msgs::std_msgs::{Header, Time};
use crate::track::{Observation, TrackParams, Tracker, Verdict};

/// A frame as it arrives: raw or compressed.
#[derive(Debug, Clone)]
pub enum Frame {
    Raw(Image),
    Compressed(CompressedImage),
}

impl Frame {
    /// Whether `type_name` (`pkg/msg/Name`) is a message type a frame can hold.
    pub fn is_image_type(type_name: &str) -> bool {
        type_name == Image::ros_type() || type_name == CompressedImage::ros_type()
    }

    /// Decodes the CDR payload of a recorded or received message of `type_name`. Fails on
    /// another type or malformed CDR.
    pub fn from_cdr(type_name: &str, data: &[u8]) -> anyhow::Result<Self> {
        if type_name == Image::ros_type() {
            Ok(Self::Raw(decode_cdr(data)?))
        } else if type_name == CompressedImage::ros_type() {
            Ok(Self::Compressed(decode_cdr(data)?))
        } else {
            anyhow::bail!("{type_name} is not an image type")
        }
    }

    /// The frame's header (stamp and frame_id).
    pub fn header(&self) -> &Header {
        match self {
            Self::Raw(m) => &m.header,
            Self::Compressed(m) => &m.header,
        }
    }

    /// Decodes the frame to RGB.
    pub fn decode(&self) -> Result<RgbImage, DecodeError> {
        match self {
            Self::Raw(m) => decode::decode_image(m),
            Self::Compressed(m) => decode::decode_compressed(m),
        }
    }
}

/// Time spent in each stage of one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub decode: Duration,
    pub locate: Duration,
    pub crop: Duration,
    /// Normalising, the forward pass and reading its output back.
    pub classify: Duration,
    /// The part of `classify` spent normalising the crops.
    pub normalise: Duration,
    /// The part of `classify` spent in the model's forward pass.
    pub forward: Duration,
    /// Everything: the stages above, then the shift monitor, tracking and bin decisions.
    pub total: Duration,
}

/// What one frame produced: the detections message, the sort commands decided in this frame
/// (one per coin with tracking off; one per physical coin, when its vote is confident or it
/// leaves the view, with tracking on), and the shift monitor's stream state.
#[derive(Debug, Clone)]
pub struct FrameOutput {
    pub detections: CoinDetectionArray,
    pub commands: Vec<SortCommand>,
    pub times: StageTimes,
    /// The stream state after this frame; `None` with the monitor off.
    pub shift: Option<StreamState>,
    /// The new level when this frame changed it.
    pub shift_change: Option<ShiftLevel>,
    /// The decoded frame, when [`Pipeline::keep_images`] asked for it.
    pub image: Option<RgbImage>,
}

/// Why a frame produced nothing. Decode errors are the sender's fault; the others are ours.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("coin location failed: {0:#}")]
    Locate(anyhow::Error),
    #[error("classification failed: {0:#}")]
    Classify(anyhow::Error),
}

impl FrameError {
    /// Short stable name of the error kind, used as a diagnostics counter key.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Decode(e) => e.kind(),
            Self::Locate(_) => "locate_failed",
            Self::Classify(_) => "classify_failed",
        }
    }
}

/// The shift check `settings` give for `classifier`'s model, and whether the monitor is on.
fn shift_check(
    classifier: &Classifier,
    settings: &ShiftSettings,
) -> anyhow::Result<(Option<ShiftCheck>, ShiftStatus)> {
    let Some(kind) = settings.kind else { return Ok((None, ShiftStatus::Off)) };
    let Some(stats) = &classifier.metadata().monitor else {
        return Ok((None, ShiftStatus::NoStatistics));
    };
    Ok((Some(ShiftCheck::new(stats, kind, settings)?), ShiftStatus::On))
}

/// The per-frame pipeline with its model and settings.
#[derive(Debug)]
pub struct Pipeline {
    classifier: Classifier,
    locate: LocateParams,
    bins: BinTable,
    shift: Option<ShiftCheck>,
    tracker: Option<Tracker>,
    next_coin_id: u32,
    keep_images: bool,
}

/// Whether the shift monitor runs, and why not when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShiftStatus {
    On,
    /// Turned off by the `shift_score` setting.
    Off,
    /// The model's metadata has no monitor statistics (exported before the monitor existed).
    NoStatistics,
}

impl Pipeline {
    /// Builds a pipeline with the shift monitor and tracking off; fails when the bin table
    /// lacks a bin for some model label.
    ///
    /// Also keeps OpenCV, process-wide, on the thread that calls it. Its worker threads would
    /// otherwise keep spinning after each coin search while libtorch's forward pass needs
    /// every core: with them, `bench pipeline` sustained 6% fewer frames per second here.
    pub fn new(
        classifier: Classifier,
        locate: LocateParams,
        bins: BinTable,
    ) -> anyhow::Result<Self> {
        bins.check_labels(&classifier.metadata().labels)?;
        opencv::core::set_num_threads(1)?;
        Ok(Self {
            classifier,
            locate,
            bins,
            shift: None,
            tracker: None,
            next_coin_id: 1,
            keep_images: false,
        })
    }

    /// Turns the shift monitor on with `settings` when the model carries statistics and the
    /// settings name a score; says which happened. Fails on settings the model cannot serve.
    pub fn with_shift(&mut self, settings: &ShiftSettings) -> anyhow::Result<ShiftStatus> {
        let (check, status) = shift_check(&self.classifier, settings)?;
        self.shift = check;
        Ok(status)
    }

    /// Swaps in another model between two frames. The bin table must cover its labels; the
    /// shift monitor restarts on its statistics with `shift`; tracks are kept when the labels
    /// are the same and start afresh otherwise. On error nothing changes.
    pub fn replace_classifier(
        &mut self,
        classifier: Classifier,
        shift: &ShiftSettings,
    ) -> anyhow::Result<ShiftStatus> {
        self.bins.check_labels(&classifier.metadata().labels)?;
        let (check, status) = shift_check(&classifier, shift)?;
        if classifier.metadata().labels != self.classifier.metadata().labels
            && let Some(t) = &mut self.tracker
        {
            *t = Tracker::new(*t.params())?;
        }
        self.classifier = classifier;
        self.shift = check;
        Ok(status)
    }

    /// Turns tracking on (one command per physical coin) or off (one per detection).
    pub fn with_tracking(&mut self, params: Option<TrackParams>) -> anyhow::Result<()> {
        self.tracker = params.map(Tracker::new).transpose()?;
        Ok(())
    }

    /// Whether [`FrameOutput::image`] carries the decoded frame (for a debug image); off, the
    /// frame is dropped after classification as before.
    pub fn keep_images(&mut self, keep: bool) {
        self.keep_images = keep;
    }

    /// Changes the tracking settings, keeping the live tracks; does nothing with tracking off.
    pub fn set_track_params(&mut self, params: TrackParams) -> anyhow::Result<()> {
        match &mut self.tracker {
            Some(t) => t.set_params(params),
            None => Ok(()),
        }
    }

    /// The shift check in use, if the monitor is on.
    pub fn shift(&self) -> Option<&ShiftCheck> {
        self.shift.as_ref()
    }

    /// The loaded classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Replaces the bin table (a run-time parameter change); refused if labels lack bins.
    pub fn set_bins(&mut self, bins: BinTable) -> anyhow::Result<()> {
        bins.check_labels(&self.classifier.metadata().labels)?;
        self.bins = bins;
        Ok(())
    }

    /// Replaces the coin finder settings.
    pub fn set_locate(&mut self, locate: LocateParams) {
        self.locate = locate;
    }

    /// Ends the stream: with tracking on, the commands for coins still in view that were seen
    /// often enough but not yet decided. `header` supplies the frame id.
    pub fn finish(&mut self, header: &Header) -> Vec<SortCommand> {
        let verdicts = self.tracker.as_mut().map(Tracker::finish).unwrap_or_default();
        verdicts.iter().map(|v| self.command_for(header, v)).collect()
    }

    /// The sort command for a tracked coin's verdict, stamped with the frame it was last seen
    /// in. A coin that looked unlike the training data in most frames goes to the reject bin.
    fn command_for(&self, header: &Header, v: &Verdict) -> SortCommand {
        let label = self.classifier.metadata().labels.get(v.class).cloned().unwrap_or_default();
        let bin = if v.out_of_distribution() {
            self.bins.reject_bin().to_string()
        } else {
            self.bins.decide(&label, v.confidence).bin
        };
        SortCommand {
            header: Header {
                stamp: Time::from_nanos(v.stamp_ns),
                frame_id: header.frame_id.clone(),
            },
            coin_id: v.id,
            label,
            bin,
            confidence: v.confidence,
            frames_seen: v.frames,
            x: v.x,
            y: v.y,
            radius: v.r,
        }
    }

    /// Runs every stage on one frame. Coin ids increase across frames and are never reused.
    pub fn process(&mut self, frame: &Frame) -> Result<FrameOutput, FrameError> {
        let t0 = Instant::now();
        let img = frame.decode()?;
        let t1 = Instant::now();
        let circles = locate::locate(&img, &self.locate).map_err(FrameError::Locate)?;
        let t2 = Instant::now();
        let meta = self.classifier.metadata();
        let crops = crop_coins(&img, &circles, meta.crop_scale, meta.input_size)
            .map_err(FrameError::Locate)?;
        let t3 = Instant::now();
        let (preds, classify_times) =
            self.classifier.classify_rgb_timed(&crops).map_err(FrameError::Classify)?;
        let t4 = Instant::now();
        let header = frame.header().clone();
        let labels = &meta.labels;
        let mut shift_change = None;
        let mut observations = Vec::with_capacity(circles.len());
        let mut detections = Vec::with_capacity(circles.len());
        for (c, p) in circles.iter().zip(&preds) {
            let label = labels[p.class].clone();
            let scaled = self.shift.as_ref().and_then(|s| s.scaled(&p.logits, &p.features));
            if let (Some(check), Some(scaled)) = (self.shift.as_mut(), scaled) {
                shift_change = check.push(scaled).or(shift_change);
            }
            let unfamiliar = scaled.is_some_and(|s| s > 1.0);
            let decision = self.bins.decide(&label, p.confidence);
            detections.push(CoinDetection {
                coin_id: 0,
                label,
                confidence: p.confidence,
                bin: if unfamiliar { self.bins.reject_bin().to_string() } else { decision.bin },
                rejected: unfamiliar || decision.rejected,
                shift_score: scaled.unwrap_or(0.0),
                out_of_distribution: unfamiliar,
                x: c.x,
                y: c.y,
                radius: c.r,
            });
            observations.push(Observation {
                x: c.x,
                y: c.y,
                r: c.r,
                probs: p.probs.clone(),
                out_of_distribution: unfamiliar,
            });
        }
        let commands = match self.tracker.as_mut() {
            Some(tracker) => {
                let stamp = header.stamp.as_nanos();
                let step = tracker.update(stamp, img.width, img.height, &observations);
                for (d, id) in detections.iter_mut().zip(step.ids) {
                    d.coin_id = id;
                }
                step.verdicts.iter().map(|v| self.command_for(&header, v)).collect()
            }
            None => {
                for d in &mut detections {
                    d.coin_id = self.next_coin_id;
                    self.next_coin_id = self.next_coin_id.wrapping_add(1).max(1);
                }
                detections.iter().map(|d| SortCommand::for_detection(&header, d)).collect()
            }
        };
        let t5 = Instant::now();
        Ok(FrameOutput {
            detections: CoinDetectionArray { header, detections },
            commands,
            times: StageTimes {
                decode: t1 - t0,
                locate: t2 - t1,
                crop: t3 - t2,
                classify: t4 - t3,
                normalise: classify_times.normalise,
                forward: classify_times.forward,
                total: t5 - t0,
            },
            shift: self.shift.as_ref().map(ShiftCheck::state),
            shift_change,
            image: self.keep_images.then_some(img),
        })
    }
}
