//! libtorch's own kernels for a run of layers, forward and backward (the `tch` feature).
//!
//! burn's autodiff differentiates a padded convolution with a convolution whose kernel is the
//! whole output gradient plus a transposed convolution, batch norm from primitive ops and ReLU
//! with a mask and a fill. oneDNN on a CPU copes; cuDNN does not (a 21×21 "kernel" is not what
//! its algorithms are for). PyTorch calls one native backward per layer
//! (`convolution_backward`, cuDNN's batch-norm backward, `threshold_backward`, …).
//!
//! A [`Region`] is a short run of layers (conv → batch norm → max-pool → ReLU, say) that burn's
//! graph sees as one operation: on LibTorch with autodiff its forward is recorded in libtorch's
//! own autograd and its backward is that graph's, seeded with the output gradient burn hands
//! down (`torch::autograd::grad` in `torch_native.cpp`). Each layer therefore runs exactly the
//! kernels a PyTorch module runs, with the same shapes (`fer-lab bench ops` lists them).
//! Without autodiff (evaluation) the region runs the same forward kernels without a graph.

#![allow(deprecated)] // burn 0.22 marks libtorch deprecated; it is still the GPU path here

use super::precision::Precision;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind,
    GradientCheckpointingStrategy, LibTorch,
};
use std::ffi::{CStr, c_char, c_int, c_void};
use tch::Tensor as T;
use torch_sys::C_tensor;

/// One layer of a region. Each consumes the running value and the next inputs in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Inputs: weight `[out, in/groups, kh, kw]`, then the bias when `bias`.
    Conv2d {
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    },
    /// Inputs: gamma, beta, running mean, running variance. In training the batch statistics
    /// normalise and libtorch updates copies of the running statistics (PyTorch's rule: the
    /// unbiased variance), which become extra outputs of the region.
    BatchNorm {
        training: bool,
        momentum: f64,
        epsilon: f64,
    },
    Relu,
    MaxPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    /// Inputs: weight `[in, out]` (burn's layout), then the bias when `bias`.
    Linear {
        bias: bool,
    },
    /// Input: a tensor of the running value's shape, added to it (a residual shortcut).
    Add,
}

/// A run of layers and the number of inputs it takes (the value plus every step's tensors).
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub steps: Vec<Step>,
}

impl Region {
    /// How many tensors the region takes: the input value and each step's own.
    pub fn arity(&self) -> usize {
        1 + self
            .steps
            .iter()
            .map(|step| match step {
                Step::Conv2d { bias, .. } | Step::Linear { bias } => 1 + usize::from(*bias),
                Step::BatchNorm { .. } => 4,
                Step::Relu | Step::MaxPool2d { .. } => 0,
                Step::Add => 1,
            })
            .sum::<usize>()
    }

    /// The forward pass on libtorch tensors: the output, then the updated running statistics
    /// of each training batch norm (mean, variance) in order. In bf16 mixed precision
    /// ([`super::precision`]) the layers run under libtorch's autocast and the output is cast
    /// back to float32 (the cast is part of the recorded graph, so gradients come back float32).
    fn apply(&self, inputs: &[T]) -> (T, Vec<T>) {
        match super::precision::current() {
            Precision::F32 => self.layers(inputs),
            Precision::Bf16 => {
                let _autocast = Autocast::bf16(inputs[0].device());
                let (out, stats) = self.layers(inputs);
                (out.to_kind(tch::Kind::Float), stats)
            }
        }
    }

    /// [`Region::apply`] in whatever precision libtorch's autocast state says.
    fn layers(&self, inputs: &[T]) -> (T, Vec<T>) {
        let mut next = inputs.iter();
        let mut take = || next.next().expect("Region::arity inputs");
        let mut value = take().shallow_clone();
        let mut stats = Vec::new();
        let i64s = |v: [usize; 2]| v.map(|x| x as i64);
        for step in &self.steps {
            value = match step {
                Step::Conv2d {
                    stride,
                    padding,
                    dilation,
                    groups,
                    bias,
                } => {
                    let weight = take();
                    let bias = bias.then(&mut take);
                    value.conv2d(
                        weight,
                        bias,
                        i64s(*stride),
                        i64s(*padding),
                        i64s(*dilation),
                        *groups as i64,
                    )
                }
                Step::BatchNorm {
                    training,
                    momentum,
                    epsilon,
                } => {
                    let (gamma, beta) = (take(), take());
                    let (mean, var) = (take(), take());
                    if *training {
                        // libtorch updates the statistics in place: give it copies, so the
                        // tensors burn holds (and may be checkpointing) never change under it.
                        let (mean, var) = (mean.copy(), var.copy());
                        let out = value.batch_norm(
                            Some(gamma),
                            Some(beta),
                            Some(&mean),
                            Some(&var),
                            true,
                            *momentum,
                            *epsilon,
                            true,
                        );
                        stats.push(mean);
                        stats.push(var);
                        out
                    } else {
                        value.batch_norm(
                            Some(gamma),
                            Some(beta),
                            Some(mean),
                            Some(var),
                            false,
                            *momentum,
                            *epsilon,
                            true,
                        )
                    }
                }
                Step::Relu => value.relu(),
                Step::MaxPool2d { kernel, stride } => {
                    value.max_pool2d(i64s(*kernel), i64s(*stride), [0, 0], [1, 1], false)
                }
                Step::Linear { bias } => {
                    let weight = take();
                    match bias.then(&mut take) {
                        // addmm, as PyTorch's linear: one kernel for the product and the bias.
                        Some(bias) => bias.addmm(&value, weight),
                        None => value.matmul(weight),
                    }
                }
                Step::Add => &value + take(),
            };
        }
        (value, stats)
    }
}

/// Whether tensors on `device` live in libtorch, and whether gradients are recorded.
pub fn libtorch(device: &burn::prelude::Device) -> Option<bool> {
    use burn::backend::DispatchDevice;
    match device.as_dispatch() {
        DispatchDevice::LibTorch(_) => Some(false),
        DispatchDevice::Autodiff(inner) => {
            matches!(**inner, DispatchDevice::LibTorch(_)).then_some(true)
        }
        _ => None,
    }
}

/// The most tensors one region takes (its input and every step's). Each arity up to it is a
/// separate instantiation of [`record`]; `layers::features` splits longer runs of layers.
pub const MAX_INPUTS: usize = 24;

/// Calls `record` with the region's arity as a constant (burn's operations have a fixed
/// number of parents).
macro_rules! by_arity {
    ($strategy:ty, $n:expr, $inputs:expr, $forward:expr, [$($k:literal)*]) => {
        match $n {
            $($k => record::<$k, $strategy>($inputs, $forward),)*
            n => panic!("a region of {n} inputs: add the arity to by_arity!"),
        }
    };
}

/// burn's autodiff float primitive over LibTorch (the same type for every checkpointing
/// strategy; the strategy only matters when an operation is prepared).
type AdTensor = FloatTensor<Autodiff<LibTorch>>;

/// Runs `region` over `inputs` (its input value, then every step's tensors in order), all on
/// LibTorch: the region's output, then its updated batch-norm statistics.
///
/// burn's `#[backend_extension]` macro cannot route a `Vec` of tensors, so this dispatches by
/// hand: tensors with an autodiff context are recorded as one operation of burn's graph, the
/// others (evaluation) run the same kernels without a graph.
pub fn region(inputs: Vec<DispatchTensor>, region: &Region) -> Vec<DispatchTensor> {
    assert_eq!(inputs.len(), region.arity(), "inputs of {region:?}");
    let forward = |inputs: &[T]| region.apply(inputs);
    match context(&inputs) {
        DispatchAutodiffContext::Disabled => {
            let inputs: Vec<T> = inputs.into_iter().map(|t| plain(t).tensor).collect();
            let (out, stats) = tch::no_grad(|| forward(&inputs));
            std::iter::once(out)
                .chain(stats)
                .map(|t| from_plain(wrap(t)))
                .collect()
        }
        DispatchAutodiffContext::Enabled(strategy) => {
            let inputs: Vec<AdTensor> = inputs.into_iter().map(autodiff).collect();
            let outputs = match strategy {
                GradientCheckpointingStrategy::Disabled => {
                    by_arity!(NoCheckpointing, inputs.len(), inputs, forward,
                        [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24])
                }
                GradientCheckpointingStrategy::Balanced => {
                    by_arity!(BalancedCheckpointing, inputs.len(), inputs, forward,
                        [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24])
                }
            };
            outputs
                .into_iter()
                .map(|t| from_autodiff(t, strategy))
                .collect()
        }
    }
}

/// Mean cross-entropy of logits `[B, C]` against class ids `[B]` with label smoothing, by
/// libtorch's `cross_entropy_loss` (one `[1]` tensor).
pub fn cross_entropy(
    logits: DispatchTensor,
    targets: DispatchTensor,
    smoothing: f64,
) -> DispatchTensor {
    let targets = match targets.kind {
        DispatchTensorKind::LibTorch(BackendTensor::Int(t)) => t.tensor,
        other => panic!("cross-entropy targets on LibTorch, got {other:?}"),
    };
    let forward = |inputs: &[T]| (loss(&inputs[0], &targets, smoothing), Vec::new());
    match logits.autodiff {
        DispatchAutodiffContext::Disabled => {
            let logits = plain(logits).tensor;
            from_plain(wrap(tch::no_grad(|| forward(&[logits]).0)))
        }
        DispatchAutodiffContext::Enabled(strategy) => {
            let logits = vec![autodiff(logits)];
            let mut out = match strategy {
                GradientCheckpointingStrategy::Disabled => {
                    record::<1, NoCheckpointing>(logits, forward)
                }
                GradientCheckpointingStrategy::Balanced => {
                    record::<1, BalancedCheckpointing>(logits, forward)
                }
            };
            from_autodiff(out.remove(0), strategy)
        }
    }
}

/// The autodiff context an operation over `inputs` runs in (constants join a tracked graph).
fn context(inputs: &[DispatchTensor]) -> DispatchAutodiffContext {
    inputs
        .iter()
        .fold(DispatchAutodiffContext::Disabled, |context, t| {
            context.merge(t.autodiff)
        })
}

pub fn plain(t: DispatchTensor) -> TchTensor {
    match t.kind {
        DispatchTensorKind::LibTorch(BackendTensor::Float(t)) => t,
        other => panic!("a LibTorch float tensor, got {other:?}"),
    }
}

/// An autodiff tensor; a plain float (a batch norm's running statistics, say) becomes an
/// untracked one, a constant of the graph.
fn autodiff(t: DispatchTensor) -> AdTensor {
    match t.kind {
        DispatchTensorKind::Autodiff(inner) => match *inner {
            DispatchTensorKind::LibTorch(BackendTensor::Autodiff(t)) => t,
            other => panic!("an autodiff LibTorch float tensor, got {other:?}"),
        },
        DispatchTensorKind::LibTorch(BackendTensor::Float(t)) => AdTensor::new(t),
        other => panic!("a LibTorch float tensor, got {other:?}"),
    }
}

fn from_plain(t: TchTensor) -> DispatchTensor {
    DispatchTensor {
        kind: DispatchTensorKind::LibTorch(BackendTensor::Float(t)),
        autodiff: DispatchAutodiffContext::Disabled,
    }
}

fn from_autodiff(t: AdTensor, strategy: GradientCheckpointingStrategy) -> DispatchTensor {
    DispatchTensor {
        kind: DispatchTensorKind::Autodiff(Box::new(DispatchTensorKind::LibTorch(
            BackendTensor::Autodiff(t),
        ))),
        autodiff: DispatchAutodiffContext::Enabled(strategy),
    }
}

fn wrap(tensor: T) -> TchTensor {
    TchTensor::new(tensor)
}

/// A `[1]` tensor, as burn's mean gives (libtorch's is 0-dimensional).
fn loss(logits: &T, targets: &T, smoothing: f64) -> T {
    logits
        .cross_entropy_loss::<T>(targets, None, tch::Reduction::Mean, -100, smoothing)
        .reshape([1])
}

/// libtorch's autocast to bfloat16 on this thread, for the device type of a region's tensors,
/// until dropped.
struct Autocast(*mut c_void);

impl Autocast {
    fn bf16(device: tch::Device) -> Autocast {
        let cuda = c_int::from(device.is_cuda());
        // SAFETY: the shim only reads and sets libtorch's thread-local autocast state and
        // returns a heap guard that `drop` hands back exactly once, on this same thread.
        Autocast(unsafe { ferlab_autocast_begin(cuda) })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: the guard `ferlab_autocast_begin` returned, not yet ended.
        unsafe { ferlab_autocast_end(self.0) }
    }
}

/// What a recorded region keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct RecordedGraph {
    /// The inputs as libtorch leaves (those burn tracks require a gradient).
    leaves: Vec<TchTensor>,
    /// The output with libtorch's graph behind it.
    output: TchTensor,
    /// burn's handles on the inputs and the output values: while they are alive burn sees the
    /// storage shared and never writes into it in place, which would corrupt what libtorch
    /// saved for the backward pass.
    _pinned: Vec<TchTensor>,
}

/// Records `forward` over `inputs` in libtorch's autograd as one burn operation with `N`
/// parents; returns its differentiable output and the untracked extras.
fn record<const N: usize, C: CheckpointStrategy>(
    inputs: Vec<AdTensor>,
    forward: impl FnOnce(&[T]) -> (T, Vec<T>),
) -> Vec<AdTensor> {
    let inputs: [AdTensor; N] = inputs
        .try_into()
        .unwrap_or_else(|_| panic!("a region of {N} inputs"));
    let tracked = inputs.each_ref().map(|t| t.is_tracked());
    let guards = inputs.each_ref().map(|t| t.node());
    let primitives: Vec<TchTensor> = inputs.into_iter().map(|t| t.into_primitive()).collect();
    let extras = |stats: Vec<T>| stats.into_iter().map(|s| AdTensor::new(wrap(s)));
    match RegionBackward::<N>
        .prepare::<C>(guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let leaves: Vec<T> = primitives
                .iter()
                .zip(tracked)
                .map(|(p, tracked)| p.tensor.detach().set_requires_grad(tracked))
                .collect();
            let (output, stats) = tch::with_grad(|| forward(&leaves));
            let values = wrap(output.detach());
            let mut pinned = primitives;
            pinned.push(values.clone());
            let state = RecordedGraph {
                leaves: leaves.into_iter().map(wrap).collect(),
                output: wrap(output),
                _pinned: pinned,
            };
            std::iter::once(prep.finish(state, values))
                .chain(extras(stats))
                .collect()
        }
        OpsKind::UnTracked(prep) => {
            let plain: Vec<T> = primitives
                .iter()
                .map(|p| p.tensor.shallow_clone())
                .collect();
            let (output, stats) = tch::no_grad(|| forward(&plain));
            std::iter::once(prep.finish(wrap(output)))
                .chain(extras(stats))
                .collect()
        }
    }
}

#[derive(Debug)]
struct RegionBackward<const N: usize>;

impl<const N: usize> Backward<LibTorch, N> for RegionBackward<N> {
    type State = RecordedGraph;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let state = ops.state;
        let wanted: Vec<_> = ops
            .parents
            .into_iter()
            .zip(&state.leaves)
            .filter_map(|(parent, leaf)| parent.map(|node| (node, leaf)))
            .collect();
        let leaves: Vec<&T> = wanted.iter().map(|(_, leaf)| &leaf.tensor).collect();
        let results = region_grad(&state.output.tensor, &grad.tensor, &leaves);
        for ((node, leaf), result) in wanted.iter().zip(results) {
            // An input the output does not depend on gets a zero gradient, as burn's ops give.
            let result = result.unwrap_or_else(|| leaf.tensor.zeros_like());
            grads.register::<LibTorch>(node.id, wrap(result));
        }
    }
}

unsafe extern "C" {
    fn ferlab_region_grad(
        output: *const C_tensor,
        grad_output: *const C_tensor,
        inputs: *const *const C_tensor,
        n_inputs: c_int,
        grads: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn ferlab_fused_adam(
        param: *const C_tensor,
        grad: *const C_tensor,
        exp_avg: *const C_tensor,
        exp_avg_sq: *const C_tensor,
        step: f64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: c_int,
    ) -> *mut c_char;
    fn ferlab_autocast_begin(cuda: c_int) -> *mut c_void;
    fn ferlab_autocast_end(guard: *mut c_void);
    fn ferlab_trace_start();
    fn ferlab_trace_stop() -> *mut c_char;
    fn ferlab_free(s: *mut c_char);
}

/// Takes a C string the shim allocated.
fn take_string(s: *mut c_char) -> String {
    // SAFETY: the shim returns a NUL-terminated malloc'd string, freed here once.
    unsafe {
        let text = CStr::from_ptr(s).to_string_lossy().into_owned();
        ferlab_free(s);
        text
    }
}

/// `d(sum(output · grad)) / d(input)` for each input, by libtorch's autograd.
fn region_grad(output: &T, grad: &T, inputs: &[&T]) -> Vec<Option<T>> {
    let ptrs: Vec<*const C_tensor> = inputs.iter().map(|t| t.as_ptr()).collect();
    let mut out = vec![std::ptr::null_mut::<C_tensor>(); inputs.len()];
    // SAFETY: every pointer is a live `at::Tensor*` (tch's C_tensor); the shim writes one new
    // tensor or null per input, which `T::from_ptr` takes ownership of.
    let error = unsafe {
        ferlab_region_grad(
            output.as_ptr(),
            grad.as_ptr(),
            ptrs.as_ptr(),
            ptrs.len() as c_int,
            out.as_mut_ptr(),
        )
    };
    if !error.is_null() {
        panic!("libtorch backward: {}", take_string(error));
    }
    out.into_iter()
        .map(|p| (!p.is_null()).then(|| unsafe { T::from_ptr(p) }))
        .collect()
}

/// The hyperparameters of one Adam step (`decoupled`: AdamW's weight decay).
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
    /// This step's number, 1 for the first.
    pub step: usize,
}

/// One Adam step of `param` with `grad`, updating `param` and the moments in place with
/// libtorch's fused kernel (`_fused_adam_` / `_fused_adamw_`): one pass where burn's Adam runs a
/// dozen element-wise kernels. The caller owns the three tensors it updates.
pub fn fused_adam(param: &T, grad: &T, moment_1: &T, moment_2: &T, step: &AdamStep) {
    // SAFETY: four live `at::Tensor*`; the shim writes only into the storage of the param and
    // the moments, which the caller owns alone.
    let error = unsafe {
        ferlab_fused_adam(
            param.as_ptr(),
            grad.as_ptr(),
            moment_1.as_ptr(),
            moment_2.as_ptr(),
            step.step as f64,
            step.lr,
            step.beta_1,
            step.beta_2,
            step.weight_decay,
            step.epsilon,
            c_int::from(step.decoupled),
        )
    };
    if !error.is_null() {
        panic!("libtorch fused Adam: {}", take_string(error));
    }
}

/// A LibTorch float tensor that nothing else references, so a kernel may write into it: the
/// tensor itself when burn holds it alone, else a copy.
pub fn owned(t: DispatchTensor) -> TchTensor {
    let t = plain(t);
    if t.can_mut() {
        t
    } else {
        wrap(t.tensor.copy())
    }
}

pub fn into_dispatch(t: TchTensor) -> DispatchTensor {
    from_plain(t)
}

/// Every ATen operator and autograd node libtorch runs inside `f`, one line each:
/// `depth \t op|backward \t name \t input shapes`.
/// Traces run one at a time (the shim keeps one list of lines).
pub fn trace<R>(f: impl FnOnce() -> R) -> (R, String) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // SAFETY: start/stop only (un)register a RecordFunction callback on this thread.
    unsafe { ferlab_trace_start() };
    let result = f();
    let lines = take_string(unsafe { ferlab_trace_stop() });
    (result, lines)
}
