//! The node's use of the monitor: score each coin, flag it, and keep the stream state.

use anyhow::{Context, Result};

use super::score::{ScoreKind, ShiftScorer, Threshold};
use super::stats::MonitorStats;
use super::stream::{ShiftLevel, StreamMonitor, StreamParams, StreamState};

/// What the node is told about the monitor (its parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftSettings {
    /// Score to judge coins by; `None` turns the monitor off.
    pub kind: Option<ScoreKind>,
    /// Validation quantile used as the coin threshold.
    pub quantile: f64,
    /// When the stream state changes.
    pub stream: StreamParams,
}

/// The defaults: the feature-space score (see docs/shift-monitor.md for why), a threshold at
/// the 99th percentile of validation crops, WARN at 30% and ERROR at 60% of the last 20
/// coins, after at least 5 coins.
pub const DEFAULT_SHIFT: ShiftSettings = ShiftSettings {
    kind: Some(ScoreKind::Mahalanobis),
    quantile: 0.99,
    stream: StreamParams { window: 20, min_coins: 5, warn_fraction: 0.3, error_fraction: 0.6 },
};

/// A model's statistics turned into a per-coin check plus the rolling stream state.
#[derive(Debug, Clone)]
pub struct ShiftCheck {
    scorer: ShiftScorer,
    threshold: Threshold,
    stream: StreamMonitor,
}

impl ShiftCheck {
    /// Builds the check from a model's statistics and the settings; fails on settings the
    /// statistics cannot serve.
    pub fn new(stats: &MonitorStats, kind: ScoreKind, settings: &ShiftSettings) -> Result<Self> {
        let threshold = Threshold::from_validation(stats, kind, settings.quantile)?;
        let scorer = ShiftScorer::new(stats.clone())?;
        let stream = StreamMonitor::new(settings.stream).context("shift stream settings")?;
        Ok(Self { scorer, threshold, stream })
    }

    /// The coin's scaled score (0: median validation crop, 1: threshold), or `None` when the
    /// score needs features the crop lacks.
    pub fn scaled(&self, logits: &[f32], features: &[f32]) -> Option<f32> {
        let raw = self.scorer.scores(logits, features).get(self.threshold.kind)?;
        Some(self.threshold.scale(raw))
    }

    /// Adds a coin's scaled score to the stream; returns the new level if it changed.
    pub fn push(&mut self, scaled: f32) -> Option<ShiftLevel> {
        self.stream.push(scaled)
    }

    /// The stream state now.
    pub fn state(&self) -> StreamState {
        self.stream.state()
    }

    /// The threshold in use.
    pub fn threshold(&self) -> &Threshold {
        &self.threshold
    }

    /// The stream settings in use.
    pub fn stream_params(&self) -> &StreamParams {
        self.stream.params()
    }
}
