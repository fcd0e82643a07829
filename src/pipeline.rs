//! The node's work on one frame, free of any transport: decode → locate → crop → classify →
//! decide. The ROS node, `eval` and the benchmarks all call [`Pipeline::process`], so offline
//! figures describe exactly what the robot runs.

use std::time::{Duration, Instant};

use crate::bag::cdr::decode_cdr;
use crate::classify::crop::crop_coins;
use crate::classify::model::Classifier;
use crate::decide::BinTable;
use crate::decode::{self, DecodeError, RgbImage};
use crate::locate::{self, LocateParams};
use crate::msgs::RosMessage;
use crate::msgs::coin_sorter::{CoinDetection, CoinDetectionArray, SortCommand};
use crate::msgs::sensor_msgs::{CompressedImage, Image};
use crate::msgs::std_msgs::Header;

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
    pub classify: Duration,
    pub total: Duration,
}

/// What one frame produced: the detections message and one sort command per coin.
#[derive(Debug, Clone)]
pub struct FrameOutput {
    pub detections: CoinDetectionArray,
    pub commands: Vec<SortCommand>,
    pub times: StageTimes,
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

/// The per-frame pipeline with its model and settings.
#[derive(Debug)]
pub struct Pipeline {
    classifier: Classifier,
    locate: LocateParams,
    bins: BinTable,
    next_coin_id: u32,
}

impl Pipeline {
    /// Builds a pipeline; fails when the bin table lacks a bin for some model label.
    pub fn new(
        classifier: Classifier,
        locate: LocateParams,
        bins: BinTable,
    ) -> anyhow::Result<Self> {
        bins.check_labels(&classifier.metadata().labels)?;
        Ok(Self { classifier, locate, bins, next_coin_id: 1 })
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
        let preds = self.classifier.classify_rgb(&crops).map_err(FrameError::Classify)?;
        let t4 = Instant::now();
        let header = frame.header().clone();
        let mut detections = Vec::with_capacity(circles.len());
        for (c, p) in circles.iter().zip(&preds) {
            let label = meta.labels[p.class].clone();
            let decision = self.bins.decide(&label, p.confidence);
            detections.push(CoinDetection {
                coin_id: self.next_coin_id,
                label,
                confidence: p.confidence,
                bin: decision.bin,
                rejected: decision.rejected,
                x: c.x,
                y: c.y,
                radius: c.r,
            });
            self.next_coin_id = self.next_coin_id.wrapping_add(1).max(1);
        }
        let commands = detections.iter().map(|d| SortCommand::for_detection(&header, d)).collect();
        let t5 = Instant::now();
        Ok(FrameOutput {
            detections: CoinDetectionArray { header, detections },
            commands,
            times: StageTimes {
                decode: t1 - t0,
                locate: t2 - t1,
                crop: t3 - t2,
                classify: t4 - t3,
                total: t5 - t0,
            },
        })
    }
}
