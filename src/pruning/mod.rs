//! Pruning across the runs of a sweep: stop a run early when other runs show it will not win.
//!
//! The rules are pure functions of val accuracies, decided by each worker at the end of an
//! epoch from what the database holds at that moment — asynchronous, so random search and
//! pruning never wait for a whole batch of runs. One file per rule: [`median`] (Optuna's
//! MedianPruner) and [`asha`] (asynchronous successive halving).
//!
//! To add a rule: a file with its settings struct (serde, `deny_unknown_fields`, a default per
//! knob) and its `validate` / `decides_at` / `prunes`, then one variant in [`Pruning`] and one
//! arm in each of its methods.

pub mod asha;
pub mod median;

pub use asha::Asha;
pub use median::Median;
use serde::{Deserialize, Serialize};

/// `[pruning]` of a sweep file: `method = "median" | "asha"` and that rule's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Pruning {
    Median(Median),
    Asha(Asha),
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
        match self {
            Pruning::Median(p) => p.validate(),
            Pruning::Asha(p) => p.validate(),
        }
    }

    /// Whether to decide at `epoch` (median: every epoch after warm-up; ASHA: at rungs).
    pub fn decides_at(&self, epoch: usize) -> bool {
        match self {
            Pruning::Median(p) => p.decides_at(epoch),
            Pruning::Asha(p) => p.decides_at(epoch),
        }
    }

    /// Whether a run whose best val accuracy so far is `mine` stops at this epoch, given the
    /// best-so-far of the other runs that reached it.
    pub fn prunes(&self, mine: f64, others: &[f64]) -> bool {
        match self {
            Pruning::Median(p) => p.prunes(mine, others),
            Pruning::Asha(p) => p.prunes(mine, others),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_files_table_picks_the_rule_and_its_defaults() {
        let p: Pruning = toml::from_str("method = \"asha\"\neta = 4").unwrap();
        assert_eq!(p, Pruning::Asha(Asha { rung: 1, eta: 4 }));
        let p: Pruning = toml::from_str("method = \"median\"").unwrap();
        assert_eq!(
            p,
            Pruning::Median(Median {
                warmup: 1,
                min_runs: 3
            })
        );
        let err = toml::from_str::<Pruning>("method = \"median\"\neta = 4").unwrap_err();
        assert!(err.to_string().contains("eta"), "{err}");
    }
}
