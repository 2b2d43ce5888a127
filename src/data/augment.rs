//! Training-time augmentation on 48×48 grayscale images, done on the CPU in the data loader.
//!
//! Rotation, zoom and shift are one affine warp (inverse mapping, bilinear sampling, edges
//! clamped like Keras' `fill_mode="nearest"`), so an image is resampled once, not three times.
//! Every random draw comes from an RNG seeded by (run seed, epoch, image index): a run is
//! reproducible whatever order or thread the loader uses. Never applied to val or test.

use super::{IMAGE_PIXELS, IMAGE_SIDE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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
}

impl Default for Augment {
    /// The seed study's recipe: hflip, ±10°, ±10 % zoom, ±10 % shift.
    fn default() -> Self {
        Augment {
            hflip: 0.5,
            rotation: 10.0,
            zoom: 0.1,
            shift: 0.1,
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
    };

    pub fn is_identity(&self) -> bool {
        *self == Augment::NONE
    }

    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.hflip) {
            return Err(format!(
                "augment.hflip = {} must be a probability in [0, 1]",
                self.hflip
            ));
        }
        if !(0.0..=180.0).contains(&self.rotation) {
            return Err(format!(
                "augment.rotation = {} must be degrees in [0, 180]",
                self.rotation
            ));
        }
        if !(0.0..1.0).contains(&self.zoom) {
            return Err(format!("augment.zoom = {} must be in [0, 1)", self.zoom));
        }
        if !(0.0..=0.5).contains(&self.shift) {
            return Err(format!(
                "augment.shift = {} must be in [0, 0.5]",
                self.shift
            ));
        }
        Ok(())
    }

    /// Draws the transform for one image from its own seeded RNG.
    pub fn sample(&self, seed: u64, epoch: u32, index: usize) -> Transform {
        if self.is_identity() {
            return Transform::IDENTITY;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(item_seed(seed, epoch, index));
        let mut uniform = |half_width: f64| {
            if half_width > 0.0 {
                rng.random_range(-half_width..=half_width)
            } else {
                0.0
            }
        };
        let angle = uniform(self.rotation).to_radians();
        let scale = 1.0 + uniform(self.zoom);
        let side = IMAGE_SIDE as f64;
        let shift_x = uniform(self.shift) * side;
        let shift_y = uniform(self.shift) * side;
        let flip = self.hflip > 0.0 && rng.random_bool(self.hflip);
        Transform {
            flip,
            angle: angle as f32,
            scale: scale as f32,
            shift_x: shift_x as f32,
            shift_y: shift_y as f32,
        }
    }
}

/// Mixes the three numbers into one well-spread seed (SplitMix64 finaliser).
fn item_seed(seed: u64, epoch: u32, index: usize) -> u64 {
    let mut z = seed
        ^ (u64::from(epoch)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One concrete transform: flip, then rotate/zoom about the centre, then shift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub flip: bool,
    /// Radians, counter-clockwise.
    pub angle: f32,
    pub scale: f32,
    /// Pixels.
    pub shift_x: f32,
    pub shift_y: f32,
}

impl Transform {
    pub const IDENTITY: Transform = Transform {
        flip: false,
        angle: 0.0,
        scale: 1.0,
        shift_x: 0.0,
        shift_y: 0.0,
    };

    fn is_pure_flip_or_identity(&self) -> bool {
        self.angle == 0.0 && self.scale == 1.0 && self.shift_x == 0.0 && self.shift_y == 0.0
    }

    /// Writes the transformed image into `out`, scaled to [0, 1].
    pub fn apply(&self, src: &[u8; IMAGE_PIXELS], out: &mut [f32]) {
        assert_eq!(out.len(), IMAGE_PIXELS);
        const INV: f32 = 1.0 / 255.0;
        let n = IMAGE_SIDE;
        if self.is_pure_flip_or_identity() {
            // Exact integer copies: the common case at eval time and for flip-only runs.
            for y in 0..n {
                for x in 0..n {
                    let sx = if self.flip { n - 1 - x } else { x };
                    out[y * n + x] = f32::from(src[y * n + sx]) * INV;
                }
            }
            return;
        }
        let c = (n as f32 - 1.0) / 2.0;
        let (sin, cos) = self.angle.sin_cos();
        let inv_scale = 1.0 / self.scale;
        let max = (n - 1) as f32;
        let at = |x: usize, y: usize| f32::from(src[y * n + x]);
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
                let sx = sx.clamp(0.0, max);
                let sy = sy.clamp(0.0, max);
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(n - 1), (y0 + 1).min(n - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                out[y * n + x] = (top * (1.0 - fy) + bottom * fy) * INV;
            }
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
        // A non-flip transform with zero angle/shift and unit zoom goes through the warp path
        // when forced; both paths must be exact.
        Transform::IDENTITY.apply(&img, &mut out);
        assert_eq!(to_u8(&out), img);
        let tiny = Transform {
            angle: 0.0,
            scale: 1.0,
            shift_x: 0.0,
            shift_y: 1e-30,
            flip: false,
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
            let t = Augment::NONE.sample(1, 3, index);
            assert_eq!(t, Transform::IDENTITY);
        }
        let mut out = vec![0.0; IMAGE_PIXELS];
        Augment::NONE.sample(5, 0, 0).apply(&img, &mut out);
        assert_eq!(to_u8(&out), img);
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
        let aug = Augment::default();
        assert_eq!(aug.sample(1, 2, 3), aug.sample(1, 2, 3));
        assert_ne!(aug.sample(1, 2, 3), aug.sample(1, 3, 3));
        assert_ne!(aug.sample(1, 2, 3), aug.sample(2, 2, 3));
        let img = gradient();
        let mut out = vec![0.0; IMAGE_PIXELS];
        for i in 0..50 {
            let t = aug.sample(9, 0, i);
            assert!(t.angle.abs() <= 10f32.to_radians() + 1e-6);
            assert!((0.9..=1.1).contains(&t.scale));
            assert!(t.shift_x.abs() <= 4.8 + 1e-4);
            t.apply(&img, &mut out);
            assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn ranges_are_validated() {
        assert!(Augment::default().validate().is_ok());
        let bad = Augment {
            hflip: 1.5,
            ..Augment::default()
        };
        assert!(bad.validate().unwrap_err().contains("augment.hflip"));
    }
}
