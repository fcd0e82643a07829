//! Exact binomial confidence intervals (Clopper–Pearson) from the regularized incomplete beta
//! function, for accuracies measured on small test sets.

use serde::Serialize;

/// Confidence level of every interval the audit reports.
pub const CONFIDENCE: f64 = 0.95;

/// A two-sided confidence interval for a proportion, with the counts it came from.
///
/// Invariant: `0 <= low <= estimate <= high <= 1` and `successes <= n`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Successes observed.
    pub successes: usize,
    /// Trials.
    pub n: usize,
    /// `successes / n` (0 when `n` is 0).
    pub estimate: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// `k/n = p% [low%, high%]`, the one way reports write a rate.
impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} = {:.1}% [{:.1}%, {:.1}%]",
            self.successes,
            self.n,
            self.estimate * 100.0,
            self.low * 100.0,
            self.high * 100.0
        )
    }
}

/// Natural log of the gamma function for `x > 0`: the Stirling series, after shifting small
/// arguments up with Γ(x) = Γ(x + 1) / x. From x = 10 on, the series' first omitted term is
/// below 1e-15, so the result is good to about 1e-13 relative.
pub fn ln_gamma(x: f64) -> f64 {
    let mut shift = 0.0;
    let mut x = x;
    while x < 10.0 {
        shift -= x.ln();
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv
        * (1.0 / 12.0
            - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0))));
    shift + (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + series
}

/// The continued fraction of I_x(a, b) (Abramowitz & Stegun 26.5.8), evaluated with the
/// modified Lentz method. Converges fast for `x < (a + 1) / (a + b + 2)`.
fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut f = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let two_m = 2.0 * m;
        // Even step d_{2m}, then odd step d_{2m+1} of the fraction 1/(1+ d1/(1+ d2/(1+ ...))).
        let even = m * (b - m) * x / ((a + two_m - 1.0) * (a + two_m));
        let odd = -(a + m) * (a + b + m) * x / ((a + two_m) * (a + two_m + 1.0));
        for coeff in [even, odd] {
            d = 1.0 + coeff * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + coeff / c;
            if c.abs() < TINY {
                c = TINY;
            }
            f *= c * d;
        }
        if (c * d - 1.0).abs() < EPS {
            break;
        }
    }
    f
}

/// The regularized incomplete beta function I_x(a, b) = P(B <= x) for B ~ Beta(a, b), with
/// `a, b > 0`; `x` is clamped to [0, 1].
pub fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() + ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b);
    // The fraction converges quickly only left of the mean; use I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

/// The `q` quantile of Beta(a, b): the `x` with I_x(a, b) = q, found by bisection (the CDF is
/// increasing), to 1e-12.
pub fn beta_quantile(q: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if regularized_beta(mid, a, b) < q {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The exact (Clopper–Pearson) two-sided interval for `successes` out of `n` at
/// `confidence`: the lower end is the α/2 quantile of Beta(k, n − k + 1), the upper end the
/// 1 − α/2 quantile of Beta(k + 1, n − k), with 0 and 1 at the extremes. `n = 0` gives [0, 1].
pub fn clopper_pearson(successes: usize, n: usize, confidence: f64) -> Interval {
    let k = successes.min(n);
    let alpha = 1.0 - confidence;
    let (kf, nf) = (k as f64, n as f64);
    let estimate = if n == 0 { 0.0 } else { kf / nf };
    let low = if k == 0 { 0.0 } else { beta_quantile(alpha / 2.0, kf, nf - kf + 1.0) };
    let high = if k == n { 1.0 } else { beta_quantile(1.0 - alpha / 2.0, kf + 1.0, nf - kf) };
    Interval { successes: k, n, estimate, low, high }
}

/// The smallest test-set size on which a perfect score's interval excludes `rate`, i.e. on
/// which 100% can be told apart from `rate` (e.g. 0.9) at `confidence`.
pub fn n_to_exclude(rate: f64, confidence: f64) -> usize {
    (1..=100_000).find(|&n| clopper_pearson(n, n, confidence).low > rate).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P(X >= k) for X ~ Binomial(n, p), summed directly: equals I_p(k, n - k + 1).
    fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
        (k..=n)
            .map(|i| {
                let ln_choose = ln_gamma((n + 1) as f64)
                    - ln_gamma((i + 1) as f64)
                    - ln_gamma((n - i + 1) as f64);
                (ln_choose + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln()).exp()
            })
            .sum()
    }

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        assert!((ln_gamma(1.0)).abs() < 1e-13);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(21.0) - 2_432_902_008_176_640_000f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
    }

    #[test]
    fn incomplete_beta_equals_the_binomial_tail() {
        for (k, n, p) in [(1, 10, 0.3), (5, 10, 0.5), (9, 10, 0.95), (30, 53, 0.4), (3, 200, 0.01)]
        {
            let want = binomial_upper_tail(k, n, p);
            let got = regularized_beta(p, k as f64, (n - k + 1) as f64);
            assert!((got - want).abs() < 1e-12, "I_{p}({k},{}) = {got}, want {want}", n - k + 1);
        }
        assert!((regularized_beta(0.5, 2.5, 2.5) - 0.5).abs() < 1e-14);
        assert!((regularized_beta(0.25, 1.0, 1.0) - 0.25).abs() < 1e-14);
    }

    #[test]
    fn perfect_scores_have_closed_form_ends() {
        let ci = clopper_pearson(20, 20, 0.95);
        assert!((ci.low - 0.025f64.powf(1.0 / 20.0)).abs() < 1e-10);
        assert_eq!(ci.high, 1.0);
        assert_eq!(n_to_exclude(0.9, 0.95), 36);
    }
}
