//! Evaluating a trained model on a split: predictions, loss and every classification metric.

use crate::data::SplitImages;
use crate::data::batcher::{FerBatcher, FerItem};
use crate::metrics::{Confusion, Evaluation};
use crate::model::FerModel;
use burn::data::dataloader::batcher::Batcher;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use std::sync::Arc;

/// Class probabilities `[B, 7]` of a batch of images.
pub fn probabilities(model: &FerModel, images: Tensor<4>) -> Tensor<2> {
    burn::tensor::activation::softmax(model.forward(images), 1)
}

/// Runs `model` over all of `images` (no augmentation) and derives the metrics.
pub fn evaluate(
    model: &FerModel,
    images: &Arc<SplitImages>,
    batch_size: usize,
    device: &Device,
) -> Evaluation {
    let batcher = FerBatcher::eval(images.clone());
    let ce = CrossEntropyLossConfig::new().init(device);
    let mut confusion = Confusion::default();
    let mut loss_sum = 0.0;
    let n = images.len();
    let mut start = 0;
    while start < n {
        let end = (start + batch_size).min(n);
        let items: Vec<FerItem> = (start..end)
            .map(|index| FerItem { index, epoch: 0 })
            .collect();
        let batch = batcher.batch(items, device);
        let logits = model.forward(batch.images);
        let loss = ce.forward(logits.clone(), batch.targets.clone());
        loss_sum += f64::from(loss.into_scalar::<f32>()) * (end - start) as f64;
        let preds = logits.argmax(1).into_data();
        let truth = batch.targets.into_data();
        for (p, t) in preds.iter::<i64>().zip(truth.iter::<i64>()) {
            confusion.add(t as usize, p as usize);
        }
        start = end;
    }
    Evaluation::from_confusion(confusion, if n == 0 { 0.0 } else { loss_sum / n as f64 })
}
