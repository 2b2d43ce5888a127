//! Layers the models share: a 3×3 convolution with optional batch norm and ReLU, and the two
//! attention modules (squeeze-and-excitation, CBAM).

use super::layers::{self, Layer};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::MaxPool2d;
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
        layers::features(x, self.layers(None))
    }

    /// `pool(forward(x))`, computed as conv → batch norm → pool → ReLU: max-pooling and ReLU
    /// commute (both are monotone), so ReLU and its backward run on a quarter of the values.
    /// Outputs and gradients are the same.
    pub fn forward_pooled(&self, x: Tensor<4>, pool: &MaxPool2d) -> Tensor<4> {
        layers::features(x, self.layers(Some(pool)))
    }

    /// The block as layers, to run alone or joined with its neighbours in one region.
    pub fn layers<'a>(&'a self, pool: Option<&'a MaxPool2d>) -> Vec<Layer<'a>> {
        let mut out = vec![Layer::Conv(&self.conv)];
        out.extend(self.bn.as_ref().map(Layer::BatchNorm));
        out.extend(pool.map(Layer::MaxPool));
        out.extend(self.relu.as_ref().map(|_| Layer::Relu));
        out
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
}

impl SqueezeExcite {
    pub fn new(channels: usize, device: &Device) -> Self {
        SqueezeExcite {
            fc1: LinearConfig::new(channels, reduced(channels)).init(device),
            fc2: LinearConfig::new(reduced(channels), channels).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let squeezed = x.clone().mean_dims(&[2, 3]).reshape([b, c]);
        let gate = sigmoid(layers::dense(
            layers::dense(squeezed, &self.fc1, true),
            &self.fc2,
            false,
        ));
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
    spatial: Conv2d,
}

impl Cbam {
    pub fn new(channels: usize, device: &Device) -> Self {
        Cbam {
            fc1: LinearConfig::new(channels, reduced(channels)).init(device),
            fc2: LinearConfig::new(reduced(channels), channels).init(device),
            spatial: Conv2dConfig::new([2, 1], [7, 7])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
        }
    }

    fn mlp(&self, x: Tensor<2>) -> Tensor<2> {
        layers::dense(layers::dense(x, &self.fc1, true), &self.fc2, false)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let avg = x.clone().mean_dims(&[2, 3]).reshape([b, c]);
        let max = x.clone().reshape([b, c, h * w]).max_dim(2).reshape([b, c]);
        let channel_gate = sigmoid(self.mlp(avg) + self.mlp(max)).reshape([b, c, 1, 1]);
        let x = x * channel_gate;
        // The spatial conv has one output per member (a fused CBAM serves several runs).
        let members = self.spatial.weight.dims()[0];
        if members == 1 {
            let mean = x.clone().mean_dim(1);
            let max = x.clone().max_dim(1);
            let pooled = Tensor::cat(vec![mean, max], 1);
            let spatial_gate = sigmoid(layers::features(pooled, vec![Layer::Conv(&self.spatial)]));
            return x * spatial_gate;
        }
        // Mean and max over each member's own channels, interleaved as the grouped conv reads
        // them: member m's (mean, max) are input channels 2m and 2m + 1.
        let per_member = x.reshape([b, members, c / members, h, w]);
        let mean = per_member.clone().mean_dim(2);
        let max = per_member.clone().max_dim(2);
        let pooled = Tensor::cat(vec![mean, max], 2).reshape([b, 2 * members, h, w]);
        let spatial_gate = sigmoid(layers::features(pooled, vec![Layer::Conv(&self.spatial)]));
        (per_member * spatial_gate.reshape([b, members, 1, h, w])).reshape([b, c, h, w])
    }

    pub fn flops(channels: usize, side: usize) -> u64 {
        4 * super::dense_flops(channels, reduced(channels)) + super::conv_flops(7, 2, 1, side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;

    #[test]
    fn pooling_before_relu_gives_the_same_values_and_gradients() {
        let device = Device::flex().autodiff();
        let mut block = ConvBn::new(3, 4, 3, 1, false, true, &device);
        // Fixed weights (the device's seed is shared with tests running beside): channel 0 sums
        // its window, so it is negative all over the first image and positive over the second;
        // the other channels mix signs.
        let weights: Vec<f32> = (0..4 * 3 * 3 * 3)
            .map(|i| {
                if i < 27 {
                    0.1
                } else {
                    ((i * 31) % 17) as f32 / 8.0 - 1.0
                }
            })
            .collect();
        block.conv.weight = burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(weights, [4, 3, 3, 3]),
            &device,
        ));
        block.conv.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
            [4],
            &device,
        )));
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        let per_image = 3 * 9 * 9;
        let pixels: Vec<f32> = (0..2 * per_image)
            .map(|i| ((i * 53) % 97) as f32 / 97.0 + if i < per_image { -2.0 } else { 1.0 })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [2, 3, 9, 9]), &device);
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let y = if fused {
                block.forward_pooled(x.clone(), &pool)
            } else {
                pool.forward(block.forward(x.clone()))
            };
            // Weighted, so every output position sends back a different gradient.
            let n = y.shape().num_elements();
            let weights = Tensor::<1>::from_data(
                TensorData::new((0..n).map(|i| i as f32).collect::<Vec<_>>(), [n]),
                &device,
            )
            .reshape(y.shape());
            let grads = (y.clone() * weights).sum().backward();
            (
                y.into_data(),
                x.grad(&grads).expect("input gradient").into_data(),
            )
        };
        let (y_fused, g_fused) = run(true);
        let (y_plain, g_plain) = run(false);
        assert_eq!(y_fused.shape().to_vec(), vec![2, 4, 4, 4]);
        y_fused.assert_eq(&y_plain, true);
        g_fused.assert_eq(&g_plain, true);
        // Some windows are all negative, so the test covers ReLU cutting gradients too.
        let values = y_plain.try_to_vec::<f32>().unwrap();
        assert!(values.contains(&0.0) && values.iter().any(|&v| v > 0.0));
    }
}
