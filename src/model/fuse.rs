//! Many runs as one model (HFTA's horizontal fusion): runs of the same architecture become one
//! model whose every parameter holds all members' along dim 0 — convolutions run grouped, one
//! group per member; dense layers as one batched matmul; batch norm over every member's
//! channels — so one forward and one backward train them all, with each member computing
//! exactly what it computes alone.
//!
//! Derived for any model, not written per model: [`stack`] visits the members' parameters
//! (burn's `ModuleVisitor`) and writes them, concatenated, into a fresh model of the same spec
//! (`ModuleMapper`); [`member`] slices one back out. What makes the fused model compute the
//! fused function is the layers' rule ([`super::layers`]): every layer reads how many members
//! it serves from its parameters' shapes. Inputs are `[B, members, side, side]` (member `m`'s
//! image in channel `m`; the side is 48 or the members' common crop); logits come out as
//! `[B, members · 7]`, member-major.

use super::{FerModel, ModelSpec};
use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// Every float parameter and running statistic of a model, flattened, in visiting order.
#[derive(Default)]
struct Flattened {
    tensors: Vec<Tensor<1>>,
    shapes: Vec<Vec<usize>>,
}

impl ModuleVisitor for Flattened {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val().detach();
        let shape = tensor.dims().to_vec();
        self.tensors
            .push(tensor.reshape([shape.iter().product::<usize>()]));
        self.shapes.push(shape);
    }
}

fn flatten(model: &FerModel) -> Flattened {
    let mut out = Flattened::default();
    model.visit(&mut out);
    out
}

/// Replaces the k-th float parameter with `value(k, its shape)`, keeping its id and whether it
/// trains.
struct Replace<F: FnMut(usize, &[usize]) -> (Tensor<1>, Vec<usize>)> {
    next: usize,
    value: F,
}

impl<F: FnMut(usize, &[usize]) -> (Tensor<1>, Vec<usize>)> ModuleMapper for Replace<F> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let k = self.next;
        self.next += 1;
        param.map(|old| {
            let (flat, shape) = (self.value)(k, &old.dims());
            let shape: [usize; D] = std::array::from_fn(|i| shape[i]);
            let trains = old.is_require_grad();
            flat.reshape(shape).detach().set_require_grad(trains)
        })
    }
}

/// Members of a fused model (1 for a model of one run).
pub fn members(model: &FerModel) -> usize {
    model.dropout().probs().len()
}

/// The members (each built from `spec` for `side`×`side` inputs, each with its own weights,
/// dropout rate and dropout seed) as one fused model on `device`.
///
/// # Panics
/// When the members are not all of `spec`'s shape at `side`, or there are none.
pub fn stack(spec: &ModelSpec, side: usize, members: &[FerModel], device: &Device) -> FerModel {
    assert!(
        !members.is_empty(),
        "a fused model needs at least one member"
    );
    let parts: Vec<Flattened> = members.iter().map(flatten).collect();
    let mut fused = FerModel::new(spec, side, 0.0, device);
    let count = parts[0].tensors.len();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(
            p.shapes, parts[0].shapes,
            "member {i} is not of member 0's shape"
        );
    }
    let mut replace = Replace {
        next: 0,
        value: |k: usize, _: &[usize]| {
            let mut shape = parts[0].shapes[k].clone();
            shape[0] *= parts.len();
            let flat = Tensor::cat(
                parts
                    .iter()
                    .map(|p| p.tensors[k].clone().to_device(device))
                    .collect(),
                0,
            );
            (flat, shape)
        },
    };
    fused = fused.map(&mut replace);
    assert_eq!(replace.next, count, "the fused model has other parameters");
    let probs = members.iter().flat_map(|m| m.dropout().probs().to_vec());
    let seeds = members.iter().flat_map(|m| m.dropout().seeds());
    fused
        .dropout_mut()
        .set_members(probs.collect(), seeds.collect());
    fused
}

/// Member `index` of `fused` (built from `spec` for `side`×`side` inputs) as a model of its own
/// on `device`: what the run would be had it trained alone, loadable and saved as any run's
/// model.
pub fn member(
    spec: &ModelSpec,
    side: usize,
    fused: &FerModel,
    index: usize,
    device: &Device,
) -> FerModel {
    let count = members(fused);
    assert!(index < count, "member {index} of a group of {count}");
    let parts = flatten(fused);
    let prob = fused.dropout().probs()[index];
    let seed = fused.dropout().seeds()[index];
    let mut solo = FerModel::new(spec, side, prob, device);
    let mut replace = Replace {
        next: 0,
        value: |k: usize, shape: &[usize]| {
            let n: usize = shape.iter().product();
            let flat = parts.tensors[k]
                .clone()
                .narrow(0, index * n, n)
                .to_device(device);
            (flat, shape.to_vec())
        },
    };
    solo = solo.map(&mut replace);
    solo.dropout_mut().seed(seed);
    solo
}

/// `[B, members, …]` images, one per member, as the fused model reads them.
pub fn images(per_member: Vec<Tensor<4>>) -> Tensor<4> {
    Tensor::cat(per_member, 1)
}

/// Member `index`'s logits `[B, 7]` out of a fused model's `[B, members · 7]`.
pub fn logits_of(fused_logits: Tensor<2>, index: usize) -> Tensor<2> {
    let classes = crate::emotion::NUM_CLASSES;
    fused_logits.narrow(1, index * classes, classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::all_models_and_sides;
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::tensor::Tolerance;

    fn images(batch: usize, member: usize, side: usize, device: &Device) -> Tensor<4> {
        let n = batch * side * side;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 37 + member * 101 + 7) % 255) as f32 / 255.0)
            .collect();
        Tensor::from_data(TensorData::new(values, [batch, 1, side, side]), device)
    }

    fn targets(batch: usize, member: usize, device: &Device) -> Tensor<1, Int> {
        let ids: Vec<i64> = (0..batch).map(|i| ((i + member) % 7) as i64).collect();
        Tensor::from_data(TensorData::new(ids, [batch]), device)
    }

    /// Three runs with their own weights, dropout rates and seeds, fused: one forward, one
    /// backward and one SGD step of the fused model give each member what it gets alone —
    /// its logits (dropout masks included), its updated weights and batch-norm statistics.
    /// Every kind at 48 px and some at crops.
    ///
    /// A grouped and a plain convolution agree to the last bit or two, so an activation within
    /// that noise of a ReLU's kink (or of a pooling window's runner-up) can route one gradient
    /// differently, which moves a weight by more than the tolerance: the inputs and sides here
    /// are ones where no activation sits that close (with the pixels drawn at random, compact
    /// at 48 px has one such ReLU in 36,864, enough to fail).
    fn members_train_as_they_would_alone(device: &Device) {
        let probs = [0.5, 0.0, 0.3];
        for (spec, side) in all_models_and_sides() {
            let solos: Vec<FerModel> = probs
                .iter()
                .enumerate()
                .map(|(m, &p)| {
                    device.seed(100 + m as u64);
                    let mut model = FerModel::new(&spec, side, p, device);
                    model.dropout_mut().seed(7 + m as u64);
                    model
                })
                .collect();
            let fused = stack(&spec, side, &solos, device);
            assert_eq!(members(&fused), 3);
            let batch = 4;
            let sgd = || SgdConfig::new().init();
            let step = |model: FerModel, x: Tensor<4>, y: Vec<Tensor<1, Int>>| {
                let logits = model.forward(x);
                let loss = y
                    .into_iter()
                    .enumerate()
                    .map(|(m, t)| {
                        burn::nn::loss::CrossEntropyLossConfig::new()
                            .init(device)
                            .forward(logits_of(logits.clone(), m), t)
                    })
                    .reduce(|a, b| a + b)
                    .expect("members");
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                (logits, sgd().step(0.1, model, grads))
            };
            let (fused_logits, fused_after) = step(
                fused,
                super::images((0..3).map(|m| images(batch, m, side, device)).collect()),
                (0..3).map(|m| targets(batch, m, device)).collect(),
            );
            let tolerance = Tolerance::<f32>::absolute(2e-4);
            for (m, solo) in solos.into_iter().enumerate() {
                let (logits, after) = step(
                    solo,
                    images(batch, m, side, device),
                    vec![targets(batch, m, device)],
                );
                logits_of(fused_logits.clone(), m)
                    .into_data()
                    .assert_approx_eq(&logits.into_data(), tolerance);
                let sliced = member(&spec, side, &fused_after, m, device);
                assert_eq!(sliced.dropout().probs(), &[probs[m]]);
                assert_eq!(sliced.dropout().seeds(), vec![7 + m as u64]);
                let (a, b) = (flatten(&sliced), flatten(&after));
                assert_eq!(a.shapes, b.shapes, "{} at {side}, member {m}", spec.kind());
                for (x, y) in a.tensors.into_iter().zip(b.tensors) {
                    x.into_data().assert_approx_eq(&y.into_data(), tolerance);
                }
            }
        }
    }

    #[test]
    fn fused_members_train_as_they_would_alone_on_flex() {
        members_train_as_they_would_alone(&Device::flex().autodiff());
    }

    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)]
    fn fused_members_train_as_they_would_alone_on_libtorch() {
        members_train_as_they_would_alone(&Device::libtorch().autodiff());
    }

    #[test]
    fn a_member_sliced_out_is_the_model_that_went_in() {
        let device = Device::flex();
        for (spec, side) in all_models_and_sides() {
            let solos: Vec<FerModel> = (0..2)
                .map(|m| {
                    device.seed(m);
                    FerModel::new(&spec, side, 0.1, &device)
                })
                .collect();
            let fused = stack(&spec, side, &solos, &device);
            for (m, solo) in solos.iter().enumerate() {
                let back = member(&spec, side, &fused, m, &device);
                for (x, y) in flatten(&back)
                    .tensors
                    .into_iter()
                    .zip(flatten(solo).tensors)
                {
                    x.into_data().assert_eq(&y.into_data(), true);
                }
                // Inference (no dropout) through the fused model gives each member's logits.
                let x = images(2, m, side, &device);
                let mut per_member = vec![images(2, 9, side, &device); 2];
                per_member[m] = x.clone();
                logits_of(fused.forward(super::images(per_member)), m)
                    .into_data()
                    .assert_approx_eq(
                        &solo.forward(x).into_data(),
                        Tolerance::<f32>::absolute(1e-4),
                    );
            }
        }
    }
}
