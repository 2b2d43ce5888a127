//! Training losses, one file per loss with its config (knobs, defaults, validation) beside its
//! formula: cross-entropy ([`cross_entropy`]), class-weighted cross-entropy
//! ([`weighted_cross_entropy`]) and focal loss ([`focal`]). Every loss takes logits `[B, 7]` and
//! class ids `[B]`, returns the mean, and takes the run's label smoothing. [`LossSpec`] names
//! them for a sweep; [`Loss`] is one resolved against the training data, what training calls.
//!
//! To add a loss: one file with its config (serde, `deny_unknown_fields`, a default per knob,
//! `validate`) and its formula, one variant in [`LossSpec`] (and in the resolved `Formula`), one
//! arm per `match` below (the compiler lists them). Run ids hash a config's canonical JSON, so
//! an existing loss's knobs keep their names and defaults.

pub mod cross_entropy;
pub mod focal;
pub mod weighted_cross_entropy;

use crate::emotion::NUM_CLASSES;
use crate::invalid::InvalidValue;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

pub use cross_entropy::CrossEntropyConfig;
pub use focal::FocalConfig;
pub use weighted_cross_entropy::{ClassWeights, WeightedCrossEntropyConfig, WeightsName};

/// The training loss, with its own knobs: `loss = "focal"` or
/// `loss = { kind = "focal", gamma = 2.0 }` in a sweep (a knob of another kind is an error).
/// The bare name is read and written by `crate::config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossSpec {
    CrossEntropy(CrossEntropyConfig),
    /// Cross-entropy with per-class weights (mean weighted by the targets' weights, as PyTorch).
    WeightedCrossEntropy(WeightedCrossEntropyConfig),
    /// Focal loss: −α_y (1 − p_y)^γ log p_y.
    Focal(FocalConfig),
}

impl Default for LossSpec {
    fn default() -> Self {
        LossSpec::CrossEntropy(CrossEntropyConfig {})
    }
}

impl LossSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            LossSpec::CrossEntropy(_) => "cross_entropy",
            LossSpec::WeightedCrossEntropy(_) => "weighted_cross_entropy",
            LossSpec::Focal(_) => "focal",
        }
    }

    /// The name alone when every knob holds its default (how run configs write it); focal is
    /// always a table, as it always was.
    pub fn bare_name(&self) -> Option<&'static str> {
        match self {
            LossSpec::CrossEntropy(_) => Some("cross_entropy"),
            LossSpec::WeightedCrossEntropy(c) if *c == WeightedCrossEntropyConfig::default() => {
                Some("weighted_cross_entropy")
            }
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidValue> {
        match self {
            LossSpec::CrossEntropy(_) => Ok(()),
            LossSpec::WeightedCrossEntropy(c) => c.validate(),
            LossSpec::Focal(c) => c.validate(),
        }
    }
}

/// `loss.{key}` must be one non-negative weight per class, not all 0.
pub(crate) fn check_seven(key: &str, values: &[f64]) -> Result<(), InvalidValue> {
    if values.len() != NUM_CLASSES
        || values.iter().any(|w| !(w.is_finite() && *w >= 0.0))
        || values.iter().all(|w| *w == 0.0)
    {
        Err(InvalidValue::new(
            format!("loss.{key}"),
            format!(
                "loss.{key} = {values:?} must be 7 non-negative numbers (one per class), not all 0"
            ),
        ))
    } else {
        Ok(())
    }
}

/// A loss resolved against the training data (inverse-frequency weights need its counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Loss {
    /// ε: targets become (1 − ε)·one-hot + ε/7.
    smoothing: f32,
    formula: Formula,
}

/// Each loss's knobs as its formula reads them.
#[derive(Debug, Clone, PartialEq)]
enum Formula {
    CrossEntropy,
    /// Per-sample weight by target class.
    WeightedCrossEntropy([f32; NUM_CLASSES]),
    /// γ (0 with no α is plain cross-entropy) and the per-class α, if any.
    Focal {
        gamma: f32,
        alpha: Option<[f32; NUM_CLASSES]>,
    },
}

fn seven(values: &[f64]) -> [f32; NUM_CLASSES] {
    std::array::from_fn(|i| values[i] as f32)
}

/// 1 / count per class, normalised to mean 1 (classes without images get weight 0).
pub fn inverse_frequency(train_counts: &[usize; NUM_CLASSES]) -> [f32; NUM_CLASSES] {
    let inv: Vec<f64> = train_counts
        .iter()
        .map(|&n| if n == 0 { 0.0 } else { 1.0 / n as f64 })
        .collect();
    let mean = inv.iter().sum::<f64>() / NUM_CLASSES as f64;
    std::array::from_fn(|i| {
        if mean > 0.0 {
            (inv[i] / mean) as f32
        } else {
            1.0
        }
    })
}

impl Loss {
    /// The loss of a run; `train_counts` are the training split's images per class.
    /// The loss `spec` names with label smoothing `smoothing`; `train_counts` are the training
    /// split's images per class (inverse-frequency weights need them).
    pub fn new(spec: &LossSpec, smoothing: f64, train_counts: &[usize; NUM_CLASSES]) -> Loss {
        let formula = match spec {
            LossSpec::CrossEntropy(_) => Formula::CrossEntropy,
            LossSpec::WeightedCrossEntropy(c) => {
                Formula::WeightedCrossEntropy(c.resolve(train_counts))
            }
            LossSpec::Focal(c) => Formula::Focal {
                gamma: c.gamma as f32,
                alpha: c.alpha.as_deref().map(seven),
            },
        };
        Loss {
            smoothing: smoothing as f32,
            formula,
        }
    }

    /// Plain cross-entropy (what evaluation reports as the loss).
    pub fn cross_entropy() -> Loss {
        Loss {
            smoothing: 0.0,
            formula: Formula::CrossEntropy,
        }
    }

    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        match &self.formula {
            Formula::CrossEntropy => cross_entropy::forward(logits, targets, self.smoothing),
            Formula::WeightedCrossEntropy(weights) => {
                weighted_cross_entropy::forward(logits, targets, self.smoothing, weights)
            }
            Formula::Focal { gamma, alpha } => {
                focal::forward(logits, targets, self.smoothing, *gamma, alpha.as_ref())
            }
        }
    }
}

/// What every formula starts from: log p `[B, C]`, the one-hot targets and the label-smoothed
/// targets q = (1 − ε)·one-hot + ε/C.
fn log_probs_and_targets(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    smoothing: f32,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let [_, classes] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let one_hot: Tensor<2> = targets.one_hot::<2>(classes).float();
    let q = if smoothing > 0.0 {
        one_hot.clone() * (1.0 - smoothing) + smoothing / classes as f32
    } else {
        one_hot.clone()
    };
    (log_p, one_hot, q)
}

/// Each sample's weight by its target class, `[B, 1]`.
fn weight_of_target(one_hot: Tensor<2>, weights: &[f32; NUM_CLASSES]) -> Tensor<2> {
    let [_, classes] = one_hot.dims();
    let w = Tensor::<1>::from_floats(*weights, &one_hot.device()).reshape([1, classes]);
    (one_hot * w).sum_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn batch(device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let logits = Tensor::<2>::from_floats(
            [
                [2.0, 0.5, -1.0, 0.0, 0.3, -0.2, 1.0],
                [0.1, 0.2, 0.3, 3.0, -1.0, 0.0, 0.5],
                [-0.5, 1.5, 0.0, 0.2, 0.1, 0.0, -2.0],
            ],
            device,
        );
        let targets = Tensor::<1, Int>::from_ints([0, 3, 6], device);
        (logits, targets)
    }

    pub(super) fn value(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    /// A loss and its label smoothing, as a run's config gives them.
    pub(super) fn config(loss: LossSpec, smoothing: f64) -> (LossSpec, f64) {
        (loss, smoothing)
    }

    pub(super) fn new_loss(config: &(LossSpec, f64), counts: &[usize; NUM_CLASSES]) -> Loss {
        Loss::new(&config.0, config.1, counts)
    }

    pub(super) const COUNTS: [usize; NUM_CLASSES] = [10, 1, 10, 20, 10, 10, 10];

    #[test]
    fn label_smoothing_matches_its_formula() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[0.0; 7]], &device);
        let targets = Tensor::<1, Int>::from_ints([2], &device);
        // Uniform prediction: every class costs ln 7 whatever the smoothing.
        let loss = new_loss(&config(LossSpec::default(), 0.3), &COUNTS);
        assert!((value(loss.forward(logits, targets)) - 7f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn inverse_frequency_weights_have_mean_one() {
        let w = inverse_frequency(&COUNTS);
        assert!((w.iter().sum::<f32>() / 7.0 - 1.0).abs() < 1e-5);
        assert!(
            (w[1] / w[0] - 10.0).abs() < 1e-4,
            "the rare class weighs 10× more"
        );
    }
}
