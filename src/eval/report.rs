//! The evaluation report: `report.md` for people, `report.json` for programs, and
//! `confusion.png`; each written to a temporary file and renamed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::EvalReport;
use super::metrics::Scores;
use crate::audit::stats::Interval;

/// Path of the Markdown report in output folder `out`.
pub fn markdown_path(out: &Path) -> PathBuf {
    out.join("report.md")
}

/// Path of the JSON report in output folder `out`.
pub fn json_path(out: &Path) -> PathBuf {
    out.join("report.json")
}

/// Path of the confusion matrix plot in output folder `out`.
pub fn confusion_path(out: &Path) -> PathBuf {
    out.join("confusion.png")
}

/// `a/n = p% [low%, high%]`, or `n/a` for an empty interval.
pub fn rate(i: &Interval) -> String {
    if i.n == 0 {
        return "n/a (0 trials)".to_owned();
    }
    i.to_string()
}

/// Detection figures: recall and the precision lower bound on labelled coins.
fn detection_section(s: &mut String, r: &EvalReport, sc: &Scores) {
    let _ = writeln!(s, "\n## Detection\n");
    let _ = writeln!(
        s,
        "A labelled coin counts as found when a detection's centre lies within half its radius. \
         Photos may hold coins nobody labelled, so a detection that matches no labelled coin is \
         not necessarily wrong: precision here counts all of them as false and is a lower \
         bound.\n"
    );
    let _ = writeln!(s, "- labelled coins found (recall): {}", rate(&sc.detection_recall));
    let _ = writeln!(
        s,
        "- detections on a labelled coin (precision, lower bound): {}",
        rate(&sc.detection_precision_lower_bound)
    );
    let _ = writeln!(s, "- detections on no labelled coin: {}", r.scorer.unmatched_detections);
}

/// Accuracy, the per-class table and the confusion matrix of the found coins (or crops).
fn classification_section(s: &mut String, r: &EvalReport, sc: &Scores) {
    let c = &r.scorer;
    let what = if r.kind == "images" { "crops" } else { "found coins" };
    let _ = writeln!(s, "\n## Classification of the {what}\n");
    let _ = writeln!(s, "Accuracy: {} (exact 95% interval).\n", rate(&sc.accuracy));
    let _ = writeln!(s, "| label | labelled | found | predicted | precision | recall |");
    let _ = writeln!(s, "|---|---:|---:|---:|---|---|");
    for k in &sc.classes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            k.label,
            k.labelled,
            k.matched,
            k.predicted,
            rate(&k.precision),
            rate(&k.recall)
        );
    }
    let _ = writeln!(s, "\n![confusion](confusion.png)\n");
    let _ = writeln!(s, "| true \\ predicted | {} |", c.labels.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(c.labels.len()));
    for (label, row) in c.labels.iter().zip(&c.confusion) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(s, "| {label} | {} |", cells.join(" | "));
    }
}

/// Renders the report as Markdown.
pub fn to_markdown(r: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Evaluation of {}\n", r.model.display());
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| input ({}) | `{}` |", r.kind, r.input.display());
    if let Some(t) = &r.topic {
        let _ = writeln!(s, "| topic | `{t}` |");
    }
    let truth = r.truth.as_ref().map_or("none".to_owned(), |t| format!("`{}`", t.display()));
    let _ = writeln!(s, "| ground truth | {truth} |");
    let _ = writeln!(s, "| frames read | {} |", r.frames);
    let rejected: usize = r.rejected.values().sum();
    let kinds: Vec<String> = r.rejected.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let kinds = if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) };
    let _ = writeln!(s, "| frames rejected | {rejected}{kinds} |");
    let _ = writeln!(s, "| frames without truth | {} |", r.unlabelled_frames);
    let params =
        r.params_file.as_ref().map_or("node defaults".to_owned(), |p| format!("`{}`", p.display()));
    let _ = writeln!(s, "| node parameters | {params} |");
    let _ = writeln!(s, "| model runs | {} |", r.model_run);
    if r.kind != "images" {
        let _ =
            writeln!(s, "| coins sent to the reject bin (low confidence) | {} |", r.low_confidence);
        let _ = writeln!(
            s,
            "| coins sent to the reject bin (unlike the training data) | {} |",
            r.unfamiliar
        );
        let _ = writeln!(s, "| shift monitor | {} |", r.shift);
        let _ = writeln!(s, "| sort commands | {} |", r.sort_commands);
    }
    if let Some(b) = &r.out_bag {
        let _ = writeln!(s, "| output bag | `{}` |", b.display());
    }
    if let Some(e) = &r.input_error {
        let _ = writeln!(
            s,
            "\n**Reading the input stopped early:** {e}. The figures below cover \
             every frame read before that point."
        );
    }
    if !r.labels_unknown_to_model.is_empty() {
        let _ = writeln!(
            s,
            "\n**The model cannot answer {}**: every coin of those labels counts as wrong \
             below.",
            r.labels_unknown_to_model.join(", ")
        );
    }
    match &r.scores {
        Some(sc) => {
            if r.kind != "images" {
                detection_section(&mut s, r, sc);
            }
            classification_section(&mut s, r, sc);
        }
        None => {
            let _ = writeln!(s, "\nNo ground truth: only speed was measured.");
        }
    }
    let _ = writeln!(s, "\n## Speed\n");
    let _ = writeln!(
        s,
        "{:.1} frames per second of pipeline time; {:.1} s wall-clock in all.\n",
        r.fps, r.wall_seconds
    );
    let _ = writeln!(s, "| stage | n | p50 ms | p95 ms | p99 ms | max ms | mean ms |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    // A crop set is only classified: its other stages did not run.
    let stages: &[&str] = if r.kind == "images" {
        &["classify", "total"]
    } else {
        &["decode", "locate", "crop", "classify", "total"]
    };
    for stage in stages {
        if let Some(l) = r.latency.get(*stage) {
            let _ = writeln!(
                s,
                "| {stage} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                l.n, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.mean_ms
            );
        }
    }
    s
}

/// Writes `report.md`, `report.json` and (with ground truth) `confusion.png` into `out`.
pub fn write(r: &EvalReport, out: &Path) -> Result<()> {
    let (md, json_file) = (markdown_path(out), json_path(out));
    crate::fsutil::write_atomic(&md, to_markdown(r).as_bytes())
        .with_context(|| format!("cannot write report {}", md.display()))?;
    let json = serde_json::to_vec_pretty(r)?;
    crate::fsutil::write_atomic(&json_file, &json)
        .with_context(|| format!("cannot write report {}", json_file.display()))?;
    let plot = confusion_path(out);
    if r.scores.is_none() && plot.is_file() {
        // A plot from an earlier run with truth would sit beside a report without it.
        std::fs::remove_file(&plot)
            .with_context(|| format!("cannot remove the stale {}", plot.display()))?;
    }
    if r.scores.is_some() && !r.scorer.labels.is_empty() {
        let title = format!("{} coins", r.scorer.matched);
        crate::plots::confusion_png(
            &r.scorer.confusion,
            &r.scorer.labels,
            &title,
            &confusion_path(out),
        )?;
    }
    Ok(())
}
