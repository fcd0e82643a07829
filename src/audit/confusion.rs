//! Per-class confusion matrix with precision and recall.

use serde::Serialize;

use super::predict::Predicted;

/// Counts of (true label, predicted label) over a test set.
///
/// Invariant: `matrix` is `labels.len()` square, rows are true labels, columns predictions;
/// `precision`, `recall` and `support` have one entry per label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// Class names in model order.
    pub labels: Vec<String>,
    /// `matrix[t][p]`: crops of class `t` predicted as `p`.
    pub matrix: Vec<Vec<usize>>,
    /// Test crops per true class.
    pub support: Vec<usize>,
    /// Share of crops predicted as the class that are of it (None when nothing was).
    pub precision: Vec<Option<f64>>,
    /// Share of the class's crops predicted as it (None when the class has no crops).
    pub recall: Vec<Option<f64>>,
}

impl Confusion {
    /// Tallies `p` over `labels` (indices in `p` refer to `labels`).
    pub fn new(labels: &[String], p: &Predicted) -> Self {
        let k = labels.len();
        let mut matrix = vec![vec![0usize; k]; k];
        for (&t, &q) in p.truth.iter().zip(&p.predicted) {
            if t < k && q < k {
                matrix[t][q] += 1;
            }
        }
        let support: Vec<usize> = matrix.iter().map(|r| r.iter().sum()).collect();
        let predicted: Vec<usize> = (0..k).map(|c| matrix.iter().map(|r| r[c]).sum()).collect();
        let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
        let precision = (0..k).map(|c| ratio(matrix[c][c], predicted[c])).collect();
        let recall = (0..k).map(|c| ratio(matrix[c][c], support[c])).collect();
        Self { labels: labels.to_vec(), matrix, support, precision, recall }
    }

    /// Labels without a single test crop.
    pub fn untested(&self) -> Vec<&str> {
        self.labels
            .iter()
            .zip(&self.support)
            .filter(|(_, n)| **n == 0)
            .map(|(l, _)| l.as_str())
            .collect()
    }

    /// The matrix as a Markdown table, followed by per-class precision and recall columns.
    pub fn to_markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}%", v * 100.0));
        let mut s = String::from("| true \\ predicted |");
        for l in &self.labels {
            s.push_str(&format!(" {l} |"));
        }
        s.push_str(" n | precision | recall |\n|---|");
        s.push_str(&"---:|".repeat(self.labels.len() + 3));
        s.push('\n');
        for (i, l) in self.labels.iter().enumerate() {
            s.push_str(&format!("| **{l}** |"));
            for v in &self.matrix[i] {
                s.push_str(&format!(" {v} |"));
            }
            s.push_str(&format!(
                " {} | {} | {} |\n",
                self.support[i],
                pct(self.precision[i]),
                pct(self.recall[i])
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_as_truth_and_columns_as_predictions() {
        let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let p = Predicted { truth: vec![0, 0, 0, 1, 1], predicted: vec![0, 0, 1, 1, 0] };
        let c = Confusion::new(&labels, &p);
        assert_eq!(c.matrix, [[2, 1, 0], [1, 1, 0], [0, 0, 0]]);
        assert_eq!(c.support, [3, 2, 0]);
        assert_eq!(c.precision, [Some(2.0 / 3.0), Some(0.5), None]);
        assert_eq!(c.recall, [Some(2.0 / 3.0), Some(0.5), None]);
        assert_eq!(c.untested(), ["c"]);
        let md = c.to_markdown();
        assert!(md.contains("| **a** | 2 | 1 | 0 | 3 | 66.7% | 66.7% |"), "{md}");
        assert!(md.contains("| **c** | 0 | 0 | 0 | 0 | – | – |"), "{md}");
    }
}
