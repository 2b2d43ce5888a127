//! Optuna's MedianPruner: after `warmup` epochs, prune a run whose best val accuracy so far is
//! below the median of the other runs' best at the same epoch, once at least `min_runs` others
//! have reached it.

use super::PruningError;
use serde::{Deserialize, Serialize};

/// `[pruning] method = "median"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Median {
    /// Epochs every run trains before the rule looks at it.
    #[serde(default = "one")]
    pub warmup: usize,
    /// Other runs that must have reached the epoch before a run can be pruned.
    #[serde(default = "three")]
    pub min_runs: usize,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

impl Median {
    pub fn validate(&self) -> Result<(), PruningError> {
        if self.min_runs == 0 {
            return Err(PruningError::NoMinRuns);
        }
        Ok(())
    }

    pub fn decides_at(&self, epoch: usize) -> bool {
        epoch > self.warmup
    }

    pub fn prunes(&self, mine: f64, others: &[f64]) -> bool {
        others.len() >= self.min_runs.max(1) && mine < median(others)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_waits_for_warmup_and_enough_runs() {
        let p = Median {
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
    fn no_min_runs_is_refused() {
        let p = Median {
            warmup: 0,
            min_runs: 0,
        };
        assert_eq!(p.validate(), Err(PruningError::NoMinRuns));
    }
}
