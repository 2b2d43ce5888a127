//! Training losses. Each takes logits `[B, 7]` and class ids `[B]` and returns the mean loss.

use crate::config::LossKind;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;

/// The loss of a run, ready to apply.
#[derive(Debug, Clone)]
pub struct Loss {
    kind: LossKind,
}

impl Loss {
    pub fn new(kind: LossKind) -> Loss {
        Loss { kind }
    }

    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        match self.kind {
            LossKind::CrossEntropy => CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits, targets),
        }
    }
}
