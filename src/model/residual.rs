//! A small ResNet for 48×48×1: a 3×3 stem and a max-pool (48 → 24), three stages of `depth`
//! basic blocks at `width`·(1, 2, 4) channels (stride 2 between stages: 24 → 12 → 6) with batch
//! norm and identity or projection shortcuts, global average pooling, dropout, a dense head.
//! With `attention`, every block gates its residual branch with SE or CBAM before the sum, so
//! attention's effect is measured at the same depth.

use super::blocks::{Cbam, ConvBn, SqueezeExcite};
use super::dropout::MemberDropout;
use super::layers::{self, Layer};
use super::{CLASSES, SIDE, conv_flops, dense_flops};
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

/// `model = { kind = "residual", width = 32, depth = 2 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualConfig {
    /// Channels of the first stage (then ×2, ×4).
    #[serde(default = "default_width")]
    pub width: usize,
    /// Basic blocks per stage.
    #[serde(default = "two")]
    pub depth: usize,
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
}

fn default_width() -> usize {
    32
}
fn two() -> usize {
    2
}

impl Default for ResidualConfig {
    fn default() -> Self {
        ResidualConfig {
            width: default_width(),
            depth: two(),
        }
    }
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            width: default_width(),
            depth: two(),
            attention: AttentionKind::default(),
        }
    }
}

impl ResidualConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        validate_trunk(self.width, self.depth)
    }

    pub fn flops(&self) -> u64 {
        flops(self.width, self.depth, None)
    }

    pub fn init(&self, dropout: f64, device: &Device) -> ResNet {
        ResNet::new(self.width, self.depth, None, dropout, device)
    }
}

impl AttentionConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        validate_trunk(self.width, self.depth)
    }

    pub fn flops(&self) -> u64 {
        flops(self.width, self.depth, Some(self.attention))
    }

    pub fn init(&self, dropout: f64, device: &Device) -> ResNet {
        ResNet::new(
            self.width,
            self.depth,
            Some(self.attention),
            dropout,
            device,
        )
    }
}

fn validate_trunk(width: usize, depth: usize) -> Result<(), InvalidValue> {
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
    Ok(())
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
    blocks: Vec<BasicBlock>,
    pool: AdaptiveAvgPool2d,
    pub(super) dropout: MemberDropout,
    head: Linear,
}

/// (c_in, c_out, stride, side of the output) of every block.
fn layout(width: usize, depth: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut out = Vec::new();
    let mut c_in = width;
    let mut side = SIDE / 2;
    for (stage, mult) in [1, 2, 4].into_iter().enumerate() {
        let c = width * mult;
        for i in 0..depth {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            side /= stride;
            out.push((c_in, c, stride, side));
            c_in = c;
        }
    }
    out
}

impl ResNet {
    pub fn new(
        width: usize,
        depth: usize,
        attention: Option<AttentionKind>,
        dropout: f64,
        device: &Device,
    ) -> Self {
        ResNet {
            stem: ConvBn::new(1, width, 3, 1, true, true, device),
            stem_pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            blocks: layout(width, depth)
                .into_iter()
                .map(|(c_in, c_out, stride, _)| {
                    BasicBlock::new(c_in, c_out, stride, attention, device)
                })
                .collect(),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: MemberDropout::new(dropout),
            head: LinearConfig::new(width * 4, CLASSES).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward_pooled(x, &self.stem_pool);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.pool.forward(x).flatten(1, 3);
        layers::dense(self.dropout.forward(x), &self.head, false)
    }
}

fn flops(width: usize, depth: usize, attention: Option<AttentionKind>) -> u64 {
    let mut total = conv_flops(3, 1, width, SIDE);
    for (c_in, c_out, stride, side) in layout(width, depth) {
        total += conv_flops(3, c_in, c_out, side) + conv_flops(3, c_out, c_out, side);
        if stride != 1 || c_in != c_out {
            total += conv_flops(1, c_in, c_out, side);
        }
        total += match attention {
            None => 0,
            Some(AttentionKind::Se) => SqueezeExcite::flops(c_out),
            Some(AttentionKind::Cbam) => Cbam::flops(c_out, side),
        };
    }
    total + dense_flops(width * 4, CLASSES)
}
