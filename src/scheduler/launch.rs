//! Launch policy: what one `fer-lab sweep` asks for (devices, runs per device, retries,
//! restarts) resolved against the sweep file and this machine into the scheduler's
//! [`Options`]. The command line only collects the flags; a flag beats `[resources]`, which
//! beats the defaults here.

use super::slots::{self, Slot};
use super::{Options, Planned, stdout_output};
use crate::cluster::{ExecutorKind, SlurmOptions};
use crate::device::DeviceSpec;
use crate::device::choice::{self, DeviceChoice, DevicesError};
use crate::device::discover::Discovered;
use crate::device::fusion::Fuse;
use crate::store::{RunStatus, Store, StoreError};
use crate::sweep::Sweep;
use std::path::PathBuf;
use std::time::Duration;

/// Upper bound of runs per GPU when its capacity is measured.
pub const GPU_CAP: usize = 8;
/// Time between two launches on the same device, so two runs never race for its memory.
pub const STAGGER: Duration = Duration::from_millis(500);

/// What the command line asked for; `None` defers to the sweep file, then to the default.
#[derive(Debug, Clone, Default)]
pub struct LaunchRequest {
    /// `--devices`: auto, cpu, tch-cpu or a list like cuda:0,cuda:1.
    pub devices: Option<String>,
    pub per_device: Option<usize>,
    pub max_retries: Option<u32>,
    pub fail_fast: bool,
    pub keep_checkpoints: bool,
    /// `--fuse`.
    pub fuse: Option<Fuse>,
    /// `--executor`.
    pub executor: Option<ExecutorKind>,
    /// `--slurm KEY=VALUE`, over `[resources.slurm]`.
    pub slurm: Vec<String>,
}

/// A launch the scheduler cannot carry out, in the user's words.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Devices(#[from] DevicesError),
    #[error("--per-device 0 runs nothing")]
    NoSlots,
    /// Runs ask for a precision a chosen device has no kernels for.
    #[error("{0}")]
    Precision(String),
    #[error("{0}")]
    Slurm(String),
    #[error("--executor slurm: every task trains on one device; {0} names {1}")]
    SlurmDevices(String, usize),
    #[error("--restart {run}: no run with that id in sweep {sweep} (fer-lab runs --sweep {sweep})")]
    UnknownRun { run: String, sweep: String },
    #[error("removing {}: {source}", .path.display())]
    RemoveArtifacts {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A resolved launch: the devices, their slots and how the scheduler treats its runs.
#[derive(Clone)]
pub struct Launch {
    pub devices: Vec<DeviceSpec>,
    pub options: Options,
}

impl LaunchRequest {
    /// Resolves the request against `sweep` and what `found` on this machine. What a launch
    /// would refuse, a dry run refuses too, so both call this.
    pub fn resolve(&self, sweep: &Sweep, found: &Discovered) -> Result<Launch, LaunchError> {
        let devices_text = match (&self.devices, &sweep.resources.devices) {
            (Some(d), _) => d.clone(),
            (None, Some(DeviceChoice::Named(d))) => d.clone(),
            (None, Some(DeviceChoice::List(l))) => l.join(","),
            (None, None) => "auto".into(),
        };
        let executor = self
            .executor
            .or(sweep.resources.executor)
            .unwrap_or_default();
        let mut slurm = sweep.resources.slurm.clone().unwrap_or_default();
        for assignment in &self.slurm {
            slurm.set(assignment).map_err(LaunchError::Slurm)?;
        }
        // One GPU per task by default, where this build can train on one and no device was
        // named (`--devices cpu` keeps tasks on the CPU; a cluster without GPUs refuses the
        // gres at the sbatch check, in its words).
        if executor == ExecutorKind::Slurm
            && slurm.gres.is_none()
            && cfg!(feature = "tch")
            && devices_text.trim() == "auto"
        {
            slurm.gres = Some("gpu:1".into());
        }
        let per_device = self.per_device.or(sweep.resources.per_device);
        if per_device == Some(0) {
            return Err(LaunchError::NoSlots);
        }
        let (devices, slots) = match executor {
            ExecutorKind::Local => {
                let devices = choice::choose(&devices_text, found)?;
                let slots = slots::slots(&devices, per_device, GPU_CAP, found);
                (devices, slots)
            }
            ExecutorKind::Slurm => slurm_slots(&devices_text, &slurm, sweep.runs.len())?,
        };
        // Refused here, before anything is recorded, rather than as failed runs.
        let mut precisions = Vec::new();
        for run in &sweep.runs {
            if !precisions.contains(&run.config.precision) {
                precisions.push(run.config.precision);
            }
        }
        for device in &devices {
            for precision in &precisions {
                let libtorch = *device != DeviceSpec::Flex;
                precision.check(libtorch).map_err(|why| {
                    LaunchError::Precision(format!(
                        "sweep {}: {why}, and its devices include `{device}`",
                        sweep.name
                    ))
                })?;
            }
        }
        let local = executor == ExecutorKind::Local;
        let options = Options {
            slots,
            max_retries: self
                .max_retries
                .or(sweep.resources.max_retries)
                .unwrap_or(1),
            fail_fast: self.fail_fast,
            keep_checkpoints: self.keep_checkpoints
                || sweep.resources.keep_checkpoints.unwrap_or(false),
            pruning: sweep.pruning,
            data: sweep.data.clone(),
            // A cluster's tasks start where and when Slurm decides: no stagger, no measuring.
            stagger: if local { STAGGER } else { Duration::ZERO },
            gpu_cap: GPU_CAP,
            gpu_auto: local && per_device.is_none(),
            fuse: self.fuse.or(sweep.resources.fuse).unwrap_or_default(),
            executor,
            slurm,
            sweep_name: sweep.name.clone(),
            worker_output: stdout_output(),
        };
        Ok(Launch { devices, options })
    }
}

/// A Slurm launch's slots: one per run of the sweep (Slurm queues them; `parallelism`
/// throttles), each a task with one GPU when `gres` asks for one, else the one CPU device
/// `--devices` names (default: the fastest this build has).
fn slurm_slots(
    devices: &str,
    slurm: &SlurmOptions,
    runs: usize,
) -> Result<(Vec<DeviceSpec>, Vec<Slot>), LaunchError> {
    let device = if slurm.wants_gpu() {
        DeviceSpec::Cuda(0)
    } else {
        match devices.trim() {
            "auto" => DeviceSpec::auto_cpu(),
            text => {
                let named: Vec<&str> = text.split(',').collect();
                if named.len() != 1 {
                    return Err(LaunchError::SlurmDevices(text.into(), named.len()));
                }
                named[0]
                    .parse::<DeviceSpec>()
                    .map_err(|why| DevicesError::Unknown {
                        text: text.into(),
                        why,
                    })?
            }
        }
    };
    let threads = slurm.cpus_per_task.unwrap_or(1) as usize;
    let slots = (0..runs.max(1))
        .map(|index| Slot {
            device,
            index,
            threads,
        })
        .collect();
    Ok((vec![device], slots))
}

impl Launch {
    /// `devices: cpu (1 slot)`, and how runs fuse when any device fuses them.
    pub fn describe(&self) -> String {
        let n = self.options.slots.len();
        if self.options.executor == ExecutorKind::Slurm {
            let at_once = self
                .options
                .slurm
                .parallelism
                .map_or("as many at once as Slurm allows".to_string(), |k| {
                    format!("at most {k} at once")
                });
            let device = self.devices.first().map_or("-".into(), |d| d.to_string());
            return format!(
                "executor: slurm (one array task per run or fused group, {at_once}; {device} in each task)"
            );
        }
        let fused = self
            .devices
            .iter()
            .map(|&d| self.options.fuse.group_size(d))
            .max()
            .unwrap_or(1);
        let fused = if fused > 1 {
            format!("; up to {fused} runs fused per group")
        } else {
            String::new()
        };
        format!(
            "devices: {} ({} slot{}{fused})",
            self.devices
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            n,
            if n == 1 { "" } else { "s" }
        )
    }
}

/// `--restart ID…` resets those runs and removes their artifacts, so they train from scratch;
/// `retry_failed` queues the runs that failed in earlier launches again (they resume from
/// their last checkpoint). Every id is checked before anything is reset.
pub fn restart_and_retry(
    store: &mut Store,
    sweep: &Sweep,
    planned: &[Planned],
    restart: &[String],
    retry_failed: bool,
) -> Result<(), LaunchError> {
    let mut chosen = Vec::new();
    for run in restart {
        let Some(p) = planned.iter().find(|p| &p.id == run) else {
            return Err(LaunchError::UnknownRun {
                run: run.clone(),
                sweep: sweep.name.clone(),
            });
        };
        chosen.push(p);
    }
    for p in chosen {
        store.reset_run(&p.id)?;
        if p.artifact_dir.exists() {
            std::fs::remove_dir_all(&p.artifact_dir).map_err(|source| {
                LaunchError::RemoveArtifacts {
                    path: p.artifact_dir.clone(),
                    source,
                }
            })?;
        }
    }
    if retry_failed {
        for p in planned {
            if store.run_status(&p.id)? == Some(RunStatus::Failed) {
                store.retry_run(&p.id, "--retry-failed")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::discover::Gpu;

    fn sweep(resources: &str) -> Sweep {
        let text = format!("name = \"t\"\ndata = \"d\"\n[resources]\n{resources}\n");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, text).unwrap();
        Sweep::load(&file, &[], None).unwrap()
    }

    fn machine(gpus: usize) -> Discovered {
        Discovered {
            cpu_cores: 16,
            gpus: (0..gpus)
                .map(|index| Gpu {
                    index,
                    name: "H200".into(),
                    memory_total_mib: Some(143_771),
                    memory_used_mib: Some(0),
                })
                .collect(),
        }
    }

    #[test]
    fn a_flag_beats_the_sweep_file_which_beats_the_default() {
        let file = sweep("per_device = 3\nmax_retries = 4\nkeep_checkpoints = true");
        let launch = LaunchRequest::default()
            .resolve(&file, &machine(0))
            .unwrap();
        assert_eq!(launch.options.slots.len(), 3);
        assert_eq!(launch.options.max_retries, 4);
        assert!(launch.options.keep_checkpoints);
        assert!(!launch.options.gpu_auto);
        let flags = LaunchRequest {
            per_device: Some(2),
            max_retries: Some(0),
            ..LaunchRequest::default()
        };
        let launch = flags.resolve(&file, &machine(0)).unwrap();
        assert_eq!(launch.options.slots.len(), 2);
        assert_eq!(launch.options.max_retries, 0);
        let bare = LaunchRequest::default()
            .resolve(&sweep(""), &machine(0))
            .unwrap();
        assert_eq!(bare.options.max_retries, 1);
        assert_eq!(
            bare.describe(),
            format!("devices: {} (1 slot)", DeviceSpec::auto_cpu())
        );
    }

    #[test]
    fn gpus_open_slots_by_measured_memory_unless_per_device_is_set() {
        if !cfg!(feature = "tch") {
            return; // without libtorch no GPU is usable, whatever nvidia-smi says
        }
        let launch = LaunchRequest::default()
            .resolve(&sweep(""), &machine(2))
            .unwrap();
        assert_eq!(
            launch.devices,
            vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]
        );
        assert!(launch.options.gpu_auto);
        assert_eq!(launch.options.slots.len(), 2 * GPU_CAP);
    }

    #[test]
    fn fuse_comes_from_the_flag_then_the_file_then_auto() {
        let file = sweep("fuse = 4");
        let launch = LaunchRequest::default()
            .resolve(&file, &machine(0))
            .unwrap();
        assert_eq!(launch.options.fuse, Fuse::AtMost(4));
        assert!(
            launch
                .describe()
                .ends_with("; up to 4 runs fused per group)")
        );
        let flag = LaunchRequest {
            fuse: Some(Fuse::Off),
            ..LaunchRequest::default()
        };
        assert_eq!(
            flag.resolve(&file, &machine(0)).unwrap().options.fuse,
            Fuse::Off
        );
        let bare = LaunchRequest::default()
            .resolve(&sweep(""), &machine(0))
            .unwrap();
        assert_eq!(bare.options.fuse, Fuse::Auto);
    }

    #[test]
    fn slurm_tasks_take_one_gpu_each_where_the_build_trains_on_gpus() {
        let file = sweep("executor = \"slurm\"\n[resources.slurm]\nparallelism = 4");
        let auto = LaunchRequest::default()
            .resolve(&file, &machine(0))
            .unwrap();
        assert_eq!(auto.options.executor, ExecutorKind::Slurm);
        assert_eq!(auto.options.slurm.parallelism, Some(4));
        assert_eq!(
            auto.options.slurm.gres.as_deref(),
            cfg!(feature = "tch").then_some("gpu:1")
        );
        assert!(!auto.options.gpu_auto);
        assert_eq!(auto.options.stagger, Duration::ZERO);
        let cpu = LaunchRequest {
            devices: Some("cpu".into()),
            slurm: vec!["partition=short".into()],
            ..LaunchRequest::default()
        }
        .resolve(&file, &machine(0))
        .unwrap();
        assert_eq!(cpu.options.slurm.gres, None);
        assert_eq!(cpu.options.slurm.partition.as_deref(), Some("short"));
        assert_eq!(cpu.devices, vec![DeviceSpec::Flex]);
        assert!(
            cpu.describe().starts_with("executor: slurm"),
            "{}",
            cpu.describe()
        );
        let bad = LaunchRequest {
            slurm: vec!["queue=x".into()],
            ..LaunchRequest::default()
        };
        assert!(
            bad.resolve(&file, &machine(0))
                .err()
                .unwrap()
                .to_string()
                .contains("no such option")
        );
    }

    #[test]
    fn nonsense_is_refused_in_the_users_words() {
        let zero = LaunchRequest {
            per_device: Some(0),
            ..LaunchRequest::default()
        };
        let err = zero.resolve(&sweep(""), &machine(0)).err().unwrap();
        assert_eq!(err.to_string(), "--per-device 0 runs nothing");
        let bad = LaunchRequest {
            devices: Some("gpu9000".into()),
            ..LaunchRequest::default()
        };
        let err = bad.resolve(&sweep(""), &machine(0)).err().unwrap();
        assert!(err.to_string().contains("gpu9000"), "{err}");
    }
}
