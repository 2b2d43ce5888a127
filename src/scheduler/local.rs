//! The first [`Executor`]: each run in a `fer-lab worker` child process on this machine.
//!
//! Workers run in their own process group (a terminal's Ctrl-C reaches only the scheduler, which
//! decides what to tell them) and die with the scheduler (Linux parent-death signal), so no
//! orphan keeps training unseen. A GPU is pinned with `CUDA_VISIBLE_DEVICES`; a worker's memory
//! is what `nvidia-smi` reports for its pid.

use super::executor::{Ended, Executor, Launch, Launched, MemoryUse};
use super::{Options, Output};
use crate::device::{DeviceSpec, discover};
use crate::store::{RunState, Store, StoreError};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What every worker of a launch is told, beside its run and slot.
pub struct LocalExecutor {
    exe: PathBuf,
    db: PathBuf,
    sweep_id: i64,
    data: PathBuf,
    keep_checkpoints: bool,
    pruning: Option<String>,
    output: Output,
    workers: Vec<Worker>,
}

struct Worker {
    /// One run, or a group's members.
    runs: Vec<String>,
    child: Child,
    log: PathBuf,
}

impl LocalExecutor {
    /// Workers of `sweep_id`, run by this very binary, writing to the database at `db`.
    pub fn new(db: &Path, sweep_id: i64, opts: &Options) -> std::io::Result<LocalExecutor> {
        Ok(LocalExecutor {
            exe: std::env::current_exe()?,
            db: db.to_path_buf(),
            sweep_id,
            data: opts.data.clone(),
            keep_checkpoints: opts.keep_checkpoints,
            pruning: opts
                .pruning
                .map(|p| serde_json::to_string(&p).expect("pruning serialises")),
            output: opts.worker_output.clone(),
            workers: Vec::new(),
        })
    }

    fn command(&self, launch: &Launch<'_>) -> Command {
        let slot = launch.slot;
        let mut cmd = Command::new(&self.exe);
        // A GPU is pinned with CUDA_VISIBLE_DEVICES: inside the worker it is always cuda:0.
        let device = match slot.device {
            DeviceSpec::Cuda(i) => {
                cmd.env("CUDA_VISIBLE_DEVICES", i.to_string());
                "cuda:0".to_string()
            }
            other => other.to_string(),
        };
        cmd.arg("worker")
            .arg("--db")
            .arg(&self.db)
            .args(match launch.group {
                Some(group) => ["--group", group],
                None => ["--run", &launch.runs[0]],
            })
            .args(["--device", &device])
            .arg("--data")
            .arg(&self.data)
            .args(["--sweep-id", &self.sweep_id.to_string()]);
        if self.keep_checkpoints {
            cmd.arg("--keep-checkpoints");
        }
        if let Some(p) = &self.pruning {
            cmd.args(["--pruning", p]);
        }
        let threads = slot.threads.to_string();
        cmd.env("RAYON_NUM_THREADS", &threads)
            .env("OMP_NUM_THREADS", &threads)
            .env("MKL_NUM_THREADS", &threads);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            #[cfg(target_os = "linux")]
            // SAFETY: between fork and exec only async-signal-safe calls are allowed; prctl is one.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(std::io::Error::from)
                });
            }
        }
        cmd
    }

    fn worker(&mut self, run: &str) -> Option<&mut Worker> {
        self.workers
            .iter_mut()
            .find(|w| w.runs.iter().any(|r| r == run))
    }
}

impl Executor for LocalExecutor {
    fn launch(&mut self, launch: Launch<'_>, _store: &Store) -> std::io::Result<Launched> {
        std::fs::create_dir_all(launch.artifact_dir)?;
        let log = launch.artifact_dir.join("worker.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut child = self
            .command(&launch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()?;
        // Forward the worker's progress lines, prefixed with its run's (or group's) id.
        let stdout = child.stdout.take().expect("stdout is piped");
        let prefix = format!("[{}]", launch.group.unwrap_or(&launch.runs[0]));
        let output = self.output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                output(&format!("{prefix}{line}"));
            }
        });
        let pid = child.id();
        self.workers.push(Worker {
            runs: launch.runs.to_vec(),
            child,
            log,
        });
        Ok(Launched { pid: Some(pid) })
    }

    fn poll(&mut self, _store: &mut Store) -> Result<Vec<Ended>, StoreError> {
        let mut ended = Vec::new();
        self.workers
            .retain_mut(|w| match w.child.try_wait().ok().flatten() {
                Some(exit) => {
                    let tail = log_tail(&w.log);
                    ended.extend(w.runs.iter().map(|run| Ended {
                        run: run.clone(),
                        exit: exit.to_string(),
                        log_tail: tail.clone(),
                    }));
                    false
                }
                None => true,
            });
        Ok(ended)
    }

    fn stop_gracefully(&mut self, run: &str) {
        if let Some(w) = self.worker(run) {
            signal(&w.child, nix::sys::signal::Signal::SIGINT);
        }
    }

    fn kill(&mut self, run: &str) {
        if let Some(i) = self
            .workers
            .iter()
            .position(|w| w.runs.iter().any(|r| r == run))
        {
            let mut w = self.workers.remove(i);
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }

    fn memory(&mut self, run: &str, device: DeviceSpec) -> Option<MemoryUse> {
        let DeviceSpec::Cuda(index) = device else {
            return None;
        };
        let pid = self.worker(run)?.child.id();
        let (_, used_mib) = discover::gpu_memory_by_pid()
            .into_iter()
            .find(|(p, _)| *p == pid)?;
        let total_mib = discover::discover()
            .gpus
            .iter()
            .find(|g| g.index == index)
            .and_then(|g| g.memory_total_mib)
            .unwrap_or(0);
        Some(MemoryUse {
            used_mib,
            total_mib,
        })
    }

    fn known_gone(&self, state: &RunState) -> bool {
        // A pid is only meaningful on this machine; the leases are written by workers here too.
        state
            .worker_pid
            .is_some_and(|pid| !crate::process::alive(pid))
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

/// The last lines of a worker's stderr log, for the error a crash records.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // A crashed worker's stderr may hold anything; this text reaches the terminal.
    crate::table::printable(&lines[lines.len().saturating_sub(3)..].join(" | "))
}
