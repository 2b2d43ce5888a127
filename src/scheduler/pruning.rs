//! Pruning across the runs of a sweep: stop a run early when other runs show it will not win.
//!
//! The rules are pure functions of val accuracies, decided by each worker at the end of an
//! epoch from what the database holds at that moment — asynchronous, so random search and
//! pruning never wait for a whole batch of runs.
//!
//! - `median` (Optuna's MedianPruner): after `warmup` epochs, prune a run whose best val accuracy
//!   so far is below the median of the other runs' best at the same epoch, once at least
//!   `min_runs` others have reached it.
//! - `asha` (asynchronous successive halving): rungs at epochs r, rη, rη², …; a run reaching a
//!   rung continues only if it is in the top ⌈n/η⌉ of the n runs that have reached that rung.

use serde::{Deserialize, Serialize};

/// `[pruning]` of a sweep file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pruning {
    Median {
        #[serde(default = "one")]
        warmup: usize,
        #[serde(default = "three")]
        min_runs: usize,
    },
    Asha {
        #[serde(default = "one")]
        rung: usize,
        #[serde(default = "three")]
        eta: usize,
    },
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

/// A `[pruning]` setting no rule can work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruningError {
    #[error("pruning.min_runs must be ≥ 1")]
    NoMinRuns,
    #[error("pruning.rung must be ≥ 1 epoch")]
    NoRung,
    #[error("pruning.eta = {0} must be ≥ 2")]
    Eta(usize),
}

impl Pruning {
    pub fn validate(&self) -> Result<(), PruningError> {
        match *self {
            Pruning::Median { min_runs: 0, .. } => Err(PruningError::NoMinRuns),
            Pruning::Asha { rung: 0, .. } => Err(PruningError::NoRung),
            Pruning::Asha { eta, .. } if eta < 2 => Err(PruningError::Eta(eta)),
            _ => Ok(()),
        }
    }

    /// Whether to decide at `epoch` (median: every epoch after warm-up; ASHA: at rungs).
    pub fn decides_at(&self, epoch: usize) -> bool {
        match *self {
            Pruning::Median { warmup, .. } => epoch > warmup,
            Pruning::Asha { rung, eta } => is_rung(epoch, rung, eta),
        }
    }

    /// Whether a run whose best val accuracy so far is `mine` stops at this epoch, given the
    /// best-so-far of the other runs that reached it.
    pub fn prunes(&self, mine: f64, others: &[f64]) -> bool {
        match *self {
            Pruning::Median { min_runs, .. } => median_prunes(mine, others, min_runs),
            Pruning::Asha { eta, .. } => asha_prunes(mine, others, eta),
        }
    }
}

/// Whether `epoch` is an ASHA rung: r, rη, rη², …
pub fn is_rung(epoch: usize, rung: usize, eta: usize) -> bool {
    let mut r = rung;
    while r < epoch {
        r *= eta;
    }
    r == epoch
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn median_prunes(mine: f64, others: &[f64], min_runs: usize) -> bool {
    others.len() >= min_runs.max(1) && mine < median(others)
}

/// ASHA's promotion rule: keep the top ⌈n/η⌉ (at least one) of the n values at the rung,
/// this run's included.
pub fn asha_prunes(mine: f64, others: &[f64], eta: usize) -> bool {
    let n = others.len() + 1;
    let keep = n.div_ceil(eta).max(1);
    let better = others.iter().filter(|&&v| v > mine).count();
    better >= keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_are_r_times_powers_of_eta() {
        let rungs: Vec<usize> = (1..=30).filter(|&e| is_rung(e, 1, 3)).collect();
        assert_eq!(rungs, vec![1, 3, 9, 27]);
        let rungs: Vec<usize> = (1..=30).filter(|&e| is_rung(e, 2, 2)).collect();
        assert_eq!(rungs, vec![2, 4, 8, 16]);
    }

    /// Synthetic curves: 9 runs whose val accuracy at each epoch is fixed; they report in
    /// order, as asynchronous workers would. ASHA (r = 1, η = 3) must keep the best third at
    /// each rung, among those that have reached it.
    #[test]
    fn asha_promotes_the_top_third_and_prunes_the_rest() {
        let p = Pruning::Asha { rung: 1, eta: 3 };
        let finals = [0.30, 0.50, 0.45, 0.20, 0.60, 0.55, 0.35, 0.40, 0.25];
        let mut reached_rung1: Vec<f64> = Vec::new();
        let mut survivors = Vec::new();
        for (run, &acc) in finals.iter().enumerate() {
            let pruned = p.decides_at(1) && p.prunes(acc, &reached_rung1);
            reached_rung1.push(acc);
            if !pruned {
                survivors.push(run);
            }
        }
        // The first run always continues (nothing to compare with); after that a run continues
        // only when it is in the top ⌈n/3⌉ so far: run 2 (0.45) is second of 3 → pruned;
        // run 5 (0.55) is second of 6 and ⌈6/3⌉ = 2 → promoted; runs 6–8 are 5th of 7 and below.
        assert_eq!(survivors, vec![0, 1, 4, 5]);
        assert!(!p.decides_at(2));
    }

    #[test]
    fn median_waits_for_warmup_and_enough_runs() {
        let p = Pruning::Median {
            warmup: 1,
            min_runs: 3,
        };
        assert!(!p.decides_at(1));
        assert!(p.decides_at(2));
        assert!(!p.prunes(0.1, &[0.5, 0.6]), "too few runs to compare");
        assert!(p.prunes(0.4, &[0.5, 0.6, 0.3]));
        assert!(
            !p.prunes(0.5, &[0.5, 0.6, 0.3]),
            "equal to the median survives"
        );
        assert!(!p.prunes(0.7, &[0.5, 0.6, 0.3, 0.2]));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Pruning::Asha { rung: 1, eta: 1 }.validate().is_err());
        assert!(
            Pruning::Median {
                warmup: 0,
                min_runs: 0
            }
            .validate()
            .is_err()
        );
        let p: Pruning = toml::from_str("method = \"asha\"\neta = 4").unwrap();
        assert_eq!(p, Pruning::Asha { rung: 1, eta: 4 });
    }
}
