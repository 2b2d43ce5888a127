//! The deep VGG-style net behind the best published single-model FER-2013 results: 4 stages of
//! 2× conv3x3-BN-ReLU + max-pool at 64→128→256→512 channels and a dense head with dropout.
//! `width` scales every channel count (0.25 gives 16→128, small enough for a CPU). The dense
//! head's input follows the input side: 512·3·3 at 48 px, 512·2·2 = 2048 at `crop = 40`.

use super::compact::{Compact, CompactConfig, validate_dense};
use crate::invalid::InvalidValue;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `model = { kind = "vgg", width = 0.25, dense = [1024, 1024] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VggConfig {
    /// Scales every channel count of the 64→512 stages.
    #[serde(default = "one")]
    pub width: f64,
    /// Hidden dense layers before the classifier.
    #[serde(default = "default_dense")]
    pub dense: Vec<usize>,
}

fn one() -> f64 {
    1.0
}
fn default_dense() -> Vec<usize> {
    vec![1024, 1024]
}

impl Default for VggConfig {
    fn default() -> Self {
        VggConfig {
            width: one(),
            dense: default_dense(),
        }
    }
}

impl VggConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let width = self.width;
        if !(0.0625..=2.0).contains(&width) {
            return Err(InvalidValue::new(
                "model.width",
                format!("model.width = {width} must be in [0.0625, 2]"),
            ));
        }
        validate_dense(&self.dense)
    }

    /// The compact-family shape of this VGG net.
    pub fn shape(&self) -> CompactConfig {
        CompactConfig {
            channels: [64.0, 128.0, 256.0, 512.0]
                .iter()
                .map(|c| ((c * self.width).round() as usize).max(1))
                .collect(),
            convs_per_block: 2,
            batch_norm: true,
            dense: self.dense.clone(),
        }
    }

    pub fn flops(&self, side: usize) -> u64 {
        self.shape().flops(side)
    }

    /// The net for `side`×`side` inputs: 48 → 3·3 after the 4 pools, a crop of 40 → 2·2 (at
    /// width 1 the flatten is 512·2·2 = 2048, Khaireddin & Chen's).
    pub fn init(&self, side: usize, dropout: f64, device: &Device) -> Compact {
        self.shape().init(side, dropout, device)
    }
}
