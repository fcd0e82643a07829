//! Leakage between a training and a test set: the same file on both sides, the same picture
//! re-encoded or retouched on both sides, and crops of one source photo on both sides.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::phash::{self, PHash};
use crate::train::dataset::group_id;

/// Default near-duplicate threshold in bits of the 1,023-bit pHash: twice the largest distance
/// of a copy. Measured on the 1,246 coins-mobile crops (tests/audit.rs repeats it): copies
/// re-encoded at JPEG quality 60, brightened or shrunk and re-enlarged stay within 64 bits;
/// crops of different classes are at least 204 bits apart. The only crops of different photos
/// within 128 bits are the same physical coin shot again seconds later, which is the leak the
/// check is for.
pub const DEFAULT_NEAR_THRESHOLD: u32 = 128;

/// A file of the training set and one of the test set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// The training file.
    pub train: PathBuf,
    /// The test file.
    pub test: PathBuf,
}

/// A near-duplicate pair and how many hash bits separate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NearPair {
    /// The training file.
    pub train: PathBuf,
    /// The test file.
    pub test: PathBuf,
    /// Differing pHash bits (0 ..= [`phash::HASH_BITS`]).
    pub distance: u32,
}

/// A source photo with crops on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedGroup {
    /// The group (see [`group_id`]).
    pub group: String,
    /// Its files in the training set.
    pub train_files: usize,
    /// Its files in the test set.
    pub test_files: usize,
}

/// What the leakage checks found.
///
/// Invariant: no pair of `exact` appears in `near` (an exact copy is reported once, as exact);
/// all lists are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Leakage {
    /// Files with identical bytes on both sides.
    pub exact: Vec<Pair>,
    /// Pictures within `threshold` pHash bits on both sides (exact copies excluded).
    pub near: Vec<NearPair>,
    /// The threshold used, in bits.
    pub threshold: u32,
    /// Source photos (see [`group_id`]) with crops on both sides, sorted by name.
    pub shared_groups: Vec<SharedGroup>,
    /// Distinct groups on the training side.
    pub train_groups: usize,
    /// Distinct groups on the test side.
    pub test_groups: usize,
    /// The smallest pHash distance between any training and any test file
    /// ([`phash::HASH_BITS`] when a side is empty): how close the sides come.
    pub closest_distance: u32,
}

/// Fingerprints of one file.
#[derive(Debug, Clone)]
pub struct FileHashes {
    /// The file.
    pub path: PathBuf,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// Perceptual hash of its pixels.
    pub phash: PHash,
}

/// Hashes one file; errors name it.
pub fn hash_file(path: &Path) -> Result<FileHashes> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let phash = phash::phash_file(path)?;
    Ok(FileHashes { path: path.to_path_buf(), sha256, phash })
}

/// Hashes `paths` on all cores, in order; `tick` is called once per file hashed.
pub fn hash_files(paths: &[PathBuf], tick: &(dyn Fn() + Sync)) -> Result<Vec<FileHashes>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = paths.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| {
                            let h = hash_file(p);
                            tick();
                            h
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(paths.len());
        for h in handles {
            let part = h.join().map_err(|_| anyhow::anyhow!("hashing thread panicked"))?;
            for r in part {
                out.push(r?);
            }
        }
        Ok(out)
    })
}

/// Compares every training file with every test file.
pub fn find_leakage(train: &[FileHashes], test: &[FileHashes], threshold: u32) -> Leakage {
    let mut by_sha: HashMap<[u8; 32], Vec<&Path>> = HashMap::new();
    for t in train {
        by_sha.entry(t.sha256).or_default().push(&t.path);
    }
    let mut exact = Vec::new();
    let mut near = Vec::new();
    let mut closest = phash::HASH_BITS;
    for te in test {
        let same: &[&Path] = by_sha.get(&te.sha256).map_or(&[], Vec::as_slice);
        for &tr in same {
            exact.push(Pair { train: tr.to_path_buf(), test: te.path.clone() });
        }
        for tr in train {
            let d = phash::distance(&tr.phash, &te.phash);
            closest = closest.min(d);
            if d <= threshold && tr.sha256 != te.sha256 {
                near.push(NearPair { train: tr.path.clone(), test: te.path.clone(), distance: d });
            }
        }
    }
    exact.sort_by(|a, b| (&a.train, &a.test).cmp(&(&b.train, &b.test)));
    near.sort_by(|a, b| (&a.train, &a.test).cmp(&(&b.train, &b.test)));
    let groups = |side: &[FileHashes]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for f in side {
            *m.entry(group_id(&f.path)).or_default() += 1;
        }
        m
    };
    let (train_groups, test_groups) = (groups(train), groups(test));
    let shared_groups = train_groups
        .iter()
        .filter_map(|(g, &n)| {
            test_groups.get(g).map(|&m| SharedGroup {
                group: g.clone(),
                train_files: n,
                test_files: m,
            })
        })
        .collect();
    Leakage {
        exact,
        near,
        threshold,
        shared_groups,
        train_groups: train_groups.len(),
        test_groups: test_groups.len(),
        closest_distance: closest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh(path: &str, sha: u8, phash: u64) -> FileHashes {
        FileHashes { path: PathBuf::from(path), sha256: [sha; 32], phash: PHash::from_word(phash) }
    }

    #[test]
    fn reports_exact_copies_once_and_near_copies_within_the_threshold() {
        let train = [fh("a/p_0.jpg", 1, 0), fh("a/q_0.jpg", 2, 0xFF), fh("a/r_3.jpg", 3, 0)];
        let test = [fh("b/x_0.jpg", 1, 0), fh("b/r_9.jpg", 4, 0xFFFF_0000_0000)];
        let l = find_leakage(&train, &test, 8);
        assert_eq!(l.exact, [Pair { train: "a/p_0.jpg".into(), test: "b/x_0.jpg".into() }]);
        let near: Vec<(&str, u32)> =
            l.near.iter().map(|n| (n.train.to_str().unwrap(), n.distance)).collect();
        assert_eq!(near, [("a/q_0.jpg", 8), ("a/r_3.jpg", 0)]);
        let shared = SharedGroup { group: "r".into(), train_files: 1, test_files: 1 };
        assert_eq!(l.shared_groups, [shared]);
        assert_eq!((l.train_groups, l.test_groups, l.closest_distance), (3, 2, 0));
    }
}
