//! A small ResNet for 48×48×1: a 3×3 stem and a max-pool (48 → 24), `stages` (3 by default)
//! stages of `depth` basic blocks at `width`·(1, 2, 4, …) channels (stride 2 between stages:
//! 24 → 12 → 6) with batch norm and identity or projection shortcuts, global average pooling,
//! dropout, a dense head. Global pooling leaves the parameters indifferent to the input side
//! (only the FLOPs change): at a crop of 40 the stages run at 20 → 10 → 5. `stem_pool = false`
//! drops the stem's max-pool (the CIFAR-style stem), and
//! `{ width = 64, depth = 2, stages = 4, stem_pool = false }` is ResNet-18 (at a crop of 40 its
//! stages run at 40 → 20 → 10 → 5).
//! With `attention`, every block gates its residual branch with SE or CBAM before the sum, so
//! attention's effect is measured at the same depth.

use super::blocks::{Cbam, ConvBn, SqueezeExcite};
use super::dropout::MemberDropout;
use super::layers::{self, Layer};
use super::{CLASSES, conv_flops, dense_flops};
use crate::invalid::InvalidValue;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The attention block of the `attention` model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// Squeeze-and-excitation: channel attention.
    #[default]
    Se,
    /// CBAM: channel then spatial attention.
    Cbam,
}

/// `model = { kind = "residual", width = 32, depth = 2 }`; ResNet-18 is
/// `{ kind = "residual", width = 64, depth = 2, stages = 4, stem_pool = false }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualConfig {
    /// Channels of the first stage (then ×2, ×4, …).
    #[serde(default = "default_width")]
    pub width: usize,
    /// Basic blocks per stage.
    #[serde(default = "two")]
    pub depth: usize,
    /// Stages, each (after the first) halving the side and doubling the channels: 1..=5.
    /// Left out of the canonical JSON at its default, 3.
    #[serde(default = "three", skip_serializing_if = "is_three")]
    pub stages: usize,
    /// Max-pool after the stem (halving the side before the first stage); `false` is the
    /// CIFAR-style ResNet stem. Left out of the canonical JSON at its default, `true`.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub stem_pool: bool,
}

/// The residual trunk with an attention gate in every block:
/// `model = { kind = "attention", attention = "cbam" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionConfig {
    #[serde(default = "default_width")]
    pub width: usize,
    #[serde(default = "two")]
    pub depth: usize,
    #[serde(default)]
    pub attention: AttentionKind,
    /// As [`ResidualConfig::stages`].
    #[serde(default = "three", skip_serializing_if = "is_three")]
    pub stages: usize,
    /// As [`ResidualConfig::stem_pool`].
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub stem_pool: bool,
}

fn default_width() -> usize {
    32
}
fn two() -> usize {
    2
}
fn three() -> usize {
    3
}
fn is_three(v: &usize) -> bool {
    *v == 3
}
fn yes() -> bool {
    true
}
fn is_yes(v: &bool) -> bool {
    *v
}

impl Default for ResidualConfig {
    fn default() -> Self {
        ResidualConfig {
            width: default_width(),
            depth: two(),
            stages: three(),
            stem_pool: yes(),
        }
    }
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            width: default_width(),
            depth: two(),
            attention: AttentionKind::default(),
            stages: three(),
            stem_pool: yes(),
        }
    }
}

impl ResidualConfig {
    /// The trunk this config describes.
    pub fn trunk(&self) -> Trunk {
        Trunk {
            width: self.width,
            depth: self.depth,
            stages: self.stages,
            stem_pool: self.stem_pool,
            attention: None,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidValue> {
        self.trunk().validate()
    }

    pub fn flops(&self, side: usize) -> u64 {
        self.trunk().flops(side)
    }

    pub fn init(&self, dropout: f64, device: &Device) -> ResNet {
        ResNet::new(self.trunk(), dropout, device)
    }
}

impl AttentionConfig {
    /// The trunk this config describes, attention in every block.
    pub fn trunk(&self) -> Trunk {
        Trunk {
            width: self.width,
            depth: self.depth,
            stages: self.stages,
            stem_pool: self.stem_pool,
            attention: Some(self.attention),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidValue> {
        self.trunk().validate()
    }

    pub fn flops(&self, side: usize) -> u64 {
        self.trunk().flops(side)
    }

    pub fn init(&self, dropout: f64, device: &Device) -> ResNet {
        ResNet::new(self.trunk(), dropout, device)
    }
}

/// The shape of a residual net, with or without attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trunk {
    pub width: usize,
    pub depth: usize,
    pub stages: usize,
    pub stem_pool: bool,
    pub attention: Option<AttentionKind>,
}

impl Trunk {
    fn validate(&self) -> Result<(), InvalidValue> {
        let Trunk {
            width,
            depth,
            stages,
            ..
        } = *self;
        if !(4..=256).contains(&width) {
            return Err(InvalidValue::new(
                "model.width",
                format!("model.width = {width} must be in 4..=256"),
            ));
        }
        if !(1..=8).contains(&depth) {
            return Err(InvalidValue::new(
                "model.depth",
                format!("model.depth = {depth} must be in 1..=8"),
            ));
        }
        if !(1..=5).contains(&stages) {
            return Err(InvalidValue::new(
                "model.stages",
                format!("model.stages = {stages} must be in 1..=5"),
            ));
        }
        Ok(())
    }

    /// Checks that the stem's pool leaves a pixel of a `side`×`side` input (the stride-2
    /// convolutions round up, so they never do).
    pub fn validate_side(&self, side: usize, model: &str) -> Result<(), InvalidValue> {
        if self.stem_side(side) == 0 {
            return Err(InvalidValue::new(
                "crop",
                format!(
                    "crop = {side} is too small for model {model}: its stem pool leaves no pixel"
                ),
            ));
        }
        Ok(())
    }

    /// Side after the stem (and its pool, when it has one).
    fn stem_side(&self, side: usize) -> usize {
        if self.stem_pool { side / 2 } else { side }
    }

    /// Channels of the last stage, which the head reads.
    fn last_channels(&self) -> usize {
        self.width << (self.stages - 1)
    }

    /// (c_in, c_out, stride, side of the output) of every block on a `side`×`side` input. A
    /// stride-2 3×3 convolution with padding 1 rounds up: 5 → 3.
    fn layout(&self, side: usize) -> Vec<(usize, usize, usize, usize)> {
        let mut out = Vec::new();
        let mut c_in = self.width;
        let mut side = self.stem_side(side);
        for stage in 0..self.stages {
            let c = self.width << stage;
            for i in 0..self.depth {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                side = side.div_ceil(stride);
                out.push((c_in, c, stride, side));
                c_in = c;
            }
        }
        out
    }

    fn flops(&self, side: usize) -> u64 {
        let mut total = conv_flops(3, 1, self.width, side);
        for (c_in, c_out, stride, side) in self.layout(side) {
            total += conv_flops(3, c_in, c_out, side) + conv_flops(3, c_out, c_out, side);
            if stride != 1 || c_in != c_out {
                total += conv_flops(1, c_in, c_out, side);
            }
            total += match self.attention {
                None => 0,
                Some(AttentionKind::Se) => SqueezeExcite::flops(c_out),
                Some(AttentionKind::Cbam) => Cbam::flops(c_out, side),
            };
        }
        total + dense_flops(self.last_channels(), CLASSES)
    }
}

// One attention module per block: the size difference between variants costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Attention {
    Se(SqueezeExcite),
    Cbam(Cbam),
}

impl Attention {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Attention::Se(m) => m.forward(x),
            Attention::Cbam(m) => m.forward(x),
        }
    }
}

#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: ConvBn,
    conv2: ConvBn,
    shortcut: Option<ConvBn>,
    attention: Option<Attention>,
}

impl BasicBlock {
    fn new(
        c_in: usize,
        c_out: usize,
        stride: usize,
        attention: Option<AttentionKind>,
        device: &Device,
    ) -> Self {
        BasicBlock {
            conv1: ConvBn::new(c_in, c_out, 3, stride, true, true, device),
            conv2: ConvBn::new(c_out, c_out, 3, 1, true, false, device),
            shortcut: (stride != 1 || c_in != c_out)
                .then(|| ConvBn::new(c_in, c_out, 1, stride, true, false, device)),
            attention: attention.map(|kind| match kind {
                AttentionKind::Se => Attention::Se(SqueezeExcite::new(c_out, device)),
                AttentionKind::Cbam => Attention::Cbam(Cbam::new(c_out, device)),
            }),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.shortcut {
            Some(proj) => proj.forward(x.clone()),
            None => x.clone(),
        };
        let mut residual = self.conv1.layers(None);
        residual.extend(self.conv2.layers(None));
        match &self.attention {
            Some(att) => {
                let out = att.forward(layers::features(x, residual));
                layers::features(out, vec![Layer::Add(&skip), Layer::Relu])
            }
            // Without attention the whole block is one region.
            None => {
                residual.extend([Layer::Add(&skip), Layer::Relu]);
                layers::features(x, residual)
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    stem: ConvBn,
    stem_pool: MaxPool2d,
    /// Whether the stem pools (a flag beside the parameter-less pool, so saved models of the
    /// pooled net keep their layout).
    #[module(skip)]
    pools_stem: bool,
    blocks: Vec<BasicBlock>,
    pool: AdaptiveAvgPool2d,
    pub(super) dropout: MemberDropout,
    head: Linear,
}

impl ResNet {
    pub fn new(trunk: Trunk, dropout: f64, device: &Device) -> Self {
        ResNet {
            stem: ConvBn::new(1, trunk.width, 3, 1, true, true, device),
            stem_pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            pools_stem: trunk.stem_pool,
            // The side does not change the blocks' shapes: lay them out at any side.
            blocks: trunk
                .layout(crate::data::IMAGE_SIDE)
                .into_iter()
                .map(|(c_in, c_out, stride, _)| {
                    BasicBlock::new(c_in, c_out, stride, trunk.attention, device)
                })
                .collect(),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: MemberDropout::new(dropout),
            head: LinearConfig::new(trunk.last_channels(), CLASSES).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = if self.pools_stem {
            self.stem.forward_pooled(x, &self.stem_pool)
        } else {
            self.stem.forward(x)
        };
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.pool.forward(x).flatten(1, 3);
        layers::dense(self.dropout.forward(x), &self.head, false)
    }
}
