//! The networks fer-lab trains. One file per model; [`FerModel`] is the enum training sees.
//!
//! To add a model: write `src/model/<name>.rs` with a module and its `forward`, add a variant
//! to [`crate::config::ModelSpec`] (with its knobs) and to [`FerModel`], and count its FLOPs in
//! [`flops`].

pub mod baseline;
pub mod blocks;
pub mod compact;
pub mod conv;
pub mod layers;
pub mod residual;
#[cfg(feature = "tch")]
pub mod torch_native;
pub mod vgg;

use crate::config::{ModelSpec, RunConfig};
use crate::data::IMAGE_SIDE;
use crate::emotion::NUM_CLASSES;
use burn::prelude::*;
use compact::CompactShape;

/// Any fer-lab model: maps `[B, 1, 48, 48]` images to `[B, 7]` logits.
#[derive(Module, Debug)]
pub enum FerModel {
    Baseline(baseline::Baseline),
    /// The compact family; the VGG-style net is one of its shapes.
    Compact(compact::Compact),
    /// ResNet, with or without attention.
    Residual(residual::ResNet),
}

fn compact_shape(spec: &ModelSpec) -> Option<CompactShape> {
    match spec {
        ModelSpec::Compact {
            channels,
            convs_per_block,
            batch_norm,
            dense,
        } => Some(CompactShape {
            channels: channels.clone(),
            convs_per_block: *convs_per_block,
            batch_norm: *batch_norm,
            dense: dense.clone(),
        }),
        ModelSpec::Vgg { width, dense } => Some(vgg::shape(*width, dense)),
        _ => None,
    }
}

impl FerModel {
    /// Builds the model a run config asks for, with fresh weights on `device`.
    pub fn new(config: &RunConfig, device: &Device) -> FerModel {
        if let Some(shape) = compact_shape(&config.model) {
            return FerModel::Compact(compact::Compact::new(&shape, config.dropout, device));
        }
        match &config.model {
            ModelSpec::Baseline => {
                FerModel::Baseline(baseline::Baseline::new(config.dropout, device))
            }
            ModelSpec::Residual { width, depth } => FerModel::Residual(residual::ResNet::new(
                *width,
                *depth,
                None,
                config.dropout,
                device,
            )),
            ModelSpec::Attention {
                width,
                depth,
                attention,
            } => FerModel::Residual(residual::ResNet::new(
                *width,
                *depth,
                Some(*attention),
                config.dropout,
                device,
            )),
            ModelSpec::Compact { .. } | ModelSpec::Vgg { .. } => unreachable!("built above"),
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            FerModel::Baseline(m) => m.forward(images),
            FerModel::Compact(m) => m.forward(images),
            FerModel::Residual(m) => m.forward(images),
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

/// Parameter count and FLOPs per image of the model `config` describes.
pub fn size(model: &FerModel, config: &RunConfig) -> ModelSize {
    ModelSize {
        params: model.num_params(),
        flops: flops(config),
    }
}

/// Forward FLOPs per image, counted layer by layer (2 per multiply-add; convolutions, dense
/// layers and attention MLPs — norms, activations and pools are left out).
pub fn flops(config: &RunConfig) -> u64 {
    if let Some(shape) = compact_shape(&config.model) {
        return shape.flops();
    }
    match &config.model {
        ModelSpec::Baseline => baseline::flops(),
        ModelSpec::Residual { width, depth } => residual::flops(*width, *depth, None),
        ModelSpec::Attention {
            width,
            depth,
            attention,
        } => residual::flops(*width, *depth, Some(*attention)),
        ModelSpec::Compact { .. } | ModelSpec::Vgg { .. } => unreachable!("counted above"),
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
mod tests {
    use super::*;
    use crate::config::AttentionKind;
    use crate::train::loss::Loss;
    use burn::optim::{GradientsParams, SgdConfig};

    fn all_models() -> Vec<ModelSpec> {
        vec![
            ModelSpec::Baseline,
            ModelSpec::Compact {
                channels: vec![8, 16],
                convs_per_block: 2,
                batch_norm: true,
                dense: vec![32],
            },
            ModelSpec::Residual { width: 8, depth: 1 },
            ModelSpec::Attention {
                width: 8,
                depth: 1,
                attention: AttentionKind::Se,
            },
            ModelSpec::Attention {
                width: 8,
                depth: 1,
                attention: AttentionKind::Cbam,
            },
            ModelSpec::Vgg {
                width: 0.125,
                dense: vec![32],
            },
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
            let config = RunConfig {
                model: spec.clone(),
                dropout: 0.0,
                ..RunConfig::default()
            };
            config.validate().unwrap();
            device.seed(3);
            let mut model = FerModel::new(&config, &device);
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
            let size = size(&model.valid(), &config);
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
        let baseline = RunConfig::default();
        assert_eq!(flops(&baseline), 19_116_032);
        let model = FerModel::new(&baseline, &Device::flex());
        assert_eq!(model.num_params(), 839_047);
        // The default compact net stays under the study's 2 M parameter budget.
        let compact = RunConfig {
            model: ModelSpec::Compact {
                channels: vec![32, 64, 128],
                convs_per_block: 2,
                batch_norm: true,
                dense: vec![256],
            },
            ..RunConfig::default()
        };
        let n = FerModel::new(&compact, &Device::flex()).num_params();
        assert!(n < 2_000_000, "{n}");
    }
}
