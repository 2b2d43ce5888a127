//! Device load for the devices panel: GPU utilisation and memory through NVML (the library the
//! NVIDIA driver ships; absent on machines without one), CPU and RAM through sysinfo.

use std::time::{Duration, Instant};

/// One device's load.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStats {
    /// `cpu` or `cuda:N`, as slots name devices.
    pub name: String,
    /// The GPU's model name, when known.
    pub model: Option<String>,
    /// Busy percentage (GPU utilisation or CPU use over all cores).
    pub util: Option<f64>,
    /// Memory used and total, bytes.
    pub memory: Option<(u64, u64)>,
}

/// Samples device load at most every [`Sampler::EVERY`]; sampling is a few syscalls and one NVML
/// query per GPU, cheap next to a frame but not free at 4 frames a second.
pub struct Sampler {
    system: sysinfo::System,
    nvml: Option<nvml_wrapper::Nvml>,
    last: Option<Instant>,
    stats: Vec<DeviceStats>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub const EVERY: Duration = Duration::from_secs(2);

    pub fn new() -> Sampler {
        Sampler {
            system: sysinfo::System::new(),
            // Fails cleanly (no library, no driver) on machines without an NVIDIA GPU.
            nvml: nvml_wrapper::Nvml::init().ok(),
            last: None,
            stats: Vec::new(),
        }
    }

    /// The latest load of the CPU and every GPU, refreshed when older than [`Self::EVERY`].
    pub fn sample(&mut self) -> &[DeviceStats] {
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return &self.stats;
        }
        self.last = Some(Instant::now());
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let mut stats = vec![DeviceStats {
            name: "cpu".into(),
            model: None,
            util: Some(f64::from(self.system.global_cpu_usage())),
            memory: Some((self.system.used_memory(), self.system.total_memory())),
        }];
        if let Some(nvml) = &self.nvml {
            let count = nvml.device_count().unwrap_or(0);
            for i in 0..count {
                let Ok(device) = nvml.device_by_index(i) else {
                    continue;
                };
                stats.push(DeviceStats {
                    name: format!("cuda:{i}"),
                    model: device.name().ok(),
                    util: device.utilization_rates().ok().map(|u| f64::from(u.gpu)),
                    memory: device.memory_info().ok().map(|m| (m.used, m.total)),
                });
            }
        }
        self.stats = stats;
        &self.stats
    }
}
