//! Training losses: cross-entropy, class-weighted cross-entropy and focal loss, each with
//! optional label smoothing. All take logits `[B, 7]` and class ids `[B]` and return the mean.
//!
//! To add a loss: a variant in [`crate::config::LossSpec`], its resolution in [`Loss::new`] and
//! its formula in [`Loss::forward`].

use crate::config::{ClassWeights, LossSpec, RunConfig};
use crate::emotion::NUM_CLASSES;
use crate::model::layers;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// A loss resolved against the training data (inverse-frequency weights need its counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Loss {
    /// ε: targets become (1 − ε)·one-hot + ε/7.
    smoothing: f32,
    /// Per-sample weight by target class (weighted CE), or `None`.
    class_weights: Option<[f32; NUM_CLASSES]>,
    /// Focal γ (0 is plain cross-entropy).
    gamma: f32,
    /// Focal per-class α, or `None`.
    alpha: Option<[f32; NUM_CLASSES]>,
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
    pub fn new(config: &RunConfig, train_counts: &[usize; NUM_CLASSES]) -> Loss {
        let mut loss = Loss {
            smoothing: config.label_smoothing as f32,
            class_weights: None,
            gamma: 0.0,
            alpha: None,
        };
        match &config.loss {
            LossSpec::CrossEntropy => {}
            LossSpec::WeightedCrossEntropy { weights } => {
                loss.class_weights = Some(match weights {
                    ClassWeights::Named(_) => inverse_frequency(train_counts),
                    ClassWeights::Explicit(w) => seven(w),
                });
            }
            LossSpec::Focal { gamma, alpha } => {
                loss.gamma = *gamma as f32;
                loss.alpha = alpha.as_deref().map(seven);
            }
        }
        loss
    }

    /// Plain cross-entropy (what evaluation reports as the loss).
    pub fn cross_entropy() -> Loss {
        Loss {
            smoothing: 0.0,
            class_weights: None,
            gamma: 0.0,
            alpha: None,
        }
    }

    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        let plain = self.class_weights.is_none() && self.alpha.is_none() && self.gamma == 0.0;
        if plain && let Some(loss) = layers::native_cross_entropy(&logits, &targets, self.smoothing)
        {
            return loss;
        }
        let device = logits.device();
        let [_, classes] = logits.dims();
        let log_p = log_softmax(logits, 1);
        let one_hot: Tensor<2> = targets.one_hot::<2>(classes).float();
        let q = if self.smoothing > 0.0 {
            one_hot.clone() * (1.0 - self.smoothing) + self.smoothing / classes as f32
        } else {
            one_hot.clone()
        };
        let terms = if self.gamma > 0.0 {
            // (1 − p)^γ down-weights the classes the model already gets right.
            let focus = (log_p.clone().exp().neg() + 1.0)
                .clamp_min(0.0)
                .powf_scalar(self.gamma);
            q * focus * log_p
        } else {
            q * log_p
        };
        let per_sample = terms.sum_dim(1).neg(); // [B, 1]
        let weights = self.class_weights.or(self.alpha).map(|w| {
            let w = Tensor::<1>::from_floats(w, &device).reshape([1, classes]);
            (one_hot * w).sum_dim(1) // [B, 1]: each sample's class weight
        });
        match (weights, self.class_weights.is_some()) {
            // Weighted CE normalises by the weights (PyTorch's `weight=` semantics).
            (Some(w), true) => (per_sample * w.clone()).sum() / w.sum(),
            // Focal α scales each sample; the mean stays over the batch.
            (Some(w), false) => (per_sample * w).mean(),
            (None, _) => per_sample.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LossSpec;
    use burn::nn::loss::CrossEntropyLossConfig;

    fn batch(device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
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

    fn value(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    fn config(loss: LossSpec, smoothing: f64) -> RunConfig {
        RunConfig {
            loss,
            label_smoothing: smoothing,
            ..RunConfig::default()
        }
    }

    const COUNTS: [usize; NUM_CLASSES] = [10, 1, 10, 20, 10, 10, 10];

    #[test]
    fn plain_and_zero_knob_losses_equal_burns_cross_entropy() {
        let device = Device::flex();
        let (logits, targets) = batch(&device);
        let reference = value(
            CrossEntropyLossConfig::new()
                .init(&device)
                .forward(logits.clone(), targets.clone()),
        );
        let ce = Loss::new(&config(LossSpec::CrossEntropy, 0.0), &COUNTS);
        assert!((value(ce.forward(logits.clone(), targets.clone())) - reference).abs() < 1e-5);
        let focal0 = Loss::new(
            &config(
                LossSpec::Focal {
                    gamma: 0.0,
                    alpha: None,
                },
                0.0,
            ),
            &COUNTS,
        );
        assert!((value(focal0.forward(logits.clone(), targets.clone())) - reference).abs() < 1e-5);
        let smooth0 = Loss::new(&config(LossSpec::CrossEntropy, 0.0), &COUNTS);
        assert!((value(smooth0.forward(logits, targets)) - reference).abs() < 1e-5);
    }

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
        let weights = LossSpec::WeightedCrossEntropy {
            weights: ClassWeights::Explicit(vec![1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        };
        let loss = Loss::new(&config(weights, 0.0), &COUNTS);
        let expected = (3.0 * 7f32.ln() + (13f32 / 7.0).ln()) / 4.0;
        assert!((value(loss.forward(logits, targets)) - expected).abs() < 1e-5);
    }

    #[test]
    fn label_smoothing_matches_its_formula() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[0.0; 7]], &device);
        let targets = Tensor::<1, Int>::from_ints([2], &device);
        // Uniform prediction: every class costs ln 7 whatever the smoothing.
        let loss = Loss::new(&config(LossSpec::CrossEntropy, 0.3), &COUNTS);
        assert!((value(loss.forward(logits, targets)) - 7f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn focal_loss_down_weights_easy_examples() {
        let device = Device::flex();
        let (logits, targets) = batch(&device);
        let ce = value(
            Loss::new(&config(LossSpec::CrossEntropy, 0.0), &COUNTS)
                .forward(logits.clone(), targets.clone()),
        );
        let focal = value(
            Loss::new(
                &config(
                    LossSpec::Focal {
                        gamma: 2.0,
                        alpha: None,
                    },
                    0.0,
                ),
                &COUNTS,
            )
            .forward(logits, targets),
        );
        assert!(focal < ce && focal > 0.0);
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
