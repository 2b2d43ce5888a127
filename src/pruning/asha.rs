//! Asynchronous successive halving: rungs at epochs r, rη, rη², …; a run reaching a rung
//! continues only if it is in the top ⌈n/η⌉ of the n runs that have reached that rung.

use super::PruningError;
use serde::{Deserialize, Serialize};

/// `[pruning] method = "asha"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asha {
    /// The first rung, in epochs.
    #[serde(default = "one")]
    pub rung: usize,
    /// The reduction factor: rungs grow by η and keep the top 1/η.
    #[serde(default = "three")]
    pub eta: usize,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

impl Asha {
    pub fn validate(&self) -> Result<(), PruningError> {
        if self.rung == 0 {
            return Err(PruningError::NoRung);
        }
        if self.eta < 2 {
            return Err(PruningError::Eta(self.eta));
        }
        Ok(())
    }

    /// Whether `epoch` is a rung: r, rη, rη², …
    pub fn decides_at(&self, epoch: usize) -> bool {
        let mut r = self.rung;
        while r < epoch {
            r *= self.eta;
        }
        r == epoch
    }

    /// The promotion rule: keep the top ⌈n/η⌉ (at least one) of the n values at the rung,
    /// this run's included.
    pub fn prunes(&self, mine: f64, others: &[f64]) -> bool {
        let n = others.len() + 1;
        let keep = n.div_ceil(self.eta).max(1);
        let better = others.iter().filter(|&&v| v > mine).count();
        better >= keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_are_r_times_powers_of_eta() {
        let a = Asha { rung: 1, eta: 3 };
        let rungs: Vec<usize> = (1..=30).filter(|&e| a.decides_at(e)).collect();
        assert_eq!(rungs, vec![1, 3, 9, 27]);
        let a = Asha { rung: 2, eta: 2 };
        let rungs: Vec<usize> = (1..=30).filter(|&e| a.decides_at(e)).collect();
        assert_eq!(rungs, vec![2, 4, 8, 16]);
    }

    /// Synthetic curves: 9 runs whose val accuracy at each epoch is fixed; they report in
    /// order, as asynchronous workers would. ASHA (r = 1, η = 3) must keep the best third at
    /// each rung, among those that have reached it.
    #[test]
    fn asha_promotes_the_top_third_and_prunes_the_rest() {
        let p = Asha { rung: 1, eta: 3 };
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
    fn bad_settings_are_refused() {
        assert_eq!(
            Asha { rung: 1, eta: 1 }.validate(),
            Err(PruningError::Eta(1))
        );
        assert_eq!(
            Asha { rung: 0, eta: 3 }.validate(),
            Err(PruningError::NoRung)
        );
    }
}
