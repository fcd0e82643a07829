//! `coin_sorter monitor study`: how well the monitor tells two crop sets apart, and how fast
//! the stream state reacts when the input switches from one to the other.
//!
//! The crops go through the exported TorchScript model, exactly as the node scores them. For
//! each score kind the study reports the AUROC between the in-domain and the shifted crops,
//! and the share of each set above the threshold. It then replays many random orders of the
//! in-domain crops followed by the shifted crops through the node's stream monitor, and
//! counts the coins after the switch until WARN and ERROR, and any alarm before it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::check::DEFAULT_SHIFT;
use super::score::{RawScores, ScoreKind, ShiftScorer, Threshold};
use super::stats::quantile;
use super::stream::{ShiftLevel, StreamMonitor, StreamParams};
use crate::audit::stats::{Interval, clopper_pearson};
use crate::classify::device::DevicePref;
use crate::classify::model::Classifier;
use crate::train::dataset::ImageSet;

/// Options of `coin_sorter monitor study`.
#[derive(Debug, Clone, clap::Args)]
pub struct StudyArgs {
    /// TorchScript model whose metadata holds monitor statistics.
    #[arg(long, value_name = "FILE.pt")]
    pub model: PathBuf,
    /// Class-per-folder crops like the training data but never trained on (held-out photos).
    #[arg(long, value_name = "DIR")]
    pub in_domain: PathBuf,
    /// Class-per-folder crops from the other domain (another camera).
    #[arg(long, value_name = "DIR")]
    pub shifted: PathBuf,
    /// Folder for shift-study.md, shift-study.json and shift-roc.png.
    #[arg(long, value_name = "DIR", default_value = "out/shift-study")]
    pub out: PathBuf,
    /// Validation quantile used as the coin threshold.
    #[arg(long, default_value_t = DEFAULT_SHIFT.quantile)]
    pub quantile: f64,
    /// Random orders of the crops replayed through the stream monitor.
    #[arg(long, default_value_t = 200)]
    pub orders: usize,
    /// Seed of those orders.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the model runs: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// How one score kind separates the two sets.
#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    pub kind: ScoreKind,
    /// Probability that a shifted crop scores above an in-domain crop (ties count half).
    pub auroc: f64,
    /// Hanley–McNeil standard error of the AUROC.
    pub auroc_se: f64,
    /// Raw threshold (the validation quantile).
    pub threshold: f32,
    /// In-domain crops above the threshold (false alarms per coin).
    pub in_domain_flagged: Interval,
    /// Shifted crops above the threshold (caught per coin).
    pub shifted_flagged: Interval,
    /// ROC curve points `(false positive rate, true positive rate)`, from (0, 0) to (1, 1).
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
}

/// Distribution of a coin count over the replayed orders.
#[derive(Debug, Clone, Serialize)]
pub struct CountSummary {
    /// Orders in which the level was reached.
    pub reached: usize,
    /// Median, 90th percentile and maximum over those orders; `None` when never reached.
    pub median: Option<usize>,
    pub p90: Option<usize>,
    pub max: Option<usize>,
}

/// What the replays through the stream monitor showed, for one score kind.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchResult {
    pub kind: ScoreKind,
    pub orders: usize,
    /// Orders in which the state left OK before the switch (false alarms).
    pub alarms_before_switch: usize,
    /// Share of in-domain coins, over all orders, after which the state was OK.
    pub in_domain_ok_share: f64,
    /// Coins after the switch until WARN (or worse), and until ERROR.
    pub coins_to_warn: CountSummary,
    pub coins_to_error: CountSummary,
}

/// The whole study, as written to shift-study.json.
#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub model: String,
    pub in_domain: String,
    pub shifted: String,
    pub in_domain_crops: usize,
    pub shifted_crops: usize,
    pub quantile: f64,
    pub stream: StreamSettings,
    pub kinds: Vec<KindResult>,
    pub switches: Vec<SwitchResult>,
    /// Files written.
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub roc_png: PathBuf,
}

/// The stream settings the replays ran with (the node's defaults).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StreamSettings {
    pub window: usize,
    pub min_coins: usize,
    pub warn_fraction: f64,
    pub error_fraction: f64,
}

impl From<StreamParams> for StreamSettings {
    fn from(p: StreamParams) -> Self {
        Self {
            window: p.window,
            min_coins: p.min_coins,
            warn_fraction: p.warn_fraction,
            error_fraction: p.error_fraction,
        }
    }
}

/// Crops per forward pass.
const BATCH: usize = 32;

/// Scores every crop of a class-per-folder set with the model, as the node would.
fn score_set(classifier: &Classifier, scorer: &ShiftScorer, dir: &Path) -> Result<Vec<RawScores>> {
    let meta = classifier.metadata();
    let set = ImageSet::load(dir, meta.input_size)
        .with_context(|| format!("cannot load crops from {}", dir.display()))?;
    let bar = crate::progress::crops_bar(set.samples.len(), &format!("scoring {}", dir.display()));
    let mut out = Vec::with_capacity(set.samples.len());
    for chunk in set.samples.chunks(BATCH) {
        let pixels: Vec<u8> = chunk.iter().flat_map(|s| s.rgb().iter().copied()).collect();
        for p in classifier.classify_rgb(&pixels)? {
            out.push(scorer.scores(&p.logits, &p.features));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    ensure!(
        out.iter().all(|s| s.mahalanobis.is_some()),
        "model {} gives no features for the monitor",
        classifier.path().display()
    );
    Ok(out)
}

/// AUROC of `positive` over `negative` (Mann–Whitney, ties half) with the Hanley–McNeil
/// standard error, and the ROC curve. Both lists must be non-empty.
pub fn auroc(negative: &[f32], positive: &[f32]) -> (f64, f64, Vec<(f64, f64)>) {
    let (n0, n1) = (negative.len() as f64, positive.len() as f64);
    let mut all: Vec<(f32, bool)> =
        negative.iter().map(|&s| (s, false)).chain(positive.iter().map(|&s| (s, true))).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp, mut area) = (0.0f64, 0.0f64, 0.0f64);
    let mut roc = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        let (mut dtp, mut dfp) = (0.0, 0.0);
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                dtp += 1.0
            } else {
                dfp += 1.0
            }
            j += 1;
        }
        // A tied block is a straight segment: its area counts positives above the ties fully
        // and the tied pairs half.
        area += dfp * (tp + dtp / 2.0);
        tp += dtp;
        fp += dfp;
        roc.push((fp / n0, tp / n1));
        i = j;
    }
    let a = area / (n0 * n1);
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    let var = (a * (1.0 - a) + (n1 - 1.0) * (q1 - a * a) + (n0 - 1.0) * (q2 - a * a)) / (n0 * n1);
    (a, var.max(0.0).sqrt(), roc)
}

fn summary(mut counts: Vec<usize>) -> CountSummary {
    counts.sort_unstable();
    CountSummary {
        reached: counts.len(),
        median: quantile(&counts, 0.5),
        p90: quantile(&counts, 0.9),
        max: counts.last().copied(),
    }
}

/// Replays `orders` random orders: all `inside` scaled scores shuffled, then all `outside`
/// shuffled, through a fresh stream monitor each.
fn replay(
    kind: ScoreKind,
    inside: &[f32],
    outside: &[f32],
    params: StreamParams,
    orders: usize,
    seed: u64,
) -> Result<SwitchResult> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut alarms, mut ok_coins) = (0, 0usize);
    let (mut to_warn, mut to_error) = (Vec::new(), Vec::new());
    for _ in 0..orders {
        let mut a = inside.to_vec();
        let mut b = outside.to_vec();
        a.shuffle(&mut rng);
        b.shuffle(&mut rng);
        let mut m = StreamMonitor::new(params)?;
        let mut alarmed = false;
        for &s in &a {
            m.push(s);
            alarmed |= m.state().level != ShiftLevel::Ok;
            ok_coins += usize::from(m.state().level == ShiftLevel::Ok);
        }
        alarms += usize::from(alarmed);
        let (mut warn, mut error) = (None, None);
        for (k, &s) in b.iter().enumerate() {
            m.push(s);
            let level = m.state().level;
            if level >= ShiftLevel::Warn && warn.is_none() {
                warn = Some(k + 1);
            }
            if level == ShiftLevel::Error && error.is_none() {
                error = Some(k + 1);
            }
        }
        to_warn.extend(warn);
        to_error.extend(error);
    }
    Ok(SwitchResult {
        kind,
        orders,
        alarms_before_switch: alarms,
        in_domain_ok_share: ok_coins as f64 / (orders * inside.len()).max(1) as f64,
        coins_to_warn: summary(to_warn),
        coins_to_error: summary(to_error),
    })
}

/// Runs the study and writes its report; see the module documentation.
pub fn run(args: &StudyArgs) -> Result<StudyReport> {
    ensure!(
        args.orders >= 1 && args.orders <= 100_000,
        "--orders {} must be 1..100000",
        args.orders
    );
    ensure!((0.5..=1.0).contains(&args.quantile), "--quantile {} is outside 0.5..1", args.quantile);
    ensure!(
        !args.out.exists() || args.out.is_dir(),
        "--out {} exists and is not a folder",
        args.out.display()
    );
    let classifier = Classifier::load(&args.model, args.device.parse::<DevicePref>()?)?;
    let stats = classifier.metadata().monitor.clone().with_context(|| {
        format!(
            "{} has no monitor statistics; run `coin_sorter monitor fit` first",
            args.model.display()
        )
    })?;
    let scorer = ShiftScorer::new(stats.clone())?;
    let inside = score_set(&classifier, &scorer, &args.in_domain)?;
    let outside = score_set(&classifier, &scorer, &args.shifted)?;
    ensure!(!inside.is_empty() && !outside.is_empty(), "both crop sets must hold crops");
    let params = DEFAULT_SHIFT.stream;
    let (mut kinds, mut switches) = (Vec::new(), Vec::new());
    for kind in ScoreKind::ALL {
        let pick = |v: &[RawScores]| -> Vec<f32> { v.iter().filter_map(|s| s.get(kind)).collect() };
        let (a, b) = (pick(&inside), pick(&outside));
        let t = Threshold::from_validation(&stats, kind, args.quantile)?;
        let (auroc, auroc_se, roc) = auroc(&a, &b);
        let above = |v: &[f32]| v.iter().filter(|&&s| t.scale(s) > 1.0).count();
        kinds.push(KindResult {
            kind,
            auroc,
            auroc_se,
            threshold: t.threshold,
            in_domain_flagged: clopper_pearson(above(&a), a.len(), 0.95),
            shifted_flagged: clopper_pearson(above(&b), b.len(), 0.95),
            roc,
        });
        let scale = |v: &[f32]| -> Vec<f32> { v.iter().map(|&s| t.scale(s)).collect() };
        switches.push(replay(kind, &scale(&a), &scale(&b), params, args.orders, args.seed)?);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let report = StudyReport {
        model: args.model.display().to_string(),
        in_domain: args.in_domain.display().to_string(),
        shifted: args.shifted.display().to_string(),
        in_domain_crops: inside.len(),
        shifted_crops: outside.len(),
        quantile: args.quantile,
        stream: params.into(),
        kinds,
        switches,
        markdown: args.out.join("shift-study.md"),
        json: args.out.join("shift-study.json"),
        roc_png: args.out.join("shift-roc.png"),
    };
    let curves: Vec<(String, Vec<(f64, f64)>)> = report
        .kinds
        .iter()
        .map(|k| (format!("{} (AUROC {:.3})", k.kind.name(), k.auroc), k.roc.clone()))
        .collect();
    crate::plots::roc_png(&curves, "in-domain vs shifted crops", &report.roc_png)?;
    crate::fsutil::write_atomic(&report.json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    crate::fsutil::write_atomic(&report.markdown, to_markdown(&report).as_bytes())?;
    Ok(report)
}

fn count(c: &CountSummary, orders: usize) -> String {
    match (c.median, c.p90, c.max) {
        (Some(m), Some(p), Some(x)) => {
            format!("{m} / {p} / {x} (reached in {} of {orders} orders)", c.reached)
        }
        _ => format!("never (0 of {orders} orders)"),
    }
}

/// The report as Markdown.
pub fn to_markdown(r: &StudyReport) -> String {
    let mut s = format!(
        "# Shift monitor study\n\nModel `{}`.\n\n- in-domain crops: {} from `{}`\n- shifted crops: \
         {} from `{}`\n- coin threshold: validation quantile {}\n- stream: WARN at {:.0}% and \
         ERROR at {:.0}% of the last {} coins, after at least {}\n\n## Per coin\n\n\
         | score | AUROC ± SE | in-domain above threshold | shifted above threshold |\n\
         |---|---|---|---|\n",
        r.model,
        r.in_domain_crops,
        r.in_domain,
        r.shifted_crops,
        r.shifted,
        r.quantile,
        r.stream.warn_fraction * 100.0,
        r.stream.error_fraction * 100.0,
        r.stream.window,
        r.stream.min_coins
    );
    for k in &r.kinds {
        s.push_str(&format!(
            "| {} | {:.3} ± {:.3} | {} | {} |\n",
            k.kind.name(),
            k.auroc,
            k.auroc_se,
            k.in_domain_flagged,
            k.shifted_flagged
        ));
    }
    s.push_str(&format!(
        "\n![ROC]({})\n\n## Stream, input switching from in-domain to shifted\n\n{} random orders: \
         every in-domain crop, then every shifted crop. Coins after the switch as median / 90th \
         percentile / max.\n\n| score | alarms before the switch | in-domain coins with state OK \
         | coins to WARN | coins to ERROR |\n|---|---|---|---|---|\n",
        r.roc_png.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        r.switches.first().map_or(0, |w| w.orders)
    ));
    for w in &r.switches {
        s.push_str(&format!(
            "| {} | {} of {} | {:.1}% | {} | {} |\n",
            w.kind.name(),
            w.alarms_before_switch,
            w.orders,
            w.in_domain_ok_share * 100.0,
            count(&w.coins_to_warn, w.orders),
            count(&w.coins_to_error, w.orders)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_pairs_and_ties_half() {
        let (a, _, roc) = auroc(&[0.0, 1.0], &[2.0, 3.0]);
        assert_eq!(a, 1.0);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        assert_eq!(auroc(&[2.0, 3.0], &[0.0, 1.0]).0, 0.0);
        assert_eq!(auroc(&[1.0], &[1.0]).0, 0.5);
        // Pairs: (0,0.5) ✓, (0,2) ✓, (1,0.5) ✗, (1,2) ✓ → 3 of 4.
        assert_eq!(auroc(&[0.0, 1.0], &[0.5, 2.0]).0, 0.75);
    }

    #[test]
    fn replays_count_coins_to_warn_after_the_switch() {
        let params =
            StreamParams { window: 10, min_coins: 3, warn_fraction: 0.3, error_fraction: 0.6 };
        let w = replay(ScoreKind::Energy, &[0.0; 20], &[5.0; 10], params, 3, 1).unwrap();
        assert_eq!(w.alarms_before_switch, 0);
        assert_eq!(w.in_domain_ok_share, 1.0);
        // 3 flagged of the last 10 reach 30%; 6 reach 60%.
        assert_eq!((w.coins_to_warn.median, w.coins_to_warn.reached), (Some(3), 3));
        assert_eq!(w.coins_to_error.max, Some(6));
        let never = replay(ScoreKind::Energy, &[0.0; 5], &[0.5; 5], params, 2, 1).unwrap();
        assert_eq!((never.coins_to_warn.reached, never.coins_to_warn.median), (0, None));
    }
}
