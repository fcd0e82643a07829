//! The audit on real coin crops with a tiny model: a clean split by photo passes the leakage
//! checks; a planted byte copy, a planted re-encoded copy and a planted crop of a training photo
//! are each flagged by their own check. Also the pHash margin the default threshold relies on.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coin_sorter::audit::leakage::{self, DEFAULT_NEAR_THRESHOLD};
use coin_sorter::audit::phash;
use coin_sorter::audit::{AuditArgs, AuditReport, Verdict};
use coin_sorter::train::dataset::group_id;
use coin_sorter::train::{TrainArgs, run};

const CLASSES: [&str; 3] = ["1c", "2e", "50c"];
/// Source photos per class on the training side, then on the test side.
const TRAIN_PHOTOS: usize = 3;
const TEST_PHOTOS: usize = 2;
const PER_PHOTO: usize = 3;

static TORCH_RNG: Mutex<()> = Mutex::new(());

/// The crops of each source photo of `class` in `coins-mobile`, photos and crops sorted.
fn photos_of(class: &str) -> Vec<Vec<PathBuf>> {
    let dir = common::shared_data().join("coins-mobile").join(class);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut photos: Vec<Vec<PathBuf>> = Vec::new();
    for f in files {
        match photos.last_mut() {
            Some(p) if group_id(&p[0]) == group_id(&f) => p.push(f),
            _ => photos.push(vec![f]),
        }
    }
    photos.retain(|p| p.len() > PER_PHOTO);
    photos
}

fn copy_into(set: &Path, class: &str, files: &[PathBuf]) {
    let dir = set.join(class);
    std::fs::create_dir_all(&dir).unwrap();
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
}

/// A training and a test set split by photo, and a tiny model trained on the former.
struct Fixture {
    dir: tempfile::TempDir,
    train: PathBuf,
    test: PathBuf,
    model: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (train, test) = (dir.path().join("train"), dir.path().join("test"));
        for class in CLASSES {
            let photos = photos_of(class);
            for p in &photos[..TRAIN_PHOTOS] {
                copy_into(&train, class, &p[..PER_PHOTO]);
            }
            for p in &photos[TRAIN_PHOTOS..TRAIN_PHOTOS + TEST_PHOTOS] {
                copy_into(&test, class, &p[..PER_PHOTO]);
            }
        }
        let args = TrainArgs {
            out: dir.path().join("model/coin.pt"),
            input_size: 32,
            base_width: 8,
            epochs: 2,
            batch_size: 4,
            val_fraction: 0.34,
            ..TrainArgs::new(train.clone())
        };
        let model = {
            let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
            run(&args).unwrap().model
        };
        Self { dir, train, test, model }
    }

    /// A copy of the test set to plant something in.
    fn test_copy(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        for class in CLASSES {
            let mut files: Vec<PathBuf> = std::fs::read_dir(self.test.join(class))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            copy_into(&out, class, &files);
        }
        out
    }

    fn audit(&self, test: &Path, control_epochs: usize) -> AuditReport {
        let mut args = AuditArgs::new(self.model.clone(), self.train.clone(), test.to_path_buf());
        args.out = test.with_extension("audit");
        args.device = "cpu".into();
        args.control_epochs = control_epochs;
        args.control_base_width = 8;
        args.control_batch_size = 4;
        args.control_max_steps = Some(4);
        let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        coin_sorter::audit::run(&args).unwrap()
    }
}

fn verdict(r: &AuditReport, name: &str) -> Verdict {
    r.check(name).unwrap_or_else(|| panic!("no check {name}")).verdict
}

fn first_train_file(f: &Fixture, class: &str) -> PathBuf {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(f.train.join(class)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.remove(0)
}

#[test]
fn audit_passes_a_clean_split_and_flags_each_planted_leak() {
    let f = Fixture::new();
    let n_test = CLASSES.len() * TEST_PHOTOS * PER_PHOTO;

    let clean = f.audit(&f.test, 1);
    assert_eq!((clean.train_images, clean.test_images), (27, n_test));
    for check in ["exact_duplicates", "near_duplicates", "group_leak"] {
        assert_eq!(verdict(&clean, check), Verdict::Pass, "{check}: {:?}", clean.check(check));
    }
    assert_eq!(clean.leakage.train_groups, 9);
    assert_eq!(clean.leakage.test_groups, 6);
    // 18 test crops cannot tell a perfect model from a 90% one.
    assert_eq!(verdict(&clean, "test_accuracy"), Verdict::Warn);
    assert_eq!(clean.accuracy.interval.n, n_test);
    assert_eq!(clean.background.accuracy.n, n_test);
    assert_eq!(clean.shuffled.as_ref().unwrap().accuracy.n, n_test);
    assert_eq!(clean.confusion.labels, CLASSES);
    let written = std::fs::read_to_string(f.test.with_extension("audit").join("audit.md")).unwrap();
    assert!(written.contains("group_leak"), "{written}");

    // A training file copied under a new photo name: the bytes give it away.
    let dup = f.test_copy("dup");
    std::fs::copy(first_train_file(&f, "2e"), dup.join("2e/planted_1.jpg")).unwrap();
    let r = f.audit(&dup, 0);
    assert_eq!(verdict(&r, "exact_duplicates"), Verdict::Fail);
    assert_eq!(r.leakage.exact.len(), 1);
    assert_eq!(verdict(&r, "group_leak"), Verdict::Pass);
    assert_eq!(verdict(&r, "shuffled_labels"), Verdict::Warn);

    // The same picture re-encoded at another JPEG quality: only the perceptual hash sees it.
    let near = f.test_copy("near");
    let img = image::open(first_train_file(&f, "50c")).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let jpeg = coin_sorter::dataset::writer::encode_jpeg(img.as_raw(), w, h, 60).unwrap();
    std::fs::write(near.join("50c/retouched_1.jpg"), jpeg).unwrap();
    let r = f.audit(&near, 0);
    assert_eq!(verdict(&r, "exact_duplicates"), Verdict::Pass);
    assert_eq!(verdict(&r, "near_duplicates"), Verdict::Fail);
    assert_eq!(verdict(&r, "group_leak"), Verdict::Pass);

    // Another coin of a training photo: different bytes, same photo.
    let leak = f.test_copy("leak");
    let photo = &photos_of("1c")[0];
    copy_into(&leak, "1c", &photo[PER_PHOTO..PER_PHOTO + 1]);
    let r = f.audit(&leak, 0);
    assert_eq!(verdict(&r, "exact_duplicates"), Verdict::Pass);
    assert_eq!(verdict(&r, "group_leak"), Verdict::Fail);
    assert_eq!(r.leakage.shared_groups.len(), 1);
    assert_eq!(r.leakage.shared_groups[0].group, group_id(&photo[0]));
    assert_eq!(r.overall, Verdict::Fail);
}

/// Re-encodings of one picture stay well inside the default threshold, and crops of coins of
/// different classes stay well outside it.
#[test]
fn default_near_threshold_separates_re_encodings_from_other_coins() {
    let mut files: Vec<PathBuf> = Vec::new();
    for class in CLASSES {
        for p in photos_of(class).iter().take(4) {
            files.push(p[0].clone());
        }
    }
    let hashes = leakage::hash_files(&files, &|| {}).unwrap();
    let class = |p: &Path| p.parent().unwrap().to_path_buf();
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            if class(&a.path) != class(&b.path) {
                let d = phash::distance(&a.phash, &b.phash);
                assert!(d > DEFAULT_NEAR_THRESHOLD, "{d}: {:?} {:?}", a.path, b.path);
            }
        }
    }
    for h in &hashes {
        let img = image::open(&h.path).unwrap().to_rgb8();
        let (w, h2) = img.dimensions();
        for q in [60u8, 95] {
            let jpeg = coin_sorter::dataset::writer::encode_jpeg(img.as_raw(), w, h2, q).unwrap();
            let again = image::load_from_memory(&jpeg).unwrap().to_rgb8();
            let d = phash::distance(&h.phash, &phash::phash_rgb(again.as_raw(), w, h2).unwrap());
            assert!(d < DEFAULT_NEAR_THRESHOLD / 2, "quality {q}: {d} bits for {:?}", h.path);
        }
    }
}
