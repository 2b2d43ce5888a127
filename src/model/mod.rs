//! The networks fer-lab trains. One file per model, each with its config (knobs, defaults,
//! validation, FLOPs, `init`) beside the network; [`ModelSpec`] names them for a sweep and
//! [`FerModel`] is the enum training sees.
//!
//! To add a model: write `src/model/<name>.rs` with its `…Config` (serde, `deny_unknown_fields`,
//! a default per knob, `validate`, `validate_side`, `flops(side)`, `init`) and its module with
//! a `forward`; then add one variant to [`ModelSpec`] and to [`FerModel`] and one arm to each
//! `match` below (the compiler lists them). Run ids hash a config's canonical JSON, so an
//! existing model's knobs keep their names and defaults, and a knob added later is left out of
//! it at its default (`skip_serializing_if`, as the residual nets' `stages`). For its fused
//! form ([`fuse`]) to come for free, run its convolutions and dense layers through [`layers`]
//! (`features`, `dense`), its dropout as a [`dropout::MemberDropout`], and pool over channels
//! per member (as [`blocks::Cbam`] does);
//! then add a small instance to `tests::all_models` (and, if its shape follows the side, to
//! `tests::all_models_and_sides`), which the fusion tests run.
//!
//! Every model takes the input side it is built for (48, or the run's `crop`): dense layers
//! after the convolutions size themselves from it, and [`ModelSpec::validate_side`] refuses a
//! side the model's pooling would shrink to nothing.

pub mod baseline;
pub mod blocks;
pub mod compact;
pub mod conv;
pub mod dropout;
pub mod fuse;
pub mod layers;
pub mod precision;
pub mod residual;
#[cfg(feature = "tch")]
pub mod torch_native;
pub mod vgg;

use crate::emotion::NUM_CLASSES;
use crate::invalid::InvalidValue;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use baseline::BaselineConfig;
pub use compact::CompactConfig;
pub use precision::Precision;
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
    /// A small ResNet: `stages` (3) stages of `depth` basic blocks, `width`·(1, 2, 4, …)
    /// channels; ResNet-18 at `width = 64, depth = 2, stages = 4, stem_pool = false`.
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

    /// Checks that the model's pooling leaves at least one pixel of a `side`×`side` input;
    /// the error's key is `crop` and it names the model and the side.
    pub fn validate_side(&self, side: usize) -> Result<(), InvalidValue> {
        let kind = self.kind();
        match self {
            ModelSpec::Baseline(c) => c.validate_side(side),
            ModelSpec::Compact(c) => c.validate_side(side, kind),
            ModelSpec::Residual(c) => c.trunk().validate_side(side, kind),
            ModelSpec::Attention(c) => c.trunk().validate_side(side, kind),
            ModelSpec::Vgg(c) => c.shape().validate_side(side, kind),
        }
    }

    /// Forward FLOPs per `side`×`side` image, counted layer by layer (2 per multiply-add;
    /// convolutions, dense layers and attention MLPs — norms, activations and pools are left
    /// out).
    pub fn flops(&self, side: usize) -> u64 {
        match self {
            ModelSpec::Baseline(c) => c.flops(side),
            ModelSpec::Compact(c) => c.flops(side),
            ModelSpec::Residual(c) => c.flops(side),
            ModelSpec::Attention(c) => c.flops(side),
            ModelSpec::Vgg(c) => c.flops(side),
        }
    }
}

/// Any fer-lab model: maps `[B, 1, side, side]` images (48, or the run's crop) to `[B, 7]`
/// logits.
#[derive(Module, Debug)]
pub enum FerModel {
    Baseline(baseline::Baseline),
    /// The compact family; the VGG-style net is one of its shapes.
    Compact(compact::Compact),
    /// ResNet, with or without attention.
    Residual(residual::ResNet),
}

impl FerModel {
    /// The model `spec` describes for `side`×`side` inputs (48, or the run's crop:
    /// [`crate::config::RunConfig::input_side`]), with fresh weights on `device` and `dropout`
    /// before its classifier layer(s). The side must pass [`ModelSpec::validate_side`].
    pub fn new(spec: &ModelSpec, side: usize, dropout: f64, device: &Device) -> FerModel {
        match spec {
            ModelSpec::Baseline(c) => FerModel::Baseline(c.init(side, dropout, device)),
            ModelSpec::Compact(c) => FerModel::Compact(c.init(side, dropout, device)),
            // Global average pooling: the residual nets' shapes do not depend on the side.
            ModelSpec::Residual(c) => FerModel::Residual(c.init(dropout, device)),
            ModelSpec::Attention(c) => FerModel::Residual(c.init(dropout, device)),
            ModelSpec::Vgg(c) => FerModel::Compact(c.init(side, dropout, device)),
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
    /// Multiply-adds ×2 of one forward pass on one image of the side the model was built for.
    pub flops: u64,
}

/// Parameter count and FLOPs per image of `model`, built from `spec` for `side`×`side` inputs.
pub fn size(model: &FerModel, spec: &ModelSpec, side: usize) -> ModelSize {
    ModelSize {
        params: model.num_params(),
        flops: spec.flops(side),
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

/// Class count, re-exported for model files.
pub(crate) const CLASSES: usize = NUM_CLASSES;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;
    use crate::loss::Loss;
    use burn::optim::{GradientsParams, SgdConfig};

    /// One small net of every kind (attention twice, once per gate; the residual net twice, the
    /// second in ResNet-18's shape: 4 stages, no stem pool).
    pub(crate) fn all_models() -> Vec<ModelSpec> {
        vec![
            ModelSpec::Baseline(BaselineConfig {}),
            ModelSpec::Compact(CompactConfig {
                channels: vec![8, 16],
                convs_per_block: 2,
                batch_norm: true,
                dense: vec![32],
            }),
            ModelSpec::Residual(ResidualConfig {
                width: 8,
                depth: 1,
                ..ResidualConfig::default()
            }),
            ModelSpec::Residual(ResidualConfig {
                width: 4,
                depth: 1,
                stages: 4,
                stem_pool: false,
            }),
            ModelSpec::Attention(AttentionConfig {
                width: 8,
                depth: 1,
                attention: AttentionKind::Se,
                ..AttentionConfig::default()
            }),
            ModelSpec::Attention(AttentionConfig {
                width: 8,
                depth: 1,
                attention: AttentionKind::Cbam,
                ..AttentionConfig::default()
            }),
            ModelSpec::Vgg(VggConfig {
                width: 0.125,
                dense: vec![32],
            }),
        ]
    }

    /// Every small net at the full 48 px side, and at crops those whose dense input follows
    /// the side (baseline, compact, VGG) or that pool differently (the CIFAR-stem residual net
    /// at 40, CBAM's spatial gate at 33); odd crops (35, 33) make the pools floor.
    pub(crate) fn all_models_and_sides() -> Vec<(ModelSpec, usize)> {
        let mut out: Vec<(ModelSpec, usize)> =
            all_models().into_iter().map(|m| (m, IMAGE_SIDE)).collect();
        for (i, side) in [(0, 40), (1, 35), (3, 40), (5, 33), (6, 40)] {
            out.push((all_models()[i].clone(), side));
        }
        out
    }

    fn fixed_batch(side: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = 8;
        let pixels: Vec<f32> = (0..n * side * side)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [n, 1, side, side]), device);
        let targets = Tensor::<1, Int>::from_ints([0, 1, 2, 3, 4, 5, 6, 0], device);
        (images, targets)
    }

    #[test]
    fn every_model_maps_images_to_seven_logits_and_learns() {
        let device = Device::flex().autodiff();
        for (spec, side) in all_models_and_sides() {
            spec.validate().unwrap();
            spec.validate_side(side).unwrap();
            device.seed(3);
            let mut model = FerModel::new(&spec, side, 0.0, &device);
            let (images, targets) = fixed_batch(side, &device);
            let logits = model.forward(images.clone());
            assert_eq!(logits.dims(), [8, 7], "{spec:?} at {side}");
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
                "{spec:?} at {side}: loss {before} → {after} after one step"
            );
            let size = size(&model.valid(), &spec, side);
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

    fn params(spec: &ModelSpec, side: usize) -> usize {
        FerModel::new(spec, side, 0.5, &Device::flex()).num_params()
    }

    /// A 3×3 convolution without bias (batch norm follows) and its batch norm: γ, β and the
    /// two running statistics, which burn's `num_params` counts too.
    fn conv_bn(c_in: usize, c_out: usize) -> usize {
        9 * c_in * c_out + 4 * c_out
    }

    #[test]
    fn sizes_match_hand_counts() {
        let baseline = ModelSpec::default();
        assert_eq!(baseline.flops(48), 19_116_032);
        assert_eq!(params(&baseline, 48), 839_047);
        // A crop of 40: 40 → 38 → 19 → 17 → 8, the dense layer reads 64·8·8 = 4096.
        assert_eq!(
            params(&baseline, 40),
            (9 * 32 + 32) + (9 * 32 * 64 + 64) + (4096 * 128 + 128) + (128 * 7 + 7)
        );
        assert_eq!(
            baseline.flops(40),
            2 * (9 * 32 * 38 * 38 + 9 * 32 * 64 * 17 * 17 + 4096 * 128 + 128 * 7) as u64
        );
        // The default compact net stays under the study's 2 M parameter budget.
        let compact = ModelSpec::Compact(CompactConfig::default());
        let n = params(&compact, 48);
        assert!(n < 2_000_000, "{n}");
        // Its dense layer follows the side: 128·6·6 at 48, 128·5·5 at 40.
        assert_eq!(n - params(&compact, 40), 128 * (36 - 25) * 256);
    }

    #[test]
    fn a_wide_vgg_at_crop_40_has_khaireddins_dense_head() {
        // 4 pools: 40 → 20 → 10 → 5 → 2, so the flatten is 512·2·2 = 2048 → 4096 → 4096 → 7.
        let spec: ModelSpec =
            serde_json::from_str(r#"{"kind": "vgg", "width": 1.0, "dense": [4096, 4096]}"#)
                .unwrap();
        spec.validate().unwrap();
        spec.validate_side(40).unwrap();
        let convs = conv_bn(1, 64)
            + conv_bn(64, 64)
            + conv_bn(64, 128)
            + conv_bn(128, 128)
            + conv_bn(128, 256)
            + conv_bn(256, 256)
            + conv_bn(256, 512)
            + conv_bn(512, 512);
        let dense = (2048 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 7 + 7);
        assert_eq!(params(&spec, 40), convs + dense);
        assert_eq!(params(&spec, 40), 29_892_679);
        // At 48 the flatten is 512·3·3.
        assert_eq!(
            params(&spec, 48) - params(&spec, 40),
            (512 * 9 - 2048) * 4096
        );
        // Its FLOPs: the convolutions at 40, 20, 10, 5, then the dense layers.
        let conv = |c_in: usize, c_out: usize, side: usize| 2 * (9 * c_in * c_out * side * side);
        let expected = conv(1, 64, 40)
            + conv(64, 64, 40)
            + conv(64, 128, 20)
            + conv(128, 128, 20)
            + conv(128, 256, 10)
            + conv(256, 256, 10)
            + conv(256, 512, 5)
            + conv(512, 512, 5)
            + 2 * (2048 * 4096 + 4096 * 4096 + 4096 * 7);
        assert_eq!(spec.flops(40), expected as u64);
    }

    #[test]
    fn resnet_18_is_a_residual_net_with_four_stages_and_no_stem_pool() {
        let spec: ModelSpec = serde_json::from_str(
            r#"{"kind": "residual", "width": 64, "depth": 2, "stages": 4, "stem_pool": false}"#,
        )
        .unwrap();
        spec.validate().unwrap();
        // Stem; then per stage two basic blocks of two conv-BNs, the first block of stages 2–4
        // with a stride-2 1×1 projection (conv + BN); the head 512 → 7.
        let projection = |c_in: usize, c_out: usize| c_in * c_out + 4 * c_out;
        let stem = conv_bn(1, 64);
        let stage1 = 4 * conv_bn(64, 64);
        let stage = |c: usize| conv_bn(c / 2, c) + 3 * conv_bn(c, c) + projection(c / 2, c);
        let head = 512 * 7 + 7;
        let hand = stem + stage1 + stage(128) + stage(256) + stage(512) + head;
        assert_eq!(params(&spec, 40), hand);
        assert_eq!(hand, 11_180_871);
        // PyTorch counts only trainable parameters: 11.17 M (4800 BN channels' running stats
        // less), torchvision's CIFAR ResNet-18 with a 1-channel stem and 7 classes.
        assert_eq!(hand - 2 * 4800, 11_171_271);
        // Global pooling: the side changes the FLOPs, never the parameters.
        assert_eq!(params(&spec, 48), hand);
        assert!(spec.flops(48) > spec.flops(40));
        // The CIFAR stem keeps the full side in stage 1: 40, 20, 10, 5.
        let conv = |c_in: usize, c_out: usize, side: usize| 2 * (9 * c_in * c_out * side * side);
        let one = |c_in: usize, c_out: usize, side: usize| 2 * (c_in * c_out * side * side);
        let stage_flops = |c: usize, side: usize| {
            conv(c / 2, c, side) + 3 * conv(c, c, side) + one(c / 2, c, side)
        };
        let expected = conv(1, 64, 40)
            + 4 * conv(64, 64, 40)
            + stage_flops(128, 20)
            + stage_flops(256, 10)
            + stage_flops(512, 5)
            + 2 * 512 * 7;
        assert_eq!(spec.flops(40), expected as u64);
    }

    #[test]
    fn residual_flops_follow_the_side_and_the_stem() {
        // The default net: stem at 48, pool to 24, stages at 24, 12, 6 — as before the knobs.
        let spec = ModelSpec::Residual(ResidualConfig::default());
        let w = 32;
        let conv = |c_in: usize, c_out: usize, side: usize| 2 * (9 * c_in * c_out * side * side);
        let one = |c_in: usize, c_out: usize, side: usize| 2 * (c_in * c_out * side * side);
        let at = |side: usize, s: [usize; 3]| {
            conv(1, w, side)
                + 4 * conv(w, w, s[0])
                + conv(w, 2 * w, s[1])
                + 3 * conv(2 * w, 2 * w, s[1])
                + one(w, 2 * w, s[1])
                + conv(2 * w, 4 * w, s[2])
                + 3 * conv(4 * w, 4 * w, s[2])
                + one(2 * w, 4 * w, s[2])
                + 2 * 4 * w * 7
        };
        assert_eq!(spec.flops(48), at(48, [24, 12, 6]) as u64);
        // A crop of 33: the pool floors (16), the stride-2 convolutions round up (8, 4).
        assert_eq!(spec.flops(33), at(33, [16, 8, 4]) as u64);
        // The logits come out at those sides too (a forward of the small net at 33 and 48).
        for side in [33, 48] {
            let small = all_models()[2].clone();
            let model = FerModel::new(&small, side, 0.0, &Device::flex());
            let (images, _) = fixed_batch(side, &Device::flex());
            assert_eq!(model.forward(images).dims(), [8, 7]);
        }
    }

    #[test]
    fn a_side_the_pooling_would_erase_is_refused_naming_model_and_crop() {
        let five = ModelSpec::Compact(CompactConfig {
            channels: vec![8, 8, 8, 8, 8],
            ..CompactConfig::default()
        });
        five.validate().unwrap();
        five.validate_side(48).unwrap();
        five.validate_side(32).unwrap();
        let e = five.validate_side(31).unwrap_err();
        assert_eq!(e.key, "crop");
        assert!(
            e.message.contains("crop = 31") && e.message.contains("compact"),
            "{e:?}"
        );
        let vgg = ModelSpec::Vgg(VggConfig::default());
        vgg.validate_side(16).unwrap();
        let e = vgg.validate_side(15).unwrap_err();
        assert!(
            e.message.contains("vgg") && e.message.contains("crop = 15"),
            "{e:?}"
        );
        let e = ModelSpec::default().validate_side(9).unwrap_err();
        assert!(e.message.contains("baseline"), "{e:?}");
        ModelSpec::default().validate_side(16).unwrap();
        let e = ModelSpec::Residual(ResidualConfig::default())
            .validate_side(1)
            .unwrap_err();
        assert!(e.message.contains("residual"), "{e:?}");
        ModelSpec::Residual(ResidualConfig {
            stem_pool: false,
            ..ResidualConfig::default()
        })
        .validate_side(1)
        .unwrap();
    }

    #[test]
    fn residual_knobs_are_checked_and_left_out_of_json_at_their_defaults() {
        let spec = ModelSpec::Residual(ResidualConfig::default());
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"kind":"residual","width":32,"depth":2}"#
        );
        let spec = ModelSpec::Attention(AttentionConfig::default());
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"kind":"attention","width":32,"depth":2,"attention":"se"}"#
        );
        let spec = ModelSpec::Attention(AttentionConfig {
            stages: 4,
            stem_pool: false,
            ..AttentionConfig::default()
        });
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"kind":"attention","width":32,"depth":2,"attention":"se","stages":4,"stem_pool":false}"#
        );
        for stages in [0, 6] {
            let e = ModelSpec::Residual(ResidualConfig {
                stages,
                ..ResidualConfig::default()
            })
            .validate()
            .unwrap_err();
            assert_eq!(e.key, "model.stages");
            assert!(e.message.contains(&format!("model.stages = {stages}")));
        }
    }
}
