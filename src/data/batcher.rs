//! The glue between [`SplitImages`] and burn's data loader: a `Dataset` of image indices and a
//! `Batcher` that augments (train only), crops (random crops in training, the centre crop in
//! evaluation, when the run has a `crop`) and packs a batch into one tensor in a single copy.

use super::augment::{
    Augment, Transform, centre_offset, crop_offsets, crop_window, erase_crops, item_seed, mix_batch,
};
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

/// One batch: images `[B, 1, side, side]` scaled to [0, 1] and class ids `[B]` (side 48, or
/// the run's crop; B is the number of items × `augment.crops` in training).
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

/// How a batcher crops the (augmented) 48×48 images: `copies` random windows per image in
/// training, the centre window in evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Crop {
    side: usize,
    /// Random windows per image (training); `None`: the centre window (evaluation).
    random: Option<usize>,
    /// Probability of erasing each window (training with `augment.erasing_on = "crop"`).
    erasing: f64,
}

/// Builds batches from a split, augmenting each image in parallel when `augment` is set and
/// cropping it when the run has a `crop`.
#[derive(Clone)]
pub struct FerBatcher {
    images: Arc<SplitImages>,
    augment: Option<Augment>,
    crop: Option<Crop>,
    seed: u64,
}

impl FerBatcher {
    /// A batcher for training: augmentation seeded by `seed`; with a `crop`, `augment.crops`
    /// random `crop`×`crop` windows of each augmented image (random even when `augment` is
    /// otherwise off: the random crop is the crop recipe's own augmentation), each its own
    /// item of the batch with the image's label.
    pub fn train(
        images: Arc<SplitImages>,
        augment: Augment,
        crop: Option<usize>,
        seed: u64,
    ) -> Self {
        let per_image = augment.on_image();
        FerBatcher {
            images,
            augment: (!per_image.is_identity()).then_some(per_image),
            crop: crop.map(|side| Crop {
                side,
                random: Some(augment.crops.max(1)),
                erasing: augment.crop_erasing(),
            }),
            seed,
        }
    }

    /// A batcher for val/test: never augments; with a `crop`, the centre window.
    pub fn eval(images: Arc<SplitImages>, crop: Option<usize>) -> Self {
        FerBatcher {
            images,
            augment: None,
            crop: crop.map(|side| Crop {
                side,
                random: None,
                erasing: 0.0,
            }),
            seed: 0,
        }
    }

    /// Side of the images the batches hold: the crop, or 48.
    pub fn side(&self) -> usize {
        self.crop.map_or(IMAGE_SIDE, |c| c.side)
    }

    /// Images a batch holds per item: `augment.crops` in training with a crop, else 1.
    pub fn copies(&self) -> usize {
        self.crop.and_then(|c| c.random).unwrap_or(1)
    }

    /// The pixels of a batch as `[B·side²]` floats (B = items × copies, an item's copies
    /// side by side), their labels, and how the batch was mixed.
    pub fn pixels(&self, items: &[FerItem]) -> (Vec<f32>, Vec<i64>, Option<super::augment::Mix>) {
        let side = self.side();
        let copies = self.copies();
        let mut buf = vec![0f32; items.len() * copies * side * side];
        buf.par_chunks_mut(copies * side * side)
            .zip(items.par_iter())
            .for_each(|(out, item)| {
                let transform = match &self.augment {
                    Some(aug) => aug.sample(self.seed, item.epoch, item.index),
                    None => Transform::IDENTITY,
                };
                let image = self.images.image(item.index);
                let Some(crop) = self.crop else {
                    transform.apply(image, out);
                    return;
                };
                let mut full = [0f32; IMAGE_PIXELS];
                transform.apply(image, &mut full);
                let corners = match crop.random {
                    Some(n) => crop_offsets(self.seed, item.epoch, item.index, side, n),
                    None => vec![(centre_offset(side), centre_offset(side))],
                };
                for (window, corner) in out.chunks_mut(side * side).zip(corners) {
                    crop_window(&full, side, corner, false, window);
                }
                erase_crops(crop.erasing, self.seed, item.epoch, item.index, side, out);
            });
        let labels = items
            .iter()
            .flat_map(|item| {
                std::iter::repeat_n(i64::from(self.images.label(item.index).id()), copies)
            })
            .collect();
        let mix = match (&self.augment, items.first()) {
            (Some(aug), Some(first)) => {
                // Seeded by the batch's first image and its epoch: reproducible like the rest.
                mix_batch(
                    aug,
                    item_seed(self.seed ^ 0x6D69_7875, first.epoch, first.index as u64),
                    side,
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
        let (side, n) = (self.side(), items.len() * self.copies());
        let (pixels, labels, mix) = self.pixels(&items);
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [n, 1, side, side]), device);
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
        let batcher = FerBatcher::train(images.clone(), aug, None, 3);
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
        let (eval, _, mix) = FerBatcher::eval(images.clone(), None).pixels(&items[..1]);
        assert!(mix.is_none());
        assert!(eval.iter().all(|&v| (v - 60.0 / 255.0).abs() < 1e-6));
    }

    /// Ten images whose pixels vary across the image (so windows differ), labels 0..=6.
    fn varied() -> Arc<SplitImages> {
        let mut images = SplitImages::default();
        for i in 0..10usize {
            let mut img = [0u8; IMAGE_PIXELS];
            for (k, p) in img.iter_mut().enumerate() {
                *p = ((k % IMAGE_SIDE) * 3 + (k / IMAGE_SIDE) * 2 + i * 7) as u8;
            }
            images.push(&img, Emotion::from_id((i % 7) as u8).unwrap());
        }
        Arc::new(images)
    }

    #[test]
    fn training_crops_are_random_windows_of_the_augmented_image_with_the_label_repeated() {
        use crate::data::augment::{Augment, crop_offsets};
        let images = varied();
        let aug = Augment {
            crops: 3,
            ..Augment::default()
        };
        let batcher = FerBatcher::train(images.clone(), aug, Some(40), 5);
        assert_eq!((batcher.side(), batcher.copies()), (40, 3));
        let items: Vec<FerItem> = [4, 1, 7]
            .into_iter()
            .map(|index| FerItem { index, epoch: 2 })
            .collect();
        let (pixels, labels, mix) = batcher.pixels(&items);
        assert!(mix.is_none());
        assert_eq!(pixels.len(), 3 * 3 * 40 * 40);
        let label = |i: usize| i64::from(images.label(i).id());
        assert_eq!(
            labels,
            vec![
                label(4),
                label(4),
                label(4),
                label(1),
                label(1),
                label(1),
                label(7),
                label(7),
                label(7)
            ]
        );
        for (k, item) in items.iter().enumerate() {
            // The image as the augmentation leaves it, then each of its random windows.
            let mut full = vec![0.0; IMAGE_PIXELS];
            aug.sample(5, 2, item.index)
                .apply(images.image(item.index), &mut full);
            let corners = crop_offsets(5, 2, item.index, 40, 3);
            for (c, &(x0, y0)) in corners.iter().enumerate() {
                let window = &pixels[(3 * k + c) * 1600..][..1600];
                for y in 0..40 {
                    for x in 0..40 {
                        assert_eq!(window[y * 40 + x], full[(y0 + y) * IMAGE_SIDE + x0 + x]);
                    }
                }
            }
        }
        // The same items give the same batch: crops are seeded like every other draw.
        assert_eq!(batcher.pixels(&items).0, pixels);
        // Without augmentation the crops stay random (the crop recipe's own augmentation).
        let plain = FerBatcher::train(images.clone(), Augment::NONE, Some(40), 5);
        assert_eq!(plain.copies(), 1);
        let corners: std::collections::BTreeSet<_> = (0..10)
            .map(|index| crop_offsets(5, 0, index, 40, 1)[0])
            .collect();
        assert!(corners.len() > 1, "{corners:?}");
        let (first, _, _) = plain.pixels(&[FerItem { index: 3, epoch: 0 }]);
        let (x0, y0) = crop_offsets(5, 0, 3, 40, 1)[0];
        assert_eq!(
            first[0],
            f32::from(images.image(3)[y0 * IMAGE_SIDE + x0]) / 255.0
        );
        // A batch tensor holds every crop.
        let batch = batcher.batch(items, &Device::flex());
        assert_eq!(batch.images.dims(), [9, 1, 40, 40]);
        assert_eq!(batch.targets.dims(), [9]);
    }

    #[test]
    fn mixing_pairs_crops_and_evaluation_takes_the_centre_crop() {
        use crate::data::augment::{Augment, Tta, tta_views};
        let images = varied();
        let aug = Augment {
            crops: 2,
            mixup: 0.4,
            ..Augment::NONE
        };
        let batcher = FerBatcher::train(images.clone(), aug, Some(36), 1);
        let items: Vec<FerItem> = (0..4).map(|index| FerItem { index, epoch: 0 }).collect();
        let (pixels, labels, mix) = batcher.pixels(&items);
        assert_eq!(pixels.len(), 8 * 36 * 36);
        assert_eq!(labels.len(), 8);
        let mut partners = mix.expect("mixup is on").partner;
        partners.sort_unstable();
        assert_eq!(partners, (0..8).collect::<Vec<_>>(), "crops mix with crops");
        let batch = batcher.batch(items.clone(), &Device::flex());
        let (partners, _) = batch.mix.expect("mixed");
        assert_eq!(partners.dims(), [8]);
        // Evaluation: the centre window, exactly TTA's plain view.
        let eval = FerBatcher::eval(images.clone(), Some(36));
        assert_eq!((eval.side(), eval.copies()), (36, 1));
        let (pixels, labels, mix) = eval.pixels(&items);
        assert!(mix.is_none());
        assert_eq!(labels.len(), 4);
        for (k, item) in items.iter().enumerate() {
            let view = tta_views(Tta::None, Some(36), images.image(item.index));
            assert_eq!(&pixels[k * 36 * 36..][..36 * 36], &view[0][..]);
        }
    }

    #[test]
    fn without_a_crop_batches_are_what_they_were_before_crops() {
        use crate::data::augment::Augment;
        // Sums pinned by running this same test on the code before crops existed (5465bed):
        // every augmented pixel, the labels and the CutMix draw of a training batch, and an
        // evaluation batch, bit for bit.
        let images = varied();
        let aug = Augment {
            erasing: 0.5,
            cutmix: 1.0,
            ..Augment::default()
        };
        let items: Vec<FerItem> = [3, 1, 4, 1, 5, 9, 2, 6]
            .into_iter()
            .map(|index| FerItem { index, epoch: 3 })
            .collect();
        let weighted = |pixels: &[f32]| -> f64 {
            pixels
                .iter()
                .enumerate()
                .map(|(i, &v)| f64::from(v) * (i % 89) as f64)
                .sum()
        };
        let (pixels, labels, mix) = FerBatcher::train(images.clone(), aug, None, 11).pixels(&items);
        assert_eq!(weighted(&pixels), 440_290.460_031_154_1);
        assert_eq!(labels, vec![3, 1, 4, 1, 5, 2, 2, 6]);
        let mix = mix.expect("cutmix is on");
        assert_eq!(mix.partner, vec![5, 4, 0, 6, 7, 2, 3, 1]);
        assert_eq!(mix.lam, 0.826_388_9);
        let (pixels, _, _) = FerBatcher::eval(images, None).pixels(&items);
        assert_eq!(weighted(&pixels), 449_078.617_271_720_9);
    }

    #[test]
    fn erasing_on_crops_erases_windows_not_the_image() {
        use crate::data::augment::{Augment, EraseOn, crop_offsets, erase_crops};
        let images = varied();
        let on_crops = Augment {
            erasing: 1.0,
            erasing_on: EraseOn::Crop,
            crops: 4,
            ..Augment::NONE
        };
        let items: Vec<FerItem> = [2, 9]
            .into_iter()
            .map(|index| FerItem { index, epoch: 1 })
            .collect();
        let (pixels, _, _) =
            FerBatcher::train(images.clone(), on_crops, Some(36), 8).pixels(&items);
        let unerased = Augment {
            erasing: 0.0,
            ..on_crops
        };
        let (plain, _, _) = FerBatcher::train(images.clone(), unerased, Some(36), 8).pixels(&items);
        let window = 36 * 36;
        for (k, item) in items.iter().enumerate() {
            // The batch's crops are the unerased crops, each erased by its own draw.
            let mut expect = plain[4 * k * window..][..4 * window].to_vec();
            erase_crops(1.0, 8, 1, item.index, 36, &mut expect);
            assert_eq!(&pixels[4 * k * window..][..4 * window], &expect[..]);
            assert_ne!(expect, plain[4 * k * window..][..4 * window]);
        }
        // Erasing the image instead cuts one rectangle that the crops share (where they overlap).
        let on_image = Augment {
            erasing_on: EraseOn::Image,
            ..on_crops
        };
        let (shared, _, _) =
            FerBatcher::train(images.clone(), on_image, Some(36), 8).pixels(&items[..1]);
        let erase = on_image.sample(8, 1, 2).erase.expect("p = 1 erases");
        let corners = crop_offsets(8, 1, 2, 36, 4);
        let mut noise = 0;
        for (c, &(x0, y0)) in corners.iter().enumerate() {
            for y in 0..36 {
                for x in 0..36 {
                    let (ix, iy) = (x0 + x, y0 + y);
                    let inside = (erase.x..erase.x + erase.w).contains(&ix)
                        && (erase.y..erase.y + erase.h).contains(&iy);
                    let v = shared[c * window + y * 36 + x];
                    let original = f32::from(images.image(2)[iy * IMAGE_SIDE + ix]) * (1.0 / 255.0);
                    if inside {
                        noise += usize::from(v != original);
                    } else {
                        assert_eq!(v, original);
                    }
                }
            }
        }
        assert!(noise > 0, "the shared rectangle shows in the crops");
    }
}
