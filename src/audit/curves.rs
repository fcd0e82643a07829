//! Sanity of a model's learning curves (`<model>.curves.csv`, read with
//! [`crate::train::curves::read_csv`]): shapes that honest training does not produce. Only the
//! last stage is judged: a stage-2 file starts with its parent's stage-1 rows.

use super::Verdict;
use crate::train::curves::EpochStats;

/// Validation accuracy at or above which a first epoch is implausible for a network trained
/// from scratch: it had seen each training image once.
pub const FIRST_EPOCH_SUSPICIOUS: f64 = 0.98;

/// Judges the rows of the last stage in `rows`: validation accuracy at
/// [`FIRST_EPOCH_SUSPICIOUS`] or above after that stage's first epoch is a FAIL in stage 1
/// (the validation images are probably also training images) and a WARN in stage 2 (the
/// parent may already know the target images, or they are too easy to tell anything apart);
/// validation above training accuracy in every epoch is a WARN (heavy augmentation can do
/// that, but so can a validation set easier than, or inside, the training set); no rows is a
/// WARN; anything else passes.
pub fn judge(rows: &[EpochStats]) -> (Verdict, String) {
    let Some(stage) = rows.last().map(|r| r.stage) else {
        return (Verdict::Warn, "the curves file has no epochs".into());
    };
    let rows: Vec<&EpochStats> = rows.iter().filter(|r| r.stage == stage).collect();
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    let finite = |r: &&EpochStats| {
        [r.train_loss, r.train_acc, r.val_loss, r.val_acc].iter().all(|v| v.is_finite())
    };
    if let Some(bad) = rows.iter().find(|r| !finite(r)) {
        return (
            Verdict::Warn,
            format!("stage {stage} epoch {} has a non-finite loss or accuracy", bad.epoch),
        );
    }
    if first.val_acc >= FIRST_EPOCH_SUSPICIOUS {
        let verdict = if stage == 1 { Verdict::Fail } else { Verdict::Warn };
        return (
            verdict,
            format!(
                "validation accuracy {:.1}% after the first epoch of stage {stage} (training \
                 {:.1}%): too good for a network that has seen each image once",
                first.val_acc * 100.0,
                first.train_acc * 100.0
            ),
        );
    }
    if rows.iter().all(|r| r.val_acc > r.train_acc) {
        return (
            Verdict::Warn,
            format!(
                "validation accuracy is above training accuracy in all {} epochs of stage {stage}",
                rows.len()
            ),
        );
    }
    (
        Verdict::Pass,
        format!(
            "stage {stage}, {} epochs; first validation {:.1}%, last {:.1}% (training {:.1}%)",
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

    fn row(stage: u8, epoch: usize, train_acc: f64, val_acc: f64) -> EpochStats {
        EpochStats {
            stage,
            epoch,
            train_loss: 1.0,
            train_acc,
            val_loss: 1.0,
            val_acc,
            seconds: 0.0,
        }
    }

    #[test]
    fn flags_a_perfect_first_epoch_and_validation_always_ahead() {
        assert_eq!(judge(&[row(1, 1, 0.4, 0.99), row(1, 2, 0.9, 1.0)]).0, Verdict::Fail);
        assert_eq!(judge(&[row(1, 1, 0.3, 0.4), row(1, 2, 0.5, 0.6)]).0, Verdict::Warn);
        assert_eq!(judge(&[row(1, 1, 0.3, 0.25), row(1, 2, 0.5, 0.6)]).0, Verdict::Pass);
        assert_eq!(judge(&[]).0, Verdict::Warn);
    }

    #[test]
    fn judges_only_the_last_stage() {
        let stage1 = [row(1, 1, 0.4, 0.99), row(1, 2, 0.9, 1.0)];
        let both = [&stage1[..], &[row(2, 1, 0.3, 0.25), row(2, 2, 0.5, 0.6)]].concat();
        let (v, why) = judge(&both);
        assert_eq!(v, Verdict::Pass, "{why}");
        assert!(why.starts_with("stage 2, 2 epochs"), "{why}");
        let perfect = [&stage1[..], &[row(2, 1, 0.5, 1.0)]].concat();
        assert_eq!(judge(&perfect).0, Verdict::Warn);
    }
}
