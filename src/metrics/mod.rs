//! Classification metrics from a confusion matrix: accuracy, per-class precision / recall /
//! F1 / support, and their macro averages. Pure arithmetic, so it is tested by hand.
//! [`predictions`] keeps what they were counted from, image by image, for ensembles.

pub mod predictions;

use crate::emotion::NUM_CLASSES;
pub use predictions::SplitPredictions;
use serde::{Deserialize, Serialize};

/// `counts[true][pred]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub counts: [[u64; NUM_CLASSES]; NUM_CLASSES],
}

impl Confusion {
    pub fn add(&mut self, truth: usize, pred: usize) {
        self.counts[truth][pred] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..NUM_CLASSES).map(|i| self.counts[i][i]).sum()
    }
}

/// Metrics of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Everything fer-lab records about a model on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub per_class: [ClassMetrics; NUM_CLASSES],
    pub confusion: Confusion,
    /// Every image's class probabilities, when the evaluation saw them (what ensembles
    /// average); absent from evaluations derived from a confusion matrix alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<SplitPredictions>,
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl Evaluation {
    /// Derives all metrics from a confusion matrix. Classes absent from both truth and
    /// predictions score 0 (as scikit-learn's `zero_division=0`).
    pub fn from_confusion(confusion: Confusion, loss: f64) -> Evaluation {
        let per_class: [ClassMetrics; NUM_CLASSES] = std::array::from_fn(|c| {
            let tp = confusion.counts[c][c];
            let support: u64 = confusion.counts[c].iter().sum();
            let predicted: u64 = (0..NUM_CLASSES).map(|t| confusion.counts[t][c]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                precision,
                recall,
                f1,
                support,
            }
        });
        let mean =
            |f: fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / NUM_CLASSES as f64;
        Evaluation {
            accuracy: ratio(confusion.correct(), confusion.total()),
            loss,
            macro_precision: mean(|m| m.precision),
            macro_recall: mean(|m| m.recall),
            macro_f1: mean(|m| m.f1),
            per_class,
            confusion,
            predictions: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_example() {
        let mut c = Confusion::default();
        // class 0: 3 true, 2 right, 1 predicted as 1; class 1: 1 true, right; one class-0
        // prediction for a class-2 image.
        c.add(0, 0);
        c.add(0, 0);
        c.add(0, 1);
        c.add(1, 1);
        c.add(2, 0);
        let e = Evaluation::from_confusion(c, 0.7);
        assert!((e.accuracy - 3.0 / 5.0).abs() < 1e-12);
        let m0 = e.per_class[0];
        assert!((m0.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m0.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m0.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m0.support, 3);
        let m1 = e.per_class[1];
        assert!((m1.precision - 0.5).abs() < 1e-12);
        assert!((m1.recall - 1.0).abs() < 1e-12);
        assert!((m1.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.per_class[2].f1, 0.0);
        // Macro F1 averages over all seven classes.
        assert!((e.macro_f1 - (2.0 / 3.0 + 2.0 / 3.0) / 7.0).abs() < 1e-12);
    }
}
