//! Network weights on disk, and copying them into a network: the stage-2 start from a stage-1
//! model, an ImageNet-style initial checkpoint, and checkpoints.
//!
//! Weights are written as safetensors (names as in the VarStore, which follow torchvision).
//! For reading, `tch` understands two formats: safetensors (`.safetensors`) and its own
//! libtorch archive (`.ot`, what `VarStore::save` writes for any other extension). A Python
//! `torch.save` pickle is neither; see docs/training.md for the conversion.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use crate::train::resnet::Part;

/// Name of the classifier's weight matrix, one row per class.
pub const FC_WEIGHT: &str = "fc.weight";
/// Name of the classifier's bias, one entry per class.
pub const FC_BIAS: &str = "fc.bias";

/// Path of the weights file that belongs to a model file: `model.pt` → `model.safetensors`.
pub fn weights_path_for_model(model: &Path) -> PathBuf {
    model.with_extension("safetensors")
}

/// Writes named tensors to `path` as safetensors, atomically, sorted by name so equal weights
/// give equal files. Tensors are copied to the CPU first.
pub fn save(named: impl IntoIterator<Item = (String, Tensor)>, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(name, t)| (name, t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    // Tensor::write_safetensors ignores the extension, so the temporary name does no harm.
    crate::fsutil::write_atomic_path(path, |tmp| {
        Tensor::write_safetensors(&named, tmp)
            .with_context(|| format!("cannot write weights to {}", tmp.display()))
    })
    .with_context(|| format!("cannot write weights {}", path.display()))
}

/// Writes every variable of `vs` (BatchNorm running statistics included) to `path`.
pub fn save_store(vs: &nn::VarStore, path: &Path) -> Result<()> {
    save(vs.variables(), path)
}

/// Reads named tensors from a `.safetensors` file or a `tch` `.ot` archive, on the CPU. Fails,
/// naming the file, on another extension or an unreadable file.
pub fn read(path: &Path) -> Result<HashMap<String, Tensor>> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    let named = match ext.as_deref() {
        Some("safetensors") => Tensor::read_safetensors(path),
        Some("ot") => Tensor::load_multi(path),
        _ => bail!(
            "{} is neither .safetensors nor .ot; convert PyTorch weights to safetensors \
             (docs/training.md)",
            path.display()
        ),
    }
    .with_context(|| format!("cannot read weights {}", path.display()))?;
    Ok(named.into_iter().collect())
}

/// What happens to the classifier head (`fc`) when weights are copied in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadRule {
    /// Copy it; it must be in the source with the same shape.
    Copy,
    /// Copy it if the source has it with the same shape, else keep the network's own
    /// (an ImageNet checkpoint has 1000 classes).
    CopyIfSameShape,
    /// Copy these rows of the source head, in this order (narrowing to a subset of classes).
    Rows(Vec<i64>),
    /// Keep the network's own head (a new random one).
    Keep,
}

/// How a copy went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Variables copied from the source (head included when it was).
    pub copied: usize,
    /// Head variables left as they were.
    pub head_not_copied: Vec<String>,
    /// Source tensors the network has no variable for (e.g. torchvision's
    /// `num_batches_tracked`).
    pub unused: Vec<String>,
}

/// Copies `source` (read from `origin`, named in errors) into the variables of `vs`. Every
/// backbone variable must be in the source with the same shape; the head follows `head`.
/// Values are converted to each variable's kind and device.
pub fn copy_into(
    vs: &nn::VarStore,
    source: &HashMap<String, Tensor>,
    origin: &Path,
    head: &HeadRule,
) -> Result<CopyReport> {
    let known = vs.variables();
    let mut vars: Vec<(String, Tensor)> =
        known.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let same_head = [FC_WEIGHT, FC_BIAS].iter().all(|n| match (source.get(*n), known.get(*n)) {
        (Some(s), Some(v)) => s.size() == v.size(),
        _ => false,
    });
    let mut report = CopyReport { copied: 0, head_not_copied: Vec::new(), unused: Vec::new() };
    for (name, mut var) in vars {
        let is_head = Part::of_variable(&name) == Some(Part::Fc);
        let value = match (is_head, head) {
            (true, HeadRule::Keep) => None,
            (true, HeadRule::CopyIfSameShape) if !same_head => None,
            (true, HeadRule::Rows(rows)) => {
                let src = lookup(source, &name, origin)?;
                let index = Tensor::from_slice(rows);
                let picked = src.f_index_select(0, &index).with_context(|| {
                    format!("cannot take rows {rows:?} of {name} in {}", origin.display())
                })?;
                Some(picked)
            }
            _ => Some(lookup(source, &name, origin)?.shallow_clone()),
        };
        let Some(value) = value else {
            report.head_not_copied.push(name);
            continue;
        };
        ensure!(
            value.size() == var.size(),
            "{name} has shape {:?} in {} but {:?} in the network",
            value.size(),
            origin.display(),
            var.size()
        );
        tch::no_grad(|| var.f_copy_(&value))
            .with_context(|| format!("cannot copy {name} from {}", origin.display()))?;
        report.copied += 1;
    }
    report.unused = source.keys().filter(|k| !known.contains_key(*k)).cloned().collect();
    report.unused.sort();
    Ok(report)
}

fn lookup<'a>(
    source: &'a HashMap<String, Tensor>,
    name: &str,
    origin: &Path,
) -> Result<&'a Tensor> {
    source.get(name).with_context(|| format!("{} has no variable {name}", origin.display()))
}

/// What stage 2 does with the stage-1 classifier head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// Keep the stage-1 rows of the target labels, in the target's label order.
    Narrow,
    /// A new random head.
    Replace,
}

impl Head {
    /// The head mode for `target` labels on a parent with `parent` labels: `requested`, or
    /// when none is, [`Head::Narrow`] if every target label is a parent label and
    /// [`Head::Replace`] otherwise. Fails if narrowing is requested but a label is missing.
    pub fn choose(requested: Option<Head>, parent: &[String], target: &[String]) -> Result<Head> {
        let missing: Vec<&String> = target.iter().filter(|l| !parent.contains(l)).collect();
        match requested {
            Some(Head::Narrow) if !missing.is_empty() => bail!(
                "cannot narrow the head: labels {missing:?} are not among the parent's {parent:?}"
            ),
            Some(h) => Ok(h),
            None if missing.is_empty() => Ok(Head::Narrow),
            None => Ok(Head::Replace),
        }
    }

    /// The [`HeadRule`] that realises this mode: for [`Head::Narrow`], the parent row of each
    /// target label (every target label must be a parent label).
    pub fn rule(self, parent: &[String], target: &[String]) -> Result<HeadRule> {
        match self {
            Head::Replace => Ok(HeadRule::Keep),
            Head::Narrow => target
                .iter()
                .map(|l| {
                    parent
                        .iter()
                        .position(|p| p == l)
                        .map(|i| i as i64)
                        .with_context(|| format!("label {l:?} is not a parent label"))
                })
                .collect::<Result<Vec<i64>>>()
                .map(HeadRule::Rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::resnet::ResNet;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn head_choice_narrows_a_subset_and_replaces_otherwise() {
        let parent = labels(&["1c", "2c", "5c"]);
        assert_eq!(Head::choose(None, &parent, &labels(&["5c", "1c"])).unwrap(), Head::Narrow);
        assert_eq!(Head::choose(None, &parent, &labels(&["5c", "9c"])).unwrap(), Head::Replace);
        let err = Head::choose(Some(Head::Narrow), &parent, &labels(&["9c"])).unwrap_err();
        assert!(err.to_string().contains("9c"), "{err}");
        let rule = Head::Narrow.rule(&parent, &labels(&["2c", "5c"])).unwrap();
        assert_eq!(rule, HeadRule::Rows(vec![1, 2]));
        assert_eq!(Head::Replace.rule(&parent, &labels(&["9c"])).unwrap(), HeadRule::Keep);
    }

    #[test]
    fn weights_round_trip_and_narrowing_takes_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let src = nn::VarStore::new(Device::Cpu);
        ResNet::new(&src.root(), 2, 4).unwrap();
        save_store(&src, &path).unwrap();
        let read_back = read(&path).unwrap();
        assert_eq!(read_back.len(), src.variables().len());

        let dst = nn::VarStore::new(Device::Cpu);
        ResNet::new(&dst.root(), 2, 2).unwrap();
        let report = copy_into(&dst, &read_back, &path, &HeadRule::Rows(vec![3, 1])).unwrap();
        assert_eq!(report.copied, dst.variables().len());
        let (s, d) = (src.variables(), dst.variables());
        assert!(d[FC_WEIGHT].get(0).equal(&s[FC_WEIGHT].get(3)));
        assert!(d[FC_WEIGHT].get(1).equal(&s[FC_WEIGHT].get(1)));
        assert!(d[FC_BIAS].equal(&s[FC_BIAS].index_select(0, &Tensor::from_slice(&[3i64, 1]))));
        assert!(d["layer4.2.conv3.weight"].equal(&s["layer4.2.conv3.weight"]));

        let err = copy_into(&dst, &read_back, &path, &HeadRule::Copy).unwrap_err();
        assert!(format!("{err:#}").contains("fc.bias has shape [4]"), "{err:#}");
        let kept = copy_into(&dst, &read_back, &path, &HeadRule::CopyIfSameShape).unwrap();
        assert_eq!(kept.head_not_copied, [FC_BIAS, FC_WEIGHT]);
    }

    #[test]
    fn reading_rejects_other_formats_and_names_the_file() {
        let err = read(Path::new("/nonexistent/resnet50.pth")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/resnet50.pth"), "{err}");
        let err = read(Path::new("/nonexistent/w.safetensors")).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/w.safetensors"), "{err:#}");
    }
}
