//! A one-slot mailbox holding only the newest frame, so a slow consumer skips frames instead
//! of growing a queue.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Holds at most one value. Invariant: memory never grows with the producer's rate.
#[derive(Debug, Default)]
pub struct Latest<T> {
    slot: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Latest<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Self { slot: Mutex::new(None), ready: Condvar::new() }
    }

    /// Stores `v`, replacing any value not yet taken; returns true when one was replaced.
    pub fn put(&self, v: T) -> bool {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let replaced = slot.replace(v).is_some();
        self.ready.notify_one();
        replaced
    }

    /// Takes the value, waiting up to `timeout` for one.
    pub fn take_timeout(&self, timeout: Duration) -> Option<T> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        slot.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_value() {
        let l = Latest::new();
        assert!(!l.put(1));
        assert!(l.put(2));
        assert!(l.put(3));
        assert_eq!(l.take_timeout(Duration::ZERO), Some(3));
        assert_eq!(l.take_timeout(Duration::from_millis(1)), None);
    }
}
