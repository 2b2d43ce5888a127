//! `fer-lab worker`: trains one run in its own process, so a crash or an out-of-memory error
//! kills one run and not the sweep, and a GPU's memory is freed when the run ends. A fused
//! group's worker trains its members as one model ([`group`]); each member is still a run,
//! with its own lease, rows, outcome and best model.
//!
//! The scheduler claims the run in SQLite and starts the worker; the worker loads the data,
//! resumes from the run's last complete checkpoint if an earlier attempt left one, renews its
//! lease every [`HEARTBEAT`] and records the outcome itself. Signals: SIGINT asks for a graceful
//! stop (finish and checkpoint the epoch, then stop: `interrupted`); SIGTERM stops now (the run
//! is marked `interrupted` and resumes from its last checkpoint on the next launch).

pub mod group;

use crate::config::RunConfig;
use crate::data::{self, FerData, Split};
use crate::device::DeviceSpec;
use crate::model::{self, FerModel};
use crate::pruning::Pruning;
use crate::store::journal::Journal;
use crate::store::{
    Beat, EpochRow, Heartbeat, Recorder, RunStatus, SharedRecorder, Store, StoreError,
};
use crate::train::hook::Progress;
use crate::train::sink::{EpochSink, StopReason, Verdict};
use crate::train::{self, RunOutcome, RunSpec, Splits, TrainError};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a worker renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a lease lasts without renewal before the run counts as abandoned.
pub const LEASE_SECS: f64 = 20.0;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {0} is not in the database")]
    NoSuchRun(String),
    #[error("fused group {0} has no runs in the database")]
    NoSuchGroup(String),
    #[error("run {run}: {why}")]
    Setup { run: String, why: String },
}

/// What a worker trains: one run, or the members of a fused group that the scheduler claimed
/// (`running`; the group's other members ended earlier and stay as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Run(String),
    Group(String),
}

impl Assignment {
    fn name(&self) -> &str {
        match self {
            Assignment::Run(id) | Assignment::Group(id) => id,
        }
    }
}

/// Where a worker records its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records {
    /// Straight into the sweep's SQLite database (a worker on its machine).
    Database(PathBuf),
    /// Into journal files in this folder, which the sweep's process merges into the database
    /// (a worker on another machine, such as a cluster node: it never opens the database).
    Journal(PathBuf),
}

/// What the scheduler tells a worker.
pub struct WorkerArgs {
    pub records: Records,
    pub assignment: Assignment,
    pub device: DeviceSpec,
    pub data: PathBuf,
    pub sweep_id: i64,
    pub pruning: Option<Pruning>,
    /// Keep the epoch checkpoints once the run is done. They are what a resume needs while it
    /// trains; afterwards only `best.bpk` is used (by `predict`, `export`), and the optimizer
    /// state makes them most of a run's disk use.
    pub keep_checkpoints: bool,
}

impl WorkerArgs {
    fn recorder(&self) -> Result<Box<dyn Recorder>, WorkerError> {
        Ok(match &self.records {
            Records::Database(db) => Box::new(Store::open(db)?),
            Records::Journal(dir) => Box::new(Journal::open(dir, self.assignment.name())?),
        })
    }

    fn setup(&self, why: String) -> WorkerError {
        WorkerError::Setup {
            run: self.assignment.name().to_string(),
            why,
        }
    }
}

struct StoredRun {
    config: RunConfig,
    seed: u64,
    artifact_dir: PathBuf,
    fingerprint: String,
    epochs_done: usize,
}

fn load_run(store: &dyn Recorder, id: &str) -> Result<StoredRun, WorkerError> {
    let row = store
        .stored_run(id)?
        .ok_or_else(|| WorkerError::NoSuchRun(id.into()))?;
    decode(id, row)
}

fn decode(id: &str, row: crate::store::StoredRun) -> Result<StoredRun, WorkerError> {
    let config: RunConfig =
        serde_json::from_str(&row.config_json).map_err(|e| WorkerError::Setup {
            run: id.into(),
            why: format!("stored config does not parse: {e}"),
        })?;
    Ok(StoredRun {
        config,
        seed: row.seed,
        artifact_dir: PathBuf::from(row.artifact_dir.as_deref().unwrap_or("results/runs")),
        fingerprint: row.data_fingerprint,
        epochs_done: row.epochs_done,
    })
}

/// The run's training time over all its attempts, a killed one's up to its last heartbeat.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    earlier: f64,
    started: Instant,
}

impl WallClock {
    fn secs(&self) -> f64 {
        self.earlier + self.started.elapsed().as_secs_f64()
    }
}

/// Decides, after each epoch, whether the run goes on: a graceful stop first, then the
/// pruning rule, which compares this run's best val accuracy so far with the other runs of the
/// sweep that reached the same epoch.
struct Gate {
    pruning: Option<Pruning>,
    sweep_id: i64,
    run: String,
    graceful: Arc<AtomicBool>,
}

impl Gate {
    fn verdict(&self, store: &dyn Recorder, epochs: &[EpochRow]) -> Option<StopReason> {
        if self.graceful.load(Ordering::SeqCst) {
            return Some(StopReason::Interrupted);
        }
        let rule = self.pruning?;
        let last = epochs.last()?;
        if !rule.decides_at(last.epoch) {
            return None;
        }
        let mine = epochs
            .iter()
            .filter_map(|r| r.val_acc)
            .fold(f64::NAN, f64::max);
        // A failed read prunes nobody: pruning saves time, it must never lose a run.
        let others = store
            .others_best_val_acc(self.sweep_id, &self.run, last.epoch)
            .ok()?;
        rule.prunes(mine, &others).then_some(StopReason::Pruned)
    }
}

/// The worker's [`EpochSink`]: each epoch goes into SQLite (with the run's progress) and to
/// stdout as a progress line, then the [`Gate`] decides.
struct StoreSink {
    store: SharedRecorder,
    gate: Gate,
    epochs_total: usize,
    /// Whose epoch a progress line is, in a group's output (a run's own is prefixed already).
    member: Option<String>,
}

impl EpochSink for StoreSink {
    fn epoch(&mut self, epochs: &[EpochRow]) -> Verdict {
        let Some(row) = epochs.last() else {
            return Verdict::Continue;
        };
        let mut store = self.store.lock();
        let recorded = store.record_epoch(&self.gate.run, row);
        let stop = match recorded {
            Ok(()) => self.gate.verdict(&**store, epochs),
            Err(e) => Some(StopReason::SinkFailed(e.to_string())),
        };
        drop(store);
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        println!(
            "  {}epoch {:>3}/{}  train loss {} acc {}  val loss {} acc {}  {:.1}s",
            self.member
                .as_ref()
                .map_or(String::new(), |m| format!("{m} ")),
            row.epoch,
            self.epochs_total,
            f(row.train_loss),
            f(row.train_acc),
            f(row.val_loss),
            f(row.val_acc),
            row.secs.unwrap_or(0.0)
        );
        stop.map_or(Verdict::Continue, Verdict::Stop)
    }
}

/// Set by SIGUSR1: Slurm's warning before a time limit or preemption (`--signal=B:USR1@…`).
static REQUEUE: AtomicBool = AtomicBool::new(false);

/// Signals: the first SIGINT asks for a graceful stop at the end of the epoch (the returned
/// flag, which the [`Gate`] reads); SIGUSR1 does too, and the worker then asks Slurm to requeue
/// its task ([`requeue_if_warned`]); SIGTERM records the runs `interrupted` and exits now.
fn on_signals(
    store: SharedRecorder,
    runs: Vec<String>,
    clock: WallClock,
) -> std::io::Result<Arc<AtomicBool>> {
    let graceful = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGTERM,
    ])?;
    let flag = graceful.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == signal_hook::consts::SIGUSR1 {
                REQUEUE.store(true, Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
            } else if signal == signal_hook::consts::SIGINT {
                flag.store(true, Ordering::SeqCst);
            } else {
                let mut store = store.lock();
                for run in &runs {
                    let done = store.epochs_done(run).ok().flatten();
                    let _ =
                        store.end_run(run, RunStatus::Interrupted, Some(clock.secs()), None, done);
                }
                std::process::exit(143);
            }
        }
    });
    Ok(graceful)
}

/// After a USR1 stop (checkpointed, recorded `interrupted`): asks Slurm to requeue this task,
/// whose next start resumes the runs from their checkpoint. The task never leaves the queue,
/// so the sweep's process keeps it as running.
fn requeue_if_warned() {
    if !REQUEUE.load(Ordering::SeqCst) {
        return;
    }
    let job = match (
        std::env::var("SLURM_ARRAY_JOB_ID"),
        std::env::var("SLURM_ARRAY_TASK_ID"),
    ) {
        (Ok(array), Ok(task)) => format!("{array}_{task}"),
        _ => match std::env::var("SLURM_JOB_ID") {
            Ok(job) => job,
            Err(_) => return,
        },
    };
    println!("  requeueing slurm task {job}: it resumes from the checkpoint");
    match std::process::Command::new("scontrol")
        .args(["requeue", &job])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "scontrol requeue {job}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("scontrol requeue {job}: {e}"),
    }
}

/// What the heartbeat publishes: the wall time so far and where the running split is.
fn beat(progress: Arc<Progress>, clock: WallClock) -> impl Fn() -> Beat + Send + 'static {
    move || Beat {
        wall_secs: clock.secs(),
        split: *progress.split.lock().expect("progress lock"),
        done: progress.done.load(Ordering::Relaxed),
        total: progress.total.load(Ordering::Relaxed),
        first_step_at: *progress.first_step_at.lock().expect("progress lock"),
    }
}

/// Runs `train`, turning a panic anywhere in training into a [`TrainError`].
fn catching_panics<T>(train: impl FnOnce() -> T) -> Result<T, TrainError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(train)).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        TrainError::Training(format!("panicked: {why}"))
    })
}

/// Records the status a run that produced no results ends in, and says so.
fn record_stop(
    store: &mut dyn Recorder,
    run: &str,
    e: &TrainError,
    wall: f64,
) -> Result<(), WorkerError> {
    let (status, epoch, error) = match e {
        TrainError::Diverged { epoch } => (RunStatus::Diverged, Some(*epoch), Some(e.to_string())),
        TrainError::Pruned { epoch } => (RunStatus::Pruned, Some(*epoch), None),
        TrainError::Interrupted { epoch } => (RunStatus::Interrupted, Some(*epoch), None),
        _ => (RunStatus::Failed, None, Some(e.to_string())),
    };
    store.end_run(run, status, Some(wall), error.as_deref(), epoch)?;
    println!("  {}: {e}", status.as_str());
    Ok(())
}

/// Records a run done with the val and test evaluations of its best epoch.
fn record_done(
    store: &mut dyn Recorder,
    run: &str,
    best_epoch: usize,
    [val, test]: [&crate::metrics::Evaluation; 2],
    data: &FerData,
    wall: f64,
) -> Result<(), WorkerError> {
    let evals = [
        (Split::Val, val, data.val.len()),
        (Split::Test, test, data.test.len()),
    ];
    Ok(store.finish_run(run, best_epoch, wall, &evals)?)
}

/// The data's splits, shared by the loaders.
fn splits(data: &FerData) -> Splits {
    Splits {
        train: Arc::new(data.split(Split::Train).clone()),
        val: Arc::new(data.split(Split::Val).clone()),
        test: Arc::new(data.split(Split::Test).clone()),
    }
}

/// Whether `data` is what the run was planned on; if not, why, in words.
fn changed_data(args: &WorkerArgs, data: &FerData, planned: &str) -> Option<String> {
    (data.manifest.fingerprint != planned).then(|| {
        format!(
            "the data at {} changed since the run was planned (fingerprint {} ≠ {})",
            args.data.display(),
            data.short_fingerprint(),
            &planned[..planned.len().min(16)]
        )
    })
}

/// Records how training ended: the evaluations of a finished run (then its checkpoints go,
/// unless kept), or the status a stopped or failed one ends in.
fn record_outcome(
    store: &mut dyn Recorder,
    run: &str,
    args: &WorkerArgs,
    stored: &StoredRun,
    data: &FerData,
    outcome: Result<RunOutcome, TrainError>,
    wall: f64,
) -> Result<(), WorkerError> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return record_stop(store, run, &e, wall),
    };
    record_done(
        store,
        run,
        outcome.best_epoch,
        [&outcome.val, &outcome.test],
        data,
        wall,
    )?;
    // Only once the run is recorded done: until then a resume may need them.
    if !args.keep_checkpoints {
        // The folder train::resumable_epoch reads.
        let checkpoints = stored.artifact_dir.join("checkpoint");
        if let Err(e) = std::fs::remove_dir_all(&checkpoints)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("could not remove {}: {e}", checkpoints.display());
        }
    }
    println!(
        "  done: best epoch {}  val acc {:.4}  test acc {:.4}  test macro-F1 {:.4}  ({:.0}s)",
        outcome.best_epoch,
        outcome.val.accuracy,
        outcome.test.accuracy,
        outcome.test.macro_f1,
        wall
    );
    Ok(())
}

/// Runs the worker to the end; the outcome is in the database. Returns the exit code.
///
/// The worker opens the database once: that one handle, shared, serves the epoch sinks, the
/// heartbeat and the SIGTERM handler.
pub fn run(args: WorkerArgs) -> Result<i32, WorkerError> {
    match &args.assignment {
        Assignment::Run(run) => run_alone(&args, run),
        Assignment::Group(id) => group::run(&args, id),
    }
}

fn run_alone(args: &WorkerArgs, run: &str) -> Result<i32, WorkerError> {
    let mut store = args.recorder()?;
    let stored = load_run(&*store, run)?;
    let (data, _) = data::open(&args.data).map_err(|e| args.setup(e.to_string()))?;
    if let Some(why) = changed_data(args, &data, &stored.fingerprint) {
        store.end_run(run, RunStatus::Failed, None, Some(&why), None)?;
        return Ok(0);
    }
    let device = args.device.device();
    let side = stored.config.input_side();
    let size = model::size(
        &FerModel::new(&stored.config.model, side, stored.config.dropout, &device),
        &stored.config.model,
        side,
    );
    let resume_from = (stored.epochs_done > 0)
        .then(|| train::resumable_epoch(&stored.artifact_dir, stored.epochs_done))
        .flatten();
    let earlier_wall = store.start_attempt(
        run,
        &args.device.to_string(),
        size.params,
        size.flops,
        resume_from,
    )?;
    let clock = WallClock {
        earlier: earlier_wall,
        started: Instant::now(),
    };
    let earlier = match resume_from {
        Some(e) => {
            println!("  resuming from the checkpoint of epoch {e}");
            store.epoch_rows(run)?
        }
        None => Vec::new(),
    };

    let store = SharedRecorder::new(store);
    let graceful = on_signals(store.clone(), vec![run.to_string()], clock)
        .map_err(|e| args.setup(format!("signal handlers: {e}")))?;
    let progress = Arc::new(Progress::default());
    let heartbeat = Heartbeat::start(
        store.clone(),
        vec![run.to_string()],
        LEASE_SECS,
        HEARTBEAT,
        beat(progress.clone(), clock),
    );
    let sink = StoreSink {
        store: store.clone(),
        gate: Gate {
            pruning: args.pruning,
            sweep_id: args.sweep_id,
            run: run.to_string(),
            graceful,
        },
        epochs_total: stored.config.epochs,
        member: None,
    };
    let splits = splits(&data);
    let spec = RunSpec {
        config: &stored.config,
        seed: stored.seed,
        device: &device,
        artifact_dir: &stored.artifact_dir,
        resume_from,
        progress,
    };
    let outcome =
        catching_panics(|| train::train_run(&spec, &splits, earlier, Box::new(sink))).flatten();
    // Its errors only ever cost a lease renewal; the outcome is what matters now.
    let _ = heartbeat.stop();
    record_outcome(
        &mut **store.lock(),
        run,
        args,
        &stored,
        &data,
        outcome,
        clock.secs(),
    )?;
    requeue_if_warned();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, SweepRecord};
    use std::path::Path;

    /// A sweep of four runs whose val curves are known: run i has val accuracy 0.1·(i+1) at
    /// every epoch it reached.
    fn synthetic_sweep(db: &Path, reached: [usize; 4]) -> i64 {
        let mut store = Store::open(db).unwrap();
        let sweep = SweepRecord::for_test("s", &[]);
        let runs: Vec<RunRecord> = (0..4)
            .map(|i| RunRecord::for_test(format!("r{i}"), 1, 9, vec![]))
            .collect();
        let sweep_id = store.register_sweep(&sweep, &runs).unwrap();
        for (i, &epochs) in reached.iter().enumerate() {
            for epoch in 1..=epochs {
                let row = EpochRow {
                    epoch,
                    val_acc: Some(0.1 * (i + 1) as f64),
                    ..EpochRow::default()
                };
                store.record_epoch(&format!("r{i}"), &row).unwrap();
            }
        }
        sweep_id
    }

    fn curve(epochs: usize, acc: f64) -> Vec<EpochRow> {
        (1..=epochs)
            .map(|epoch| EpochRow {
                epoch,
                val_acc: Some(acc),
                ..EpochRow::default()
            })
            .collect()
    }

    /// The gate of run `run` in sweep `sweep_id`, asked with its own store handle.
    fn gate(
        rule: Pruning,
        db: &Path,
        sweep_id: i64,
        run: &str,
        graceful: Arc<AtomicBool>,
    ) -> impl FnMut(&[EpochRow]) -> Option<StopReason> {
        let store = Store::open(db).unwrap();
        let gate = Gate {
            pruning: Some(rule),
            sweep_id,
            run: run.into(),
            graceful,
        };
        move |epochs| gate.verdict(&store, epochs)
    }

    #[test]
    fn the_gate_compares_with_the_runs_that_reached_the_same_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        // r0..r3 reached epochs 3, 3, 1, 3 with val accuracies .1, .2, .3, .4.
        let sweep_id = synthetic_sweep(&db, [3, 3, 1, 3]);
        let stop = Arc::new(AtomicBool::new(false));
        let asha = Pruning::Asha(crate::pruning::Asha { rung: 3, eta: 3 });
        // A new run at the rung at epoch 3 with .35: others at epoch 3 are .1 .2 .4 (r2 never got
        // there); of four, the top ⌈4/3⌉ = 2 continue: .4 and .35.
        let mut g = gate(asha, &db, sweep_id, "new", stop.clone());
        assert_eq!(g(&curve(2, 0.35)), None, "epoch 2 is not a rung");
        assert_eq!(g(&curve(3, 0.35)), None);
        assert_eq!(g(&curve(3, 0.15)), Some(StopReason::Pruned));
        // A run never compares with itself: r3 (.4) against .1 .2 → promoted; r0 (.1) → pruned.
        let mut r3 = gate(asha, &db, sweep_id, "r3", stop.clone());
        assert_eq!(r3(&curve(3, 0.4)), None);
        let mut r0 = gate(asha, &db, sweep_id, "r0", stop.clone());
        assert_eq!(r0(&curve(3, 0.1)), Some(StopReason::Pruned));

        // The median rule at epoch 3 with min_runs 3: median of .1 .2 .4 is .2.
        let median = Pruning::Median(crate::pruning::Median {
            warmup: 1,
            min_runs: 3,
        });
        let mut g = gate(median, &db, sweep_id, "new", stop.clone());
        assert_eq!(g(&curve(3, 0.25)), None);
        assert_eq!(g(&curve(3, 0.15)), Some(StopReason::Pruned));
        // Too few runs reached epoch 4: nobody is pruned there.
        assert_eq!(g(&curve(4, 0.0)), None);

        // A graceful stop outranks pruning.
        stop.store(true, Ordering::SeqCst);
        assert_eq!(g(&curve(3, 0.15)), Some(StopReason::Interrupted));
    }
}
