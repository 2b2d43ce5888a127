//! Runs of layers the models call instead of each module's `forward`: burn's modules on flex,
//! one libtorch region ([`super::torch_native`]) on LibTorch, so that on a GPU every layer runs
//! the native forward and backward kernels PyTorch runs. Outputs and gradients are the same
//! either way (tested against burn's modules on both backends); the one difference is batch
//! norm's running variance, which libtorch updates with the unbiased batch variance (PyTorch's
//! rule) where burn uses the biased one.
//!
//! The same calls serve a fused model ([`super::fuse`]): many runs' parameters stacked along
//! dim 0, their feature maps side by side along the channels. Each layer reads how many
//! members it serves from shapes alone — a convolution has input channels / its weight's input
//! channels groups, a dense layer its bias' length / its weight's outputs members — so one
//! model's code is also its fused form's.

use super::conv;
#[cfg(any(feature = "tch", test))]
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, Relu};
use burn::prelude::*;

/// One layer of a run over feature maps `[B, C, H, W]`.
pub enum Layer<'a> {
    Conv(&'a Conv2d),
    BatchNorm(&'a BatchNorm),
    Relu,
    MaxPool(&'a MaxPool2d),
    /// Adds a tensor of the same shape (a residual shortcut).
    Add(&'a Tensor<4>),
}

/// Groups of `conv` applied to `channels` input channels: 1 for a model's own layer, the
/// number of members for a fused one.
pub fn groups(conv: &Conv2d, channels: usize) -> usize {
    let per_group = conv.weight.dims()[1];
    assert!(
        channels.is_multiple_of(per_group),
        "a convolution over {per_group} channels (per group) got {channels}"
    );
    channels / per_group
}

/// Members a dense layer serves: its bias holds every member's outputs, its weight `[members ·
/// in, out]` one member's width.
pub fn members(linear: &Linear) -> usize {
    let out = linear.weight.dims()[1];
    linear.bias.as_ref().map_or(1, |b| b.dims()[0] / out)
}

/// `x` through `layers` in order.
pub fn features(x: Tensor<4>, layers: Vec<Layer<'_>>) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if let Some(out) = torch::features(&x, &layers) {
        return out;
    }
    layers.into_iter().fold(x, |x, layer| match layer {
        Layer::Conv(c) => conv::conv2d(c, x),
        Layer::BatchNorm(bn) => bn.forward(x),
        Layer::Relu => Relu::new().forward(x),
        Layer::MaxPool(pool) => pool.forward(x),
        Layer::Add(other) => x + other.clone(),
    })
}

/// A dense layer, followed by ReLU when `relu`. On a fused layer, member `m` maps its columns
/// `m·in .. (m+1)·in` of `x` to columns `m·out .. (m+1)·out` (one batched matmul).
pub fn dense(x: Tensor<2>, linear: &Linear, relu: bool) -> Tensor<2> {
    let members = members(linear);
    let y = if members == 1 {
        #[cfg(feature = "tch")]
        if let Some(out) = torch::dense(&x, linear, relu) {
            return out;
        }
        linear.forward(x)
    } else {
        let [batch, width] = x.dims();
        let [rows, out] = linear.weight.dims();
        let inputs = rows / members;
        assert_eq!(
            width, rows,
            "a fused dense layer over {rows} inputs got {width}"
        );
        let weight = linear.weight.val().reshape([members, inputs, out]);
        let bias = linear
            .bias
            .as_ref()
            .expect("a fused dense layer has a bias")
            .val()
            .reshape([members, 1, out]);
        x.reshape([batch, members, inputs])
            .swap_dims(0, 1)
            .matmul(weight)
            .add(bias)
            .swap_dims(0, 1)
            .reshape([batch, members * out])
    };
    if relu { Relu::new().forward(y) } else { y }
}

/// Mean cross-entropy of `logits` against class ids with label smoothing, by libtorch's own
/// `cross_entropy_loss` on LibTorch (`None` elsewhere: the caller's formula then applies).
pub fn native_cross_entropy(
    logits: &Tensor<2>,
    targets: &Tensor<1, Int>,
    smoothing: f32,
) -> Option<Tensor<1>> {
    #[cfg(feature = "tch")]
    if super::torch_native::libtorch(&logits.device()).is_some() {
        return Some(Tensor::from_dispatch(super::torch_native::cross_entropy(
            logits.clone().into_dispatch(),
            targets.clone().into_dispatch(),
            f64::from(smoothing),
        )));
    }
    let _ = (logits, targets, smoothing);
    None
}

/// Symmetric `[h, w]` padding of a convolution or pool, when it has one.
#[cfg(any(feature = "tch", test))]
fn symmetric_padding(
    padding: &PaddingConfig2d,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Option<[usize; 2]> {
    match *padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            (top == bottom && left == right).then_some([top, left])
        }
        // "Same" is symmetric for odd kernels at stride 1.
        PaddingConfig2d::Same => (stride == [1, 1] && kernel.iter().all(|k| k % 2 == 1))
            .then(|| [0, 1].map(|i| (kernel[i] - 1) / 2 * dilation[i])),
    }
}

#[cfg(feature = "tch")]
mod torch {
    use super::{Layer, symmetric_padding};
    use crate::model::torch_native::{self, Region, Step, libtorch};
    use burn::backend::DispatchTensor;
    use burn::nn::{BatchNorm, Linear};
    use burn::prelude::*;

    /// A layer as a region step, its tensors, and the norm whose statistics it updates.
    struct Lowered<'a> {
        step: Step,
        inputs: Vec<DispatchTensor>,
        norm: Option<&'a BatchNorm>,
    }

    /// `layer` as a region step over `channels` input channels (updated to its output's);
    /// `None` for a layer a region cannot express.
    fn lower<'a>(layer: &Layer<'a>, training: bool, channels: &mut usize) -> Option<Lowered<'a>> {
        let plain = |step, inputs| Lowered {
            step,
            inputs,
            norm: None,
        };
        Some(match layer {
            Layer::Conv(c) => {
                let padding = symmetric_padding(&c.padding, c.kernel_size, c.stride, c.dilation)?;
                let mut inputs = vec![c.weight.val().into_dispatch()];
                inputs.extend(c.bias.as_ref().map(|b| b.val().into_dispatch()));
                let step = Step::Conv2d {
                    stride: c.stride,
                    padding,
                    dilation: c.dilation,
                    groups: super::groups(c, *channels),
                    bias: c.bias.is_some(),
                };
                *channels = c.weight.dims()[0];
                plain(step, inputs)
            }
            Layer::BatchNorm(bn) => {
                let training = training && bn.training.is_enabled();
                let inputs = [
                    bn.gamma.val(),
                    bn.beta.val(),
                    bn.running_mean.value(),
                    bn.running_var.value(),
                ]
                .map(Tensor::into_dispatch)
                .into();
                Lowered {
                    step: Step::BatchNorm {
                        training,
                        momentum: bn.momentum,
                        epsilon: bn.epsilon,
                    },
                    inputs,
                    norm: training.then_some(*bn),
                }
            }
            Layer::Relu => plain(Step::Relu, Vec::new()),
            Layer::MaxPool(pool) => {
                let padding =
                    symmetric_padding(&pool.padding, pool.kernel_size, pool.stride, pool.dilation);
                if padding != Some([0, 0]) || pool.dilation != [1, 1] || pool.ceil_mode {
                    return None;
                }
                let step = Step::MaxPool2d {
                    kernel: pool.kernel_size,
                    stride: pool.stride,
                };
                plain(step, Vec::new())
            }
            Layer::Add(other) => plain(Step::Add, vec![Tensor::clone(other).into_dispatch()]),
        })
    }

    /// `layers` as regions on LibTorch; `None` elsewhere, or when a layer cannot be
    /// expressed. A run with more tensors than one region takes becomes consecutive regions.
    pub fn features(x: &Tensor<4>, layers: &[Layer<'_>]) -> Option<Tensor<4>> {
        let training = libtorch(&x.device())?;
        let mut channels = x.dims()[1];
        let lowered = layers
            .iter()
            .map(|layer| lower(layer, training, &mut channels))
            .collect::<Option<Vec<_>>>()?;
        let mut x = x.clone();
        let mut rest = lowered.into_iter().peekable();
        while rest.peek().is_some() {
            let mut steps = Vec::new();
            let mut inputs = vec![x.into_dispatch()];
            let mut norms = Vec::new();
            while let Some(next) =
                rest.next_if(|l| inputs.len() + l.inputs.len() <= torch_native::MAX_INPUTS)
            {
                steps.push(next.step);
                inputs.extend(next.inputs);
                norms.extend(next.norm);
            }
            let mut outputs = torch_native::region(inputs, &Region { steps }).into_iter();
            x = Tensor::from_dispatch(outputs.next().expect("the region's output"));
            for bn in norms {
                let mut stat =
                    || Tensor::<1>::from_dispatch(outputs.next().expect("running statistics"));
                bn.running_mean.update(stat());
                bn.running_var.update(stat());
            }
        }
        Some(x)
    }

    /// A dense layer (and ReLU) as one region on LibTorch; `None` elsewhere.
    pub fn dense(x: &Tensor<2>, linear: &Linear, relu: bool) -> Option<Tensor<2>> {
        libtorch(&x.device())?;
        let mut steps = vec![Step::Linear {
            bias: linear.bias.is_some(),
        }];
        if relu {
            steps.push(Step::Relu);
        }
        let mut inputs = vec![
            x.clone().into_dispatch(),
            linear.weight.val().into_dispatch(),
        ];
        inputs.extend(linear.bias.as_ref().map(|b| b.val().into_dispatch()));
        let out = torch_native::region(inputs, &Region { steps })
            .into_iter()
            .next();
        Some(Tensor::from_dispatch(out.expect("the region's output")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::nn::{BatchNormConfig, LinearConfig};
    use burn::tensor::Tolerance;

    fn pattern(n: usize, scale: f32, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + seed * 11 + 5) % 101) as f32 / 101.0 * scale - scale / 2.0)
            .collect()
    }

    fn fixed<const D: usize>(shape: [usize; D], seed: usize, device: &Device) -> Tensor<D> {
        let n = shape.iter().product();
        Tensor::from_data(TensorData::new(pattern(n, 1.0, seed), shape), device)
    }

    /// A block of every layer kind with fixed weights: conv (padded, or strided, or valid with a
    /// bias) → batch norm → max-pool → ReLU → + shortcut, then dense + ReLU → dense.
    struct Net {
        convs: Vec<Conv2d>,
        bn: BatchNorm,
        pool: MaxPool2d,
        fc1: Linear,
        fc2: Linear,
    }

    impl Net {
        fn new(device: &Device) -> Net {
            let mut convs = vec![
                Conv2dConfig::new([2, 4], [3, 3])
                    .with_padding(PaddingConfig2d::Same)
                    .with_bias(false)
                    .init(device),
                Conv2dConfig::new([4, 4], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                Conv2dConfig::new([4, 4], [1, 1]).init(device),
            ];
            for (i, c) in convs.iter_mut().enumerate() {
                c.weight = burn::module::Param::from_tensor(fixed(c.weight.dims(), i, device));
                if let Some(b) = &mut c.bias {
                    *b = burn::module::Param::from_tensor(fixed(b.dims(), i + 7, device));
                }
            }
            let mut fc1 = LinearConfig::new(4 * 3 * 3, 5).init(device);
            fc1.weight = burn::module::Param::from_tensor(fixed([36, 5], 3, device));
            fc1.bias = Some(burn::module::Param::from_tensor(fixed([5], 5, device)));
            let mut fc2 = LinearConfig::new(5, 7).init(device);
            fc2.weight = burn::module::Param::from_tensor(fixed([5, 7], 4, device));
            fc2.bias = Some(burn::module::Param::from_tensor(fixed([7], 6, device)));
            Net {
                convs,
                bn: BatchNormConfig::new(4).init(device),
                pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                fc1,
                fc2,
            }
        }

        fn forward(&self, x: Tensor<4>) -> Tensor<2> {
            let x = features(
                x,
                vec![Layer::Conv(&self.convs[0]), Layer::BatchNorm(&self.bn)],
            );
            let skip = features(x.clone(), vec![Layer::MaxPool(&self.pool)]);
            let x = features(
                x,
                vec![
                    Layer::Conv(&self.convs[1]),
                    Layer::Relu,
                    Layer::Conv(&self.convs[2]),
                    Layer::Add(&skip),
                    Layer::Relu,
                ],
            );
            let x = x.flatten(1, 3);
            dense(dense(x, &self.fc1, true), &self.fc2, false)
        }
    }

    /// Output, input gradient, every parameter's gradient and the running statistics.
    fn run(device: &Device, via_layers: bool) -> Vec<TensorData> {
        let net = Net::new(device);
        let x = fixed([3, 2, 6, 6], 9, device).require_grad();
        let y = if via_layers {
            net.forward(x.clone())
        } else {
            plain_forward(&net, x.clone())
        };
        let n = y.shape().num_elements();
        let weights = Tensor::<1>::from_data(TensorData::new(pattern(n, 1.0, 2), [n]), device)
            .reshape(y.shape());
        let grads = (y.clone() * weights).sum().backward();
        let mut out = vec![
            y.into_data(),
            x.grad(&grads).expect("input grad").into_data(),
        ];
        for c in &net.convs {
            out.push(
                c.weight
                    .val()
                    .grad(&grads)
                    .expect("conv weight grad")
                    .into_data(),
            );
            if let Some(b) = &c.bias {
                out.push(b.val().grad(&grads).expect("conv bias grad").into_data());
            }
        }
        for p in [&net.bn.gamma, &net.bn.beta] {
            out.push(p.val().grad(&grads).expect("bn grad").into_data());
        }
        for l in [&net.fc1, &net.fc2] {
            out.push(
                l.weight
                    .val()
                    .grad(&grads)
                    .expect("dense weight grad")
                    .into_data(),
            );
            out.push(
                l.bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .expect("dense bias grad")
                    .into_data(),
            );
        }
        out.push(net.bn.running_mean.value().into_data());
        out
    }

    /// The same network through burn's modules alone.
    fn plain_forward(net: &Net, x: Tensor<4>) -> Tensor<2> {
        let x = net.bn.forward(net.convs[0].forward(x));
        let skip = net.pool.forward(x.clone());
        let relu = Relu::new();
        let x = relu.forward(net.convs[2].forward(relu.forward(net.convs[1].forward(x))) + skip);
        let x = x.flatten(1, 3);
        net.fc2.forward(relu.forward(net.fc1.forward(x)))
    }

    fn matches_burn_on(device: Device) {
        let ours = run(&device, true);
        let burns = run(&device, false);
        assert_eq!(ours.len(), burns.len());
        for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
            assert_eq!(a.shape(), b.shape(), "tensor {i}");
            a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-4, 1e-5));
        }
    }

    #[test]
    fn layers_match_burns_modules_and_gradients() {
        matches_burn_on(Device::flex().autodiff());
    }

    /// libtorch's regions: run with `cargo test --features tch` and libtorch on the library
    /// path (`.ci/run` does).
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)]
    fn libtorch_regions_match_burns_modules_and_gradients() {
        matches_burn_on(Device::libtorch().autodiff());
    }

    /// The structural proof that on libtorch every layer of every model kind trains on the
    /// native kernels PyTorch's autograd uses: one autograd node per convolution
    /// (`ConvolutionBackward0`, i.e. `convolution_backward`), per batch norm, per pool, per dense
    /// layer, and no convolution in burn's formulation anywhere in the backward pass.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)]
    fn every_model_kind_trains_on_libtorchs_native_kernels() {
        use crate::bench::traced_step;
        let device = Device::libtorch();
        for spec in crate::model::tests::all_models() {
            let model = crate::model::FerModel::new(&spec, 48, 0.5, &device);
            let Layers {
                convs,
                norms,
                dense_calls,
            } = count_layers(&model);
            let ops = traced_step(&spec, 4, &device, None);
            let nodes = |name: &str| -> usize {
                ops.iter()
                    .filter(|(op, _)| op.phase == "backward" && op.backward_node && op.name == name)
                    .map(|(_, calls)| calls)
                    .sum()
            };
            assert_eq!(nodes("ConvolutionBackward0"), convs, "{spec:?}: {ops:#?}");
            assert_eq!(nodes("NativeBatchNormBackward0"), norms, "{spec:?}");
            assert_eq!(nodes("AddmmBackward0"), dense_calls, "{spec:?}");
            // Every kind pools but the residual net with a CIFAR-style stem (no stem pool).
            let pools = !matches!(&spec, crate::model::ModelSpec::Residual(c) if !c.stem_pool);
            assert_eq!(
                nodes("MaxPool2DWithIndicesBackward0") > 0,
                pools,
                "{spec:?}"
            );
            assert!(nodes("ReluBackward0") > 0, "{spec:?}");
            assert_eq!(nodes("NllLossBackward0"), 1, "{spec:?}");
            let burn_convs: Vec<_> = ops
                .iter()
                .filter(|(op, _)| {
                    op.phase == "backward" && !op.backward_node && op.name.contains("conv")
                })
                .collect();
            assert!(
                burn_convs.is_empty(),
                "{spec:?}: burn's convolution backward ran: {burn_convs:?}"
            );
        }
    }

    /// bf16 mixed precision: the same network within bf16's error of float32, and float32
    /// wherever burn sees a tensor (outputs, every gradient, the running statistics).
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)]
    fn bf16_regions_follow_float32_and_hand_burn_float32() {
        use crate::model::{Precision, precision};
        let device = Device::libtorch().autodiff();
        let exact = run(&device, true);
        let mixed = precision::with(Precision::Bf16, || run(&device, true));
        assert_eq!(exact.len(), mixed.len());
        let mut differs = false;
        for (i, (a, b)) in exact.iter().zip(&mixed).enumerate() {
            assert_eq!(b.dtype(), burn::tensor::DType::F32, "tensor {i}");
            assert_eq!(a.shape(), b.shape(), "tensor {i}");
            // bf16 keeps 8 bits of mantissa: about 2–3 significant digits per product.
            a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(5e-2, 5e-2));
            differs |= a != b;
        }
        assert!(differs, "bf16 ran as float32");
    }

    /// Structurally, in bf16 every convolution and dense layer of every model kind runs its
    /// backward on bf16 gradients (libtorch's autocast), while the loss and the optimizer see
    /// float32 only.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)]
    fn in_bf16_every_models_convolutions_and_dense_layers_run_in_bf16() {
        use crate::bench::traced_step;
        use crate::model::{Precision, precision};
        let device = Device::libtorch();
        for spec in crate::model::tests::all_models() {
            let ops = precision::with(Precision::Bf16, || traced_step(&spec, 4, &device, None));
            let nodes = |name: &str| {
                ops.iter()
                    .filter(move |(op, _)| op.backward_node && op.name == name)
                    .collect::<Vec<_>>()
            };
            for name in ["ConvolutionBackward0", "AddmmBackward0"] {
                let ran = nodes(name);
                assert!(!ran.is_empty(), "{spec:?}: no {name}");
                for (op, _) in ran {
                    assert!(
                        op.shapes.contains("bf16"),
                        "{spec:?}: {name} in float32: {op:?}"
                    );
                }
            }
            for (op, _) in nodes("NllLossBackward0") {
                assert!(
                    !op.shapes.contains("bf16"),
                    "{spec:?}: the loss in bf16: {op:?}"
                );
            }
            let optimizer_bf16: Vec<_> = ops
                .iter()
                .filter(|(op, _)| op.phase == "optimizer" && op.shapes.contains("bf16"))
                .collect();
            assert!(optimizer_bf16.is_empty(), "{spec:?}: {optimizer_bf16:?}");
        }
    }

    #[cfg(feature = "tch")]
    #[derive(Default)]
    struct Layers {
        /// Rank-4 weights.
        convs: usize,
        norms: usize,
        /// Rank-2 weights, and twice more for each CBAM module, whose two dense layers run on
        /// both the average- and the max-pooled channels.
        dense_calls: usize,
    }

    #[cfg(feature = "tch")]
    impl burn::module::ModuleVisitor for Layers {
        fn visit_float<const D: usize>(&mut self, _: &burn::module::Param<Tensor<D>>) {
            match D {
                4 => self.convs += 1,
                2 => self.dense_calls += 1,
                _ => {}
            }
        }
        // Called for each field with its owner's type: a module has one of each field.
        fn enter_module(&mut self, field: &str, container_type: &str) {
            match (container_type, field) {
                ("Struct:BatchNorm", "gamma") => self.norms += 1,
                ("Struct:Cbam", "fc1") => self.dense_calls += 2,
                _ => {}
            }
        }
    }

    #[cfg(feature = "tch")]
    fn count_layers(model: &crate::model::FerModel) -> Layers {
        let mut count = Layers::default();
        model.visit(&mut count);
        count
    }

    #[test]
    fn padding_is_symmetric_or_refused() {
        assert_eq!(
            symmetric_padding(&PaddingConfig2d::Same, [3, 3], [1, 1], [1, 1]),
            Some([1, 1])
        );
        assert_eq!(
            symmetric_padding(&PaddingConfig2d::Same, [7, 7], [1, 1], [1, 1]),
            Some([3, 3])
        );
        assert_eq!(
            symmetric_padding(&PaddingConfig2d::Same, [2, 2], [1, 1], [1, 1]),
            None
        );
        assert_eq!(
            symmetric_padding(
                &PaddingConfig2d::Explicit(1, 2, 1, 2),
                [3, 3],
                [2, 2],
                [1, 1]
            ),
            Some([1, 2])
        );
        assert_eq!(
            symmetric_padding(
                &PaddingConfig2d::Explicit(1, 1, 0, 0),
                [3, 3],
                [2, 2],
                [1, 1]
            ),
            None
        );
    }
}
