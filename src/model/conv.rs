//! Unpadded 2-D convolutions with cheaper gradients than burn's defaults.
//!
//! burn computes a convolution's weight gradient as another convolution — the input with batch
//! and channels swapped, convolved with the output gradient as a kernel as large as the feature
//! map (46×46 for the baseline's first layer) — and its bias gradient through a transposed copy
//! of the output gradient. This is a burn backend extension for flex with its own backward pass:
//! the input gradient stays burn's (a transposed convolution), the bias gradient sums over the
//! batch first, which needs no copy, and the weight gradient is im2col: `unfold4d` lays every
//! receptive field out as a column, then one batched matmul with the output gradient and a sum
//! over the batch. (On LibTorch every layer runs libtorch's own kernels: [`super::layers`].)
//!
//! `fer-lab bench conv` measures it on the baseline's layers (docs/benchmarks.md). At batch 64
//! on 2 threads, forward + backward of the first layer takes 8.5–10.1 ms instead of 20.2–20.5,
//! of the second 24.2–24.7 instead of 34.7–38.4. Padded convolutions keep burn's path: with
//! padding, im2col measured slower than burn's weight gradient.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ConvOptions, UnfoldOptions};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// The extension: the convolution (whose autodiff backward is `ValidConvBackward`) and its
/// weight gradient.
#[backend_extension(Flex, Autodiff)]
pub trait ValidConv: Backend {
    /// An unpadded, ungrouped 2-D convolution with a bias.
    fn conv2d_valid(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// The gradient of [`ValidConv::conv2d_valid`] with respect to its weight.
    fn conv2d_valid_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        im2col_weight_grad::<Self>(x, weight, output_grad, options)
    }
}

/// The weight gradient by im2col: columns `[B, C_in·kh·kw, L]` times the output gradient
/// `[B, C_out, L]`, summed over the batch.
fn im2col_weight_grad<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    let [batch, c_in, _, _] = x.shape().dims();
    let [c_out, _, kh, kw] = weight.shape().dims();
    let [_, _, h_out, w_out] = output_grad.shape().dims();
    let unfold = UnfoldOptions::new(options.stride, [0, 0], options.dilation);
    let columns = B::unfold4d(x, [kh, kw], unfold);
    let grad = B::float_reshape(output_grad, Shape::new([batch, c_out, h_out * w_out]));
    let per_image = B::float_matmul(grad, B::float_swap_dims(columns, 1, 2));
    let summed = B::float_sum_dim(per_image, 0);
    B::float_reshape(summed, Shape::new([c_out, c_in, kh, kw]))
}

impl ValidConv for Flex {}

/// What a training forward pass keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct ConvSaved<B: Backend> {
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
}

/// The training step of a valid convolution: burn's pieces plus the two cheaper gradients above.
pub trait ConvKernels: ValidConv {
    /// The output, and what [`ConvKernels::conv2d_valid_backward`] needs.
    fn conv2d_valid_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, ConvSaved<Self>) {
        burn_forward::<Self>(x, weight, bias, options)
    }

    /// The gradients of the input (when asked for), the weight and the bias.
    fn conv2d_valid_backward(
        saved: ConvSaved<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        input_grad: bool,
    ) -> ConvGrads<Self> {
        burn_backward::<Self>(saved, grad, options, input_grad)
    }
}

/// Gradients of input (if asked for), weight and bias.
pub type ConvGrads<B> = (Option<FloatTensor<B>>, FloatTensor<B>, FloatTensor<B>);

fn burn_forward<B: ValidConv>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, ConvSaved<B>) {
    let output = B::conv2d_valid(x.clone(), weight.clone(), bias, options);
    let saved = ConvSaved { x, weight };
    (output, saved)
}

fn burn_backward<B: ValidConv>(
    saved: ConvSaved<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
    input_grad: bool,
) -> ConvGrads<B> {
    let ConvSaved { x, weight, .. } = saved;
    let bias = bias_grad::<B>(grad.clone());
    let dx = input_grad
        .then(|| B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone()));
    let dw = B::conv2d_valid_weight_grad(x, weight, grad, options);
    (dx, dw, bias)
}

/// The bias gradient of a convolution from its output gradient `[B, C, H, W]`. Summing over the
/// batch first (`[1, C, H, W]`) reads the gradient once and leaves a contiguous tensor, so unlike
/// burn's default no transposed copy is needed.
pub fn bias_grad<B: Backend>(grad: FloatTensor<B>) -> FloatTensor<B> {
    let [_, c_out, h, w] = grad.shape().dims();
    let per_pixel = B::float_sum_dim(grad, 0);
    let flat = B::float_reshape(per_pixel, Shape::new([c_out, h * w]));
    B::float_reshape(B::float_sum_dim(flat, 1), Shape::new([c_out]))
}

impl ConvKernels for Flex {}

impl<B: Backend + ConvKernels, C: CheckpointStrategy> ValidConv for Autodiff<B, C> {
    fn conv2d_valid(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match ValidConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, saved) = B::conv2d_valid_forward(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    options.clone(),
                );
                prep.finish((saved, options), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_valid(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            )),
        }
    }
}

#[derive(Debug)]
struct ValidConvBackward;

impl<B: Backend + ConvKernels> Backward<B, 3> for ValidConvBackward {
    type State = (ConvSaved<B>, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (saved, options) = ops.state;
        let (dx, dw, db) = B::conv2d_valid_backward(saved, grad, options, node_x.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, db);
        }
    }
}

/// `conv.forward(x)`, through [`ValidConv`] on flex when the convolution has no padding, one
/// group and a bias (the baseline's layers); any other convolution takes burn's own path. A
/// fused convolution (see [`super::layers`]) runs with one group per member.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let groups = super::layers::groups(conv, x.dims()[1]);
    if groups != conv.groups {
        let mut grouped = conv.clone();
        grouped.groups = groups;
        return grouped.forward(x);
    }
    let device = x.device();
    let on_flex = matches!(device.as_dispatch(), DispatchDevice::Flex(_))
        || matches!(device.as_dispatch(), DispatchDevice::Autodiff(inner)
            if matches!(**inner, DispatchDevice::Flex(_)));
    let unpadded = matches!(
        conv.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    match &conv.bias {
        Some(bias) if on_flex && unpadded && groups == 1 => {
            let options = ConvOptions::new(conv.stride, [0, 0], conv.dilation, 1);
            Tensor::from_dispatch(<Dispatch as ValidConv>::conv2d_valid(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                bias.val().into_dispatch(),
                options,
            ))
        }
        _ => conv.forward(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Tolerance;

    fn pattern(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + 11) % 101) as f32 / 101.0 * scale - scale / 2.0)
            .collect()
    }

    /// Output and the gradients of input, weight and bias, from `forward`.
    fn run(
        conv: &Conv2d,
        forward: impl Fn(&Conv2d, Tensor<4>) -> Tensor<4>,
        device: &Device,
    ) -> [TensorData; 4] {
        let c_in = conv.weight.dims()[1];
        let x = Tensor::<4>::from_data(
            TensorData::new(pattern(3 * c_in * 11 * 9, 2.0), [3, c_in, 11, 9]),
            device,
        )
        .require_grad();
        let y = forward(conv, x.clone());
        let n = y.shape().num_elements();
        // A different weight per output position, so every gradient entry is distinct.
        let weights = Tensor::<1>::from_data(TensorData::new(pattern(n, 1.0), [n]), device)
            .reshape(y.shape());
        let grads = (y.clone() * weights).sum().backward();
        let bias = conv.bias.as_ref().expect("bias").val();
        [
            y.into_data(),
            x.grad(&grads).expect("input gradient").into_data(),
            conv.weight
                .val()
                .grad(&grads)
                .expect("weight gradient")
                .into_data(),
            bias.grad(&grads).expect("bias gradient").into_data(),
        ]
    }

    #[test]
    fn matches_burns_convolution_and_its_gradients() {
        matches_burn_on(Device::flex().autodiff());
    }

    /// One input channel (the image layer) and two, strided and dilated.
    fn matches_burn_on(device: Device) {
        let cases = [
            (1, [1, 1], [1, 1]),
            (2, [1, 1], [1, 1]),
            (2, [2, 1], [1, 2]),
        ];
        for (c_in, stride, dilation) in cases {
            let mut conv = Conv2dConfig::new([c_in, 4], [3, 3])
                .with_stride(stride)
                .with_dilation(dilation)
                .init(&device);
            // Fixed weights: the device's seed is shared with tests running beside this one.
            conv.weight = burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(pattern(4 * c_in * 9, 1.0), [4, c_in, 3, 3]),
                &device,
            ));
            let ours = run(&conv, conv2d, &device);
            let burns = run(&conv, |c, x| c.forward(x), &device);
            for (what, (a, b)) in ["output", "input grad", "weight grad", "bias grad"]
                .iter()
                .zip(ours.iter().zip(burns.iter()))
            {
                assert_eq!(
                    a.shape(),
                    b.shape(),
                    "{what}, {c_in} channels, stride {stride:?}"
                );
                a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-4, 1e-5));
            }
        }
    }

    #[test]
    fn padded_convolutions_keep_burns_path() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([1, 2], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        let x = Tensor::<4>::from_data(TensorData::new(pattern(36, 1.0), [1, 1, 6, 6]), &device);
        let y = conv2d(&conv, x.clone());
        assert_eq!(y.dims(), [1, 2, 6, 6]);
        y.into_data().assert_eq(&conv.forward(x).into_data(), true);
    }
}
