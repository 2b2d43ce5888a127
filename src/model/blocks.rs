//! Layers the models share: a 3×3 convolution with optional batch norm and ReLU, and the two
//! attention modules (squeeze-and-excitation, CBAM).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

/// conv k×k ("same" padding) → batch norm (optional) → ReLU (optional).
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: Option<BatchNorm>,
    relu: Option<Relu>,
}

impl ConvBn {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        batch_norm: bool,
        relu: bool,
        device: &Device,
    ) -> Self {
        let padding = if stride == 1 {
            PaddingConfig2d::Same
        } else {
            PaddingConfig2d::Explicit(kernel / 2, kernel / 2, kernel / 2, kernel / 2)
        };
        ConvBn {
            conv: Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(padding)
                // A bias before batch norm is cancelled by its mean: leave it out.
                .with_bias(!batch_norm)
                .init(device),
            bn: batch_norm.then(|| BatchNormConfig::new(c_out).init(device)),
            relu: relu.then(Relu::new),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv.forward(x);
        if let Some(bn) = &self.bn {
            x = bn.forward(x);
        }
        match &self.relu {
            Some(relu) => relu.forward(x),
            None => x,
        }
    }
}

/// Hidden units of an attention bottleneck.
fn reduced(channels: usize) -> usize {
    (channels / 8).max(4)
}

/// Squeeze-and-excitation: global average → bottleneck MLP → sigmoid gate per channel.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    fc1: Linear,
    fc2: Linear,
    relu: Relu,
}

impl SqueezeExcite {
    pub fn new(channels: usize, device: &Device) -> Self {
        SqueezeExcite {
            fc1: LinearConfig::new(channels, reduced(channels)).init(device),
            fc2: LinearConfig::new(reduced(channels), channels).init(device),
            relu: Relu::new(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let squeezed = x.clone().mean_dims(&[2, 3]).reshape([b, c]);
        let gate = sigmoid(
            self.fc2
                .forward(self.relu.forward(self.fc1.forward(squeezed))),
        );
        x * gate.reshape([b, c, 1, 1])
    }

    pub fn flops(channels: usize) -> u64 {
        2 * super::dense_flops(channels, reduced(channels))
    }
}

/// CBAM: a channel gate from average- and max-pooled features through a shared MLP, then a
/// spatial gate from a 7×7 convolution over the channel mean and max.
#[derive(Module, Debug)]
pub struct Cbam {
    fc1: Linear,
    fc2: Linear,
    relu: Relu,
    spatial: Conv2d,
}

impl Cbam {
    pub fn new(channels: usize, device: &Device) -> Self {
        Cbam {
            fc1: LinearConfig::new(channels, reduced(channels)).init(device),
            fc2: LinearConfig::new(reduced(channels), channels).init(device),
            relu: Relu::new(),
            spatial: Conv2dConfig::new([2, 1], [7, 7])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
        }
    }

    fn mlp(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(self.relu.forward(self.fc1.forward(x)))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let avg = x.clone().mean_dims(&[2, 3]).reshape([b, c]);
        let max = x.clone().reshape([b, c, h * w]).max_dim(2).reshape([b, c]);
        let channel_gate = sigmoid(self.mlp(avg) + self.mlp(max)).reshape([b, c, 1, 1]);
        let x = x * channel_gate;
        let mean = x.clone().mean_dim(1);
        let max = x.clone().max_dim(1);
        let spatial_gate = sigmoid(self.spatial.forward(Tensor::cat(vec![mean, max], 1)));
        x * spatial_gate
    }

    pub fn flops(channels: usize, side: usize) -> u64 {
        4 * super::dense_flops(channels, reduced(channels)) + super::conv_flops(7, 2, 1, side)
    }
}
