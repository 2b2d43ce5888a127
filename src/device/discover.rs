//! What the machine has: CPU cores always, GPUs when the `tch` feature is built in and
//! `nvidia-smi` sees them, and how much GPU memory each process uses.

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

impl Discovered {
    /// A machine of `cpu_cores` cores and no GPU.
    pub fn without_gpus(cpu_cores: usize) -> Discovered {
        Discovered {
            cpu_cores,
            gpus: Vec::new(),
        }
    }
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

    #[test]
    fn nvidia_smi_output_parses() {
        let gpus = parse_nvidia_smi(
            "0, NVIDIA H100 80GB HBM3, 81559, 1\n1, NVIDIA H100 80GB HBM3, 81559, 500\n",
        );
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].memory_used_mib, Some(500));
    }
}
