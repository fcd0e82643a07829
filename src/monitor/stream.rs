//! The stream's state: how many of the last coins looked unlike the training data.

use std::collections::VecDeque;

use anyhow::{Result, ensure};

/// Level of the stream state, in `/diagnostics` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShiftLevel {
    Ok,
    Warn,
    Error,
}

impl ShiftLevel {
    /// The `diagnostic_msgs/DiagnosticStatus` level byte.
    pub fn diagnostic_level(self) -> u8 {
        use crate::msgs::diagnostic_msgs::DiagnosticStatus as D;
        match self {
            Self::Ok => D::OK,
            Self::Warn => D::WARN,
            Self::Error => D::ERROR,
        }
    }

    /// The level a `DiagnosticStatus` level byte stands for (STALE and unknown bytes: none).
    pub fn from_diagnostic_level(level: u8) -> Option<Self> {
        [Self::Ok, Self::Warn, Self::Error].into_iter().find(|l| l.diagnostic_level() == level)
    }

    /// Upper-case name, as ROS prints levels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

/// When the stream state changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamParams {
    /// Coins the state looks back over.
    pub window: usize,
    /// Coins needed before the state leaves OK, so that one odd first coin cannot raise it.
    pub min_coins: usize,
    /// Share of flagged coins in the window at which the state is WARN.
    pub warn_fraction: f64,
    /// Share at which it is ERROR.
    pub error_fraction: f64,
}

impl StreamParams {
    /// Checks `1 <= min_coins <= window` and `0 < warn_fraction <= error_fraction <= 1`.
    pub fn check(&self) -> Result<()> {
        ensure!(self.window >= 1, "shift_window {} must be at least 1", self.window);
        ensure!(
            (1..=self.window).contains(&self.min_coins),
            "shift_min_coins {} must be between 1 and shift_window {}",
            self.min_coins,
            self.window
        );
        ensure!(
            self.warn_fraction > 0.0
                && self.warn_fraction <= self.error_fraction
                && self.error_fraction <= 1.0,
            "need 0 < shift_warn_fraction ({}) <= shift_error_fraction ({}) <= 1",
            self.warn_fraction,
            self.error_fraction
        );
        Ok(())
    }
}

/// A snapshot of the stream state, with the numbers behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamState {
    pub level: ShiftLevel,
    /// Coins in the window.
    pub coins: usize,
    /// Of those, coins above the threshold.
    pub flagged: usize,
    /// Median scaled shift score in the window (0 when empty).
    pub median_score: f32,
    /// Coins scored since start.
    pub total_coins: u64,
    /// Coins above the threshold since start.
    pub total_flagged: u64,
}

impl StreamState {
    /// Share of flagged coins in the window (0 when empty).
    pub fn fraction(&self) -> f64 {
        if self.coins == 0 { 0.0 } else { self.flagged as f64 / self.coins as f64 }
    }
}

/// Rolling state over the last coins. Invariant: holds at most `params.window` coins.
#[derive(Debug, Clone)]
pub struct StreamMonitor {
    params: StreamParams,
    recent: VecDeque<(bool, f32)>,
    level: ShiftLevel,
    total_coins: u64,
    total_flagged: u64,
}

impl StreamMonitor {
    /// An empty monitor in state OK; fails on parameters [`StreamParams::check`] refuses.
    pub fn new(params: StreamParams) -> Result<Self> {
        params.check()?;
        Ok(Self {
            params,
            recent: VecDeque::with_capacity(params.window),
            level: ShiftLevel::Ok,
            total_coins: 0,
            total_flagged: 0,
        })
    }

    /// Adds one coin (its scaled score, flagged when above 1) and returns the new level if it
    /// changed.
    pub fn push(&mut self, scaled_score: f32) -> Option<ShiftLevel> {
        let flagged = scaled_score > 1.0;
        if self.recent.len() == self.params.window {
            self.recent.pop_front();
        }
        self.recent.push_back((flagged, scaled_score));
        self.total_coins += 1;
        self.total_flagged += u64::from(flagged);
        let state = self.state();
        let level = if state.coins < self.params.min_coins {
            ShiftLevel::Ok
        } else if state.fraction() >= self.params.error_fraction {
            ShiftLevel::Error
        } else if state.fraction() >= self.params.warn_fraction {
            ShiftLevel::Warn
        } else {
            ShiftLevel::Ok
        };
        (level != std::mem::replace(&mut self.level, level)).then_some(level)
    }

    /// The current state.
    pub fn state(&self) -> StreamState {
        let mut scores: Vec<f32> = self.recent.iter().map(|r| r.1).collect();
        scores.sort_by(f32::total_cmp);
        StreamState {
            level: self.level,
            coins: self.recent.len(),
            flagged: self.recent.iter().filter(|r| r.0).count(),
            median_score: scores.get(scores.len() / 2).copied().unwrap_or(0.0),
            total_coins: self.total_coins,
            total_flagged: self.total_flagged,
        }
    }

    /// The parameters it runs with.
    pub fn params(&self) -> &StreamParams {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> StreamParams {
        StreamParams { window: 10, min_coins: 4, warn_fraction: 0.3, error_fraction: 0.6 }
    }

    #[test]
    fn level_follows_the_flagged_share_of_the_window() {
        let mut m = StreamMonitor::new(params()).unwrap();
        // Three flagged coins, but fewer than min_coins seen: still OK.
        assert_eq!((0..3).filter_map(|_| m.push(2.0)).count(), 0);
        assert_eq!(m.push(0.1), Some(ShiftLevel::Error), "3 of 4 flagged");
        for _ in 0..3 {
            m.push(0.1);
        }
        assert_eq!(m.state().flagged, 3);
        assert_eq!(m.state().level, ShiftLevel::Warn, "3 of 7 flagged");
        let changes: Vec<_> = (0..7).filter_map(|_| m.push(0.2)).collect();
        assert_eq!(changes, vec![ShiftLevel::Ok], "the flagged coins left the window");
        let s = m.state();
        assert_eq!((s.coins, s.flagged, s.total_coins, s.total_flagged), (10, 0, 14, 3));
        assert_eq!(s.median_score, 0.2);
    }

    #[test]
    fn diagnostic_levels_round_trip() {
        for l in [ShiftLevel::Ok, ShiftLevel::Warn, ShiftLevel::Error] {
            assert_eq!(ShiftLevel::from_diagnostic_level(l.diagnostic_level()), Some(l));
        }
        assert_eq!(ShiftLevel::from_diagnostic_level(3), None, "STALE is no shift level");
    }

    #[test]
    fn impossible_parameters_are_refused_with_the_value() {
        let bad = StreamParams { min_coins: 11, ..params() };
        assert!(StreamMonitor::new(bad).unwrap_err().to_string().contains("11"));
        let bad = StreamParams { warn_fraction: 0.7, ..params() };
        assert!(StreamMonitor::new(bad).is_err());
        let bad = StreamParams { window: 0, ..params() };
        assert!(StreamMonitor::new(bad).is_err());
    }
}
