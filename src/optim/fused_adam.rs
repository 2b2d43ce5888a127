//! Adam and AdamW as burn's per-tensor optimizer, with libtorch's fused kernel on LibTorch.
//!
//! burn's Adam updates a parameter tensor with about a dozen element-wise kernels (moments,
//! bias corrections, square root, division, the update); on a GPU each is a launch, per tensor
//! and per step. PyTorch runs one fused (or multi-tensor) kernel. On LibTorch these optimizers
//! call `_fused_adam_` / `_fused_adamw_` once per tensor (plus the fill of its step counter);
//! everywhere else they are burn's own Adam and AdamW, so flex training is unchanged bit for bit.
//! The state is burn's record (`AdamState` / `AdamWState`), so checkpoints and resume work as
//! before and a run may resume on either path.
//!
//! The update is the same formula (PyTorch's `sqrt(v̂) + ε` equals burn's rescaled form), not
//! the same rounding: on LibTorch results differ from burn's Adam in the last bits.

use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    LearningRate, ModuleOptimizer, Optimizer,
};
use burn::prelude::*;

// burn's defaults, set explicitly on both paths so they cannot drift apart.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// Adam with L2 weight decay (added to the gradient), as burn's `AdamConfig` with a
/// `WeightDecayConfig`.
#[derive(Clone)]
pub struct FusedAdam {
    burn: Adam,
    weight_decay: f32,
}

/// AdamW: decoupled weight decay.
#[derive(Clone)]
pub struct FusedAdamW {
    burn: AdamW,
    weight_decay: f32,
}

impl FusedAdam {
    pub fn new(weight_decay: f32) -> FusedAdam {
        let decay =
            (weight_decay > 0.0).then(|| burn::optim::decay::WeightDecayConfig::new(weight_decay));
        FusedAdam {
            burn: AdamConfig::new()
                .with_beta_1(BETA_1)
                .with_beta_2(BETA_2)
                .with_epsilon(EPSILON)
                .with_weight_decay(decay)
                .build(),
            weight_decay,
        }
    }

    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl FusedAdamW {
    pub fn new(weight_decay: f32) -> FusedAdamW {
        FusedAdamW {
            burn: AdamWConfig::new()
                .with_beta_1(BETA_1)
                .with_beta_2(BETA_2)
                .with_epsilon(EPSILON)
                .with_weight_decay(weight_decay)
                .build(),
            weight_decay,
        }
    }

    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !on_libtorch(&tensor) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let (tensor, momentum) = fused_step(
            lr,
            self.weight_decay,
            false,
            tensor,
            grad,
            state.map(|s| s.momentum),
        );
        (tensor, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !on_libtorch(&tensor) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let (tensor, momentum) = fused_step(
            lr,
            self.weight_decay,
            true,
            tensor,
            grad,
            state.map(|s| s.momentum),
        );
        (tensor, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

#[cfg(feature = "tch")]
fn on_libtorch<const D: usize>(tensor: &Tensor<D>) -> bool {
    // The optimizer sees the inner (untracked) tensors of the parameters.
    crate::model::torch_native::libtorch(&tensor.device()) == Some(false)
}

#[cfg(not(feature = "tch"))]
fn on_libtorch<const D: usize>(_: &Tensor<D>) -> bool {
    false
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 marks libtorch deprecated; it is still the GPU path here
fn fused_step<const D: usize>(
    lr: LearningRate,
    weight_decay: f32,
    decoupled: bool,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    momentum: Option<AdaptiveMomentumState<D>>,
) -> (Tensor<D>, AdaptiveMomentumState<D>) {
    use crate::model::torch_native::{self as native, AdamStep};
    let param = native::owned(tensor.into_dispatch());
    let grad = native::plain(grad.into_dispatch());
    let (time, moment_1, moment_2) = match momentum {
        Some(m) => (
            m.time,
            native::owned(m.moment_1.into_dispatch()),
            native::owned(m.moment_2.into_dispatch()),
        ),
        None => {
            let zeros = || burn::backend::libtorch::TchTensor::new(param.tensor.zeros_like());
            (0, zeros(), zeros())
        }
    };
    let step = AdamStep {
        lr,
        beta_1: f64::from(BETA_1),
        beta_2: f64::from(BETA_2),
        epsilon: f64::from(EPSILON),
        weight_decay: f64::from(weight_decay),
        decoupled,
        step: time + 1,
    };
    native::fused_adam(
        &param.tensor,
        &grad.tensor,
        &moment_1.tensor,
        &moment_2.tensor,
        &step,
    );
    let back = |t| Tensor::from_dispatch(native::into_dispatch(t));
    (
        back(param),
        AdaptiveMomentumState::new(time + 1, back(moment_1), back(moment_2)),
    )
}

#[cfg(not(feature = "tch"))]
fn fused_step<const D: usize>(
    _: LearningRate,
    _: f32,
    _: bool,
    _: Tensor<D>,
    _: Tensor<D>,
    _: Option<AdaptiveMomentumState<D>>,
) -> (Tensor<D>, AdaptiveMomentumState<D>) {
    unreachable!("only LibTorch tensors take the fused path")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::optim::decay::WeightDecayConfig;

    /// The weights of a small dense layer after five steps of `optim` on a fixed batch.
    fn train(mut optim: ModuleOptimizer, device: &Device) -> Vec<f32> {
        // Fixed weights, not the device's RNG: tests running beside this one draw from it too.
        let mut model: Linear = LinearConfig::new(6, 3).init(device);
        let weights = (0..18)
            .map(|i| ((i * 7) % 11) as f32 / 10.0 - 0.5)
            .collect();
        model.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(weights, [6, 3]), device));
        model.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.1f32, -0.2, 0.05], [3]),
            device,
        )));
        let pixels = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::<2>::from_data(TensorData::new(pixels, [4, 6]), device);
        for _ in 0..5 {
            let loss = model.forward(x.clone()).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        model.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    fn burns_adam() -> ModuleOptimizer {
        AdamConfig::new()
            .with_weight_decay(Some(WeightDecayConfig::new(0.05)))
            .init()
    }

    fn burns_adamw() -> ModuleOptimizer {
        AdamWConfig::new().with_weight_decay(0.05).init()
    }

    #[test]
    fn off_libtorch_it_is_burns_adam_bit_for_bit() {
        let device = Device::flex().autodiff();
        assert_eq!(
            train(FusedAdam::new(0.05).init(), &device),
            train(burns_adam(), &device)
        );
        assert_eq!(
            train(FusedAdamW::new(0.05).init(), &device),
            train(burns_adamw(), &device)
        );
    }

    /// On LibTorch the step is libtorch's fused kernel, and it lands where burn's Adam does.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)]
    fn on_libtorch_one_fused_kernel_matches_burns_adam() {
        let device = Device::libtorch().autodiff();
        let close = |a: Vec<f32>, b: Vec<f32>| {
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{a:?} vs {b:?}");
            }
        };
        close(
            train(FusedAdam::new(0.05).init(), &device),
            train(burns_adam(), &device),
        );
        close(
            train(FusedAdamW::new(0.05).init(), &device),
            train(burns_adamw(), &device),
        );
        let (_, ops) =
            crate::model::torch_native::trace(|| train(FusedAdam::new(0.05).init(), &device));
        let fused = ops
            .lines()
            .filter(|l| l.contains("aten::_fused_adam_"))
            .count();
        // Five steps of a weight and a bias.
        assert!(fused >= 10, "{ops}");
    }
}
