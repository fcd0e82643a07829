//! Sanity of a model's learning curves (`<model>.curves.csv`): shapes that honest training
//! from scratch does not produce.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Verdict;
use crate::train::curves::CSV_HEADER;

/// Validation accuracy at or above which a first epoch is implausible for a network trained
/// from scratch: it had seen each training image once.
pub const FIRST_EPOCH_SUSPICIOUS: f64 = 0.98;

/// One row of the curves file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveRow {
    /// Training phase, e.g. `full`.
    pub stage: String,
    /// 1-based epoch within the run.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy, 0..1.
    pub train_acc: f64,
    /// Mean validation loss.
    pub val_loss: f64,
    /// Validation accuracy, 0..1.
    pub val_acc: f64,
}

/// Reads a curves CSV written by training; errors name the file and line.
pub fn read_curves(path: &Path) -> Result<Vec<CurveRow>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read curves {}", path.display()))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim() == CSV_HEADER => {}
        Some((_, h)) => bail!("curves {} start with {h:?}, not {CSV_HEADER:?}", path.display()),
        None => bail!("curves {} are empty", path.display()),
    }
    lines
        .map(|(i, line)| {
            parse_row(line)
                .with_context(|| format!("curves {} line {}: {line:?}", path.display(), i + 1))
        })
        .collect()
}

fn parse_row(line: &str) -> Result<CurveRow> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() != 6 {
        bail!("{} fields, expected 6", f.len());
    }
    let num = |i: usize| -> Result<f64> {
        let v: f64 = f[i].parse().with_context(|| format!("{:?} is not a number", f[i]))?;
        if !v.is_finite() {
            bail!("{:?} is not finite", f[i]);
        }
        Ok(v)
    };
    Ok(CurveRow {
        stage: f[0].to_owned(),
        epoch: f[1].parse().with_context(|| format!("epoch {:?} is not a whole number", f[1]))?,
        train_loss: num(2)?,
        train_acc: num(3)?,
        val_loss: num(4)?,
        val_acc: num(5)?,
    })
}

/// Judges the curves: FAIL when validation accuracy is at [`FIRST_EPOCH_SUSPICIOUS`] or
/// above after the very first epoch (the validation images are probably also training
/// images); WARN when validation accuracy beats training accuracy in every epoch (heavy
/// augmentation can do that, but so can a validation set easier than, or inside, the
/// training set); WARN when there are no rows; PASS otherwise.
pub fn judge(rows: &[CurveRow]) -> (Verdict, String) {
    let Some(first) = rows.first() else {
        return (Verdict::Warn, "the curves file has no epochs".into());
    };
    if first.val_acc >= FIRST_EPOCH_SUSPICIOUS {
        return (
            Verdict::Fail,
            format!(
                "validation accuracy {:.1}% after the first epoch ({} {}; training {:.1}%): \
                 too good for a network that has seen each image once",
                first.val_acc * 100.0,
                first.stage,
                first.epoch,
                first.train_acc * 100.0
            ),
        );
    }
    if rows.iter().all(|r| r.val_acc > r.train_acc) {
        return (
            Verdict::Warn,
            format!("validation accuracy is above training accuracy in all {} epochs", rows.len()),
        );
    }
    let last = &rows[rows.len() - 1];
    (
        Verdict::Pass,
        format!(
            "{} epochs; first validation {:.1}%, last {:.1}% (training {:.1}%)",
            rows.len(),
            first.val_acc * 100.0,
            last.val_acc * 100.0,
            last.train_acc * 100.0
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, train_acc: f64, val_acc: f64) -> CurveRow {
        CurveRow { stage: "full".into(), epoch, train_loss: 1.0, train_acc, val_loss: 1.0, val_acc }
    }

    #[test]
    fn flags_a_perfect_first_epoch_and_validation_always_ahead() {
        assert_eq!(judge(&[row(1, 0.4, 0.99), row(2, 0.9, 1.0)]).0, Verdict::Fail);
        assert_eq!(judge(&[row(1, 0.3, 0.4), row(2, 0.5, 0.6)]).0, Verdict::Warn);
        assert_eq!(judge(&[row(1, 0.3, 0.25), row(2, 0.5, 0.6)]).0, Verdict::Pass);
        assert_eq!(judge(&[]).0, Verdict::Warn);
    }

    #[test]
    fn reads_what_training_writes_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.curves.csv");
        std::fs::write(&path, format!("{CSV_HEADER}\nfull,1,2.0,0.25,1.5,0.5\n")).unwrap();
        assert_eq!(
            read_curves(&path).unwrap(),
            [row(1, 0.25, 0.5)].map(|mut r| {
                r.train_loss = 2.0;
                r.val_loss = 1.5;
                r
            })
        );
        std::fs::write(&path, format!("{CSV_HEADER}\nfull,1,2.0,x,1.5,0.5\n")).unwrap();
        let err = format!("{:#}", read_curves(&path).unwrap_err());
        assert!(err.contains("line 2") && err.contains("\"x\""), "{err}");
    }
}
