//! The arithmetic a run's layers compute in: float32, or bfloat16 mixed precision.
//!
//! Mixed precision is PyTorch's `torch.autocast(device, dtype=torch.bfloat16)`: inside each
//! libtorch region ([`super::torch_native`]) convolutions and matrix products run in bf16 (the
//! tensor cores of a GPU, AMX on a recent Xeon), while the weights, their gradients, the
//! optimizer's state, batch-norm statistics and the loss stay float32, so no loss scaling is
//! needed. A region's output is cast back to float32, so everything burn computes between
//! regions sees the types it expects. Only libtorch has the kernels: on flex a run in bf16 is
//! refused before it starts ([`Precision::check_device`]).
//!
//! Which precision applies is a property of this thread while a model runs ([`with`]): the
//! training step, validation, the final evaluation and `predict` wrap their forward passes in
//! it, so the layers need no extra argument and a thread that never asks computes in float32.

use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// What a run's layers compute in (`precision = "bf16"` in a sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in float32.
    #[default]
    F32,
    /// bfloat16 mixed precision (libtorch devices only).
    Bf16,
}

impl Precision {
    /// The name a sweep file uses.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// Refuses a precision `device` has no kernels for, in the user's words.
    pub fn check_device(self, device: &burn::prelude::Device) -> Result<(), String> {
        self.check(on_libtorch(device))
    }

    /// [`Precision::check_device`] for a device that is libtorch's or flex.
    pub fn check(self, libtorch: bool) -> Result<(), String> {
        if self.is_f32() || libtorch {
            return Ok(());
        }
        // libtorch's devices are the only ones with bf16 kernels here; the rest is flex.
        Err(format!(
            "precision = \"{}\" needs a libtorch device (`cuda:N` or `tch-cpu`, in a build with \
             `--features tch`); the flex CPU device (`cpu`) computes in float32 only",
            self.name()
        ))
    }
}

#[cfg(feature = "tch")]
fn on_libtorch(device: &burn::prelude::Device) -> bool {
    super::torch_native::libtorch(device).is_some()
}

#[cfg(not(feature = "tch"))]
fn on_libtorch(_: &burn::prelude::Device) -> bool {
    false
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// The precision this thread's layers compute in now.
pub fn current() -> Precision {
    CURRENT.with(Cell::get)
}

/// Runs `f` with this thread's layers in `precision`, restoring the previous one afterwards
/// (also when `f` panics).
pub fn with<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(precision)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_sets_the_threads_precision_and_restores_it() {
        assert_eq!(current(), Precision::F32);
        let inner = with(Precision::Bf16, || {
            let nested = with(Precision::F32, current);
            (current(), nested)
        });
        assert_eq!(inner, (Precision::Bf16, Precision::F32));
        assert_eq!(current(), Precision::F32);
        // Other threads are not affected.
        with(Precision::Bf16, || {
            let other = std::thread::spawn(current).join().unwrap();
            assert_eq!(other, Precision::F32);
        });
        // A panic inside still restores.
        let caught = std::panic::catch_unwind(|| with(Precision::Bf16, || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(current(), Precision::F32);
    }

    #[test]
    fn bf16_is_refused_on_flex_in_the_users_words() {
        let flex = crate::device::DeviceSpec::Flex.device();
        assert!(Precision::F32.check_device(&flex).is_ok());
        let e = Precision::Bf16.check_device(&flex).unwrap_err();
        assert!(
            e.contains("precision = \"bf16\" needs a libtorch device"),
            "{e}"
        );
        let parsed: Precision = serde_json::from_str("\"bf16\"").unwrap();
        assert_eq!(parsed, Precision::Bf16);
        assert!(serde_json::from_str::<Precision>("\"fp16\"").is_err());
    }
}
