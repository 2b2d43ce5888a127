//! The Slurm [`Executor`]: workers as the tasks of job arrays on a cluster.
//!
//! Everything a task needs is on the filesystem the nodes share: this binary, the data cache,
//! the results folder and a journal folder ([`crate::store::journal`]). A worker on a node never
//! opens the database. It reads its task file and appends its epochs, heartbeats and outcome to
//! its run's journal. This process, on the submit host, merges the journals into SQLite at
//! every poll. The launches of one policy pass become one job array (split at the cluster's
//! `MaxArraySize`), throttled by `parallelism` (`--array=…%K`).
//!
//! Slurm is watched with `squeue` and `scontrol`, since clusters often run no accounting
//! daemon and so have no `sacct`. Jobs are cancelled with `scancel`. A task near its time
//! limit gets USR1 (`--signal=B:USR1@…`) and is requeued (`--requeue`); its next start resumes
//! from the checkpoint. A relaunch of the sweep finds its tasks still in the queue through
//! `runs.batch_job` and `squeue`, keeps merging their journals, and submits only what is
//! missing.

use super::executor::{Ended, Executor, Launch, Launched, MemoryUse};
use super::{Options, Output};
use crate::cluster::SlurmOptions;
use crate::device::DeviceSpec;
use crate::store::journal::Layout;
use crate::store::{RunState, RunStatus, Store, StoreError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Seconds before a time limit at which a task is told to checkpoint, unless set.
pub const SIGNAL_SECS: u32 = 120;
/// How often `squeue` is asked, at most: slurmctld serves a whole cluster.
const SQUEUE_EVERY: Duration = Duration::from_secs(1);
/// How often the journals are merged, at most, unless a task ended (`fer-lab bench journal`
/// measures a merge: docs/scaling.md).
const MERGE_EVERY: Duration = Duration::from_secs(1);

/// Slurm refused something, in its words.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "{0} not found: is this a Slurm submit host? (fer-lab sweep --executor local runs here)"
    )]
    Missing(&'static str),
    #[error("Slurm refuses the sweep's jobs: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A worker waiting for the next submission.
struct Pending {
    /// `run <id>` or `group <id>`: the task file's line.
    line: String,
    runs: Vec<String>,
}

/// A submitted array task.
struct Task {
    /// `<array job>_<index>`, as squeue and the log file name it.
    job: String,
    runs: Vec<String>,
    /// Cancelled before it started: its runs are put back as interrupted.
    cancelled_pending: bool,
}

/// What squeue said last, and when.
#[derive(Default)]
struct Queue {
    /// Live array tasks of this sweep's job name and their state (`PENDING`, `RUNNING`, …).
    live: HashMap<String, String>,
    asked: Option<Instant>,
}

pub struct SlurmExecutor {
    exe: PathBuf,
    sweep_id: i64,
    job_name: String,
    data: PathBuf,
    device: String,
    keep_checkpoints: bool,
    pruning: Option<String>,
    options: SlurmOptions,
    journal: PathBuf,
    max_array: usize,
    output: Output,
    pending: Vec<Pending>,
    tasks: Vec<Task>,
    queue: RefCell<Queue>,
    merged_at: Option<Instant>,
    /// Journal problems already said (each once).
    unreadable: std::collections::HashSet<String>,
}

fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    std::path::absolute(path)
}

/// `s` as one word for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn run(cmd: &mut Command, name: &'static str) -> Result<std::process::Output, SlurmError> {
    cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SlurmError::Missing(name),
        _ => SlurmError::Io(e),
    })
}

/// The journal folder of a sweep whose database is `db`, unless `[resources.slurm] journal`.
pub fn journal_dir(db: &Path, options: &SlurmOptions) -> PathBuf {
    options.journal.clone().unwrap_or_else(|| {
        db.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("journal")
    })
}

/// Asks Slurm whether it would take the sweep's jobs at all (`sbatch --test-only` with the
/// cluster's options): a bad partition or option is refused here, in Slurm's words, before
/// anything is recorded or claimed.
pub fn check(options: &SlurmOptions) -> Result<(), SlurmError> {
    let test = run(
        Command::new("sbatch")
            .arg("--test-only")
            .args(options_args(options))
            .args(["--wrap", "true"]),
        "sbatch",
    )?;
    if test.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&test.stderr);
    let why: Vec<&str> = said
        .lines()
        .map(|l| l.trim_start_matches("sbatch: error: ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    Err(SlurmError::Refused(why.join("; ")))
}

/// The cluster's options as sbatch arguments (also the script's `#SBATCH` lines).
fn options_args(o: &SlurmOptions) -> Vec<String> {
    let mut args = Vec::new();
    let mut add = |flag: &str, value: Option<String>| {
        if let Some(v) = value {
            args.push(format!("--{flag}={v}"));
        }
    };
    add("partition", o.partition.clone());
    add("gres", o.gres.clone());
    add("cpus-per-task", o.cpus_per_task.map(|c| c.to_string()));
    add("mem", o.mem.clone());
    add("time", o.time.clone());
    args.extend(o.extra.iter().cloned());
    args
}

impl SlurmExecutor {
    /// The executor of sweep `sweep_id` (`name`) whose database is `db`; [`check`] first.
    pub fn new(db: &Path, sweep_id: i64, opts: &Options) -> std::io::Result<SlurmExecutor> {
        let device = match opts.slots.first().map(|s| s.device) {
            Some(DeviceSpec::Cuda(_)) => "cuda:0".to_string(),
            Some(other) => other.to_string(),
            None => DeviceSpec::auto_cpu().to_string(),
        };
        let journal = absolute(&journal_dir(db, &opts.slurm))?;
        // The same sweep name in two databases must not read each other's queue.
        let place = crate::train::group::group_id(&[&journal.display().to_string()]);
        Ok(SlurmExecutor {
            exe: std::env::current_exe()?,
            sweep_id,
            job_name: format!("fer-lab-{}-{}", opts.sweep_name, &place[1..7]),
            data: absolute(&opts.data)?,
            device,
            keep_checkpoints: opts.keep_checkpoints,
            pruning: opts
                .pruning
                .map(|p| serde_json::to_string(&p).expect("pruning serialises")),
            options: opts.slurm.clone(),
            journal,
            max_array: max_array_size().unwrap_or(1001),
            output: opts.worker_output.clone(),
            pending: Vec::new(),
            tasks: Vec::new(),
            queue: RefCell::new(Queue::default()),
            merged_at: None,
            unreadable: Default::default(),
        })
    }

    /// The batch script of an array whose task lines are in `tasks`: what `--dry-run` prints.
    pub fn script(&self, tasks: &Path) -> String {
        let layout = Layout::new(&self.journal);
        let mut s = String::from("#!/bin/bash\n");
        let logs = self.journal.join("logs");
        let mut lines = vec![
            format!("--job-name={}", self.job_name),
            format!("--output={}/%A_%a.out", logs.display()),
            "--open-mode=append".into(),
            "--requeue".into(),
            format!(
                "--signal=B:USR1@{}",
                self.options.signal_secs.unwrap_or(SIGNAL_SECS)
            ),
        ];
        lines.extend(options_args(&self.options));
        for line in lines {
            s.push_str(&format!("#SBATCH {line}\n"));
        }
        let mut worker = vec![
            quote(&self.exe.display().to_string()),
            "worker".into(),
            "--journal".into(),
            quote(&layout.dir.display().to_string()),
            "--\"$kind\"".into(),
            "\"$name\"".into(),
            "--device".into(),
            self.device.clone(),
            "--data".into(),
            quote(&self.data.display().to_string()),
            "--sweep-id".into(),
            self.sweep_id.to_string(),
        ];
        if self.keep_checkpoints {
            worker.push("--keep-checkpoints".into());
        }
        if let Some(p) = &self.pruning {
            worker.extend(["--pruning".into(), quote(p)]);
        }
        s.push_str(&format!(
            "# One line per task, `run <id>` or `group <id>`: this task's is line SLURM_ARRAY_TASK_ID + 1.\n\
             read -r kind name < <(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {tasks})\n\
             threads=${{SLURM_CPUS_PER_TASK:-1}}\n\
             export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads\n\
             # exec: the worker is the batch shell, so Slurm's signals (USR1 before the time limit, scancel's) reach it.\n\
             exec {}\n",
            worker.join(" "),
            tasks = quote(&tasks.display().to_string()),
        ));
        s
    }

    /// Submits every pending worker: one array per `MaxArraySize` of them. Workers Slurm
    /// refused come back as ended (their runs were claimed; the policy decides).
    fn submit(&mut self, store: &Store) -> Vec<Ended> {
        let mut refused = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(self.max_array.max(1)) {
            match self.submit_array(chunk) {
                Ok(job) => {
                    for (i, p) in chunk.iter().enumerate() {
                        let task = format!("{job}_{i}");
                        for run in &p.runs {
                            // Only a reattaching relaunch reads it; failing to write it loses nothing now.
                            let _ = store.set_batch_job(run, &task);
                        }
                        self.tasks.push(Task {
                            job: task,
                            runs: p.runs.clone(),
                            cancelled_pending: false,
                        });
                    }
                }
                Err(why) => {
                    (self.output)(&format!("sbatch refused {} tasks: {why}", chunk.len()));
                    refused.extend(chunk.iter().flat_map(|p| {
                        p.runs.iter().map(|run| Ended {
                            run: run.clone(),
                            exit: "not submitted".into(),
                            log_tail: format!("sbatch: {why}"),
                        })
                    }));
                }
            }
        }
        // Queued tasks appear in squeue at once: ask it afresh.
        self.queue.borrow_mut().asked = None;
        refused
    }

    fn submit_array(&self, chunk: &[Pending]) -> Result<String, String> {
        let arrays = self.journal.join("arrays");
        std::fs::create_dir_all(&arrays).map_err(|e| format!("{}: {e}", arrays.display()))?;
        std::fs::create_dir_all(self.journal.join("logs")).map_err(|e| e.to_string())?;
        let stamp = format!("{}-{}", crate::store::now_unix() as u64, std::process::id());
        let mut n = 0;
        let tasks = loop {
            let path = arrays.join(format!("{stamp}-{n}.tasks"));
            if !path.exists() {
                break path;
            }
            n += 1;
        };
        let lines: String = chunk.iter().map(|p| format!("{}\n", p.line)).collect();
        std::fs::write(&tasks, lines).map_err(|e| format!("{}: {e}", tasks.display()))?;
        let script = tasks.with_extension("sh");
        std::fs::write(&script, self.script(&tasks))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let mut array = format!("--array=0-{}", chunk.len() - 1);
        if let Some(k) = self.options.parallelism {
            array.push_str(&format!("%{k}"));
        }
        let out = run(
            Command::new("sbatch")
                .args(["--parsable", &array])
                .arg(&script),
            "sbatch",
        )
        .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let said = String::from_utf8_lossy(&out.stdout);
        // `--parsable` prints `jobid` or `jobid;cluster`.
        Ok(said
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// The live tasks of this sweep's jobs, asked of squeue at most every [`SQUEUE_EVERY`]
    /// (`force`: now). None when squeue could not answer: then nothing counts as ended.
    fn live(&self, force: bool) -> Option<HashMap<String, String>> {
        let mut queue = self.queue.borrow_mut();
        let fresh = queue
            .asked
            .is_some_and(|t| !force && t.elapsed() < SQUEUE_EVERY);
        if !fresh {
            let out = Command::new("squeue")
                .args(["-h", "-r", "-o", "%i %T", "--name", &self.job_name])
                .output()
                .ok()
                .filter(|o| o.status.success())?;
            queue.live = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let (job, state) = l.trim().split_once(' ')?;
                    Some((job.to_string(), state.to_string()))
                })
                .collect();
            queue.asked = Some(Instant::now());
        }
        Some(queue.live.clone())
    }

    fn task_of(&self, run: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.runs.iter().any(|r| r == run))
    }

    /// How an ended task ended, as far as slurmctld still remembers (`MinJobAge`), and the
    /// end of its log.
    fn ending(&self, job: &str) -> (String, String) {
        let state = Command::new("scontrol")
            .args(["show", "job", "-o", job])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let field = |name: &str| {
            state
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(name).map(String::from))
        };
        let exit = match (field("JobState="), field("ExitCode=")) {
            (Some(s), Some(c)) => format!("slurm job {job} {s} (exit code {c})"),
            _ => format!("slurm job {job} left the queue"),
        };
        let log = self.journal.join("logs").join(format!("{job}.out"));
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = crate::table::printable(&lines[lines.len().saturating_sub(3)..].join(" | "));
        (exit, tail)
    }

    fn scancel(&self, args: &[&str]) {
        let _ = Command::new("scancel").args(args).output();
    }
}

/// `MaxArraySize` of the cluster (`scontrol show config`): an array's indices stay below it.
fn max_array_size() -> Option<usize> {
    let out = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "MaxArraySize")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

impl Executor for SlurmExecutor {
    fn attach(&mut self, store: &mut Store) -> Result<(), StoreError> {
        let running = store.running_runs(self.sweep_id)?;
        store.merge_journals(&self.journal, self.sweep_id, &running)?;
        Ok(())
    }

    fn launch(&mut self, launch: Launch<'_>, store: &Store) -> std::io::Result<Launched> {
        let (kind, name) = match launch.group {
            Some(group) => ("group", group.to_string()),
            None => ("run", launch.runs[0].clone()),
        };
        // A group's task file holds every member, those that ended too: their slices stay.
        let members: Vec<String> = match launch.group {
            Some(group) => store
                .group_members(group)
                .map_err(std::io::Error::other)?
                .into_iter()
                .map(|m| m.id)
                .collect(),
            None => launch.runs.to_vec(),
        };
        store
            .write_task(&self.journal, &name, &members)
            .map_err(std::io::Error::other)?;
        std::fs::create_dir_all(launch.artifact_dir)?;
        self.pending.push(Pending {
            line: format!("{kind} {name}"),
            runs: launch.runs.to_vec(),
        });
        Ok(Launched::default())
    }

    fn poll(&mut self, store: &mut Store) -> Result<Vec<Ended>, StoreError> {
        let mut ended = if self.pending.is_empty() {
            Vec::new()
        } else {
            self.submit(store)
        };
        let live = self.live(false);
        let any_ended = live
            .as_ref()
            .is_some_and(|live| self.tasks.iter().any(|t| !live.contains_key(&t.job)));
        if any_ended || self.merged_at.is_none_or(|t| t.elapsed() >= MERGE_EVERY) {
            let mut runs = store.running_runs(self.sweep_id)?;
            runs.extend(self.tasks.iter().flat_map(|t| t.runs.iter().cloned()));
            runs.sort();
            runs.dedup();
            // After squeue: a task it no longer lists wrote its last line before it ended.
            let merged = store.merge_journals(&self.journal, self.sweep_id, &runs)?;
            for (run, why) in merged.unreadable {
                if self.unreadable.insert(format!("{run}: {why}")) {
                    (self.output)(&format!("[{run}] its journal cannot be merged: {why}"));
                }
            }
            self.merged_at = Some(Instant::now());
        }
        let Some(live) = live else {
            return Ok(ended);
        };
        let mut i = 0;
        while i < self.tasks.len() {
            if live.contains_key(&self.tasks[i].job) {
                i += 1;
                continue;
            }
            let task = self.tasks.remove(i);
            let (exit, log_tail) = self.ending(&task.job);
            for run in task.runs {
                if task.cancelled_pending {
                    let done = store.run_state(&run)?.map(|s| s.epochs_done);
                    if store.run_status(&run)? == Some(RunStatus::Running) {
                        store.end_run(&run, RunStatus::Interrupted, None, None, done)?;
                    }
                }
                ended.push(Ended {
                    run,
                    exit: exit.clone(),
                    log_tail: log_tail.clone(),
                });
            }
        }
        Ok(ended)
    }

    fn stop_gracefully(&mut self, run: &str) {
        let Some(job) = self.task_of(run).map(|t| t.job.clone()) else {
            // Not submitted yet: it never will be.
            self.pending.retain(|p| !p.runs.iter().any(|r| r == run));
            return;
        };
        let started = self
            .live(false)
            .and_then(|live| live.get(&job).cloned())
            .is_some_and(|state| state != "PENDING");
        if started {
            self.scancel(&["--batch", "--signal=INT", &job]);
        } else {
            self.scancel(&[&job]);
            if let Some(t) = self.tasks.iter_mut().find(|t| t.job == job) {
                t.cancelled_pending = true;
            }
        }
    }

    fn kill(&mut self, run: &str) {
        self.pending.retain(|p| !p.runs.iter().any(|r| r == run));
        if let Some(i) = self
            .tasks
            .iter()
            .position(|t| t.runs.iter().any(|r| r == run))
        {
            let task = self.tasks.remove(i);
            self.scancel(&[&task.job]);
        }
    }

    fn memory(&mut self, _run: &str, _device: DeviceSpec) -> Option<MemoryUse> {
        None
    }

    fn known_gone(&self, state: &RunState) -> bool {
        match (&state.batch_job, self.live(false)) {
            (Some(job), Some(live)) => !live.contains_key(job),
            _ => false,
        }
    }

    fn known_alive(&self, state: &RunState) -> bool {
        match (&state.batch_job, self.live(false)) {
            (Some(job), Some(live)) => live.contains_key(job),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
