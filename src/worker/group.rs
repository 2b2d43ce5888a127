//! A fused group's worker: the members the scheduler claimed train as one model
//! ([`crate::train::group`]) in one process, which pays the start-up (process, data, first
//! steps) once for all of them.
//!
//! Each member is still a run: its own lease (one heartbeat renews them all), epoch rows,
//! pruning verdict, outcome and best model, saved in its own folder as a run alone saves it.
//! Members of the group that ended in an earlier attempt (pruned, diverged) keep their slice of
//! the model and train nothing. The group resumes from its last epoch checkpoint, in
//! `results/<sweep>/groups/<group>/`.

use super::{
    Assignment, Gate, HEARTBEAT, LEASE_SECS, StoreSink, StoredRun, WallClock, WorkerArgs,
    WorkerError, beat, catching_panics, changed_data, decode, on_signals, record_done, record_stop,
    requeue_if_warned, splits,
};
use crate::data::{self, FerData};
use crate::model::{self, FerModel};
use crate::store::{EpochRow, Heartbeat, Recorder, RunStatus, SharedRecorder};
use crate::train::group::{self, Checkpoints, Member, MemberOutcome};
use crate::train::hook::Progress;
use crate::train::{self, TrainError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A member as the worker found it.
struct Found {
    id: String,
    run: StoredRun,
    /// It has not ended: claimed for this launch (`running`), or, for a requeued cluster
    /// task, stopped `interrupted` by the task's previous start. Otherwise it ended earlier.
    trains: bool,
}

/// Runs group `id` to the end; every training member's outcome is in the database.
pub(super) fn run(args: &WorkerArgs, id: &str) -> Result<i32, WorkerError> {
    debug_assert_eq!(args.assignment, Assignment::Group(id.to_string()));
    let mut store = args.recorder()?;
    let members = store
        .group_members(id)?
        .into_iter()
        .map(|m| {
            Ok(Found {
                trains: !m.status.has_ended(),
                run: decode(&m.id, m.run)?,
                id: m.id,
            })
        })
        .collect::<Result<Vec<_>, WorkerError>>()?;
    let Some(first) = members.first() else {
        return Err(WorkerError::NoSuchGroup(id.into()));
    };
    let training: Vec<String> = members
        .iter()
        .filter(|m| m.trains)
        .map(|m| m.id.clone())
        .collect();
    let (data, _) = data::open(&args.data).map_err(|e| args.setup(e.to_string()))?;
    if let Some(why) = changed_data(args, &data, &first.run.fingerprint) {
        for run in &training {
            store.end_run(run, RunStatus::Failed, None, Some(&why), None)?;
        }
        return Ok(0);
    }
    let dir = group::group_dir(&first.run.artifact_dir, id);
    let most = members
        .iter()
        .filter(|m| m.trains)
        .map(|m| m.run.epochs_done)
        .max()
        .unwrap_or(0);
    let resume_from = (most > 0)
        .then(|| group::resumable_epoch(&dir, most))
        .flatten();
    let device = args.device.device();
    let config = &first.run.config;
    let side = config.input_side();
    let size = model::size(
        &FerModel::new(&config.model, side, config.dropout, &device),
        &config.model,
        side,
    );
    let mut earlier_wall = 0.0f64;
    for run in &training {
        let wall = store.start_attempt(
            run,
            &args.device.to_string(),
            size.params,
            size.flops,
            resume_from,
        )?;
        earlier_wall = earlier_wall.max(wall);
    }
    if let Some(e) = resume_from {
        println!("  resuming group {id} from the checkpoint of epoch {e}");
    }
    let mut earlier = Vec::with_capacity(members.len());
    for m in &members {
        earlier.push(match resume_from {
            Some(_) => store.epoch_rows(&m.id)?,
            None => Vec::new(),
        });
    }
    let clock = WallClock {
        earlier: earlier_wall,
        started: Instant::now(),
    };
    let store = SharedRecorder::new(store);
    let graceful = on_signals(store.clone(), training.clone(), clock)
        .map_err(|e| args.setup(format!("signal handlers: {e}")))?;
    let progress = Arc::new(Progress::default());
    let heartbeat = Heartbeat::start(
        store.clone(),
        training,
        LEASE_SECS,
        HEARTBEAT,
        beat(progress.clone(), clock),
    );
    let mut sinks: Vec<StoreSink> = members
        .iter()
        .map(|m| StoreSink {
            store: store.clone(),
            gate: Gate {
                pruning: args.pruning,
                sweep_id: args.sweep_id,
                run: m.id.clone(),
                graceful: graceful.clone(),
            },
            epochs_total: m.run.config.epochs,
            member: Some(m.id.clone()),
        })
        .collect();
    let splits = splits(&data);
    let outcomes = {
        let group_members: Vec<Member<'_>> = members
            .iter()
            .zip(sinks.iter_mut())
            .zip(earlier)
            .map(|((m, sink), earlier)| Member {
                config: &m.run.config,
                seed: m.run.seed,
                sink,
                earlier,
                stopped: !m.trains,
            })
            .collect();
        let checkpoints = Checkpoints {
            dir: &dir,
            resume_from,
        };
        catching_panics(|| {
            group::train_group(group_members, &checkpoints, &splits, &device, &progress)
        })
    };
    // Its errors only ever cost a lease renewal; the outcomes are what matter now.
    let _ = heartbeat.stop();
    let mut store = store.lock();
    let store = &mut **store;
    let wall = clock.secs();
    let outcomes: Vec<Result<MemberOutcome, TrainError>> = match outcomes {
        Ok(outcomes) => outcomes,
        Err(panic) => members
            .iter()
            .map(|_| Err(TrainError::Training(panic.to_string())))
            .collect(),
    };
    // Only once every member has ended for good: an interrupted or failed one resumes (and
    // a retried one retries) from the group's checkpoint.
    let ended = outcomes.iter().all(|o| {
        matches!(
            o,
            Ok(_)
                | Err(TrainError::Pruned { .. }
                    | TrainError::Diverged { .. }
                    | TrainError::StoppedEarlier { .. })
        )
    });
    for (m, outcome) in members.iter().zip(outcomes) {
        if m.trains {
            record_member(store, &m.id, &m.run, &data, outcome, wall)?;
        }
    }
    if ended
        && !args.keep_checkpoints
        && let Err(e) = group::remove_checkpoints(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("could not remove the checkpoints in {}: {e}", dir.display());
    }
    requeue_if_warned();
    Ok(0)
}

/// Records how one member ended: its best model saved as a run's (`best.bpk` in its folder,
/// what `predict` and `export` read) and its evaluations, or the status it stopped in.
fn record_member(
    store: &mut dyn Recorder,
    run: &str,
    stored: &StoredRun,
    data: &FerData,
    outcome: Result<MemberOutcome, TrainError>,
    wall: f64,
) -> Result<(), WorkerError> {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return record_stop(store, run, &e, wall),
    };
    let best = best_model_path(&stored.artifact_dir);
    let saved = std::fs::create_dir_all(&stored.artifact_dir)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", stored.artifact_dir.display())))
        .and_then(|()| train::save_model(&outcome.best_model, &best));
    if let Err(e) = saved {
        return record_stop(store, run, &e, wall);
    }
    record_done(
        store,
        run,
        outcome.best_epoch,
        [&outcome.val, &outcome.test],
        data,
        wall,
    )?;
    let last: Option<&EpochRow> = outcome.epochs.last();
    println!(
        "  {run} done: best epoch {} of {}  val acc {:.4}  test acc {:.4}  test macro-F1 {:.4}  ({:.0}s)",
        outcome.best_epoch,
        last.map_or(0, |r| r.epoch),
        outcome.val.accuracy,
        outcome.test.accuracy,
        outcome.test.macro_f1,
        wall
    );
    Ok(())
}

fn best_model_path(artifact_dir: &Path) -> PathBuf {
    artifact_dir.join(train::BEST_MODEL)
}
