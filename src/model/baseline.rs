//! The seed study's compact CNN, exactly as sketched:
//! Conv(32, 3×3)-ReLU-MaxPool-Conv(64, 3×3)-ReLU-MaxPool-Flatten-Dense(128)-ReLU-Dropout-Dense(7).
//! Convolutions use Keras' default "valid" padding: 48 → 46 → 23 → 21 → 10 (a crop of 40:
//! 40 → 38 → 19 → 17 → 8, so the dense layer reads 64·8·8 instead of 64·10·10).

use super::dropout::MemberDropout;
use super::layers::{self, Layer};
use super::{CLASSES, conv_flops, dense_flops};
use crate::invalid::InvalidValue;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

const C1: usize = 32;
const C2: usize = 64;
const HIDDEN: usize = 128;

/// Spatial sides after each conv / pool stage of a `side`×`side` input: at 48,
/// (46, 23, 21, 10); `None` when a stage leaves no pixel.
fn sides(side: usize) -> Option<[usize; 4]> {
    let s1 = side.checked_sub(2).filter(|&s| s > 0)?;
    let p1 = s1 / 2;
    let s2 = p1.checked_sub(2).filter(|&s| s > 0)?;
    let p2 = s2 / 2;
    (p2 > 0).then_some([s1, p1, s2, p2])
}

/// The baseline's knobs: none, its shape is the seed study's (`model = "baseline"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {}

impl BaselineConfig {
    /// Checks that both valid convolutions and pools leave a pixel of a `side`×`side` input.
    pub fn validate_side(&self, side: usize) -> Result<(), InvalidValue> {
        match sides(side) {
            Some(_) => Ok(()),
            None => Err(InvalidValue::new(
                "crop",
                format!(
                    "crop = {side} is too small for model baseline: its two valid 3×3 \
                     convolutions and pools leave no pixel (it needs a side of at least 10)"
                ),
            )),
        }
    }

    pub fn flops(&self, side: usize) -> u64 {
        let [s1, _, s2, _] = sides(side).expect("a validated side");
        conv_flops(3, 1, C1, s1)
            + conv_flops(3, C1, C2, s2)
            + dense_flops(flat(side), HIDDEN)
            + dense_flops(HIDDEN, CLASSES)
    }

    pub fn init(&self, side: usize, dropout: f64, device: &Device) -> Baseline {
        Baseline::new(side, dropout, device)
    }
}

/// Inputs of the dense layer: 64·10·10 = 6400 at 48.
fn flat(side: usize) -> usize {
    let [_, _, _, p2] = sides(side).expect("a validated side");
    C2 * p2 * p2
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
    pub fn new(side: usize, dropout: f64, device: &Device) -> Self {
        Baseline {
            conv1: Conv2dConfig::new([1, C1], [3, 3]).init(device),
            conv2: Conv2dConfig::new([C1, C2], [3, 3]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(flat(side), HIDDEN).init(device),
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
