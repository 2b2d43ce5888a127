//! The seed study's compact CNN, exactly as sketched:
//! Conv(32, 3×3)-ReLU-MaxPool-Conv(64, 3×3)-ReLU-MaxPool-Flatten-Dense(128)-ReLU-Dropout-Dense(7).
//! Convolutions use Keras' default "valid" padding: 48 → 46 → 23 → 21 → 10.

use super::dropout::MemberDropout;
use super::layers::{self, Layer};
use super::{CLASSES, SIDE, conv_flops, dense_flops};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

const C1: usize = 32;
const C2: usize = 64;
const HIDDEN: usize = 128;
/// Spatial side after each conv/pool stage.
const S1: usize = SIDE - 2; // 46
const P1: usize = S1 / 2; // 23
const S2: usize = P1 - 2; // 21
const P2: usize = S2 / 2; // 10
const FLAT: usize = C2 * P2 * P2; // 6400

/// The baseline's knobs: none, its shape is the seed study's (`model = "baseline"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {}

impl BaselineConfig {
    pub fn flops(&self) -> u64 {
        flops()
    }

    pub fn init(&self, dropout: f64, device: &Device) -> Baseline {
        Baseline::new(dropout, device)
    }
}

#[derive(Module, Debug)]
pub struct Baseline {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    pub(super) dropout: MemberDropout,
    fc2: Linear,
}

impl Baseline {
    pub fn new(dropout: f64, device: &Device) -> Self {
        Baseline {
            conv1: Conv2dConfig::new([1, C1], [3, 3]).init(device),
            conv2: Conv2dConfig::new([C1, C2], [3, 3]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(FLAT, HIDDEN).init(device),
            dropout: MemberDropout::new(dropout),
            fc2: LinearConfig::new(HIDDEN, CLASSES).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        // relu(pool(x)) = pool(relu(x)): both are monotone, so ReLU runs on a quarter of the values.
        let x = layers::features(
            x,
            vec![
                Layer::Conv(&self.conv1),
                Layer::MaxPool(&self.pool),
                Layer::Relu,
                Layer::Conv(&self.conv2),
                Layer::MaxPool(&self.pool),
                Layer::Relu,
            ],
        );
        let x = layers::dense(x.flatten(1, 3), &self.fc1, true);
        layers::dense(self.dropout.forward(x), &self.fc2, false)
    }
}

fn flops() -> u64 {
    conv_flops(3, 1, C1, S1)
        + conv_flops(3, C1, C2, S2)
        + dense_flops(FLAT, HIDDEN)
        + dense_flops(HIDDEN, CLASSES)
}
