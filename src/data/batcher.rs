//! The glue between [`SplitImages`] and burn's data loader: a `Dataset` of image indices and a
//! `Batcher` that augments (train only) and packs a batch into one tensor in a single copy.

use super::augment::{Augment, Transform, item_seed, mix_batch};
use super::{IMAGE_PIXELS, IMAGE_SIDE, SplitImages};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One batch: images `[B, 1, 48, 48]` scaled to [0, 1] and class ids `[B]`.
#[derive(Clone, Debug)]
pub struct FerBatch {
    pub images: Tensor<4>,
    pub targets: Tensor<1, Int>,
    /// Set when mixup / CutMix blended the batch: the partners' labels and the weight of the
    /// image's own label.
    pub mix: Option<(Tensor<1, Int>, f32)>,
}

/// What the data loader hands the batcher: which image, and in which epoch (which seeds its
/// augmentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FerItem {
    pub index: usize,
    pub epoch: u32,
}

/// A split as a burn `Dataset` of image indices.
///
/// For training it shuffles itself: burn's loader asks for items 0..n in order every epoch (no
/// burn shuffle), and this dataset maps the k-th call to a permutation seeded by (seed, epoch).
/// The epoch is the number of calls so far divided by n, so data order and augmentation are a
/// function of the seed and the epoch alone — a run resumed at epoch e sees exactly the batches
/// an uninterrupted run would.
pub struct IndexDataset {
    len: usize,
    shuffle: Option<Shuffle>,
}

struct Shuffle {
    seed: u64,
    calls: AtomicUsize,
    current: Mutex<(u32, Vec<usize>)>,
}

/// The order in which a training split is visited in `epoch` (what the loader hands out).
pub fn permutation(seed: u64, epoch: u32, len: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed ^ 0x5348_5546, epoch, 0));
    order.shuffle(&mut rng);
    order
}

impl IndexDataset {
    /// A training dataset starting at `epoch` (0 for a fresh run).
    pub fn train(len: usize, seed: u64, epoch: u32) -> Self {
        IndexDataset {
            len,
            shuffle: Some(Shuffle {
                seed,
                calls: AtomicUsize::new(epoch as usize * len),
                current: Mutex::new((epoch, permutation(seed, epoch, len))),
            }),
        }
    }

    /// An evaluation dataset: in order, epoch 0, never augmented.
    pub fn eval(len: usize) -> Self {
        IndexDataset { len, shuffle: None }
    }
}

impl Dataset<FerItem> for IndexDataset {
    fn get(&self, index: usize) -> Result<FerItem, burn::data::dataset::DatasetError> {
        let Some(s) = &self.shuffle else {
            return Ok(FerItem { index, epoch: 0 });
        };
        let epoch = (s.calls.fetch_add(1, Ordering::Relaxed) / self.len.max(1)) as u32;
        let mut current = s.current.lock().expect("shuffle lock");
        if current.0 != epoch {
            *current = (epoch, permutation(s.seed, epoch, self.len));
        }
        Ok(FerItem {
            index: current.1[index],
            epoch,
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Builds batches from a split, augmenting each image in parallel when `augment` is set.
#[derive(Clone)]
pub struct FerBatcher {
    images: Arc<SplitImages>,
    augment: Option<Augment>,
    seed: u64,
}

impl FerBatcher {
    /// A batcher for training: augmentation seeded by `seed`.
    pub fn train(images: Arc<SplitImages>, augment: Augment, seed: u64) -> Self {
        FerBatcher {
            images,
            augment: (!augment.is_identity()).then_some(augment),
            seed,
        }
    }

    /// A batcher for val/test: never augments.
    pub fn eval(images: Arc<SplitImages>) -> Self {
        FerBatcher {
            images,
            augment: None,
            seed: 0,
        }
    }

    /// The pixels of a batch as `[B·2304]` floats, their labels, and how the batch was mixed.
    pub fn pixels(&self, items: &[FerItem]) -> (Vec<f32>, Vec<i64>, Option<super::augment::Mix>) {
        let mut buf = vec![0f32; items.len() * IMAGE_PIXELS];
        buf.par_chunks_mut(IMAGE_PIXELS)
            .zip(items.par_iter())
            .for_each(|(out, item)| {
                let transform = match &self.augment {
                    Some(aug) => aug.sample(self.seed, item.epoch, item.index),
                    None => Transform::IDENTITY,
                };
                transform.apply(self.images.image(item.index), out);
            });
        let labels = items
            .iter()
            .map(|item| i64::from(self.images.label(item.index).id()))
            .collect();
        let mix = match (&self.augment, items.first()) {
            (Some(aug), Some(first)) => {
                // Seeded by the batch's first image and its epoch: reproducible like the rest.
                mix_batch(
                    aug,
                    item_seed(self.seed ^ 0x6D69_7875, first.epoch, first.index as u64),
                    &mut buf,
                )
            }
            _ => None,
        };
        (buf, labels, mix)
    }
}

impl Batcher<FerItem, FerBatch> for FerBatcher {
    fn batch(&self, items: Vec<FerItem>, device: &Device) -> FerBatch {
        let n = items.len();
        let (pixels, labels, mix) = self.pixels(&items);
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels, [n, 1, IMAGE_SIDE, IMAGE_SIDE]),
            device,
        );
        let mix = mix.map(|m| {
            let partners: Vec<i64> = m.partner.iter().map(|&j| labels[j]).collect();
            (
                Tensor::<1, Int>::from_data(TensorData::new(partners, [n]), device),
                m.lam,
            )
        });
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        FerBatch {
            images,
            targets,
            mix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emotion::Emotion;

    #[test]
    fn augmentation_keeps_shape_range_and_labels() {
        let mut images = SplitImages::default();
        for i in 0..10u8 {
            images.push(&[i * 20; IMAGE_PIXELS], Emotion::from_id(i % 7).unwrap());
        }
        let images = Arc::new(images);
        let aug = Augment {
            erasing: 0.5,
            mixup: 0.4,
            ..Augment::default()
        };
        let batcher = FerBatcher::train(images.clone(), aug, 3);
        let dataset = IndexDataset::train(images.len(), 3, 0);
        let items: Vec<FerItem> = (0..images.len()).map(|i| dataset.get(i).unwrap()).collect();
        let mut seen: Vec<usize> = items.iter().map(|it| it.index).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..images.len()).collect::<Vec<_>>(),
            "an epoch visits every image once"
        );
        assert!(items.iter().all(|it| it.epoch == 0));
        let next = dataset.get(0).unwrap();
        assert_eq!(next.epoch, 1);
        // A dataset resumed at epoch 1 hands out exactly what the uninterrupted one does.
        let resumed = IndexDataset::train(images.len(), 3, 1);
        assert_eq!(resumed.get(0).unwrap(), next);
        let items = &items[..6];
        let (pixels, labels, mix) = batcher.pixels(items);
        assert_eq!(pixels.len(), items.len() * IMAGE_PIXELS);
        assert!(pixels.iter().all(|v| (0.0..=1.0).contains(v)));
        let expected: Vec<i64> = items
            .iter()
            .map(|it| i64::from(images.label(it.index).id()))
            .collect();
        assert_eq!(labels, expected);
        let mut partners = mix.expect("mixup is on").partner;
        partners.sort_unstable();
        assert_eq!(partners, (0..items.len()).collect::<Vec<_>>());
        // Val/test batches are never augmented.
        let (eval, _, mix) = FerBatcher::eval(images.clone()).pixels(&items[..1]);
        assert!(mix.is_none());
        assert!(eval.iter().all(|&v| (v - 60.0 / 255.0).abs() < 1e-6));
    }
}
