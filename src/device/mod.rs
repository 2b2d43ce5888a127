//! Choosing the burn device a run trains on: `cpu` (burn's pure-Rust flex backend, always
//! built in) or, with the `tch` feature, libtorch on the CPU (`tch-cpu`) or a GPU (`cuda:N`).

pub mod choice;
pub mod discover;
pub mod fusion;

use burn::prelude::Device;
use std::fmt;
use std::str::FromStr;

/// A device a user can name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// burn's flex backend on the CPU.
    Flex,
    /// libtorch on the CPU (`tch` feature).
    TchCpu,
    /// libtorch on CUDA GPU `N` (`tch` feature).
    Cuda(usize),
}

impl DeviceSpec {
    /// The fastest device this build can use: a CUDA GPU, then libtorch's CPU, then flex.
    pub fn auto() -> DeviceSpec {
        #[cfg(feature = "tch")]
        {
            if tch_cuda_available() {
                return DeviceSpec::Cuda(0);
            }
            DeviceSpec::TchCpu
        }
        #[cfg(not(feature = "tch"))]
        DeviceSpec::Flex
    }

    /// The fastest CPU device this build has: libtorch's with `tch`, else flex.
    pub fn auto_cpu() -> DeviceSpec {
        if cfg!(feature = "tch") {
            DeviceSpec::TchCpu
        } else {
            DeviceSpec::Flex
        }
    }

    /// The burn device.
    #[allow(deprecated)] // burn 0.22 marks libtorch deprecated; it is still the GPU path here
    pub fn device(self) -> Device {
        match self {
            DeviceSpec::Flex => Device::flex(),
            #[cfg(feature = "tch")]
            DeviceSpec::TchCpu => Device::libtorch(),
            #[cfg(feature = "tch")]
            DeviceSpec::Cuda(i) => Device::libtorch_cuda(i),
            #[cfg(not(feature = "tch"))]
            DeviceSpec::TchCpu | DeviceSpec::Cuda(_) => {
                unreachable!("parsing refuses tch devices without the tch feature")
            }
        }
    }
}

#[cfg(feature = "tch")]
fn tch_cuda_available() -> bool {
    // Creating a tensor on cuda:0 is the cheapest probe burn offers without naming tch types.
    std::panic::catch_unwind(|| {
        let device = DeviceSpec::Cuda(0).device();
        let t = burn::tensor::Tensor::<1>::zeros([1], &device);
        t.into_data();
    })
    .is_ok()
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Flex => f.write_str("cpu"),
            DeviceSpec::TchCpu => f.write_str("tch-cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = match s.trim().to_ascii_lowercase().as_str() {
            "auto" => return Ok(DeviceSpec::auto()),
            "cpu" | "flex" => DeviceSpec::Flex,
            "tch" | "tch-cpu" | "libtorch" => DeviceSpec::TchCpu,
            "cuda" | "gpu" => DeviceSpec::Cuda(0),
            other => match other.strip_prefix("cuda:") {
                Some(index) => DeviceSpec::Cuda(index.parse().map_err(|_| {
                    format!("device `{s}`: `{index}` is not a GPU index (use cuda:0, cuda:1, …)")
                })?),
                None => {
                    return Err(format!(
                        "device `{s}` is not one of auto, cpu, tch-cpu, cuda:N"
                    ));
                }
            },
        };
        if !cfg!(feature = "tch") && spec != DeviceSpec::Flex {
            return Err(format!(
                "device `{s}` needs libtorch: this fer-lab was built without the `tch` feature (cargo build --release --features tch)"
            ));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_clearly() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Flex));
        let err = "tpu:0".parse::<DeviceSpec>().unwrap_err();
        assert!(err.contains("tpu:0"), "{err}");
        let err = "cuda:x".parse::<DeviceSpec>().unwrap_err();
        assert!(err.contains("`x`"), "{err}");
        if !cfg!(feature = "tch") {
            assert!("cuda:0".parse::<DeviceSpec>().unwrap_err().contains("tch"));
            assert_eq!(DeviceSpec::auto(), DeviceSpec::Flex);
        }
    }
}
