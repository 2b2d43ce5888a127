//! The deep VGG-style net behind the best published single-model FER-2013 results: 4 stages of
//! 2× conv3x3-BN-ReLU + max-pool at 64→128→256→512 channels and a dense head with dropout.
//! `width` scales every channel count (0.25 gives 16→128, small enough for a CPU).

use super::compact::CompactShape;

/// The compact-family shape of a VGG net at `width`.
pub fn shape(width: f64, dense: &[usize]) -> CompactShape {
    CompactShape {
        channels: [64.0, 128.0, 256.0, 512.0]
            .iter()
            .map(|c| ((c * width).round() as usize).max(1))
            .collect(),
        convs_per_block: 2,
        batch_norm: true,
        dense: dense.to_vec(),
    }
}
