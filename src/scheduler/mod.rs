//! The scheduler: plan a sweep's runs, record them, and train what is not done yet on every
//! slot of every device, each run in its own worker process (`fer-lab worker`).
//!
//! All state lives in SQLite, so the scheduler can die at any point: runs are claimed with a
//! lease that the worker renews; a run whose lease expired (or whose worker is gone) is resumed
//! from its last checkpoint by the next launch.
//!
//! Two halves: the policy loop ([`policy`]: what runs next, where, and what a failure means)
//! and an [`Executor`] that starts, watches and stops workers ([`local`]: child processes on
//! this machine; [`slurm`]: job arrays on a cluster). The policy only ever talks to the executor and the store.
//!
//! # Adding an executor (another batch queue, a remote machine)
//!
//! 1. A file beside `local.rs` and `slurm.rs` with a type that implements [`Executor`]:
//!    `launch` starts `fer-lab worker (--db … | --journal …) (--run … | --group …) --device …
//!    --data … --sweep-id …` (see `LocalExecutor::command` and `SlurmExecutor::script` for the
//!    flags and environment) wherever it runs, or queues it for the next `poll`; `poll`
//!    reports the runs whose worker ended; `stop_gracefully` delivers SIGINT (the worker
//!    finishes its epoch); `kill` ends one now; `memory` says what it can about GPU memory (or
//!    `None`); `known_gone` / `known_alive` may tell a dead or a waiting worker before its
//!    lease says so (or always `false`).
//! 2. The worker records through a [`crate::store::Recorder`]: the database itself when it
//!    runs on this machine (`--db`), or a journal on a shared filesystem (`--journal`), which
//!    the executor merges in `attach` and `poll` ([`crate::store::journal`]). Either way it
//!    renews its runs' leases every [`crate::worker::HEARTBEAT`]; the lease is what keeps
//!    another launch from taking a run, wherever the worker is.
//! 3. A variant of [`crate::cluster::ExecutorKind`] and its arm in [`run_sweep`]. Nothing in
//!    the policy changes: retries, resume, pruning and Ctrl-C levels are the same for every
//!    executor.
//!
//! Runs planned while the sweep runs (an adaptive search) come from a [`RunSource`]; the plan
//! fixed at launch is [`FixedPlan`].

pub mod executor;
pub mod grouping;
pub mod launch;
pub mod local;
pub mod policy;
pub mod simulated;
pub mod slots;
pub mod slurm;

use crate::cluster::ExecutorKind;
use crate::data::FerData;
use crate::pruning::Pruning;
use crate::store::{RunRecord, RunStatus, Store, StoreError, SweepRecord};
use crate::sweep::{PlannedRun, Sweep, run_id};
use crate::table::Rows;
pub use executor::Executor;
use local::LocalExecutor;
pub use policy::{FixedPlan, RunSource};
use serde_json::Value;
use slots::Slot;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A planned run with its identity and where its files go.
#[derive(Debug, Clone)]
pub struct Planned {
    pub id: String,
    pub run: PlannedRun,
    pub artifact_dir: PathBuf,
    /// The swept values of this run, `key=value …`, for progress lines.
    pub label: String,
}

/// Gives every run of `sweep` its id (which needs the data fingerprint) and folder.
pub fn plan(sweep: &Sweep, fingerprint: &str, results_dir: &Path) -> Vec<Planned> {
    sweep
        .runs
        .iter()
        .map(|run| {
            let id = run_id(&run.config, fingerprint, run.seed);
            let flat: std::collections::HashMap<String, Value> =
                run.config.flatten().into_iter().collect();
            let label = sweep
                .axes
                .iter()
                .map(|k| {
                    format!(
                        "{k}={}",
                        flat.get(k).map_or(String::new(), crate::table::cell_text)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            Planned {
                artifact_dir: results_dir.join(&sweep.name).join(&id),
                id,
                run: run.clone(),
                label,
            }
        })
        .collect()
}

/// The table `sweep --dry-run` prints: one row per run, swept values as columns.
pub fn plan_table(
    sweep: &Sweep,
    planned: &[Planned],
    status: impl Fn(&str) -> Option<RunStatus>,
) -> Rows {
    let mut headers = vec!["#".to_string(), "run".to_string()];
    headers.extend(sweep.axes.iter().cloned());
    headers.extend(["seed", "model", "epochs", "status"].map(String::from));
    let mut rows = Rows::new(headers);
    for (i, p) in planned.iter().enumerate() {
        let mut row = vec![Value::from(i + 1), Value::from(p.id.clone())];
        let flat: std::collections::HashMap<String, Value> =
            p.run.config.flatten().into_iter().collect();
        row.extend(
            sweep
                .axes
                .iter()
                .map(|k| flat.get(k).cloned().unwrap_or(Value::Null)),
        );
        row.push(Value::from(p.run.seed));
        row.push(Value::from(p.run.config.model.kind()));
        row.push(Value::from(p.run.config.epochs));
        row.push(Value::from(status(&p.id).map_or("new", RunStatus::as_str)));
        rows.push(row);
    }
    rows
}

/// Writes the sweep and all its runs to the store in one transaction.
pub fn register(
    store: &mut Store,
    sweep: &Sweep,
    data: &FerData,
    planned: &[Planned],
) -> Result<i64, StoreError> {
    let record = SweepRecord {
        name: sweep.name.clone(),
        file: sweep.file.display().to_string(),
        spec: sweep.spec.clone(),
        data_path: sweep.data.display().to_string(),
        data_fingerprint: data.manifest.fingerprint.clone(),
        axes: sweep.axes.clone(),
    };
    let runs: Vec<RunRecord> = planned
        .iter()
        .map(|p| RunRecord {
            id: p.id.clone(),
            seed: p.run.seed,
            config_json: serde_json::to_string(&p.run.config).expect("config serialises"),
            model: p.run.config.model.kind().to_string(),
            epochs: p.run.config.epochs,
            params: p.run.config.flatten(),
            artifact_dir: p.artifact_dir.display().to_string(),
        })
        .collect();
    store.register_sweep(&record, &runs)
}

/// How a sweep went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepSummary {
    /// Runs that finished (`done`) in this launch.
    pub trained: usize,
    /// Runs that were done before this launch.
    pub skipped: usize,
    pub pruned: usize,
    pub diverged: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    /// Runs left `interrupted` or `queued` by a stop: the next launch continues them.
    pub interrupted: usize,
}

/// How a launch runs its runs.
#[derive(Clone)]
pub struct Options {
    pub slots: Vec<Slot>,
    /// Retries after a failure that counts (see `policy::Sweeper::on_failure`).
    pub max_retries: u32,
    pub fail_fast: bool,
    /// Keep a finished run's epoch checkpoints (see [`crate::worker::WorkerArgs`]).
    pub keep_checkpoints: bool,
    pub pruning: Option<Pruning>,
    /// The data the workers load (the sweep's, or `--data`).
    pub data: PathBuf,
    /// Seconds between two launches on the same device (so two runs never race for it).
    pub stagger: Duration,
    /// Upper bound of runs per GPU when its capacity is measured.
    pub gpu_cap: usize,
    /// Whether GPUs open slots by measured memory (no explicit `per_device`).
    pub gpu_auto: bool,
    /// How many runs may train as one fused model, by device.
    pub fuse: crate::device::fusion::Fuse,
    /// Where workers run, and the cluster's options when that is Slurm.
    pub executor: crate::cluster::ExecutorKind,
    pub slurm: crate::cluster::SlurmOptions,
    /// The sweep's name (a Slurm job's name carries it).
    pub sweep_name: String,
    /// Where the workers' progress lines go (stdout, a progress bar's log, or nowhere while a
    /// dashboard owns the terminal).
    pub worker_output: Output,
}

/// A sink for lines of text, shared with the threads that read workers' stdout.
pub type Output = Arc<dyn Fn(&str) + Send + Sync>;

/// Lines to stdout.
pub fn stdout_output() -> Output {
    Arc::new(|line: &str| println!("{line}"))
}

/// How far a sweep is asked to stop. Ordered: each level asks for more than the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopLevel {
    /// Keep launching.
    Continue,
    /// Launch nothing new; running epochs finish and checkpoint (the first Ctrl-C).
    Finish,
    /// Kill the workers now (a second Ctrl-C, or SIGTERM).
    Now,
}

/// The stop requests a scheduler polls: Ctrl-C presses and SIGTERM from its signal thread, a
/// dashboard's "stop sweep", `--fail-fast`. Shared between threads; clones share one level.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicUsize>);

impl StopSignal {
    pub fn level(&self) -> StopLevel {
        // A count of presses: a third Ctrl-C asks for no more than the second.
        match self.0.load(Ordering::SeqCst) {
            0 => StopLevel::Continue,
            1 => StopLevel::Finish,
            _ => StopLevel::Now,
        }
    }

    /// Asks for at least `level` (a request never lowers one already made).
    pub fn request(&self, level: StopLevel) {
        self.0.fetch_max(level as usize, Ordering::SeqCst);
    }

    /// One more press of Ctrl-C, asking for at least `level`.
    fn press(&self, level: StopLevel) {
        let now = self.0.load(Ordering::SeqCst);
        self.0
            .store((now + 1).max(level as usize), Ordering::SeqCst);
    }
}

/// Installs the SIGINT / SIGTERM handling of the scheduler.
pub fn stop_signal() -> std::io::Result<StopSignal> {
    let presses = StopSignal::default();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let counter = presses.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            counter.press(if signal == signal_hook::consts::SIGTERM {
                StopLevel::Now
            } else {
                StopLevel::Finish
            });
        }
    });
    Ok(presses)
}

/// Why a worker failed, as far as the scheduler's policy cares: out of memory is retried with
/// fewer neighbours on its GPU; anything else is an ordinary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    OutOfMemory,
    Other,
}

impl FailureCause {
    /// Classifies a failure from its message (the worker's recorded error, or the tail of its
    /// log): CUDA, libtorch and the allocator all say "out of memory", in any case.
    pub fn of(message: &str) -> FailureCause {
        if message.to_ascii_lowercase().contains("out of memory") {
            FailureCause::OutOfMemory
        } else {
            FailureCause::Other
        }
    }
}

/// Trains every run of `planned` that is not finished, on all `opts.slots`, each in a worker
/// process (on this machine, or a Slurm job's task: `opts.executor`), until the queue is
/// empty or a stop is asked. Failures are reported as they happen. `log` receives one line
/// per event.
pub fn run_sweep(
    store: &mut Store,
    sweep_id: i64,
    planned: &[Planned],
    opts: &Options,
    stop: &StopSignal,
    mut log: impl FnMut(&str),
) -> Result<SweepSummary, StoreError> {
    let db = store.path().to_path_buf();
    let started = match opts.executor {
        ExecutorKind::Local => {
            LocalExecutor::new(&db, sweep_id, opts).map(|e| Box::new(e) as Box<dyn Executor>)
        }
        ExecutorKind::Slurm => {
            slurm::SlurmExecutor::new(&db, sweep_id, opts).map(|e| Box::new(e) as Box<dyn Executor>)
        }
    };
    let mut executor = started.map_err(|e| StoreError::Folder(PathBuf::from("fer-lab"), e))?;
    run_sweep_on(
        executor.as_mut(),
        &mut FixedPlan,
        store,
        sweep_id,
        planned,
        opts,
        stop,
        &mut log,
    )
}

/// [`run_sweep`] with any executor, and runs that `source` adds while the sweep runs.
#[allow(clippy::too_many_arguments)]
pub fn run_sweep_on(
    executor: &mut dyn Executor,
    source: &mut dyn RunSource,
    store: &mut Store,
    sweep_id: i64,
    planned: &[Planned],
    opts: &Options,
    stop: &StopSignal,
    log: &mut dyn FnMut(&str),
) -> Result<SweepSummary, StoreError> {
    policy::Sweeper::new(store, sweep_id, planned, opts, stop, executor, source, log).run()
}
