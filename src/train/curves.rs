//! Per-epoch learning curves and their CSV file beside the model.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

/// Header of the curves CSV; one row per [`EpochStats`].
pub const CSV_HEADER: &str = "stage,epoch,train_loss,train_acc,val_loss,val_acc";

/// Loss and accuracy of one epoch. Losses are mean cross-entropy per sample, accuracies 0..1;
/// training figures are measured on the augmented batches as they were trained (with the
/// class weights when the loss is balanced), validation figures on plain crops, unweighted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Training stage the epoch belongs to: 1 (source set) or 2 (fine-tuning on a target set).
    pub stage: u8,
    /// 1-based epoch number within its stage.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Mean validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Wall-clock seconds the epoch took, training and validation together. Not in the CSV, so
    /// 0 for rows read back from one.
    pub seconds: f64,
}

/// Path of the curves file that belongs to a model file: `model.pt` → `model.curves.csv`.
pub fn curves_path_for_model(model: &Path) -> PathBuf {
    model.with_extension("curves.csv")
}

/// `rows` as a Markdown table, one line per epoch: the form every report shows curves in.
pub fn markdown_table(rows: &[EpochStats]) -> String {
    let mut md = String::from(
        "| stage | epoch | train loss | train acc | val loss | val acc |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.4} | {:.1}% | {:.4} | {:.1}% |\n",
            r.stage,
            r.epoch,
            r.train_loss,
            r.train_acc * 100.0,
            r.val_loss,
            r.val_acc * 100.0
        ));
    }
    md
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

/// Reads a CSV written by [`write_csv`]. Fails, naming the file and line, on another header or
/// a malformed row.
pub fn read_csv(path: &Path) -> Result<Vec<EpochStats>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read curves {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    ensure!(header == CSV_HEADER, "{} does not start with {CSV_HEADER:?}", path.display());
    lines
        .enumerate()
        .map(|(i, line)| {
            parse_row(line).with_context(|| format!("{} line {}: {line:?}", path.display(), i + 2))
        })
        .collect()
}

fn parse_row(line: &str) -> Result<EpochStats> {
    let fields: Vec<&str> = line.split(',').collect();
    ensure!(fields.len() == 6, "expected 6 fields, found {}", fields.len());
    let float = |i: usize| -> Result<f64> {
        fields[i].parse().with_context(|| format!("field {} is not a number", i + 1))
    };
    Ok(EpochStats {
        stage: fields[0].parse().context("stage is not a small integer")?,
        epoch: fields[1].parse().context("epoch is not an integer")?,
        train_loss: float(2)?,
        train_acc: float(3)?,
        val_loss: float(4)?,
        val_acc: float(5)?,
        seconds: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(stage: u8, epoch: usize) -> EpochStats {
        EpochStats {
            stage,
            epoch,
            train_loss: 2.0,
            train_acc: 0.25,
            val_loss: 1.5,
            val_acc: 0.5,
            seconds: 0.0,
        }
    }

    #[test]
    fn writes_header_and_one_row_per_epoch_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = curves_path_for_model(&dir.path().join("m.pt"));
        assert_eq!(path.file_name().unwrap(), "m.curves.csv");
        let rows = [row(1, 1), row(2, 1)];
        write_csv(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{CSV_HEADER}\n1,1,2.000000,0.250000,1.500000,0.500000\n\
                 2,1,2.000000,0.250000,1.500000,0.500000\n"
            )
        );
        assert_eq!(read_csv(&path).unwrap(), rows);
    }

    #[test]
    fn reading_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.csv");
        std::fs::write(&path, format!("{CSV_HEADER}\n1,1,0.1,0.2,0.3,0.4\nfull,2,0,0,0,0\n"))
            .unwrap();
        let err = format!("{:#}", read_csv(&path).unwrap_err());
        assert!(err.contains("c.csv line 3"), "{err}");
        std::fs::write(&path, "epoch,loss\n").unwrap();
        assert!(read_csv(&path).is_err());
    }
}
