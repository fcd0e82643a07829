//! One sort command per physical coin: moving-coin sequences built from real `coins-mobile`
//! crops pasted on a background, run through the node's coin finder and tracker.
//!
//! The classifier is scripted (right most frames, confidently wrong every third frame) so the
//! test knows that single frames are wrong and can check that the vote is not.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use coin_sorter::decode::RgbImage;
use coin_sorter::locate::{DEFAULT_LOCATE, locate};
use coin_sorter::track::{DEFAULT_TRACK, Observation, Reason, TrackParams, Tracker, Verdict};
use image::imageops::FilterType;

const W: u32 = 640;
const H: u32 = 480;
/// Coin radius in the frames, pixels.
const R: f32 = 36.0;
/// Frames per second of the synthetic camera.
const FPS: i64 = 10;
const CLASSES: [&str; 4] = ["10c", "1e", "2e", "50c"];

/// One pasted coin: class, the frames it is in, and its centre at each of them.
struct Coin {
    class: usize,
    frames: std::ops::Range<usize>,
    start: (f32, f32),
    /// Pixels per frame.
    step: (f32, f32),
    /// Scripted confidence of the right class (frames where it is not wrong).
    confidence: f32,
}

impl Coin {
    fn at(&self, frame: usize) -> Option<(f32, f32)> {
        self.frames.contains(&frame).then(|| {
            let k = (frame - self.frames.start) as f32;
            (self.start.0 + self.step.0 * k, self.start.1 + self.step.1 * k)
        })
    }
}

/// The first crop of each class, as a disc of radius `R` with its pixels.
fn coin_discs() -> Vec<image::RgbImage> {
    let root = common::shared_data().join("coins-mobile");
    CLASSES
        .iter()
        .map(|c| {
            let mut files: Vec<_> =
                std::fs::read_dir(root.join(c)).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            let crop = image::open(&files[0]).unwrap().into_rgb8();
            // The crops frame each coin with about 10% margin.
            let side = (2.0 * R * 1.1).round() as u32;
            image::imageops::resize(&crop, side, side, FilterType::Triangle)
        })
        .collect()
}

/// Draws the frame: a plain grey-beige belt with a faint texture, and every coin in view.
fn render(coins: &[Coin], discs: &[image::RgbImage], frame: usize) -> RgbImage {
    let mut data = Vec::with_capacity((W * H * 3) as usize);
    for y in 0..H {
        for x in 0..W {
            let t = ((x * 7 + y * 13) % 11) as u8;
            data.extend([176 + t, 170 + t, 158 + t]);
        }
    }
    for coin in coins {
        let Some((cx, cy)) = coin.at(frame) else { continue };
        let disc = &discs[coin.class];
        let half = disc.width() as f32 / 2.0;
        for (dx, dy, p) in disc.enumerate_pixels() {
            let (ox, oy) = (dx as f32 + 0.5 - half, dy as f32 + 0.5 - half);
            if ox.hypot(oy) > R {
                continue;
            }
            let (x, y) = ((cx + ox).floor() as i64, (cy + oy).floor() as i64);
            if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
                let i = ((y as u32 * W + x as u32) * 3) as usize;
                data[i..i + 3].copy_from_slice(&p.0);
            }
        }
    }
    RgbImage { width: W, height: H, data }
}

/// What a run gave: every verdict, the coin each track id belongs to, and how many frames each
/// coin was found in.
struct Outcome {
    verdicts: Vec<Verdict>,
    coin_of_id: BTreeMap<u32, usize>,
    found: Vec<usize>,
    wrong_frames: Vec<usize>,
}

/// Runs the sequence through the coin finder, the scripted classifier and the tracker.
fn run(coins: &[Coin], frames: usize, params: TrackParams) -> Outcome {
    let discs = coin_discs();
    let mut tracker = Tracker::new(params).unwrap();
    let mut out = Outcome {
        verdicts: Vec::new(),
        coin_of_id: BTreeMap::new(),
        found: vec![0; coins.len()],
        wrong_frames: vec![0; coins.len()],
    };
    let mut last_new_id = 0;
    for f in 0..frames {
        let img = render(coins, discs.as_slice(), f);
        let circles = locate(&img, &DEFAULT_LOCATE).unwrap();
        let mut obs = Vec::new();
        let mut owner = Vec::new();
        for c in &circles {
            let near = coins.iter().position(|coin| {
                coin.at(f).is_some_and(|(x, y)| (c.x - x).hypot(c.y - y) <= 0.5 * R)
            });
            let Some(k) = near else {
                panic!("frame {f}: circle {c:?} is no coin of the sequence");
            };
            let coin = &coins[k];
            let seen = out.found[k];
            out.found[k] += 1;
            let mut probs = vec![0.0f32; CLASSES.len()];
            if seen % 3 == 2 {
                // Confidently wrong: the next class gets 0.7.
                out.wrong_frames[k] += 1;
                probs[(coin.class + 1) % CLASSES.len()] = 0.7;
                probs[coin.class] = 0.3;
            } else {
                probs[coin.class] = coin.confidence;
                probs[(coin.class + 2) % CLASSES.len()] = 1.0 - coin.confidence;
            }
            obs.push(Observation { x: c.x, y: c.y, r: c.r, probs, out_of_distribution: false });
            owner.push(k);
        }
        let step = tracker.update(f as i64 * 1_000_000_000 / FPS, W, H, &obs);
        for (id, k) in step.ids.iter().zip(&owner) {
            match out.coin_of_id.insert(*id, *k) {
                Some(before) => assert_eq!(before, *k, "frame {f}: id {id} moved to another coin"),
                None => {
                    assert!(*id > last_new_id, "frame {f}: id {id} is not new");
                    last_new_id = *id;
                }
            }
        }
        out.verdicts.extend(step.verdicts);
    }
    out.verdicts.extend(tracker.finish());
    out
}

/// Checks one verdict per coin seen in at least two frames, none for the others, each with
/// the right class, and one id per coin.
fn check(coins: &[Coin], out: &Outcome) -> BTreeMap<usize, Verdict> {
    let mut by_coin: BTreeMap<usize, Verdict> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for v in &out.verdicts {
        assert!(ids.insert(v.id), "two verdicts for id {}", v.id);
        let k = out.coin_of_id[&v.id];
        assert!(by_coin.insert(k, v.clone()).is_none(), "two verdicts for coin {k}");
        assert_eq!(CLASSES[v.class], CLASSES[coins[k].class], "coin {k} voted wrong: {v:?}");
    }
    for (k, coin) in coins.iter().enumerate() {
        let ids_of_coin = out.coin_of_id.values().filter(|c| **c == k).count();
        if out.found[k] >= 2 {
            assert!(by_coin.contains_key(&k), "coin {k} ({}) got no command", CLASSES[coin.class]);
            assert_eq!(ids_of_coin, 1, "coin {k} was split over {ids_of_coin} tracks");
        } else {
            assert!(!by_coin.contains_key(&k), "coin {k} seen once got a command");
        }
    }
    by_coin
}

/// A conveyor at 350 px/s moving right (35 px a frame, beyond the 27 px gate, so only the
/// predicted motion keeps the tracks): three coins enter, cross and leave, two of them on
/// neighbouring lanes nearly touching, and a fourth shows up in a single frame.
#[test]
fn conveyor_coins_get_one_command_each_with_the_voted_label() {
    let speed = 350.0;
    let step = (speed / FPS as f32, 0.0);
    let coins = [
        Coin { class: 0, frames: 0..24, start: (-20.0, 140.0), step, confidence: 0.6 },
        // Neighbouring lane: centres 2.1 radii apart, a gap of a tenth of a radius.
        Coin { class: 1, frames: 3..27, start: (-20.0, 140.0 + 2.1 * R), step, confidence: 0.6 },
        Coin { class: 2, frames: 10..34, start: (-20.0, 380.0), step, confidence: 0.95 },
        Coin { class: 3, frames: 20..21, start: (420.0, 60.0), step, confidence: 0.6 },
    ];
    let params = TrackParams { speed: f64::from(speed), ..DEFAULT_TRACK };
    let out = run(&coins, 40, params);
    for k in 0..3 {
        assert!(out.found[k] >= 15, "coin {k} found in {} frames only", out.found[k]);
        assert!(out.wrong_frames[k] >= 5, "coin {k}: the script must be wrong in some frames");
    }
    assert_eq!(out.found[3], 1);
    let by_coin = check(&coins, &out);
    assert_eq!(by_coin.len(), 3);
    // Unsure coins are decided when they leave the view; the sure one as soon as its vote is.
    assert_eq!(by_coin[&0].reason, Reason::Left);
    assert_eq!(by_coin[&1].reason, Reason::Left);
    assert_eq!(by_coin[&2].reason, Reason::Confident);
    // 0.95, 0.95, then wrong (0.3 for its class): a mean of 0.73 after three frames and 0.79
    // after four stays under 0.8; the fifth frame lifts it to 0.82.
    assert_eq!(by_coin[&2].frames, 5);
    assert!(by_coin[&0].frames as usize == out.found[0]);
}

/// The same conveyor run with the tracker told the scene is static must fall apart: the test
/// above depends on the predicted motion.
#[test]
fn without_the_conveyor_speed_tracks_break() {
    let step = (35.0, 0.0);
    let coins = [Coin { class: 0, frames: 0..24, start: (-20.0, 140.0), step, confidence: 0.6 }];
    let out = run(&coins, 30, DEFAULT_TRACK);
    let ids = out.coin_of_id.values().filter(|k| **k == 0).count();
    assert!(ids >= 10, "a coin moving 35 px a frame got only {ids} tracks");
}

/// A static scene (speed 0) where two coins are pushed past each other on lanes 2.1 radii
/// apart, plus a coin that lies still all along.
#[test]
fn coins_pushed_past_each_other_keep_their_ids() {
    let coins = [
        Coin { class: 1, frames: 0..30, start: (150.0, 200.0), step: (9.0, 0.0), confidence: 0.6 },
        Coin {
            class: 3,
            frames: 0..30,
            start: (450.0, 200.0 + 2.1 * R),
            step: (-9.0, 0.0),
            confidence: 0.6,
        },
        Coin { class: 0, frames: 0..30, start: (320.0, 60.0), step: (0.0, 0.0), confidence: 0.6 },
    ];
    let out = run(&coins, 30, DEFAULT_TRACK);
    assert!(out.found.iter().all(|&n| n >= 25), "found {:?}", out.found);
    let by_coin = check(&coins, &out);
    assert_eq!(by_coin.len(), 3);
    // Nothing left the view: each unsure coin is decided when the stream ends.
    assert!(by_coin.values().all(|v| v.reason == Reason::Finished), "{by_coin:?}");
}

/// Through the node's pipeline with its real model: the same photo three times (a static
/// scene) keeps every coin's id, and the run ends with exactly one command per coin.
#[test]
fn the_pipeline_gives_tracked_ids_and_one_command_per_coin() {
    use coin_sorter::classify::device::DevicePref;
    use coin_sorter::classify::model::Classifier;
    use coin_sorter::decide::BinTable;
    use coin_sorter::pipeline::{Frame, Pipeline};

    let dir = tempfile::tempdir().unwrap();
    let classifier = Classifier::load(&common::tiny_model(dir.path()), DevicePref::Cpu).unwrap();
    let labels = classifier.metadata().labels.clone();
    let entries: Vec<String> = labels.iter().map(|l| format!("{l}:bin_{l}")).collect();
    let bins = BinTable::parse(&entries, "reject", 0.0).unwrap();
    let mut pipeline = Pipeline::new(classifier, DEFAULT_LOCATE, bins).unwrap();
    pipeline.with_tracking(Some(DEFAULT_TRACK)).unwrap();
    let mut ids_per_frame = Vec::new();
    let mut commands = Vec::new();
    for f in 0..3i64 {
        let frame = Frame::Raw(common::photo_frame(2, f * 100_000_000));
        let out = pipeline.process(&frame).unwrap();
        ids_per_frame.push(out.detections.detections.iter().map(|d| d.coin_id).collect::<Vec<_>>());
        commands.extend(out.commands);
    }
    assert_eq!(ids_per_frame[0], vec![1, 2, 3], "scene 2 holds three coins");
    assert!(ids_per_frame.iter().all(|ids| *ids == ids_per_frame[0]), "{ids_per_frame:?}");
    let header = coin_sorter::msgs::std_msgs::Header::default();
    commands.extend(pipeline.finish(&header));
    let mut sent: Vec<u32> = commands.iter().map(|c| c.coin_id).collect();
    sent.sort_unstable();
    assert_eq!(sent, vec![1, 2, 3], "one command per coin");
    assert!(commands.iter().all(|c| c.frames_seen == 3), "{commands:?}");
    assert!(pipeline.finish(&header).is_empty(), "nothing is sent twice");
}
