//! Evaluating a trained model on a split: predictions, loss and every classification metric.

use crate::config::{RunConfig, Tta};
use crate::data::augment::tta_views;
use crate::data::{IMAGE_PIXELS, IMAGE_SIDE, SplitImages};
use crate::metrics::{Evaluation, SplitPredictions};
use crate::model::{FerModel, Precision, precision};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use std::sync::Arc;

/// How a run's model looks at images outside training: its test-time views, its crop and the
/// precision its layers compute in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inference {
    pub tta: Tta,
    pub crop: Option<usize>,
    pub precision: Precision,
}

impl Inference {
    /// What `config` asks of its evaluations.
    pub fn of(config: &RunConfig) -> Inference {
        Inference {
            tta: config.tta,
            crop: config.crop,
            precision: config.precision,
        }
    }

    /// What `config` asks, on `device`: a run trained in bf16 is evaluated in float32 (its
    /// weights are float32) where the device has no bf16 kernels, as `predict` on flex.
    pub fn on(config: &RunConfig, device: &Device) -> Inference {
        let mut inference = Inference::of(config);
        if inference.precision.check_device(device).is_err() {
            inference.precision = Precision::F32;
        }
        inference
    }
}

/// Class probabilities of 48×48 images, averaged over the TTA views of each image (each view a
/// `crop`×`crop` window when the run has a crop: the model is built for that side).
pub fn predict(
    model: &FerModel,
    images: &[&[u8; IMAGE_PIXELS]],
    inference: Inference,
    device: &Device,
) -> Vec<[f32; 7]> {
    let n = images.len();
    if n == 0 {
        return Vec::new();
    }
    let Inference {
        tta,
        crop,
        precision,
    } = inference;
    let side = crop.unwrap_or(IMAGE_SIDE);
    let views: Vec<Vec<Vec<f32>>> = images.iter().map(|img| tta_views(tta, crop, img)).collect();
    let per_image = views[0].len();
    let mut sums = vec![[0f32; 7]; n];
    for v in 0..per_image {
        let pixels: Vec<f32> = views
            .iter()
            .flat_map(|views| views[v].iter().copied())
            .collect();
        let batch = Tensor::<4>::from_data(TensorData::new(pixels, [n, 1, side, side]), device);
        let probs = precision::with(precision, || softmax(model.forward(batch), 1).into_data());
        for (i, p) in probs.iter::<f32>().enumerate() {
            sums[i / 7][i % 7] += p / per_image as f32;
        }
    }
    sums
}

/// Runs `model` over all of `images` (no augmentation; the centre crop with a `crop`; TTA views
/// when asked) and derives the metrics, keeping every image's probabilities (for ensembles).
/// The loss is the cross-entropy of the averaged probabilities.
pub fn evaluate(
    model: &FerModel,
    images: &Arc<SplitImages>,
    batch_size: usize,
    inference: Inference,
    device: &Device,
) -> Evaluation {
    let n = images.len();
    let mut probs = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + batch_size).min(n);
        let batch: Vec<&[u8; IMAGE_PIXELS]> = (start..end).map(|i| images.image(i)).collect();
        probs.extend(predict(model, &batch, inference, device));
        start = end;
    }
    let labels = (0..n).map(|i| images.label(i).id()).collect();
    SplitPredictions::new(labels, probs)
        .expect("a split's labels are class ids, one per image")
        .evaluate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bf16_run_is_evaluated_in_float32_where_the_device_has_no_bf16() {
        let config = RunConfig {
            precision: Precision::Bf16,
            crop: Some(40),
            tta: Tta::TenCrop,
            ..RunConfig::default()
        };
        let asked = Inference::of(&config);
        assert_eq!(asked.precision, Precision::Bf16);
        let flex = crate::device::DeviceSpec::Flex.device();
        let on_flex = Inference::on(&config, &flex);
        assert_eq!(
            on_flex,
            Inference {
                precision: Precision::F32,
                ..asked
            }
        );
        #[cfg(feature = "tch")]
        {
            let libtorch = crate::device::DeviceSpec::TchCpu.device();
            assert_eq!(Inference::on(&config, &libtorch), asked);
        }
    }
}
