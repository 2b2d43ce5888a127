//! The networks fer-lab trains. One file per model; [`FerModel`] is the enum training sees.
//!
//! To add a model: write `src/model/<name>.rs` with a module and its `forward`, add a variant
//! to [`crate::config::ModelKind`] and to [`FerModel`], and give it a FLOP count in [`flops`].

pub mod baseline;

use crate::config::{ModelKind, RunConfig};
use crate::data::IMAGE_SIDE;
use crate::emotion::NUM_CLASSES;
use burn::prelude::*;

/// Any fer-lab model: maps `[B, 1, 48, 48]` images to `[B, 7]` logits.
#[derive(Module, Debug)]
pub enum FerModel {
    Baseline(baseline::Baseline),
}

impl FerModel {
    /// Builds the model a run config asks for, with fresh weights on `device`.
    pub fn new(config: &RunConfig, device: &Device) -> FerModel {
        match config.model {
            ModelKind::Baseline => {
                FerModel::Baseline(baseline::Baseline::new(config.dropout, device))
            }
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            FerModel::Baseline(m) => m.forward(images),
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

/// Forward FLOPs per image, counted layer by layer (2 per multiply-add).
pub fn flops(config: &RunConfig) -> u64 {
    match config.model {
        ModelKind::Baseline => baseline::flops(),
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
