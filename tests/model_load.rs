//! Loading a model leaves no OpenMP thread team behind on the thread that asked for it: the
//! node's forward passes stay the only ones libgomp manages, so its workers keep spinning
//! between parallel regions instead of sleeping (see `Classifier::load`). One test in its own
//! process, since it counts the process's threads.

mod common;

use std::time::{Duration, Instant};

use coin_sorter::classify::device::DevicePref;
use coin_sorter::classify::model::Classifier;

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Waits up to 5 s for the thread count to come back to `want`; returns the last count.
fn settle_to(want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = threads();
        if now == want || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn loading_leaves_no_thread_team_behind() {
    let dir = tempfile::tempdir().unwrap();
    tch::set_num_threads(2);
    // Trained on a thread of its own, so this thread has no team of its own yet.
    let model = std::thread::scope(|s| s.spawn(|| common::tiny_model(dir.path())).join()).unwrap();
    let before = settle_to(threads());

    let classifier = Classifier::load(&model, DevicePref::Cpu).unwrap();
    assert_eq!(settle_to(before), before, "threads before the load and after it");

    // The check above means something only if a forward pass here starts a team.
    let side = classifier.metadata().input_size as usize;
    let crops = vec![128u8; 64 * side * side * 3];
    assert_eq!(classifier.classify_rgb(&crops).unwrap().len(), 64);
    assert!(threads() > before, "a forward pass on this thread started no OpenMP workers");
}
