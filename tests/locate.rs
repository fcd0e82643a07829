//! Coin location measured on the real `coins-photos` set, shrunk to the bag frames' 640 px.

mod common;

use coin_sorter::locate::{DEFAULT_LOCATE, locate};

#[test]
fn finds_most_labelled_coins_in_coins_photos() {
    let scenes = common::photo_scenes();
    assert_eq!(scenes.len(), 30);
    let (mut labelled, mut found, mut detections) = (0, 0, 0);
    for (path, coins) in &scenes {
        let (img, scale) = common::load_rgb(path, 640);
        let circles = locate(&img, &DEFAULT_LOCATE).unwrap();
        detections += circles.len();
        for c in coins {
            let (x, y, r) = (c.x * scale, c.y * scale, c.r * scale);
            labelled += 1;
            let hit =
                circles.iter().any(|d| ((d.x - x).powi(2) + (d.y - y).powi(2)).sqrt() <= 0.5 * r);
            if hit {
                found += 1;
            } else {
                eprintln!("missed {} at ({x:.0},{y:.0}) r={r:.0} in {}", c.label, path.display());
            }
        }
    }
    let share = found as f64 / labelled as f64;
    eprintln!(
        "coin location: {found}/{labelled} labelled coins found ({:.1}%), {detections} detections",
        share * 100.0
    );
    assert_eq!(labelled, 53);
    // Measured with the defaults (search at 320 px): all 53 found, with 53 detections in all.
    // At 640 px it was 52 of 53 with 52 detections, in five times the time.
    assert_eq!(found, 53, "found {found}/{labelled}");
    assert!(detections <= 56, "{detections} detections: the finder reports spurious circles");
}
