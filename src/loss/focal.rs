//! Focal loss (Lin et al. 2017): −α_y (1 − p_y)^γ log p_y. The factor (1 − p)^γ down-weights
//! the classes the model already gets right; α, when given, scales each sample by its class
//! and the mean stays over the batch. γ = 0 without α is plain cross-entropy, and computed as
//! such.

use super::{check_seven, cross_entropy, weight_of_target};
use crate::emotion::NUM_CLASSES;
use crate::invalid::InvalidValue;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `loss = "focal"` or `loss = { kind = "focal", gamma = 2.0, alpha = [7 numbers] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FocalConfig {
    /// γ in [0, 10].
    #[serde(default = "two")]
    pub gamma: f64,
    /// Per-class α in class-id order; none by default (written as `null`).
    #[serde(default)]
    pub alpha: Option<Vec<f64>>,
}

fn two() -> f64 {
    2.0
}

impl Default for FocalConfig {
    fn default() -> Self {
        FocalConfig {
            gamma: two(),
            alpha: None,
        }
    }
}

impl FocalConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let FocalConfig { gamma, alpha } = self;
        if !(0.0..=10.0).contains(gamma) {
            return Err(InvalidValue::new(
                "loss.gamma",
                format!("loss.gamma = {gamma} must be in [0, 10]"),
            ));
        }
        alpha.as_deref().map_or(Ok(()), |a| check_seven("alpha", a))
    }
}

pub(super) fn forward(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    smoothing: f32,
    gamma: f32,
    alpha: Option<&[f32; NUM_CLASSES]>,
) -> Tensor<1> {
    if gamma == 0.0 && alpha.is_none() {
        return cross_entropy::forward(logits, targets, smoothing);
    }
    let (log_p, one_hot, q) = super::log_probs_and_targets(logits, targets, smoothing);
    let terms = if gamma > 0.0 {
        let focus = (log_p.clone().exp().neg() + 1.0)
            .clamp_min(0.0)
            .powf_scalar(gamma);
        q * focus * log_p
    } else {
        q * log_p
    };
    let per_sample = terms.sum_dim(1).neg(); // [B, 1]
    match alpha {
        Some(alpha) => (per_sample * weight_of_target(one_hot, alpha)).mean(),
        None => per_sample.mean(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::LossSpec;
    use super::super::tests::{COUNTS, batch, config, new_loss, value};
    use super::*;

    #[test]
    fn focal_loss_down_weights_easy_examples() {
        let device = Device::flex();
        let (logits, targets) = batch(&device);
        let ce = value(
            new_loss(&config(LossSpec::default(), 0.0), &COUNTS)
                .forward(logits.clone(), targets.clone()),
        );
        let focal = value(
            new_loss(
                &config(
                    LossSpec::Focal(FocalConfig {
                        gamma: 2.0,
                        alpha: None,
                    }),
                    0.0,
                ),
                &COUNTS,
            )
            .forward(logits, targets),
        );
        assert!(focal < ce && focal > 0.0);
    }
}
