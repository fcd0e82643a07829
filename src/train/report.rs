//! The Markdown report beside a trained model: settings, data, curves, and per-class
//! precision and recall on the validation set at the best epoch.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::classify::metadata::DataSummary;
use crate::train::curves::EpochStats;

/// Path of the report that belongs to a model file: `model.pt` → `model.report.md`.
pub fn report_path_for_model(model: &Path) -> PathBuf {
    model.with_extension("report.md")
}

/// Figures of one class from a confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    /// The label.
    pub label: String,
    /// Samples whose true label it is.
    pub n: usize,
    /// Samples predicted as it.
    pub predicted: usize,
    /// Samples of it predicted as it.
    pub correct: usize,
}

impl ClassMetrics {
    /// `correct / predicted`; `None` when nothing was predicted as this class.
    pub fn precision(&self) -> Option<f64> {
        (self.predicted > 0).then(|| self.correct as f64 / self.predicted as f64)
    }

    /// `correct / n`; `None` when the class has no samples.
    pub fn recall(&self) -> Option<f64> {
        (self.n > 0).then(|| self.correct as f64 / self.n as f64)
    }
}

/// Per-class figures of a square confusion matrix `matrix[true][predicted]` whose rows and
/// columns follow `labels`.
pub fn per_class(matrix: &[Vec<usize>], labels: &[String]) -> Vec<ClassMetrics> {
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| ClassMetrics {
            label: label.clone(),
            n: matrix.get(i).map_or(0, |r| r.iter().sum()),
            predicted: matrix.iter().filter_map(|r| r.get(i)).sum(),
            correct: matrix.get(i).and_then(|r| r.get(i)).copied().unwrap_or(0),
        })
        .collect()
}

/// Fraction of the matrix on its diagonal; 0 for an empty matrix.
pub fn accuracy(matrix: &[Vec<usize>]) -> f64 {
    let total: usize = matrix.iter().flatten().sum();
    let correct: usize = matrix.iter().enumerate().filter_map(|(i, r)| r.get(i)).sum();
    if total == 0 { 0.0 } else { correct as f64 / total as f64 }
}

/// What a report says.
#[derive(Debug)]
pub struct Report<'a> {
    /// The model file.
    pub model: &'a Path,
    /// Training stage (1 or 2).
    pub stage: u8,
    /// The stage-1 model this one was fine-tuned from.
    pub parent: Option<&'a Path>,
    /// The run's settings (a JSON object; one table row per key).
    pub settings: &'a serde_json::Value,
    /// The data the model was trained and validated on.
    pub data: &'a DataSummary,
    /// Labels in output order.
    pub labels: &'a [String],
    /// Validation confusion matrix of the best epoch.
    pub confusion: &'a [Vec<usize>],
    /// Every curve row, earlier stages first.
    pub curves: &'a [EpochStats],
    /// Best epoch of this stage.
    pub best_epoch: usize,
    /// Why training stopped, in words.
    pub stop: &'a str,
    /// File names of the plots beside the report.
    pub plots: [&'a str; 2],
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

impl Report<'_> {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut md);
        md
    }

    fn write(&self, md: &mut String) -> std::fmt::Result {
        writeln!(md, "# Training report: {}\n", file_name(self.model))?;
        let parent = self.parent.map_or_else(|| "none".to_owned(), |p| p.display().to_string());
        writeln!(md, "Stage {}; parent model: {parent}.", self.stage)?;
        let stage_rows = self.curves.iter().filter(|r| r.stage == self.stage).count();
        writeln!(
            md,
            "Epochs run in this stage: {stage_rows} ({}); best epoch: {}.\n",
            self.stop, self.best_epoch
        )?;
        let total: usize = self.confusion.iter().flatten().sum();
        writeln!(
            md,
            "**Validation accuracy (best epoch): {:.1}%** ({} of {total} crops).\n",
            accuracy(self.confusion) * 100.0,
            (0..self.confusion.len()).map(|i| self.confusion[i][i]).sum::<usize>()
        )?;

        writeln!(md, "## Per class (validation, best epoch)\n")?;
        writeln!(md, "| label | n | precision | recall | train n |")?;
        writeln!(md, "| --- | ---: | ---: | ---: | ---: |")?;
        for (i, m) in per_class(self.confusion, self.labels).iter().enumerate() {
            let train_n = self.data.train_per_class.get(i).copied().unwrap_or(0);
            let (p, r) = (pct(m.precision()), pct(m.recall()));
            writeln!(md, "| {} | {} | {p} | {r} | {train_n} |", m.label, m.n)?;
        }
        writeln!(md, "\n## Confusion matrix (rows: true, columns: predicted)\n")?;
        writeln!(md, "| true \\ predicted | {} |", self.labels.join(" | "))?;
        writeln!(md, "| --- |{}", " ---: |".repeat(self.labels.len()))?;
        for (label, row) in self.labels.iter().zip(self.confusion) {
            let cells: Vec<String> = row.iter().map(usize::to_string).collect();
            writeln!(md, "| {label} | {} |", cells.join(" | "))?;
        }
        writeln!(md, "\n![confusion matrix]({})\n", self.plots[1])?;

        writeln!(md, "## Data\n")?;
        writeln!(md, "Source: `{}`.", self.data.source)?;
        writeln!(
            md,
            "Training: {} crops from {} photos; validation: {} crops from {} photos \
             (split by source photo).\n",
            self.data.train_per_class.iter().sum::<usize>(),
            self.data.train_groups,
            self.data.val_per_class.iter().sum::<usize>(),
            self.data.val_groups
        )?;

        writeln!(md, "## Curves\n")?;
        writeln!(md, "![learning curves]({})\n", self.plots[0])?;
        write!(md, "{}", crate::train::curves::markdown_table(self.curves))?;

        writeln!(md, "\n## Settings\n")?;
        writeln!(md, "| setting | value |")?;
        writeln!(md, "| --- | --- |")?;
        if let Some(map) = self.settings.as_object() {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "–".to_owned(),
                    other => other.to_string(),
                };
                writeln!(md, "| {k} | {v} |")?;
            }
        }
        Ok(())
    }

    /// Writes [`Report::markdown`] to `path`, atomically.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, self.markdown().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_recall_come_from_columns_and_rows() {
        let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let m = vec![vec![3, 1, 0], vec![2, 2, 0], vec![0, 0, 0]];
        let c = per_class(&m, &labels);
        assert_eq!((c[0].n, c[0].predicted, c[0].correct), (4, 5, 3));
        assert_eq!(c[0].precision(), Some(0.6));
        assert_eq!(c[0].recall(), Some(0.75));
        assert_eq!(c[1].precision(), Some(2.0 / 3.0));
        assert_eq!((c[2].precision(), c[2].recall()), (None, None));
        assert_eq!(accuracy(&m), 5.0 / 8.0);
        assert_eq!(accuracy(&[]), 0.0);
    }

    #[test]
    fn markdown_lists_every_label_with_its_figures() {
        let labels = vec!["1c".to_string(), "2e".to_string()];
        let confusion = vec![vec![2, 0], vec![1, 1]];
        let data = DataSummary {
            source: "/data/robot".into(),
            train_per_class: vec![5, 6],
            val_per_class: vec![2, 2],
            train_groups: 3,
            val_groups: 2,
            ..Default::default()
        };
        let settings = serde_json::json!({"lr": 0.001, "head": "narrow", "init": null});
        let report = Report {
            model: Path::new("m/coin.pt"),
            stage: 2,
            parent: Some(Path::new("m/stage1.pt")),
            settings: &settings,
            data: &data,
            labels: &labels,
            confusion: &confusion,
            curves: &[],
            best_epoch: 1,
            stop: "completed",
            plots: ["coin.curves.png", "coin.confusion.png"],
        };
        let md = report.markdown();
        assert!(md.contains("| 1c | 2 | 66.7% | 100.0% | 5 |"), "{md}");
        assert!(md.contains("| 2e | 2 | 100.0% | 50.0% | 6 |"), "{md}");
        assert!(md.contains("**Validation accuracy (best epoch): 75.0%** (3 of 4 crops)"), "{md}");
        assert!(md.contains("| head | narrow |") && md.contains("| init | – |"), "{md}");
        assert!(md.contains("Stage 2; parent model: m/stage1.pt."), "{md}");
        assert!(md.contains("![learning curves](coin.curves.png)"), "{md}");
    }
}
