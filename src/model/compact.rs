//! The study's description of its net rather than its sketch: N blocks of one or two 3×3
//! convolutions (+ batch norm) + ReLU + 2×2 max-pool over a channel list, then dense layers
//! with dropout. The VGG-style net ([`super::vgg`]) is this family at 64→512 channels.

use super::blocks::ConvBn;
use super::dropout::MemberDropout;
use super::layers::{self, Layer};
use super::{CLASSES, conv_flops, dense_flops};
use crate::invalid::InvalidValue;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The shape of a compact net: `model = { kind = "compact", channels = [32, 64, 128], … }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactConfig {
    /// Channels of each block; every block halves the input side (48 px, or `crop`).
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    #[serde(default = "two")]
    pub convs_per_block: usize,
    #[serde(default = "yes")]
    pub batch_norm: bool,
    /// Hidden dense layers before the classifier.
    #[serde(default = "default_dense")]
    pub dense: Vec<usize>,
}

fn default_channels() -> Vec<usize> {
    vec![32, 64, 128]
}
fn default_dense() -> Vec<usize> {
    vec![256]
}
fn two() -> usize {
    2
}
fn yes() -> bool {
    true
}

impl Default for CompactConfig {
    fn default() -> Self {
        CompactConfig {
            channels: default_channels(),
            convs_per_block: two(),
            batch_norm: yes(),
            dense: default_dense(),
        }
    }
}

impl CompactConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let CompactConfig {
            channels,
            convs_per_block,
            dense,
            ..
        } = self;
        if channels.is_empty() || channels.len() > 5 || channels.iter().any(|&c| c == 0 || c > 1024)
        {
            return Err(InvalidValue::new(
                "model.channels",
                format!(
                    "model.channels = {channels:?} must be 1 to 5 blocks of 1..=1024 channels (48 px halves per block)"
                ),
            ));
        }
        if !(1..=2).contains(convs_per_block) {
            return Err(InvalidValue::new(
                "model.convs_per_block",
                format!("model.convs_per_block = {convs_per_block} must be 1 or 2"),
            ));
        }
        validate_dense(dense)
    }

    /// Checks that every block's pool leaves a pixel of a `side`×`side` input.
    pub fn validate_side(&self, side: usize, model: &str) -> Result<(), InvalidValue> {
        if self.final_side(side) == 0 {
            let blocks = self.channels.len();
            return Err(InvalidValue::new(
                "crop",
                format!(
                    "crop = {side} is too small for model {model}: its {blocks} poolings halve \
                     the side to 0 (it needs a side of at least {})",
                    1usize << blocks
                ),
            ));
        }
        Ok(())
    }

    /// The net for `side`×`side` inputs (the dense input follows the side).
    pub fn init(&self, side: usize, dropout: f64, device: &Device) -> Compact {
        Compact::new(self, side, dropout, device)
    }

    /// Side of the feature map after the last pool (each 2×2 pool floors: 40 → 20 → 10 → 5 → 2).
    pub fn final_side(&self, side: usize) -> usize {
        side >> self.channels.len()
    }

    /// Inputs of the first dense layer: the last block's channels × the final side².
    pub fn flat(&self, side: usize) -> usize {
        self.channels.last().copied().unwrap_or(1) * self.final_side(side).pow(2)
    }

    pub fn flops(&self, side: usize) -> u64 {
        let mut total = 0;
        let mut c_in = 1;
        for (i, &c) in self.channels.iter().enumerate() {
            let side = side >> i;
            for _ in 0..self.convs_per_block {
                total += conv_flops(3, c_in, c, side);
                c_in = c;
            }
        }
        let mut d_in = self.flat(side);
        for &d in &self.dense {
            total += dense_flops(d_in, d);
            d_in = d;
        }
        total + dense_flops(d_in, CLASSES)
    }
}

/// Hidden dense sizes, shared by the compact and VGG nets.
pub(crate) fn validate_dense(dense: &[usize]) -> Result<(), InvalidValue> {
    if dense.iter().any(|&d| d == 0 || d > 8192) {
        return Err(InvalidValue::new(
            "model.dense",
            format!("model.dense = {dense:?} must hold sizes in 1..=8192"),
        ));
    }
    Ok(())
}

#[derive(Module, Debug)]
pub struct Compact {
    convs: Vec<ConvBn>,
    pool: MaxPool2d,
    #[module(skip)]
    convs_per_block: usize,
    dense: Vec<Linear>,
    pub(super) dropout: MemberDropout,
    head: Linear,
}

impl Compact {
    pub fn new(shape: &CompactConfig, side: usize, dropout: f64, device: &Device) -> Self {
        let mut convs = Vec::new();
        let mut c_in = 1;
        for &c in &shape.channels {
            for _ in 0..shape.convs_per_block {
                convs.push(ConvBn::new(c_in, c, 3, 1, shape.batch_norm, true, device));
                c_in = c;
            }
        }
        let mut dense = Vec::new();
        let mut d_in = shape.flat(side);
        for &d in &shape.dense {
            dense.push(LinearConfig::new(d_in, d).init(device));
            d_in = d;
        }
        Compact {
            convs,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            convs_per_block: shape.convs_per_block,
            dense,
            dropout: MemberDropout::new(dropout),
            head: LinearConfig::new(d_in, CLASSES).init(device),
        }
    }

    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<2> {
        for block in self.convs.chunks(self.convs_per_block) {
            // One block, one region: its convolutions, norms, pool and ReLUs.
            let (last, first) = block.split_last().expect("blocks are never empty");
            let mut run: Vec<Layer> = first.iter().flat_map(|conv| conv.layers(None)).collect();
            run.extend(last.layers(Some(&self.pool)));
            x = layers::features(x, run);
        }
        let mut x = x.flatten(1, 3);
        for layer in &self.dense {
            x = self.dropout.forward(layers::dense(x, layer, true));
        }
        if self.dense.is_empty() {
            x = self.dropout.forward(x);
        }
        layers::dense(x, &self.head, false)
    }
}
