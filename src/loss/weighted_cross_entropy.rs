//! Class-weighted cross-entropy: each sample's cross-entropy times its target class's weight,
//! normalised by the sum of those weights (PyTorch's `weight=` semantics), so that rare classes
//! count more.

use super::{check_seven, inverse_frequency, seven, weight_of_target};
use crate::emotion::NUM_CLASSES;
use crate::invalid::InvalidValue;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `loss = "weighted_cross_entropy"` (inverse-frequency weights) or
/// `loss = { kind = "weighted_cross_entropy", weights = [7 numbers] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCrossEntropyConfig {
    #[serde(default = "default_weights")]
    pub weights: ClassWeights,
}

/// Per-class weights of the weighted cross-entropy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    /// `"inverse_frequency"`: 1 / (train images of the class), normalised to mean 1.
    Named(WeightsName),
    /// Seven explicit weights in class-id order.
    Explicit(Vec<f64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsName {
    InverseFrequency,
}

fn default_weights() -> ClassWeights {
    ClassWeights::Named(WeightsName::InverseFrequency)
}

impl Default for WeightedCrossEntropyConfig {
    fn default() -> Self {
        WeightedCrossEntropyConfig {
            weights: default_weights(),
        }
    }
}

impl WeightedCrossEntropyConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        match &self.weights {
            ClassWeights::Named(_) => Ok(()),
            ClassWeights::Explicit(w) => check_seven("weights", w),
        }
    }

    /// The weight of each class; `train_counts` are the training split's images per class.
    pub(super) fn resolve(&self, train_counts: &[usize; NUM_CLASSES]) -> [f32; NUM_CLASSES] {
        match &self.weights {
            ClassWeights::Named(WeightsName::InverseFrequency) => inverse_frequency(train_counts),
            ClassWeights::Explicit(w) => seven(w),
        }
    }
}

pub(super) fn forward(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    smoothing: f32,
    weights: &[f32; NUM_CLASSES],
) -> Tensor<1> {
    let (log_p, one_hot, q) = super::log_probs_and_targets(logits, targets, smoothing);
    let per_sample = (q * log_p).sum_dim(1).neg(); // [B, 1]
    let w = weight_of_target(one_hot, weights);
    (per_sample * w.clone()).sum() / w.sum()
}

#[cfg(test)]
mod tests {
    use super::super::LossSpec;
    use super::super::tests::{COUNTS, config, new_loss, value};
    use super::*;

    #[test]
    fn weighted_cross_entropy_matches_a_hand_computed_value() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats(
            [[0.0; 7], [(7f32).ln(), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
            &device,
        );
        let targets = Tensor::<1, Int>::from_ints([1, 0], &device);
        // Sample 0: uniform logits, −log(1/7) = ln 7, weight 3.
        // Sample 1: p_0 = 7 / (7 + 6) = 7/13, −log(7/13) = ln(13/7), weight 1.
        let weights = LossSpec::WeightedCrossEntropy(WeightedCrossEntropyConfig {
            weights: ClassWeights::Explicit(vec![1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        });
        let loss = new_loss(&config(weights, 0.0), &COUNTS);
        let expected = (3.0 * 7f32.ln() + (13f32 / 7.0).ln()) / 4.0;
        assert!((value(loss.forward(logits, targets)) - expected).abs() < 1e-5);
    }
}
