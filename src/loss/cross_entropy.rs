//! Cross-entropy: −Σ_c q_c log p_c per sample, the mean over the batch (q the label-smoothed
//! targets). On a LibTorch device libtorch's own kernel computes it in one call
//! ([`layers::native_cross_entropy`]); elsewhere the formula below.

use crate::model::layers;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Plain cross-entropy has no knobs: `loss = "cross_entropy"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossEntropyConfig {}

pub(super) fn forward(logits: Tensor<2>, targets: Tensor<1, Int>, smoothing: f32) -> Tensor<1> {
    if let Some(loss) = layers::native_cross_entropy(&logits, &targets, smoothing) {
        return loss;
    }
    let (log_p, _, q) = super::log_probs_and_targets(logits, targets, smoothing);
    (q * log_p).sum_dim(1).neg().mean()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{COUNTS, batch, config, new_loss, value};
    use super::super::{FocalConfig, LossSpec};
    use super::*;
    use burn::nn::loss::CrossEntropyLossConfig;

    #[test]
    fn plain_and_zero_knob_losses_equal_burns_cross_entropy() {
        let device = Device::flex();
        let (logits, targets) = batch(&device);
        let reference = value(
            CrossEntropyLossConfig::new()
                .init(&device)
                .forward(logits.clone(), targets.clone()),
        );
        let ce = new_loss(&config(LossSpec::default(), 0.0), &COUNTS);
        assert!((value(ce.forward(logits.clone(), targets.clone())) - reference).abs() < 1e-5);
        let focal0 = new_loss(
            &config(
                LossSpec::Focal(FocalConfig {
                    gamma: 0.0,
                    alpha: None,
                }),
                0.0,
            ),
            &COUNTS,
        );
        assert!((value(focal0.forward(logits.clone(), targets.clone())) - reference).abs() < 1e-5);
        let smooth0 = new_loss(&config(LossSpec::default(), 0.0), &COUNTS);
        assert!((value(smooth0.forward(logits, targets)) - reference).abs() < 1e-5);
    }
}
