//! Training-time augmentation on 48×48 grayscale images, done on the CPU in the data loader,
//! and the test-time views of TTA.
//!
//! Rotation, zoom and shift are one affine warp (inverse mapping, bilinear sampling, edges
//! clamped like Keras' `fill_mode="nearest"`), so an image is resampled once, not three times;
//! each can be applied to only part of the images (`rotation_p`, …).
//! Random erasing follows Zhong et al. (a rectangle of 2–33 % of the image, aspect 0.3–3.3,
//! filled with noise). With a run's `crop`, training then takes a random `crop`×`crop` window
//! of the augmented 48×48 image (`augment.crops` of them per image, [`crop_offsets`]), erased
//! one by one when erasing is on the crops ([`erase_crops`]), and evaluation the centre one
//! ([`tta_views`]). Mixup and CutMix mix pairs inside a batch
//! ([`mix_batch`]), after cropping.
//! Every random draw comes from an RNG seeded by (run seed, epoch, image index): a run is
//! reproducible whatever order or thread the loader uses. Never applied to val or test.

use super::{IMAGE_PIXELS, IMAGE_SIDE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn is_certain(p: &f64) -> bool {
    *p == 1.0
}

/// Where random erasing cuts its rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EraseOn {
    /// The augmented 48×48 image, before any crop (so the crops of one image share it).
    #[default]
    Image,
    /// Each training crop on its own, at the crop's side (needs the run's `crop`): Khaireddin
    /// & Chen erase each of their ten crops independently.
    Crop,
}

impl EraseOn {
    fn is_image(&self) -> bool {
        *self == EraseOn::Image
    }
}

/// The augmentation knobs of a run; each is its own sweep axis (`augment.rotation`, …).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Maximum rotation in degrees; the angle is uniform in ±rotation.
    pub rotation: f64,
    /// Zoom range as a fraction: the scale is uniform in [1 − zoom, 1 + zoom].
    pub zoom: f64,
    /// Maximum shift as a fraction of the side, drawn independently for x and y.
    pub shift: f64,
    /// Probability that an image is rotated at all; the published VGG recipe rotates and
    /// shifts "half the time" (torchvision's `RandomApply(p = 0.5)`).
    #[serde(skip_serializing_if = "is_certain")]
    pub rotation_p: f64,
    /// Probability that an image is zoomed at all.
    #[serde(skip_serializing_if = "is_certain")]
    pub zoom_p: f64,
    /// Probability that an image is shifted at all (both axes together).
    #[serde(skip_serializing_if = "is_certain")]
    pub shift_p: f64,
    /// Probability of random erasing.
    #[serde(skip_serializing_if = "is_zero")]
    pub erasing: f64,
    /// Whether erasing cuts the 48×48 image or each crop.
    #[serde(skip_serializing_if = "EraseOn::is_image")]
    pub erasing_on: EraseOn,
    /// Mixup Beta(α, α) parameter; 0 is off.
    #[serde(skip_serializing_if = "is_zero")]
    pub mixup: f64,
    /// CutMix Beta(α, α) parameter; 0 is off. With mixup too, each batch uses one of them.
    #[serde(skip_serializing_if = "is_zero")]
    pub cutmix: f64,
    /// Random crops per training image (with the run's `crop`): each is its own item of the
    /// batch, with the image's label, so a batch of B images holds B·crops crops.
    #[serde(skip_serializing_if = "is_one")]
    pub crops: usize,
}

impl Default for Augment {
    /// The seed study's recipe: hflip, ±10°, ±10 % zoom, ±10 % shift.
    fn default() -> Self {
        Augment {
            hflip: 0.5,
            rotation: 10.0,
            zoom: 0.1,
            shift: 0.1,
            rotation_p: 1.0,
            zoom_p: 1.0,
            shift_p: 1.0,
            erasing: 0.0,
            erasing_on: EraseOn::Image,
            mixup: 0.0,
            cutmix: 0.0,
            crops: 1,
        }
    }
}

impl Augment {
    /// No augmentation at all (what `augment = false` means).
    pub const NONE: Augment = Augment {
        hflip: 0.0,
        rotation: 0.0,
        zoom: 0.0,
        shift: 0.0,
        rotation_p: 1.0,
        zoom_p: 1.0,
        shift_p: 1.0,
        erasing: 0.0,
        erasing_on: EraseOn::Image,
        mixup: 0.0,
        cutmix: 0.0,
        crops: 1,
    };

    pub fn is_identity(&self) -> bool {
        *self == Augment::NONE
    }

    /// Every knob, zeros included (the serialised form leaves later-added zeros out).
    pub fn full_json(&self) -> serde_json::Value {
        serde_json::json!({
            "hflip": self.hflip,
            "rotation": self.rotation,
            "zoom": self.zoom,
            "shift": self.shift,
            "rotation_p": self.rotation_p,
            "zoom_p": self.zoom_p,
            "shift_p": self.shift_p,
            "erasing": self.erasing,
            "erasing_on": self.erasing_on,
            "mixup": self.mixup,
            "cutmix": self.cutmix,
            "crops": self.crops,
        })
    }

    /// Whether pairs of images are mixed (mixup or CutMix).
    pub fn mixes(&self) -> bool {
        self.mixup > 0.0 || self.cutmix > 0.0
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), AugmentRangeError> {
        let check = |key: &'static str, value: f64, ok: bool, must: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(AugmentRangeError { key, value, must })
            }
        };
        let prob = |key, v: f64| check(key, v, (0.0..=1.0).contains(&v), "a probability in [0, 1]");
        prob("hflip", self.hflip)?;
        prob("erasing", self.erasing)?;
        prob("rotation_p", self.rotation_p)?;
        prob("zoom_p", self.zoom_p)?;
        prob("shift_p", self.shift_p)?;
        let r = self.rotation;
        check(
            "rotation",
            r,
            (0.0..=180.0).contains(&r),
            "degrees in [0, 180]",
        )?;
        check(
            "zoom",
            self.zoom,
            (0.0..1.0).contains(&self.zoom),
            "in [0, 1)",
        )?;
        check(
            "shift",
            self.shift,
            (0.0..=0.5).contains(&self.shift),
            "in [0, 0.5]",
        )?;
        for (key, alpha) in [("mixup", self.mixup), ("cutmix", self.cutmix)] {
            let ok = (0.0..=10.0).contains(&alpha);
            check(key, alpha, ok, "a Beta α in [0, 10] (0 is off)")?;
        }
        let crops = self.crops;
        check(
            "crops",
            crops as f64,
            (1..=MAX_CROPS).contains(&crops),
            "a count of crops per image in 1..=10",
        )?;
        Ok(())
    }

    /// These knobs as they act on the 48×48 image: one crop, and erasing only when it cuts the
    /// image (erasing the crops is [`Augment::crop_erasing`]'s).
    pub fn on_image(&self) -> Augment {
        Augment {
            crops: 1,
            erasing: match self.erasing_on {
                EraseOn::Image => self.erasing,
                EraseOn::Crop => 0.0,
            },
            erasing_on: EraseOn::Image,
            ..*self
        }
    }

    /// The probability of erasing each training crop ([`erase_crops`]): `erasing` when it is
    /// on the crops, else 0.
    pub fn crop_erasing(&self) -> f64 {
        match self.erasing_on {
            EraseOn::Image => 0.0,
            EraseOn::Crop => self.erasing,
        }
    }

    /// Draws the per-image transform for one image from its own seeded RNG (erasing only when
    /// it cuts the image, not the crops: those are [`erase_crops`]).
    pub fn sample(&self, seed: u64, epoch: u32, index: usize) -> Transform {
        let per_image = Augment {
            mixup: 0.0,
            cutmix: 0.0,
            ..self.on_image()
        };
        if per_image.is_identity() {
            return Transform::IDENTITY;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, epoch, index as u64));
        let mut uniform = |half_width: f64| {
            if half_width > 0.0 {
                rng.random_range(-half_width..=half_width)
            } else {
                0.0
            }
        };
        let mut angle = uniform(self.rotation).to_radians();
        let mut scale = 1.0 + uniform(self.zoom);
        let side = IMAGE_SIDE as f64;
        let mut shift_x = uniform(self.shift) * side;
        let mut shift_y = uniform(self.shift) * side;
        let flip = self.hflip > 0.0 && rng.random_bool(self.hflip);
        let erasing = per_image.erasing;
        let erase = (erasing > 0.0 && rng.random_bool(erasing))
            .then(|| Erase::sample(&mut rng, IMAGE_SIDE));
        // The gates are drawn last, and only when below 1, so a run without them keeps every
        // draw it made before they existed.
        let mut applies = |p: f64| p >= 1.0 || (p > 0.0 && rng.random_bool(p));
        if !applies(self.rotation_p) {
            angle = 0.0;
        }
        if !applies(self.zoom_p) {
            scale = 1.0;
        }
        if !applies(self.shift_p) {
            (shift_x, shift_y) = (0.0, 0.0);
        }
        Transform {
            flip,
            angle: angle as f32,
            scale: scale as f32,
            shift_x: shift_x as f32,
            shift_y: shift_y as f32,
            erase,
        }
    }
}

/// Random erasing of each training crop on its own (`augment.erasing_on = "crop"`): `crops`
/// holds an image's crops of `side`×`side` side by side, and each is erased with probability
/// `p`, from the image's own RNG (seeded by run seed, epoch and image index, apart from the
/// transform's and the crop corners' draws).
pub fn erase_crops(p: f64, seed: u64, epoch: u32, index: usize, side: usize, crops: &mut [f32]) {
    if p <= 0.0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed ^ 0x4552_4153, epoch, index as u64));
    for crop in crops.chunks_mut(side * side) {
        if rng.random_bool(p) {
            Erase::sample(&mut rng, side).fill(crop, side);
        }
    }
}

/// The most crops per training image (`augment.crops`): the ten-crop recipe's count.
pub const MAX_CROPS: usize = 10;

/// The top-left corners of `count` random `side`×`side` windows of a 48×48 image, drawn from
/// the image's own RNG (seeded by run seed, epoch and image index, apart from the transform's
/// draws so that a crop never changes the other augmentations of a run).
pub fn crop_offsets(
    seed: u64,
    epoch: u32,
    index: usize,
    side: usize,
    count: usize,
) -> Vec<(usize, usize)> {
    let max = IMAGE_SIDE - side;
    let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed ^ 0x4352_4F50, epoch, index as u64));
    (0..count)
        .map(|_| (rng.random_range(0..=max), rng.random_range(0..=max)))
        .collect()
}

/// The top-left corner of the centre `side`×`side` window (both coordinates; rounded down when
/// 48 − side is odd).
pub fn centre_offset(side: usize) -> usize {
    (IMAGE_SIDE - side) / 2
}

/// Copies the `side`×`side` window at (`x`, `y`) of a 48×48 image of floats into `out`,
/// mirrored left–right when `flip`.
pub fn crop_window(
    image: &[f32],
    side: usize,
    (x, y): (usize, usize),
    flip: bool,
    out: &mut [f32],
) {
    assert_eq!(image.len(), IMAGE_PIXELS);
    assert!(x + side <= IMAGE_SIDE && y + side <= IMAGE_SIDE);
    for (row, dst) in out[..side * side].chunks_mut(side).enumerate() {
        let src = &image[(y + row) * IMAGE_SIDE + x..][..side];
        if flip {
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// Mixes the three numbers into one well-spread seed (SplitMix64 finaliser).
pub fn item_seed(seed: u64, epoch: u32, index: u64) -> u64 {
    let mut z = seed
        ^ (u64::from(epoch)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A rectangle to erase, and the seed of its noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Erase {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
    pub noise_seed: u64,
}

impl Erase {
    /// A rectangle of a `side`×`side` image.
    fn sample(rng: &mut ChaCha8Rng, side: usize) -> Erase {
        let n = side as f64;
        let area = rng.random_range(0.02..=0.33) * n * n;
        let log_ratio = rng.random_range((0.3f64).ln()..=(1.0f64 / 0.3).ln());
        let ratio = log_ratio.exp();
        let w = ((area * ratio).sqrt().round() as usize).clamp(1, side);
        let h = ((area / ratio).sqrt().round() as usize).clamp(1, side);
        Erase {
            x: rng.random_range(0..=side - w),
            y: rng.random_range(0..=side - h),
            w,
            h,
            noise_seed: rng.random(),
        }
    }

    /// Fills the rectangle of a `side`×`side` image with uniform noise in [0, 1).
    fn fill(&self, image: &mut [f32], side: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.noise_seed);
        for y in self.y..self.y + self.h {
            for x in self.x..self.x + self.w {
                image[y * side + x] = rng.random::<f32>();
            }
        }
    }
}

/// One concrete transform: flip, then rotate/zoom about the centre, then shift; then erase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub flip: bool,
    /// Radians, counter-clockwise.
    pub angle: f32,
    pub scale: f32,
    /// Pixels.
    pub shift_x: f32,
    pub shift_y: f32,
    pub erase: Option<Erase>,
}

const INV255: f32 = 1.0 / 255.0;

/// Bilinear sample at (sx, sy), coordinates clamped to the image.
fn bilinear(src: &[u8; IMAGE_PIXELS], sx: f32, sy: f32) -> f32 {
    let n = IMAGE_SIDE;
    let max = (n - 1) as f32;
    let (sx, sy) = (sx.clamp(0.0, max), sy.clamp(0.0, max));
    let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(n - 1), (y0 + 1).min(n - 1));
    let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
    let at = |x: usize, y: usize| f32::from(src[y * n + x]);
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

impl Transform {
    pub const IDENTITY: Transform = Transform {
        flip: false,
        angle: 0.0,
        scale: 1.0,
        shift_x: 0.0,
        shift_y: 0.0,
        erase: None,
    };

    fn is_pure_flip_or_identity(&self) -> bool {
        self.angle == 0.0 && self.scale == 1.0 && self.shift_x == 0.0 && self.shift_y == 0.0
    }

    /// Writes the transformed image into `out`, scaled to [0, 1].
    pub fn apply(&self, src: &[u8; IMAGE_PIXELS], out: &mut [f32]) {
        assert_eq!(out.len(), IMAGE_PIXELS);
        let n = IMAGE_SIDE;
        if self.is_pure_flip_or_identity() {
            // Exact integer copies: the common case at eval time and for flip-only runs.
            for y in 0..n {
                for x in 0..n {
                    let sx = if self.flip { n - 1 - x } else { x };
                    out[y * n + x] = f32::from(src[y * n + sx]) * INV255;
                }
            }
        } else {
            let c = (n as f32 - 1.0) / 2.0;
            let (sin, cos) = self.angle.sin_cos();
            let inv_scale = 1.0 / self.scale;
            let max = (n - 1) as f32;
            for y in 0..n {
                for x in 0..n {
                    // Inverse map: undo the shift, then the rotation and zoom, around the centre.
                    let u = x as f32 - c - self.shift_x;
                    let v = y as f32 - c - self.shift_y;
                    let mut sx = (cos * u + sin * v) * inv_scale + c;
                    let sy = (-sin * u + cos * v) * inv_scale + c;
                    if self.flip {
                        sx = max - sx;
                    }
                    out[y * n + x] = bilinear(src, sx, sy) * INV255;
                }
            }
        }
        if let Some(e) = self.erase {
            e.fill(out, n);
        }
    }
}

/// How a batch was mixed: image i is `lam`·image i + (1 − lam)·image `partner[i]`, and its
/// loss is the same blend of the losses against both labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    pub partner: Vec<usize>,
    pub lam: f32,
}

/// Mixes a batch in place with mixup or CutMix (one per batch, seeded by `seed`).
/// `pixels` holds `n` images of `side`×`side` floats (48, or the run's crop).
pub fn mix_batch(aug: &Augment, seed: u64, side: usize, pixels: &mut [f32]) -> Option<Mix> {
    let image = side * side;
    let n = pixels.len() / image;
    if !aug.mixes() || n < 2 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let use_cutmix = match (aug.mixup > 0.0, aug.cutmix > 0.0) {
        (true, true) => rng.random_bool(0.5),
        (false, true) => true,
        _ => false,
    };
    let alpha = if use_cutmix { aug.cutmix } else { aug.mixup };
    let lam: f64 = Beta::new(alpha, alpha).expect("alpha > 0").sample(&mut rng);
    let mut partner: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        partner.swap(i, rng.random_range(0..=i));
    }
    let source = pixels.to_vec();
    let lam = if use_cutmix {
        // A box covering (1 − lam) of the image, centred anywhere, clipped to the image.
        let cut = (1.0 - lam).sqrt();
        let (w, h) = ((side as f64 * cut) as usize, (side as f64 * cut) as usize);
        let (cx, cy) = (rng.random_range(0..side), rng.random_range(0..side));
        let (x0, x1) = (cx.saturating_sub(w / 2), (cx + w / 2).min(side));
        let (y0, y1) = (cy.saturating_sub(h / 2), (cy + h / 2).min(side));
        for (i, &j) in partner.iter().enumerate() {
            for y in y0..y1 {
                for x in x0..x1 {
                    pixels[i * image + y * side + x] = source[j * image + y * side + x];
                }
            }
        }
        1.0 - ((x1 - x0) * (y1 - y0)) as f64 / (side * side) as f64
    } else {
        let l = lam as f32;
        for (i, &j) in partner.iter().enumerate() {
            let (dst, src) = (i * image, j * image);
            for k in 0..image {
                pixels[dst + k] = l * source[dst + k] + (1.0 - l) * source[src + k];
            }
        }
        lam
    };
    Some(Mix {
        partner,
        lam: lam as f32,
    })
}

/// An augmentation knob outside its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("augment.{key} = {value} must be {must}")]
pub struct AugmentRangeError {
    /// The knob, without the `augment.` prefix.
    pub key: &'static str,
    pub value: f64,
    pub must: &'static str,
}

/// Test-time augmentation used when evaluating the best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    /// The image (with a `crop`: its centre crop).
    #[default]
    None,
    /// Average the predictions of the image and its mirror (with a `crop`: the centre crop
    /// and its mirror).
    Hflip,
    /// Average over the 4 corner and centre 44×44 crops (resized to 48) and their mirrors;
    /// with a `crop`, the 4 corner and centre crops of that side, not resized, and their
    /// mirrors (torchvision's `TenCrop`).
    TenCrop,
}

/// The views test-time augmentation averages over, for one image, each as `side`×`side`
/// floats in [0, 1], where `side` is `crop` or 48 without one.
pub fn tta_views(tta: Tta, crop: Option<usize>, src: &[u8; IMAGE_PIXELS]) -> Vec<Vec<f32>> {
    let Some(side) = crop else {
        return full_views(tta, src);
    };
    let mut image = vec![0.0; IMAGE_PIXELS];
    Transform::IDENTITY.apply(src, &mut image);
    let (max, centre) = (IMAGE_SIDE - side, centre_offset(side));
    let corners = match tta {
        Tta::None | Tta::Hflip => vec![(centre, centre)],
        Tta::TenCrop => vec![(0, 0), (max, 0), (0, max), (max, max), (centre, centre)],
    };
    let flips: &[bool] = match tta {
        Tta::None => &[false],
        Tta::Hflip | Tta::TenCrop => &[false, true],
    };
    let mut views = Vec::with_capacity(corners.len() * flips.len());
    for corner in corners {
        for &flip in flips {
            let mut out = vec![0.0; side * side];
            crop_window(&image, side, corner, flip, &mut out);
            views.push(out);
        }
    }
    views
}

/// [`tta_views`] of the whole 48×48 image (no `crop`).
fn full_views(tta: Tta, src: &[u8; IMAGE_PIXELS]) -> Vec<Vec<f32>> {
    let view = |t: Transform| {
        let mut out = vec![0.0; IMAGE_PIXELS];
        t.apply(src, &mut out);
        out
    };
    let flipped = Transform {
        flip: true,
        ..Transform::IDENTITY
    };
    match tta {
        Tta::None => vec![view(Transform::IDENTITY)],
        Tta::Hflip => vec![view(Transform::IDENTITY), view(flipped)],
        Tta::TenCrop => {
            // 44×44 crops at the corners and the centre, resized back to 48×48, and mirrors.
            const CROP: usize = 44;
            let step = (CROP - 1) as f32 / (IMAGE_SIDE - 1) as f32;
            let max = (IMAGE_SIDE - CROP) as f32;
            let mut views = Vec::with_capacity(10);
            for (ox, oy) in [
                (0.0, 0.0),
                (max, 0.0),
                (0.0, max),
                (max, max),
                (max / 2.0, max / 2.0),
            ] {
                for flip in [false, true] {
                    let mut out = vec![0.0; IMAGE_PIXELS];
                    for y in 0..IMAGE_SIDE {
                        for x in 0..IMAGE_SIDE {
                            let xx = if flip { IMAGE_SIDE - 1 - x } else { x };
                            out[y * IMAGE_SIDE + x] =
                                bilinear(src, ox + xx as f32 * step, oy + y as f32 * step) * INV255;
                        }
                    }
                    views.push(out);
                }
            }
            views
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> [u8; IMAGE_PIXELS] {
        let mut img = [0u8; IMAGE_PIXELS];
        for (i, p) in img.iter_mut().enumerate() {
            *p = ((i % IMAGE_SIDE) * 5 + (i / IMAGE_SIDE)) as u8;
        }
        img
    }

    fn to_u8(img: &[f32]) -> [u8; IMAGE_PIXELS] {
        let mut out = [0u8; IMAGE_PIXELS];
        for (o, v) in out.iter_mut().zip(img) {
            *o = (v * 255.0).round() as u8;
        }
        out
    }

    #[test]
    fn identity_leaves_the_image_unchanged() {
        let img = gradient();
        let mut out = vec![0.0; IMAGE_PIXELS];
        Transform::IDENTITY.apply(&img, &mut out);
        assert_eq!(to_u8(&out), img);
        // The warp path with rotation 0 / zoom 1 / shift 0 is exact too.
        let tiny = Transform {
            shift_y: 1e-30,
            ..Transform::IDENTITY
        };
        tiny.apply(&img, &mut out);
        assert_eq!(to_u8(&out), img);
    }

    #[test]
    fn hflip_twice_is_identity() {
        let img = gradient();
        let flip = Transform {
            flip: true,
            ..Transform::IDENTITY
        };
        let mut once = vec![0.0; IMAGE_PIXELS];
        flip.apply(&img, &mut once);
        assert_ne!(to_u8(&once), img);
        assert_eq!(to_u8(&once)[0], img[IMAGE_SIDE - 1]);
        let mut twice = vec![0.0; IMAGE_PIXELS];
        flip.apply(&to_u8(&once), &mut twice);
        assert_eq!(to_u8(&twice), img);
    }

    #[test]
    fn zero_knobs_never_change_an_image() {
        let img = gradient();
        for index in 0..20 {
            assert_eq!(Augment::NONE.sample(1, 3, index), Transform::IDENTITY);
        }
        let mut out = vec![0.0; IMAGE_PIXELS];
        Augment::NONE.sample(5, 0, 0).apply(&img, &mut out);
        assert_eq!(to_u8(&out), img);
        let mut batch = vec![0.5; 2 * IMAGE_PIXELS];
        assert_eq!(mix_batch(&Augment::NONE, 1, 48, &mut batch), None);
    }

    #[test]
    fn shift_moves_content() {
        let img = gradient();
        let t = Transform {
            shift_x: 2.0,
            ..Transform::IDENTITY
        };
        let mut out = vec![0.0; IMAGE_PIXELS];
        t.apply(&img, &mut out);
        let out = to_u8(&out);
        assert_eq!(out[10 * IMAGE_SIDE + 12], img[10 * IMAGE_SIDE + 10]);
        // The left edge is filled with the nearest source column.
        assert_eq!(out[10 * IMAGE_SIDE], img[10 * IMAGE_SIDE]);
    }

    #[test]
    fn samples_are_seeded_per_item_and_in_range() {
        let aug = Augment {
            erasing: 0.5,
            ..Augment::default()
        };
        assert_eq!(aug.sample(1, 2, 3), aug.sample(1, 2, 3));
        assert_ne!(aug.sample(1, 2, 3), aug.sample(1, 3, 3));
        assert_ne!(aug.sample(1, 2, 3), aug.sample(2, 2, 3));
        let img = gradient();
        let mut out = vec![0.0; IMAGE_PIXELS];
        let mut erased = 0;
        for i in 0..50 {
            let t = aug.sample(9, 0, i);
            assert!(t.angle.abs() <= 10f32.to_radians() + 1e-6);
            assert!((0.9..=1.1).contains(&t.scale));
            assert!(t.shift_x.abs() <= 4.8 + 1e-4);
            if let Some(e) = t.erase {
                erased += 1;
                assert!(e.x + e.w <= IMAGE_SIDE && e.y + e.h <= IMAGE_SIDE);
            }
            t.apply(&img, &mut out);
            assert!(out.iter().all(|v| (0.0..=1.0).contains(v)), "range kept");
            assert_eq!(out.len(), IMAGE_PIXELS, "shape kept");
        }
        assert!(
            (10..=40).contains(&erased),
            "{erased} of 50 erased at p = 0.5"
        );
    }

    #[test]
    fn mixup_blends_pairs_and_cutmix_pastes_a_box() {
        let aug = Augment {
            mixup: 0.4,
            ..Augment::NONE
        };
        let mut batch: Vec<f32> = (0..3).flat_map(|i| vec![i as f32; IMAGE_PIXELS]).collect();
        let mix = mix_batch(&aug, 7, 48, &mut batch).unwrap();
        assert_eq!(
            mix,
            mix_batch(
                &aug,
                7,
                48,
                &mut (0..3)
                    .flat_map(|i| vec![i as f32; IMAGE_PIXELS])
                    .collect::<Vec<_>>()
            )
            .unwrap()
        );
        for i in 0..3 {
            let expected = mix.lam * i as f32 + (1.0 - mix.lam) * mix.partner[i] as f32;
            assert!((batch[i * IMAGE_PIXELS] - expected).abs() < 1e-5);
        }
        let aug = Augment {
            cutmix: 1.0,
            ..Augment::NONE
        };
        // On full images and on 40×40 crops: the box lies in the image it is pasted into.
        for side in [48, 40] {
            let image = side * side;
            let mut batch: Vec<f32> = (0..4).flat_map(|i| vec![i as f32; image]).collect();
            let mix = mix_batch(&aug, 3, side, &mut batch).unwrap();
            assert_eq!(mix.partner.len(), 4);
            for i in 0..4 {
                let img = &batch[i * image..(i + 1) * image];
                let pasted = img.iter().filter(|&&v| v != i as f32).count() as f32 / image as f32;
                if mix.partner[i] != i {
                    assert!(
                        (pasted - (1.0 - mix.lam)).abs() < 1e-5,
                        "box area matches lam at {side}"
                    );
                }
            }
        }
    }

    #[test]
    fn tta_views_have_the_expected_count_and_shape() {
        let img = gradient();
        assert_eq!(tta_views(Tta::None, None, &img).len(), 1);
        let flips = tta_views(Tta::Hflip, None, &img);
        assert_eq!(to_u8(&flips[0]), img);
        let ten = tta_views(Tta::TenCrop, None, &img);
        assert_eq!(ten.len(), 10);
        assert!(ten.iter().all(|v| v.len() == IMAGE_PIXELS));
        // The top-left crop starts at the image's top-left pixel.
        assert_eq!(to_u8(&ten[0])[0], img[0]);
        // Without a crop the views are exactly those runs were evaluated on before crops
        // existed (a sum pinned by running this on 5465bed, every view and pixel, in order).
        let weighted: f64 = ten
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, &v)| f64::from(v) * (i % 97) as f64)
            .sum();
        assert_eq!(weighted, PINNED_TEN_CROP);
    }

    const PINNED_TEN_CROP: f64 = 597_998.486_414_408_4;

    /// A 48×48 image that changes along both rows and columns.
    fn positions() -> [u8; IMAGE_PIXELS] {
        let mut img = [0u8; IMAGE_PIXELS];
        for (i, p) in img.iter_mut().enumerate() {
            *p = ((i % IMAGE_SIDE) + 5 * (i / IMAGE_SIDE)) as u8;
        }
        img
    }

    /// The pixel at (x, y) of a 48×48 image, as the views hold it.
    fn at(img: &[u8; IMAGE_PIXELS], x: usize, y: usize) -> f32 {
        f32::from(img[y * IMAGE_SIDE + x]) * INV255
    }

    #[test]
    fn crop_views_are_the_centre_the_corners_and_their_mirrors_unresized() {
        let img = positions();
        let side = 40;
        let window = |views: &[Vec<f32>], k: usize, x0: usize, y0: usize, flip: bool| {
            for y in 0..side {
                for x in 0..side {
                    let sx = if flip { x0 + side - 1 - x } else { x0 + x };
                    assert_eq!(
                        views[k][y * side + x],
                        at(&img, sx, y0 + y),
                        "view {k} at ({x}, {y})"
                    );
                }
            }
        };
        let none = tta_views(Tta::None, Some(side), &img);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].len(), side * side);
        window(&none, 0, 4, 4, false);
        let hflip = tta_views(Tta::Hflip, Some(side), &img);
        assert_eq!(hflip.len(), 2);
        window(&hflip, 0, 4, 4, false);
        window(&hflip, 1, 4, 4, true);
        let ten = tta_views(Tta::TenCrop, Some(side), &img);
        assert_eq!(ten.len(), 10);
        for (k, (x0, y0)) in [(0, 0), (8, 0), (0, 8), (8, 8), (4, 4)]
            .into_iter()
            .enumerate()
        {
            window(&ten, 2 * k, x0, y0, false);
            window(&ten, 2 * k + 1, x0, y0, true);
        }
        // An odd margin: the centre rounds down.
        assert_eq!(centre_offset(33), 7);
        window_at(&img, &tta_views(Tta::None, Some(33), &img)[0], 33, 7);
        // A crop of the whole side is the whole image.
        assert_eq!(
            tta_views(Tta::Hflip, Some(48), &img),
            tta_views(Tta::Hflip, None, &img)
        );
    }

    fn window_at(img: &[u8; IMAGE_PIXELS], view: &[f32], side: usize, offset: usize) {
        assert_eq!(view.len(), side * side);
        for y in 0..side {
            for x in 0..side {
                assert_eq!(view[y * side + x], at(img, offset + x, offset + y));
            }
        }
    }

    #[test]
    fn crop_offsets_are_seeded_per_image_and_inside_the_image() {
        assert_eq!(crop_offsets(1, 2, 3, 40, 5), crop_offsets(1, 2, 3, 40, 5));
        assert_ne!(crop_offsets(1, 2, 3, 40, 5), crop_offsets(1, 3, 3, 40, 5));
        assert_ne!(crop_offsets(1, 2, 3, 40, 5), crop_offsets(1, 2, 4, 40, 5));
        assert_ne!(crop_offsets(1, 2, 3, 40, 5), crop_offsets(2, 2, 3, 40, 5));
        // More crops extend the same draws.
        assert_eq!(
            crop_offsets(1, 2, 3, 40, 10)[..5],
            crop_offsets(1, 2, 3, 40, 5)[..]
        );
        let mut seen = std::collections::BTreeSet::new();
        for index in 0..200 {
            for (x, y) in crop_offsets(9, 0, index, 40, 2) {
                assert!(x <= 8 && y <= 8);
                seen.insert((x, y));
            }
        }
        // Every corner of the 9×9 range of offsets turns up.
        for corner in [(0, 0), (8, 0), (0, 8), (8, 8)] {
            assert!(seen.contains(&corner), "{corner:?} never drawn");
        }
        assert_eq!(crop_offsets(9, 0, 0, 48, 3), vec![(0, 0); 3]);
    }

    #[test]
    fn crop_window_copies_and_mirrors() {
        let img = positions();
        let mut full = vec![0.0; IMAGE_PIXELS];
        Transform::IDENTITY.apply(&img, &mut full);
        let mut out = vec![0.0; 16 * 16];
        crop_window(&full, 16, (30, 2), false, &mut out);
        assert_eq!(out[0], at(&img, 30, 2));
        assert_eq!(out[16 * 16 - 1], at(&img, 45, 17));
        crop_window(&full, 16, (30, 2), true, &mut out);
        assert_eq!(out[0], at(&img, 45, 2));
        assert_eq!(out[15], at(&img, 30, 2));
    }

    #[test]
    fn ranges_are_validated() {
        assert!(Augment::default().validate().is_ok());
        let bad = Augment {
            hflip: 1.5,
            ..Augment::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("augment.hflip")
        );
        let bad = Augment {
            mixup: -1.0,
            ..Augment::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("augment.mixup")
        );
        for crops in [0, 11] {
            let bad = Augment {
                crops,
                ..Augment::default()
            };
            let e = bad.validate().unwrap_err();
            assert_eq!(e.key, "crops");
            assert!(
                e.to_string().contains(&format!("augment.crops = {crops}")),
                "{e}"
            );
        }
        let ten = Augment {
            crops: 10,
            ..Augment::default()
        };
        assert!(ten.validate().is_ok());
        // Crops alone are no per-image transform.
        let crops_only = Augment {
            crops: 10,
            ..Augment::NONE
        };
        assert_eq!(crops_only.sample(1, 0, 0), Transform::IDENTITY);
    }

    #[test]
    fn gates_apply_rotation_zoom_and_shift_only_part_of_the_time() {
        let always = Augment {
            rotation: 10.0,
            zoom: 0.2,
            shift: 0.2,
            ..Augment::NONE
        };
        let never = Augment {
            rotation_p: 0.0,
            zoom_p: 0.0,
            shift_p: 0.0,
            ..always
        };
        let half = Augment {
            rotation_p: 0.5,
            shift_p: 0.5,
            ..always
        };
        assert!(half.validate().is_ok());
        let (mut rotated, mut shifted) = (0, 0);
        for i in 0..200 {
            let t = never.sample(3, 1, i);
            assert_eq!(
                (t.angle, t.scale, t.shift_x, t.shift_y),
                (0.0, 1.0, 0.0, 0.0)
            );
            let (a, h) = (always.sample(3, 1, i), half.sample(3, 1, i));
            // A gate only zeroes its own transform: every other draw is the ungated one.
            assert_eq!(h.scale, a.scale);
            assert!(h.angle == a.angle || h.angle == 0.0);
            assert!((h.shift_x, h.shift_y) == (a.shift_x, a.shift_y) || h.shift_x == 0.0);
            rotated += usize::from(h.angle != 0.0);
            shifted += usize::from(h.shift_x != 0.0);
        }
        for (what, n) in [("rotated", rotated), ("shifted", shifted)] {
            assert!((70..=130).contains(&n), "{n} of 200 {what} at p = 0.5");
        }
        for key in ["rotation_p", "zoom_p", "shift_p"] {
            let mut bad = serde_json::to_value(Augment::default()).unwrap();
            bad[key] = serde_json::json!(1.5);
            let bad: Augment = serde_json::from_value(bad).unwrap();
            assert_eq!(bad.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn gates_and_crop_erasing_at_their_defaults_serialise_as_before() {
        let json = serde_json::to_string(&Augment::default()).unwrap();
        assert_eq!(
            json,
            r#"{"hflip":0.5,"rotation":10.0,"zoom":0.1,"shift":0.1}"#
        );
        let set: Augment =
            toml::from_str("rotation_p = 0.5\nerasing = 0.5\nerasing_on = \"crop\"").unwrap();
        assert_eq!(set.erasing_on, EraseOn::Crop);
        let json = serde_json::to_string(&set).unwrap();
        assert!(json.contains(r#""rotation_p":0.5"#), "{json}");
        assert!(json.contains(r#""erasing_on":"crop""#), "{json}");
        let e = toml::from_str::<Augment>("erasing_on = \"crops\"").unwrap_err();
        assert!(
            e.to_string().contains("image") && e.to_string().contains("crop"),
            "{e}"
        );
    }

    #[test]
    fn crop_erasing_cuts_each_crop_on_its_own() {
        let side = 40;
        let plain: Vec<f32> = vec![2.0; 10 * side * side];
        let mut erased = plain.clone();
        erase_crops(1.0, 7, 0, 5, side, &mut erased);
        let rects: Vec<Vec<usize>> = erased
            .chunks(side * side)
            .map(|c| (0..c.len()).filter(|&k| c[k] != 2.0).collect())
            .collect();
        for r in &rects {
            // A rectangle of 2–33 % of the crop (give or take the rounding of its sides).
            let n = r.len();
            assert!((16..=600).contains(&n), "{n} pixels");
            let (xs, ys) = (r.iter().map(|k| k % side), r.iter().map(|k| k / side));
            let w = xs.clone().max().unwrap() - xs.min().unwrap() + 1;
            let h = ys.clone().max().unwrap() - ys.min().unwrap() + 1;
            assert_eq!(w * h, n, "a filled rectangle");
        }
        assert!(
            rects.windows(2).any(|w| w[0] != w[1]),
            "crops get their own rectangles"
        );
        // Seeded per image and epoch; p = 0 leaves the crops alone.
        let mut again = plain.clone();
        erase_crops(1.0, 7, 0, 5, side, &mut again);
        assert_eq!(again, erased);
        erase_crops(1.0, 7, 1, 5, side, &mut again);
        assert_ne!(again, erased);
        let mut untouched = plain.clone();
        erase_crops(0.0, 7, 0, 5, side, &mut untouched);
        assert_eq!(untouched, plain);
        // The per-image transform leaves erasing to the crops.
        let on_crops = Augment {
            erasing: 1.0,
            erasing_on: EraseOn::Crop,
            ..Augment::default()
        };
        assert!((0..20).all(|i| on_crops.sample(1, 0, i).erase.is_none()));
    }
}
