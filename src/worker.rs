//! `fer-lab worker`: trains one run in its own process, so a crash or an out-of-memory error
//! kills one run and not the sweep, and a GPU's memory is freed when the run ends.
//!
//! The scheduler claims the run in SQLite and starts the worker; the worker loads the data,
//! resumes from the run's last complete checkpoint if an earlier attempt left one, renews its
//! lease every [`HEARTBEAT`] and records the outcome itself. Signals: SIGINT asks for a graceful
//! stop (finish and checkpoint the epoch, then stop: `interrupted`); SIGTERM stops now (the run
//! is marked `interrupted` and resumes from its last checkpoint on the next launch).

use crate::config::RunConfig;
use crate::data::{self, Split};
use crate::device::DeviceSpec;
use crate::model::{self, FerModel};
use crate::scheduler::pruning::Pruning;
use crate::store::{RunStatus, Store, StoreError};
use crate::train::hook::{EpochGate, Progress, StopReason};
use crate::train::{self, RunSpec, Splits, TrainError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    #[error("run {run}: {why}")]
    Setup { run: String, why: String },
}

/// What the scheduler tells a worker.
pub struct WorkerArgs {
    pub db: PathBuf,
    pub run: String,
    pub device: DeviceSpec,
    pub data: PathBuf,
    pub sweep_id: i64,
    pub pruning: Option<Pruning>,
    /// Keep the epoch checkpoints once the run is done. They are what a resume needs while it
    /// trains; afterwards only `best.bpk` is used (by `predict`, `export`), and the optimizer
    /// state makes them most of a run's disk use.
    pub keep_checkpoints: bool,
}

struct StoredRun {
    config: RunConfig,
    seed: u64,
    artifact_dir: PathBuf,
    fingerprint: String,
    epochs_done: usize,
}

fn load_run(store: &Store, id: &str) -> Result<StoredRun, WorkerError> {
    let row = store
        .stored_run(id)?
        .ok_or_else(|| WorkerError::NoSuchRun(id.into()))?;
    let setup = |why: String| WorkerError::Setup {
        run: id.into(),
        why,
    };
    let config: RunConfig = serde_json::from_str(&row.config_json)
        .map_err(|e| setup(format!("stored config does not parse: {e}")))?;
    Ok(StoredRun {
        config,
        seed: row.seed,
        artifact_dir: PathBuf::from(row.artifact_dir.as_deref().unwrap_or("results/runs")),
        fingerprint: row.data_fingerprint,
        epochs_done: row.epochs_done,
    })
}

/// The pruning gate: at each deciding epoch, compare this run's best val accuracy so far with
/// the other runs of the sweep that reached the same epoch.
fn pruning_gate(
    rule: Pruning,
    db: &Path,
    sweep_id: i64,
    run: &str,
    graceful: Arc<AtomicBool>,
) -> Result<EpochGate, StoreError> {
    let store = Store::open(db)?;
    let run = run.to_string();
    Ok(Box::new(move |epochs| {
        if graceful.load(Ordering::SeqCst) {
            return Some(StopReason::Interrupted);
        }
        let last = epochs.last()?;
        if !rule.decides_at(last.epoch) {
            return None;
        }
        let mine = epochs
            .iter()
            .filter_map(|r| r.val_acc)
            .fold(f64::NAN, f64::max);
        let others = store.others_best_val_acc(sweep_id, &run, last.epoch).ok()?;
        rule.prunes(mine, &others).then_some(StopReason::Pruned)
    }))
}

/// Runs the worker to the end; the outcome is in the database. Returns the exit code.
pub fn run(args: WorkerArgs) -> Result<i32, WorkerError> {
    let mut store = Store::open(&args.db)?;
    let stored = load_run(&store, &args.run)?;
    let setup = |why: String| WorkerError::Setup {
        run: args.run.clone(),
        why,
    };
    let (data, _) = data::open(&args.data).map_err(|e| setup(e.to_string()))?;
    if data.manifest.fingerprint != stored.fingerprint {
        let why = format!(
            "the data at {} changed since the run was planned (fingerprint {} ≠ {})",
            args.data.display(),
            data.short_fingerprint(),
            &stored.fingerprint[..stored.fingerprint.len().min(16)]
        );
        store.end_run(&args.run, RunStatus::Failed, None, Some(&why), None)?;
        return Ok(0);
    }
    let device = args.device.device();
    let size = model::size(
        &FerModel::new(&stored.config.model, stored.config.dropout, &device),
        &stored.config.model,
    );
    let resume_from = (stored.epochs_done > 0)
        .then(|| train::resumable_epoch(&stored.artifact_dir, stored.epochs_done))
        .flatten();
    let earlier_wall = store.start_attempt(
        &args.run,
        &args.device.to_string(),
        size.params,
        size.flops,
        resume_from,
    )?;
    // The run's training time over all its attempts, a killed one's up to its last heartbeat.
    let attempt_started = std::time::Instant::now();
    let wall = move || earlier_wall + attempt_started.elapsed().as_secs_f64();
    if let Some(e) = resume_from {
        println!("  resuming from the checkpoint of epoch {e}");
    }

    // Signals: the first SIGINT asks for a graceful stop at the end of the epoch, SIGTERM now.
    let graceful = Arc::new(AtomicBool::new(false));
    {
        let graceful = graceful.clone();
        let db = args.db.clone();
        let run = args.run.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(|e| setup(format!("signal handlers: {e}")))?;
        std::thread::spawn(move || {
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGINT {
                    graceful.store(true, Ordering::SeqCst);
                } else {
                    if let Ok(store) = Store::open(&db) {
                        let done = store.run_state(&run).ok().flatten().map(|s| s.epochs_done);
                        let _ =
                            store.end_run(&run, RunStatus::Interrupted, Some(wall()), None, done);
                    }
                    std::process::exit(143);
                }
            }
        });
    }

    // Heartbeat: the lease, and where the split is, every HEARTBEAT.
    let progress = Arc::new(Progress::default());
    let alive = Arc::new(AtomicBool::new(true));
    let heartbeat = {
        let (db, run, progress, alive) = (
            args.db.clone(),
            args.run.clone(),
            progress.clone(),
            alive.clone(),
        );
        std::thread::spawn(move || -> Result<(), StoreError> {
            let store = Store::open(&db)?;
            let pid = std::process::id();
            let mut first_step_written = false;
            while alive.load(Ordering::SeqCst) {
                store.heartbeat(&run, pid, LEASE_SECS, wall())?;
                let split = *progress.split.lock().expect("progress lock");
                store.set_progress(
                    &run,
                    split,
                    progress.done.load(Ordering::Relaxed),
                    progress.total.load(Ordering::Relaxed),
                )?;
                if !first_step_written
                    && let Some(at) = *progress.first_step_at.lock().expect("progress lock")
                {
                    store.set_first_step(&run, at)?;
                    first_step_written = true;
                }
                std::thread::sleep(HEARTBEAT);
            }
            if !first_step_written
                && let Some(at) = *progress.first_step_at.lock().expect("progress lock")
            {
                store.set_first_step(&run, at)?;
            }
            Ok(())
        })
    };

    let gate: EpochGate = match args.pruning {
        Some(rule) => pruning_gate(rule, &args.db, args.sweep_id, &args.run, graceful.clone())?,
        None => {
            let graceful = graceful.clone();
            Box::new(move |_| {
                graceful
                    .load(Ordering::SeqCst)
                    .then_some(StopReason::Interrupted)
            })
        }
    };
    let splits = Splits {
        train: Arc::new(data.split(Split::Train).clone()),
        val: Arc::new(data.split(Split::Val).clone()),
        test: Arc::new(data.split(Split::Test).clone()),
    };
    let epochs = stored.config.epochs;
    let on_epoch: train::hook::EpochCallback = Box::new(move |row| {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        println!(
            "  epoch {:>3}/{epochs}  train loss {} acc {}  val loss {} acc {}  {:.1}s",
            row.epoch,
            f(row.train_loss),
            f(row.train_acc),
            f(row.val_loss),
            f(row.val_acc),
            row.secs.unwrap_or(0.0)
        );
    });
    let spec = RunSpec {
        run_id: &args.run,
        config: &stored.config,
        seed: stored.seed,
        device: &device,
        db_path: &args.db,
        artifact_dir: &stored.artifact_dir,
        resume_from,
        progress,
    };
    let gate = Mutex::new(Some(gate));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::train_run(
            &spec,
            &splits,
            Some(on_epoch),
            gate.lock().expect("gate").take(),
        )
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        Err(TrainError::Training(format!("panicked: {why}")))
    });
    alive.store(false, Ordering::SeqCst);
    let _ = heartbeat.join();
    let wall = wall();
    match outcome {
        Ok(outcome) => {
            store.finish_run(
                &args.run,
                outcome.best_epoch,
                wall,
                &[
                    (Split::Val, &outcome.val, data.val.len()),
                    (Split::Test, &outcome.test, data.test.len()),
                ],
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
        }
        Err(TrainError::Store(e)) => return Err(e.into()),
        Err(e) => {
            let (status, epoch, error) = match &e {
                TrainError::Diverged { epoch } => {
                    (RunStatus::Diverged, Some(*epoch), Some(e.to_string()))
                }
                TrainError::Pruned { epoch } => (RunStatus::Pruned, Some(*epoch), None),
                TrainError::Interrupted { epoch } => (RunStatus::Interrupted, Some(*epoch), None),
                _ => (RunStatus::Failed, None, Some(e.to_string())),
            };
            store.end_run(&args.run, status, Some(wall), error.as_deref(), epoch)?;
            println!("  {}: {e}", status.as_str());
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EpochRow, RunRecord, SweepRecord};

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

    #[test]
    fn the_gate_compares_with_the_runs_that_reached_the_same_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        // r0..r3 reached epochs 3, 3, 1, 3 with val accuracies .1, .2, .3, .4.
        let sweep_id = synthetic_sweep(&db, [3, 3, 1, 3]);
        let stop = Arc::new(AtomicBool::new(false));
        let asha = Pruning::Asha { rung: 3, eta: 3 };
        // A new run at the rung at epoch 3 with .35: others at epoch 3 are .1 .2 .4 (r2 never got
        // there); of four, the top ⌈4/3⌉ = 2 continue: .4 and .35.
        let mut gate = pruning_gate(asha, &db, sweep_id, "new", stop.clone()).unwrap();
        assert_eq!(gate(&curve(2, 0.35)), None, "epoch 2 is not a rung");
        assert_eq!(gate(&curve(3, 0.35)), None);
        assert_eq!(gate(&curve(3, 0.15)), Some(StopReason::Pruned));
        // A run never compares with itself: r3 (.4) against .1 .2 → promoted; r0 (.1) → pruned.
        let mut r3 = pruning_gate(asha, &db, sweep_id, "r3", stop.clone()).unwrap();
        assert_eq!(r3(&curve(3, 0.4)), None);
        let mut r0 = pruning_gate(asha, &db, sweep_id, "r0", stop.clone()).unwrap();
        assert_eq!(r0(&curve(3, 0.1)), Some(StopReason::Pruned));

        // The median rule at epoch 3 with min_runs 3: median of .1 .2 .4 is .2.
        let median = Pruning::Median {
            warmup: 1,
            min_runs: 3,
        };
        let mut gate = pruning_gate(median, &db, sweep_id, "new", stop.clone()).unwrap();
        assert_eq!(gate(&curve(3, 0.25)), None);
        assert_eq!(gate(&curve(3, 0.15)), Some(StopReason::Pruned));
        // Too few runs reached epoch 4: nobody is pruned there.
        assert_eq!(gate(&curve(4, 0.0)), None);

        // A graceful stop outranks pruning.
        stop.store(true, Ordering::SeqCst);
        assert_eq!(gate(&curve(3, 0.15)), Some(StopReason::Interrupted));
    }
}
