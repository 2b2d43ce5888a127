//! The networks fer-lab trains. One file per model, each with its config (knobs, defaults,
//! validation, FLOPs, `init`) beside the network; [`ModelSpec`] names them for a sweep and
//! [`FerModel`] is the enum training sees.
//!
//! To add a model: write `src/model/<name>.rs` with its `…Config` (serde, `deny_unknown_fields`,
//! a default per knob, `validate`, `flops`, `init`) and its module with a `forward`; then add
//! one variant to [`ModelSpec`] and to [`FerModel`] and one arm to each `match` below (the
//! compiler lists them). Run ids hash a config's canonical JSON, so an existing model's knobs
//! keep their names and defaults. For its fused form ([`fuse`]) to come for free, run its
//! convolutions and dense layers through [`layers`] (`features`, `dense`), its dropout as a
//! [`dropout::MemberDropout`], and pool over channels per member (as [`blocks::Cbam`] does);
//! then add a small instance to `tests::all_models`, which the fusion tests run.

pub mod baseline;
pub mod blocks;
pub mod compact;
pub mod conv;
pub mod dropout;
pub mod fuse;
pub mod layers;
pub mod residual;
#[cfg(feature = "tch")]
pub mod torch_native;
pub mod vgg;

use crate::data::IMAGE_SIDE;
use crate::emotion::NUM_CLASSES;
use crate::invalid::InvalidValue;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use baseline::BaselineConfig;
pub use compact::CompactConfig;
pub use residual::{AttentionConfig, AttentionKind, ResidualConfig};
pub use vgg::VggConfig;

/// Which network to train, with its own knobs: `model = "compact"` or
/// `model = { kind = "compact", channels = [32, 64] }` in a sweep (a knob of another kind is an
/// error). The bare name is read and written by `crate::config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// The seed study's CNN: Conv32-Pool-Conv64-Pool-Dense128-Dropout-Dense7.
    Baseline(BaselineConfig),
    /// N blocks of 1–2 3×3 conv (+BN) + ReLU + max-pool, then dense layers with dropout.
    Compact(CompactConfig),
    /// A small ResNet: 3 stages of `depth` basic blocks, `width`·(1, 2, 4) channels.
    Residual(ResidualConfig),
    /// The residual trunk with SE or CBAM attention in every block.
    Attention(AttentionConfig),
    /// VGG-style: 4 stages of 2× conv3x3-BN-ReLU + max-pool, 64→512 channels × `width`.
    Vgg(VggConfig),
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Baseline(BaselineConfig {})
    }
}

impl ModelSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Baseline(_) => "baseline",
            ModelSpec::Compact(_) => "compact",
            ModelSpec::Residual(_) => "residual",
            ModelSpec::Attention(_) => "attention",
            ModelSpec::Vgg(_) => "vgg",
        }
    }

    /// The name alone when the model has no knobs (how run configs write it).
    pub fn bare_name(&self) -> Option<&'static str> {
        matches!(self, ModelSpec::Baseline(_)).then_some("baseline")
    }

    pub fn validate(&self) -> Result<(), InvalidValue> {
        match self {
            ModelSpec::Baseline(_) => Ok(()),
            ModelSpec::Compact(c) => c.validate(),
            ModelSpec::Residual(c) => c.validate(),
            ModelSpec::Attention(c) => c.validate(),
            ModelSpec::Vgg(c) => c.validate(),
        }
    }

    /// Forward FLOPs per image, counted layer by layer (2 per multiply-add; convolutions, dense
    /// layers and attention MLPs — norms, activations and pools are left out).
    pub fn flops(&self) -> u64 {
        match self {
            ModelSpec::Baseline(c) => c.flops(),
            ModelSpec::Compact(c) => c.flops(),
            ModelSpec::Residual(c) => c.flops(),
            ModelSpec::Attention(c) => c.flops(),
            ModelSpec::Vgg(c) => c.flops(),
        }
    }
}

/// Any fer-lab model: maps `[B, 1, 48, 48]` images to `[B, 7]` logits.
#[derive(Module, Debug)]
pub enum FerModel {
    Baseline(baseline::Baseline),
    /// The compact family; the VGG-style net is one of its shapes.
    Compact(compact::Compact),
    /// ResNet, with or without attention.
    Residual(residual::ResNet),
}

impl FerModel {
    /// The model `spec` describes, with fresh weights on `device` and `dropout` before its
    /// classifier layer(s).
    pub fn new(spec: &ModelSpec, dropout: f64, device: &Device) -> FerModel {
        match spec {
            ModelSpec::Baseline(c) => FerModel::Baseline(c.init(dropout, device)),
            ModelSpec::Compact(c) => FerModel::Compact(c.init(dropout, device)),
            ModelSpec::Residual(c) => FerModel::Residual(c.init(dropout, device)),
            ModelSpec::Attention(c) => FerModel::Residual(c.init(dropout, device)),
            ModelSpec::Vgg(c) => FerModel::Compact(c.init(dropout, device)),
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            FerModel::Baseline(m) => m.forward(images),
            FerModel::Compact(m) => m.forward(images),
            FerModel::Residual(m) => m.forward(images),
        }
    }

    /// The model with every weight drawn now, in field order. burn draws a weight when it is
    /// first used, from whatever the device's generator holds then: in a fused group that is
    /// another run's seed, so each run draws its weights right after its own seed.
    pub fn with_weights_drawn(self) -> FerModel {
        struct Draw;
        impl burn::module::ModuleVisitor for Draw {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        self.visit(&mut Draw);
        self
    }

    /// The dropout before the classifier (every kind has one).
    pub fn dropout(&self) -> &dropout::MemberDropout {
        match self {
            FerModel::Baseline(m) => &m.dropout,
            FerModel::Compact(m) => &m.dropout,
            FerModel::Residual(m) => &m.dropout,
        }
    }

    pub fn dropout_mut(&mut self) -> &mut dropout::MemberDropout {
        match self {
            FerModel::Baseline(m) => &mut m.dropout,
            FerModel::Compact(m) => &mut m.dropout,
            FerModel::Residual(m) => &mut m.dropout,
        }
    }
}

/// Size of a model, recorded with every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSize {
    pub params: usize,
    /// Multiply-adds ×2 of one forward pass on one 48×48 image.
    pub flops: u64,
}

/// Parameter count and FLOPs per image of `model`, built from `spec`.
pub fn size(model: &FerModel, spec: &ModelSpec) -> ModelSize {
    ModelSize {
        params: model.num_params(),
        flops: spec.flops(),
    }
}

/// FLOPs of a `k×k` convolution producing `out_side²` pixels.
pub(crate) fn conv_flops(k: usize, c_in: usize, c_out: usize, out_side: usize) -> u64 {
    2 * (k * k * c_in * c_out * out_side * out_side) as u64
}

/// FLOPs of a dense layer.
pub(crate) fn dense_flops(d_in: usize, d_out: usize) -> u64 {
    2 * (d_in * d_out) as u64
}

/// Input side and class count, re-exported for model files.
pub(crate) const SIDE: usize = IMAGE_SIDE;
pub(crate) const CLASSES: usize = NUM_CLASSES;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loss::Loss;
    use burn::optim::{GradientsParams, SgdConfig};

    /// One small net of every kind (attention twice, once per gate).
    pub(crate) fn all_models() -> Vec<ModelSpec> {
        vec![
            ModelSpec::Baseline(BaselineConfig {}),
            ModelSpec::Compact(CompactConfig {
                channels: vec![8, 16],
                convs_per_block: 2,
                batch_norm: true,
                dense: vec![32],
            }),
            ModelSpec::Residual(ResidualConfig { width: 8, depth: 1 }),
            ModelSpec::Attention(AttentionConfig {
                width: 8,
                depth: 1,
                attention: AttentionKind::Se,
            }),
            ModelSpec::Attention(AttentionConfig {
                width: 8,
                depth: 1,
                attention: AttentionKind::Cbam,
            }),
            ModelSpec::Vgg(VggConfig {
                width: 0.125,
                dense: vec![32],
            }),
        ]
    }

    fn fixed_batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = 8;
        let pixels: Vec<f32> = (0..n * IMAGE_SIDE * IMAGE_SIDE)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [n, 1, IMAGE_SIDE, IMAGE_SIDE]),
            device,
        );
        let targets = Tensor::<1, Int>::from_ints([0, 1, 2, 3, 4, 5, 6, 0], device);
        (images, targets)
    }

    #[test]
    fn every_model_maps_images_to_seven_logits_and_learns() {
        let device = Device::flex().autodiff();
        for spec in all_models() {
            spec.validate().unwrap();
            device.seed(3);
            let mut model = FerModel::new(&spec, 0.0, &device);
            let (images, targets) = fixed_batch(&device);
            let logits = model.forward(images.clone());
            assert_eq!(logits.dims(), [8, 7], "{spec:?}");
            let loss = Loss::cross_entropy();
            let before = loss.forward(logits, targets.clone());
            let grads = before.backward();
            let grads = GradientsParams::from_grads(grads, &model);
            // The gradient reaches the first layer: the first parameter visited has one.
            let first = first_param_id(&model);
            assert!(
                grads.get::<4>(first).is_some() || grads.get::<2>(first).is_some(),
                "{spec:?}: no gradient at the first layer"
            );
            let before = before.into_scalar::<f32>();
            // Plain gradient descent with a small step must lower the loss on the same batch.
            let mut optim = SgdConfig::new().init();
            model = optim.step(1e-2, model, grads);
            let after = loss
                .forward(model.forward(images), targets)
                .into_scalar::<f32>();
            assert!(
                after < before,
                "{spec:?}: loss {before} → {after} after one step"
            );
            let size = size(&model.valid(), &spec);
            assert!(size.params > 0 && size.flops > 0);
        }
    }

    fn first_param_id(model: &FerModel) -> burn::module::ParamId {
        struct First(Option<burn::module::ParamId>);
        impl burn::module::ModuleVisitor for First {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                if self.0.is_none() {
                    self.0 = Some(param.id);
                }
            }
        }
        let mut v = First(None);
        model.visit(&mut v);
        v.0.expect("model has parameters")
    }

    #[test]
    fn sizes_match_hand_counts() {
        let baseline = ModelSpec::default();
        assert_eq!(baseline.flops(), 19_116_032);
        let model = FerModel::new(&baseline, 0.5, &Device::flex());
        assert_eq!(model.num_params(), 839_047);
        // The default compact net stays under the study's 2 M parameter budget.
        let compact = ModelSpec::Compact(CompactConfig::default());
        let n = FerModel::new(&compact, 0.5, &Device::flex()).num_params();
        assert!(n < 2_000_000, "{n}");
    }
}
