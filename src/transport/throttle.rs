//! Rate-limited logging, so a flood of bad frames yields one line per kind per period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Decides, per key, whether a log line may be written now. Invariant: at most one `Some` per
/// key per `period`; the suppressed count is reported with the next line.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: HashMap<String, (Instant, u64)>,
}

impl Throttle {
    /// A throttle letting one line per key through every `period`.
    pub fn new(period: Duration) -> Self {
        Self { period, last: HashMap::new() }
    }

    /// `Some(suppressed)` when a line for `key` may be logged now, with how many were held
    /// back since the last one; `None` when it must be suppressed.
    pub fn allow(&mut self, key: &str) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(key) {
            Some((t, held)) if now.duration_since(*t) < self.period => {
                *held += 1;
                None
            }
            Some((t, held)) => {
                let n = *held;
                *t = now;
                *held = 0;
                Some(n)
            }
            None => {
                self.last.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_period() {
        let mut t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow("a"), Some(0));
        assert_eq!(t.allow("a"), None);
        assert_eq!(t.allow("a"), None);
        assert_eq!(t.allow("b"), Some(0));
        let mut t = Throttle::new(Duration::ZERO);
        assert_eq!(t.allow("a"), Some(0));
        assert_eq!(t.allow("a"), Some(0));
    }
}
