//! Slots: how many runs each chosen device takes at once, and how many CPU threads each gets.

use crate::device::DeviceSpec;
use crate::device::discover::Discovered;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_gpu() -> Discovered {
        Discovered::without_gpus(2)
    }

    #[test]
    fn cpu_slots_split_the_cores() {
        let slots = slots(&[DeviceSpec::Flex], Some(2), 8, &no_gpu());
        assert_eq!(slots.len(), 2);
        assert!(
            slots.iter().all(|s| s.threads == 1),
            "2 cores split between 2 slots"
        );
        assert_eq!(slots[1].name(), "cpu#2");
    }

    #[test]
    fn gpu_capacity_is_capped() {
        assert_eq!(gpu_capacity(81559, 1500, 8), 8);
        assert_eq!(gpu_capacity(81559, 30000, 8), 1);
        assert_eq!(gpu_capacity(81559, 12000, 8), 4);
    }
}
