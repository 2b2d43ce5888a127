//! Statistics over seeds: FER-2013 runs that differ only by seed vary by about ±0.5 points,
//! so a cell (one configuration, several seeds) is summarised as mean ± sd with a 95 %
//! confidence interval, and two cells are compared with Welch's t-test (unequal variances,
//! small n — the usual case of 3–5 seeds). The t distribution comes from `statrs`.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Groups runs into cells: runs with the same swept values (the seed left out of them) are
/// one cell. Takes each run's values and returns each cell's values with the indices of its
/// runs, cells in the order their first run comes, runs in the order given. The report and the
/// dashboard both group with this, so they agree on what a cell is.
pub fn cells_over_seeds<'a>(
    params: impl IntoIterator<Item = &'a [String]>,
) -> Vec<(&'a [String], Vec<usize>)> {
    let mut groups: Vec<(&[String], Vec<usize>)> = Vec::new();
    for (i, p) in params.into_iter().enumerate() {
        match groups.iter_mut().find(|g| g.0 == p) {
            Some(g) => g.1.push(i),
            None => groups.push((p, vec![i])),
        }
    }
    groups
}

/// Mean, sample standard deviation and a 95 % confidence interval of the mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample sd (n − 1); 0 for a single value.
    pub sd: f64,
    /// Half-width of the 95 % CI of the mean (t-based); `None` below 2 values.
    pub ci95: Option<f64>,
}

impl Summary {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let ci95 = (n > 1).then(|| t_quantile_975((n - 1) as f64) * sd / (n as f64).sqrt());
        Some(Summary { n, mean, sd, ci95 })
    }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided 95 %).
pub fn t_quantile_975(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .map(|t| t.inverse_cdf(0.975))
        .unwrap_or(f64::NAN)
}

/// Welch's two-sample t-test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Welch's t-test of `a` against `b`; `None` unless both have ≥ 2 values. Two cells whose
/// values are all identical and equal give p = 1; identical-but-different give p = 0.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    let (sa, sb) = (Summary::of(a)?, Summary::of(b)?);
    if sa.n < 2 || sb.n < 2 {
        return None;
    }
    let (va, vb) = (sa.sd.powi(2) / sa.n as f64, sb.sd.powi(2) / sb.n as f64);
    let diff = sa.mean - sb.mean;
    if va + vb == 0.0 {
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Some(Welch {
            t: if diff == 0.0 {
                0.0
            } else {
                f64::INFINITY * diff.signum()
            },
            df: (sa.n + sb.n - 2) as f64,
            p,
        });
    }
    let t = diff / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va.powi(2) / (sa.n - 1) as f64 + vb.powi(2) / (sb.n - 1) as f64);
    let p = StudentsT::new(0.0, 1.0, df)
        .map(|dist| 2.0 * (1.0 - dist.cdf(t.abs())))
        .unwrap_or(f64::NAN);
    Some(Welch { t, df, p })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn summary_by_hand() {
        // 60, 61, 62: mean 61, sd 1, CI half-width t(0.975, 2) · 1 / √3 = 4.302653 / 1.732051.
        let s = Summary::of(&[60.0, 61.0, 62.0]).unwrap();
        assert_eq!((s.n, s.mean, s.sd), (3, 61.0, 1.0));
        assert!(close(s.ci95.unwrap(), 2.484138, 1e-5), "{s:?}");
        let one = Summary::of(&[0.5]).unwrap();
        assert_eq!((one.sd, one.ci95), (0.0, None));
        assert_eq!(Summary::of(&[]), None);
        // Textbook quantiles.
        assert!(close(t_quantile_975(1.0), 12.706205, 1e-5));
        assert!(close(t_quantile_975(4.0), 2.776445, 1e-5));
        assert!(close(t_quantile_975(1000.0), 1.962339, 1e-5));
    }

    #[test]
    fn welch_by_hand() {
        // a = 1, 2, 3, 4 (mean 2.5, var 5/3); b = 3, 5, 7 (mean 5, var 4).
        // va = 5/12, vb = 4/3; t = −2.5 / √(7/4) = −1.889822;
        // df = (7/4)² / ((5/12)²/3 + (4/3)²/2) = 3.0625 / 0.9467593 = 3.234719;
        // two-sided p = 2 ∫_{|t|}^∞ t-pdf(df) = 0.148471 (Simpson's rule on the pdf, checked apart).
        let w = welch(&[1.0, 2.0, 3.0, 4.0], &[3.0, 5.0, 7.0]).unwrap();
        assert!(close(w.t, -1.889822, 1e-6), "{w:?}");
        assert!(close(w.df, 3.234719, 1e-6), "{w:?}");
        assert!(close(w.p, 0.148471, 1e-5), "{w:?}");
        assert!(
            welch(&[1.0], &[2.0, 3.0]).is_none(),
            "one seed cannot be tested"
        );
        assert_eq!(welch(&[1.0, 1.0], &[1.0, 1.0]).unwrap().p, 1.0);
        assert_eq!(welch(&[1.0, 1.0], &[2.0, 2.0]).unwrap().p, 0.0);
    }
}
