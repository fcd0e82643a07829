//! Verdicts from the audit's numbers, and the Markdown and JSON reports.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::controls::ControlScore;
use super::curves;
use super::phash::HASH_BITS;
use super::{AuditReport, Check, TELL_APART_FROM, Verdict};

/// Most entries listed per section of the Markdown report; the JSON report has them all.
const LIST_LIMIT: usize = 20;

/// The Markdown report inside an output folder.
pub fn markdown_path(out: &Path) -> PathBuf {
    out.join("audit.md")
}

/// The JSON report inside an output folder.
pub fn json_path(out: &Path) -> PathBuf {
    out.join("audit.json")
}

fn check(name: &str, verdict: Verdict, why: String) -> Check {
    Check { name: name.to_owned(), verdict, why }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// One verdict per check, in report order, from the numbers in `r`.
pub fn judge(r: &AuditReport) -> Vec<Check> {
    let l = &r.leakage;
    let pairs = r.train_images * r.test_images;
    let exact = match l.exact.first() {
        Some(first) => check(
            "exact_duplicates",
            Verdict::Fail,
            format!(
                "{} test file(s) are byte-identical to training files (e.g. {} = {})",
                l.exact.len(),
                first.test.display(),
                first.train.display()
            ),
        ),
        None => check(
            "exact_duplicates",
            Verdict::Pass,
            format!("no byte-identical files among {pairs} train/test pairs"),
        ),
    };
    let near = match l.near.first() {
        Some(first) => check(
            "near_duplicates",
            Verdict::Fail,
            format!(
                "{} train/test pair(s) within {} of {HASH_BITS} pHash bits (e.g. {} ~ {}, {} \
                 bits): the same picture re-encoded or retouched",
                l.near.len(),
                l.threshold,
                first.test.display(),
                first.train.display(),
                first.distance
            ),
        ),
        None => check(
            "near_duplicates",
            Verdict::Pass,
            format!(
                "no pair within {} of {HASH_BITS} pHash bits; the closest pair is {} bits apart",
                l.threshold, l.closest_distance
            ),
        ),
    };
    let groups = if l.shared_groups.is_empty() {
        check(
            "group_leak",
            Verdict::Pass,
            format!(
                "the {} training and {} test source photos are disjoint",
                l.train_groups, l.test_groups
            ),
        )
    } else {
        let names: Vec<&str> = l.shared_groups.iter().take(5).map(|g| g.group.as_str()).collect();
        check(
            "group_leak",
            Verdict::Fail,
            format!(
                "{} source photo(s) have crops on both sides ({}{})",
                l.shared_groups.len(),
                names.join(", "),
                if l.shared_groups.len() > 5 { ", …" } else { "" }
            ),
        )
    };
    let a = &r.accuracy.interval;
    let acc_line = format!("{a} correct (95% interval)");
    let accuracy = if a.n < r.accuracy.n_needed {
        check(
            "test_accuracy",
            Verdict::Warn,
            format!(
                "{acc_line}; {} test crops cannot tell 100% from {}: that needs at least {}",
                a.n,
                pct(TELL_APART_FROM),
                r.accuracy.n_needed
            ),
        )
    } else {
        check("test_accuracy", Verdict::Pass, acc_line)
    };
    let shuffled = match &r.shuffled {
        Some(s) => {
            let (v, why) = s.verdict("labels reach the test set by a way other than the image");
            check("shuffled_labels", v, why)
        }
        None => check("shuffled_labels", Verdict::Warn, "skipped (--control-epochs 0)".into()),
    };
    let (v, why) = r.background.verdict("the model reads the background, not the coin");
    let background = check("background_only", v, why);
    let curves = match &r.curves_file {
        Some(_) => {
            let (v, why) = curves::judge(&r.curves);
            check("curves", v, why)
        }
        None => check(
            "curves",
            Verdict::Warn,
            format!("no curves file beside {} to check", r.model.display()),
        ),
    };
    let c = &r.confusion;
    let untested = c.untested();
    let confusion = if untested.is_empty() {
        let worst = c
            .recall
            .iter()
            .zip(&c.labels)
            .filter_map(|(r, l)| r.map(|r| (r, l)))
            .min_by(|x, y| x.0.total_cmp(&y.0));
        let why = worst.map_or(String::new(), |(r, l)| format!("lowest recall {l}: {}", pct(r)));
        check("confusion", Verdict::Pass, why)
    } else {
        check(
            "confusion",
            Verdict::Warn,
            format!("model labels without test crops: {}", untested.join(", ")),
        )
    };
    vec![exact, near, groups, accuracy, shuffled, background, curves, confusion]
}

fn control_section(s: &mut String, title: &str, how: &str, c: Option<&ControlScore>) {
    let _ = writeln!(s, "\n## {title}\n\n{how}\n");
    if let Some(c) = c {
        let a = &c.accuracy;
        let _ = writeln!(
            s,
            "Accuracy {a} (95% interval). Chance is 1/{} = {}; the largest test class is {} of \
             the set; FAIL when the interval's lower end is above the larger of the two.",
            (1.0 / c.chance).round(),
            pct(c.chance),
            pct(c.majority)
        );
    }
}

/// Renders the report as Markdown.
pub fn to_markdown(r: &AuditReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Audit of `{}`\n", r.model.display());
    let _ = writeln!(s, "- labels: {}", r.labels.join(", "));
    let _ = writeln!(
        s,
        "- training set: `{}`, {} images, {} source photos",
        r.train.display(),
        r.train_images,
        r.leakage.train_groups
    );
    let _ = writeln!(
        s,
        "- test set: `{}`, {} images, {} source photos",
        r.test.display(),
        r.test_images,
        r.leakage.test_groups
    );
    let _ = writeln!(s, "- overall verdict: **{}**\n", r.overall);
    let _ = writeln!(s, "| check | verdict | why |\n|---|---|---|");
    for c in &r.checks {
        let _ = writeln!(s, "| {} | **{}** | {} |", c.name, c.verdict, c.why.replace('|', "\\|"));
    }

    let l = &r.leakage;
    let _ = writeln!(s, "\n## Exact duplicates\n\nSHA-256 of every file's bytes.\n");
    for p in l.exact.iter().take(LIST_LIMIT) {
        let _ = writeln!(s, "- `{}` = `{}`", p.test.display(), p.train.display());
    }
    let _ = writeln!(
        s,
        "\n## Near-duplicates\n\n{HASH_BITS}-bit DCT pHash of the 128×128 grey picture; a pair \
         counts when at most {} bits differ (copies re-encoded or brightened stay far inside that, \
         coins of different classes far outside). Closest train/test pair: {} bits.\n",
        l.threshold, l.closest_distance
    );
    if !l.near.is_empty() {
        let _ = writeln!(s, "| test | train | bits |\n|---|---|---:|");
        for p in l.near.iter().take(LIST_LIMIT) {
            let _ = writeln!(
                s,
                "| `{}` | `{}` | {} |",
                p.test.display(),
                p.train.display(),
                p.distance
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## Source photos on both sides\n\nA file's source photo is its name without the \
         trailing `_<k>`.\n"
    );
    if !l.shared_groups.is_empty() {
        let _ = writeln!(s, "| photo | train files | test files |\n|---|---:|---:|");
        for g in l.shared_groups.iter().take(LIST_LIMIT) {
            let _ = writeln!(s, "| `{}` | {} | {} |", g.group, g.train_files, g.test_files);
        }
    }

    let a = &r.accuracy.interval;
    let _ = writeln!(
        s,
        "\n## Test accuracy\n\n{a} (exact Clopper–Pearson 95% interval). A perfect score \
         excludes {} only from n = {} on.",
        pct(TELL_APART_FROM),
        r.accuracy.n_needed
    );
    control_section(
        &mut s,
        "Shuffled-label control",
        "A small network retrained from scratch on the training set with its labels shuffled \
         among the images, then scored on the test set.",
        r.shuffled.as_ref(),
    );
    control_section(
        &mut s,
        "Background-only control",
        &format!(
            "The model on the test crops with the central disc of radius {:.1} px (the coin, at \
             the model's crop scale) filled with the mean colour around it.",
            r.mask_radius_px
        ),
        Some(&r.background),
    );
    let _ = writeln!(s, "\n## Learning curves\n");
    match &r.curves_file {
        Some(f) => {
            let _ = writeln!(s, "From `{}`.\n", f.display());
            s.push_str(&crate::train::curves::markdown_table(&r.curves));
        }
        None => {
            let _ = writeln!(s, "No curves file.");
        }
    }
    let _ = writeln!(s, "\n## Per-class confusion (test set)\n\n{}", r.confusion.to_markdown());
    s
}

/// Writes the Markdown and JSON reports into `out` (created if needed), each atomically.
pub fn write(r: &AuditReport, out: &Path) -> Result<()> {
    crate::fsutil::write_atomic(&markdown_path(out), to_markdown(r).as_bytes())?;
    let json = serde_json::to_string_pretty(r).context("cannot serialise the audit report")?;
    crate::fsutil::write_atomic(&json_path(out), json.as_bytes())
}
