//! Per-epoch checkpoints, from which an interrupted run continues exactly where it stopped.
//!
//! A checkpoint folder (`<model>.ckpt/`) holds the network's variables, the optimiser's
//! buffers and the best epoch's variables as safetensors files whose names carry their epoch,
//! and `state.json`: the run's settings, its [`TrainState`] and the names of those files. Each
//! file is written through a temporary file and a rename, the weights first and `state.json`
//! last, so `state.json` always describes complete files; files it no longer names are removed
//! afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

use crate::train::fit::TrainState;
use crate::train::optim::Optimizer;
use crate::train::weights;

/// Name of the state file inside a checkpoint folder.
pub const STATE_FILE: &str = "state.json";
/// Version of the checkpoint layout; a checkpoint of another version is refused.
pub const VERSION: u32 = 1;

/// Checkpoint folder of a model file: `model.pt` → `model.ckpt`.
pub fn dir_for_model(model: &Path) -> PathBuf {
    model.with_extension("ckpt")
}

/// Contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Layout version, [`VERSION`].
    pub version: u32,
    /// The settings of the run, as the command that started it chose them; a resumed run must
    /// use the same ones.
    pub settings: serde_json::Value,
    /// Where the run is.
    pub state: TrainState,
    /// Variables after the last finished epoch (file name in the folder).
    pub weights: String,
    /// Optimiser buffers after the last finished epoch.
    pub optimizer: String,
    /// Variables of the best epoch so far.
    pub best: String,
}

/// A checkpoint read back: state plus tensors, on the CPU.
#[derive(Debug)]
pub struct Loaded {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// The state file.
    pub file: StateFile,
    /// Variables after the last finished epoch.
    pub weights: HashMap<String, Tensor>,
    /// Optimiser buffers.
    pub optimizer: HashMap<String, Tensor>,
    /// Variables of the best epoch.
    pub best: HashMap<String, Tensor>,
}

/// Writes a checkpoint of the run after epoch `state.epochs_done` into `dir`: `vs`'s
/// variables, `opt`'s buffers, `best` (the best epoch's variables, `state.best` says which;
/// written only when that epoch is this one, since earlier checkpoints hold it otherwise) and
/// the state file. See the module documentation for the order and atomicity.
pub fn save(
    dir: &Path,
    settings: &serde_json::Value,
    state: &TrainState,
    vs: &nn::VarStore,
    opt: &Optimizer,
    best: &HashMap<String, Tensor>,
) -> Result<()> {
    let epoch = state.epochs_done;
    let best_epoch = state.best.as_ref().map_or(0, |b| b.epoch);
    let file = StateFile {
        version: VERSION,
        settings: settings.clone(),
        state: state.clone(),
        weights: format!("weights-e{epoch}.safetensors"),
        optimizer: format!("optimizer-e{epoch}.safetensors"),
        best: format!("best-e{best_epoch}.safetensors"),
    };
    weights::save_store(vs, &dir.join(&file.weights))?;
    weights::save(opt.state(), &dir.join(&file.optimizer))?;
    // The best epoch's file is written in the epoch that became best and kept until another
    // epoch does better.
    let best_path = dir.join(&file.best);
    if best_epoch == epoch {
        let copies = best.iter().map(|(k, v)| (k.clone(), v.shallow_clone()));
        weights::save(copies, &best_path)?;
    }
    let json = serde_json::to_string_pretty(&file).context("cannot serialise the run state")?;
    let state_path = dir.join(STATE_FILE);
    crate::fsutil::write_atomic(&state_path, json.as_bytes())
        .with_context(|| format!("cannot write {}", state_path.display()))?;
    remove_unnamed(dir, &[&file.weights, &file.optimizer, &file.best])
}

/// Removes the state file and every tensor file of the checkpoint in `dir`, so a new run
/// never mixes with an old one.
pub fn clear(dir: &Path) -> Result<()> {
    let state = dir.join(STATE_FILE);
    if state.exists() {
        std::fs::remove_file(&state)
            .with_context(|| format!("cannot remove old checkpoint {}", state.display()))?;
    }
    remove_unnamed(dir, &[])
}

/// Removes the tensor files of `dir` that are not in `keep`.
fn remove_unnamed(dir: &Path, keep: &[&str]) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".safetensors") && !keep.contains(&name.as_str()) {
            let path = entry.path();
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove old checkpoint file {}", path.display()))?;
        }
    }
    Ok(())
}

/// Reads the checkpoint in `path` (the folder, or its `state.json`). Fails, naming the file,
/// when a file is missing or unreadable or the layout version differs.
pub fn load(path: &Path) -> Result<Loaded> {
    ensure!(
        path.exists(),
        "checkpoint {} does not exist (give the <model>.ckpt folder)",
        path.display()
    );
    let dir = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("cannot read checkpoint {}", state_path.display()))?;
    let file: StateFile = serde_json::from_str(&text)
        .with_context(|| format!("checkpoint {} is not valid", state_path.display()))?;
    let s = &file.state;
    ensure!(
        s.curves.len() == s.epochs_done
            && s.curves.iter().enumerate().all(|(i, e)| e.epoch == i + 1)
            && s.best.as_ref().is_some_and(|b| (1..=s.epochs_done).contains(&b.epoch)),
        "checkpoint {} is inconsistent: {} epochs done, {} curve rows, best epoch {:?}",
        state_path.display(),
        s.epochs_done,
        s.curves.len(),
        s.best.as_ref().map(|b| b.epoch)
    );
    ensure!(
        file.version == VERSION,
        "checkpoint {} has layout version {}, this program reads {VERSION}",
        state_path.display(),
        file.version
    );
    Ok(Loaded {
        dir: dir.to_path_buf(),
        weights: weights::read(&dir.join(&file.weights))?,
        optimizer: weights::read(&dir.join(&file.optimizer))?,
        best: weights::read(&dir.join(&file.best))?,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::fit::BestEpoch;
    use crate::train::optim::Optim;
    use tch::Device;
    use tch::nn::Init;

    fn state(epochs_done: usize, best_epoch: usize) -> TrainState {
        TrainState {
            epochs_done,
            steps: 7,
            rng_seed: 3,
            rng_word_pos: 1 << 70,
            curves: (1..=epochs_done)
                .map(|epoch| crate::train::curves::EpochStats {
                    stage: 1,
                    epoch,
                    train_loss: 1.0,
                    train_acc: 0.5,
                    val_loss: 1.0,
                    val_acc: 0.5,
                    seconds: 0.0,
                })
                .collect(),
            best: Some(BestEpoch { epoch: best_epoch, val_acc: 0.5, val_loss: 1.0 }),
            epochs_since_improvement: 0,
        }
    }

    #[test]
    fn saves_loads_and_keeps_only_the_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("m.ckpt");
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[2], Init::Const(1.5));
        let opt = Optimizer::new(&vs, Optim::Adamw).unwrap();
        let best: HashMap<String, Tensor> =
            [("w".to_string(), Tensor::from_slice(&[4.0f32, 5.0]))].into();
        let settings = serde_json::json!({"lr": 0.1});
        save(&ckpt, &settings, &state(1, 1), &vs, &opt, &best).unwrap();
        let first = std::fs::read(ckpt.join("best-e1.safetensors")).unwrap();
        save(&ckpt, &settings, &state(2, 1), &vs, &opt, &best).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(&ckpt)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "best-e1.safetensors",
                "optimizer-e2.safetensors",
                "state.json",
                "weights-e2.safetensors"
            ]
        );
        assert_eq!(std::fs::read(ckpt.join("best-e1.safetensors")).unwrap(), first);
        let loaded = load(&ckpt.join(STATE_FILE)).unwrap();
        assert_eq!(loaded.file.state, state(2, 1));
        assert_eq!(loaded.file.settings, settings);
        assert!(loaded.best["w"].equal(&best["w"]));
        assert!(loaded.weights["w"].equal(&Tensor::from_slice(&[1.5f32, 1.5])));
        assert_eq!(loaded.optimizer.len(), 2);
        assert_eq!(dir_for_model(Path::new("a/m.pt")), Path::new("a/m.ckpt"));

        save(&ckpt, &settings, &state(2, 3), &vs, &opt, &best).unwrap();
        let err = format!("{:#}", load(&ckpt).unwrap_err());
        assert!(err.contains("inconsistent") && err.contains("best epoch Some(3)"), "{err}");
    }

    #[test]
    fn loading_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(err.contains(STATE_FILE), "{err}");
    }
}
