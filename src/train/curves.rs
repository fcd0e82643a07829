//! Per-epoch learning curves and their CSV file beside the model.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

/// Header of the curves CSV; one row per [`EpochStats`].
pub const CSV_HEADER: &str = "stage,epoch,train_loss,train_acc,val_loss,val_acc";

/// Loss and accuracy of one epoch. Losses are mean cross-entropy per sample, accuracies 0..1;
/// training figures are measured on the augmented batches as they were trained.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// Training phase this epoch belongs to (e.g. `full`: every layer trained).
    pub stage: String,
    /// 1-based epoch number within the run.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Mean validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Wall-clock seconds the epoch took, training and validation together.
    pub seconds: f64,
}

/// Path of the curves file that belongs to a model file: `model.pt` → `model.curves.csv`.
pub fn curves_path_for_model(model: &Path) -> PathBuf {
    model.with_extension("curves.csv")
}

/// Writes `rows` as CSV with [`CSV_HEADER`] to `path`, atomically.
pub fn write_csv(path: &Path, rows: &[EpochStats]) -> Result<()> {
    crate::fsutil::write_atomic_with(path, |w| {
        writeln!(w, "{CSV_HEADER}")?;
        for r in rows {
            writeln!(
                w,
                "{},{},{:.6},{:.6},{:.6},{:.6}",
                r.stage, r.epoch, r.train_loss, r.train_acc, r.val_loss, r.val_acc
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_and_one_row_per_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = curves_path_for_model(&dir.path().join("m.pt"));
        assert_eq!(path.file_name().unwrap(), "m.curves.csv");
        let row = EpochStats {
            stage: "full".into(),
            epoch: 1,
            train_loss: 2.0,
            train_acc: 0.25,
            val_loss: 1.5,
            val_acc: 0.5,
            seconds: 3.0,
        };
        write_csv(&path, &[row]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{CSV_HEADER}\nfull,1,2.000000,0.250000,1.500000,0.500000\n"));
    }
}
