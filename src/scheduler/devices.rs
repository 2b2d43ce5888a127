//! Devices and slots: what `--devices` names, what is discovered at start, and how many runs
//! each device takes at once.

use crate::device::DeviceSpec;
use serde::{Deserialize, Serialize};
use std::process::Command;

/// A GPU found at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    pub memory_total_mib: Option<u64>,
    pub memory_used_mib: Option<u64>,
}

/// Everything the scheduler can run on: the CPU always, GPUs when the `tch` feature is built in
/// and `nvidia-smi` (or libtorch) sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    pub cpu_cores: usize,
    pub gpus: Vec<Gpu>,
}

/// Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv,noheader,nounits`.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            Some(Gpu {
                index: f.first()?.parse().ok()?,
                name: f.get(1)?.to_string(),
                memory_total_mib: f.get(2).and_then(|v| v.parse().ok()),
                memory_used_mib: f.get(3).and_then(|v| v.parse().ok()),
            })
        })
        .collect()
}

/// Looks at the machine. Without the `tch` feature no GPU is usable, so none is reported.
pub fn discover() -> Discovered {
    let cpu_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpus = if cfg!(feature = "tch") {
        Command::new("nvidia-smi")
            .args([
                "--query-gpu=index,name,memory.total,memory.used",
                "--format=csv,noheader,nounits",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Discovered { cpu_cores, gpus }
}

/// Which devices a sweep uses: `auto` (every GPU, else the CPU) or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeviceChoice {
    Named(String),
    List(Vec<String>),
}

/// A `--devices` that names nothing this machine can run on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevicesError {
    #[error("--devices is empty: use auto, cpu, or a list like cuda:0,cuda:1")]
    Empty,
    #[error("--devices {text}: {why}")]
    Unknown { text: String, why: String },
    #[error("--devices {text}: no GPU cuda:{index} on this machine (found: {found})")]
    NoSuchGpu {
        text: String,
        index: usize,
        found: String,
    },
    #[error("--devices {text}: {part} is named twice")]
    Twice { text: String, part: String },
}

/// Parses `--devices auto | cpu | tch-cpu | cuda:0,cuda:1` against what was discovered.
pub fn choose(text: &str, found: &Discovered) -> Result<Vec<DeviceSpec>, DevicesError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DevicesError::Empty);
    }
    if text == "auto" {
        return Ok(if found.gpus.is_empty() {
            vec![DeviceSpec::auto_cpu()]
        } else {
            found
                .gpus
                .iter()
                .map(|g| DeviceSpec::Cuda(g.index))
                .collect()
        });
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let spec: DeviceSpec = part.parse().map_err(|e| DevicesError::Unknown {
            text: text.into(),
            why: e,
        })?;
        if let DeviceSpec::Cuda(index) = spec
            && !found.gpus.iter().any(|g| g.index == index)
        {
            return Err(DevicesError::NoSuchGpu {
                text: text.into(),
                index,
                found: if found.gpus.is_empty() {
                    "none".to_string()
                } else {
                    found
                        .gpus
                        .iter()
                        .map(|g| format!("cuda:{} {}", g.index, g.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        if out.contains(&spec) {
            return Err(DevicesError::Twice {
                text: text.into(),
                part: part.into(),
            });
        }
        out.push(spec);
    }
    Ok(out)
}

/// One place a run can execute: a device and a slot number on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub device: DeviceSpec,
    pub index: usize,
    /// CPU threads the worker may use (CPU slots split the cores between them).
    pub threads: usize,
}

impl Slot {
    pub fn name(&self) -> String {
        format!("{}#{}", self.device, self.index + 1)
    }
}

/// The slots of `devices` with `per_device` runs each. Unset, a CPU gets 1 and a GPU gets
/// `gpu_cap` slots of which the scheduler opens only as many as a measured run's memory
/// allows (one until the first run is measured). CPU slots split the cores evenly.
pub fn slots(
    devices: &[DeviceSpec],
    per_device: Option<usize>,
    gpu_cap: usize,
    found: &Discovered,
) -> Vec<Slot> {
    let cpu_devices = devices
        .iter()
        .filter(|d| !matches!(d, DeviceSpec::Cuda(_)))
        .count();
    let mut out = Vec::new();
    for &device in devices {
        let n = match (per_device, device) {
            (Some(n), _) => n.max(1),
            (None, DeviceSpec::Cuda(_)) => gpu_cap.max(1),
            (None, _) => 1,
        };
        let threads = match device {
            DeviceSpec::Cuda(_) => (found.cpu_cores / (n * devices.len()).max(1)).max(1),
            _ => (found.cpu_cores / (n * cpu_devices).max(1)).max(1),
        };
        out.extend((0..n).map(|index| Slot {
            device,
            index,
            threads,
        }));
    }
    out
}

/// How many runs of a measured size fit on a GPU: 80 % of its memory over the memory one run
/// used, capped at `cap`, at least 1.
pub fn gpu_capacity(memory_total_mib: u64, per_run_mib: u64, cap: usize) -> usize {
    if per_run_mib == 0 {
        return 1;
    }
    ((memory_total_mib as f64 * 0.8 / (per_run_mib as f64 * 1.1)) as usize).clamp(1, cap)
}

/// GPU memory used by each process, from `nvidia-smi --query-compute-apps=pid,used_memory`.
pub fn gpu_memory_by_pid() -> Vec<(u32, u64)> {
    Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| {
                    let (pid, mem) = l.split_once(',')?;
                    Some((pid.trim().parse().ok()?, mem.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_gpu() -> Discovered {
        Discovered {
            cpu_cores: 2,
            gpus: vec![],
        }
    }

    #[test]
    fn without_a_gpu_auto_is_the_cpu() {
        assert_eq!(
            choose("auto", &no_gpu()).unwrap(),
            vec![DeviceSpec::auto_cpu()]
        );
        let slots = slots(&[DeviceSpec::Flex], Some(2), 8, &no_gpu());
        assert_eq!(slots.len(), 2);
        assert!(
            slots.iter().all(|s| s.threads == 1),
            "2 cores split between 2 slots"
        );
        assert_eq!(slots[1].name(), "cpu#2");
    }

    #[test]
    fn nonsense_devices_are_refused_clearly() {
        let err = choose("gpu9000", &no_gpu()).unwrap_err().to_string();
        assert!(err.contains("gpu9000"), "{err}");
        assert!(choose("", &no_gpu()).is_err());
        let twice = choose("cpu,cpu", &no_gpu()).unwrap_err().to_string();
        assert!(twice.contains("twice"));
        if cfg!(feature = "tch") {
            assert!(
                choose("cuda:3", &no_gpu())
                    .unwrap_err()
                    .to_string()
                    .contains("no GPU cuda:3")
            );
        } else {
            let err = choose("cuda:0", &no_gpu()).unwrap_err().to_string();
            assert!(err.contains("tch"));
        }
    }

    #[test]
    fn nvidia_smi_output_parses_and_capacity_is_capped() {
        let gpus = parse_nvidia_smi(
            "0, NVIDIA H100 80GB HBM3, 81559, 1\n1, NVIDIA H100 80GB HBM3, 81559, 500\n",
        );
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].memory_used_mib, Some(500));
        assert_eq!(gpu_capacity(81559, 1500, 8), 8);
        assert_eq!(gpu_capacity(81559, 30000, 8), 1);
        assert_eq!(gpu_capacity(81559, 12000, 8), 4);
    }
}
