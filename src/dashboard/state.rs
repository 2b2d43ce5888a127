//! What the dashboard shows, read from SQLite: a [`Snapshot`] of one sweep, kept up to date by
//! a [`Loader`] that reads only what changed.
//!
//! The loader's connection is read-only (WAL readers never block the writers that train).
//! `PRAGMA data_version` tells it whether anyone wrote since the last look; if so it re-reads
//! the runs (one row each: status, progress, lease — small) and only the epoch rows and events
//! newer than the ones it holds (by rowid / id). A run's per-class metrics and confusion matrix
//! are read once, when it has been evaluated.

use crate::data::Split;
use crate::emotion::Emotion;
use crate::store::{EpochRow, RunStatus, Store, StoreError};
use std::collections::HashMap;
use std::path::Path;

pub use crate::store::SweepMeta;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// A run as the runs table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub id: String,
    /// 1-based position in the sweep file's expansion.
    pub position: usize,
    pub status: RunStatus,
    pub seed: u64,
    /// The values of [`Snapshot::axes`], in that order.
    pub params: Vec<String>,
    pub slot: Option<String>,
    /// The fused group it trains (or trained) in, with the runs that train together.
    pub fused: Option<String>,
    pub epochs_done: usize,
    pub epochs_planned: usize,
    /// Inside the current epoch: split (`train` / `valid`), items done and total.
    pub split: Option<String>,
    pub items_done: usize,
    pub items_total: usize,
    pub best_epoch: Option<usize>,
    pub error: Option<String>,
    pub attempts: u32,
    pub val_acc: Option<f64>,
    pub test_acc: Option<f64>,
    /// Finished at chance (see [`crate::store::NEVER_LEARNED_BELOW`]).
    pub never_learned: bool,
}

/// Per-class val metrics and the val confusion matrix of a run's best checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDetail {
    /// (class, F1, support) for the seven classes.
    pub class_f1: Vec<(Emotion, f64, i64)>,
    /// `confusion[true][pred]`.
    pub confusion: [[i64; 7]; 7],
}

/// One line of the event log.
pub type EventView = crate::store::RunEvent;

/// Everything a frame needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub sweep: SweepMeta,
    /// The swept keys whose values differ between runs (seed excluded).
    pub axes: Vec<String>,
    /// Runs in sweep order.
    pub runs: Vec<RunView>,
    pub curves: HashMap<String, Vec<EpochRow>>,
    /// The most recent events, oldest first.
    pub events: Vec<EventView>,
    pub details: HashMap<String, RunDetail>,
}

/// How many events the dashboard keeps.
const EVENTS_KEPT: usize = 200;

impl Snapshot {
    pub fn run(&self, id: &str) -> Option<&RunView> {
        self.runs.iter().find(|r| r.id == id)
    }

    pub fn count(&self, status: RunStatus) -> usize {
        self.runs.iter().filter(|r| r.status == status).count()
    }

    /// Nothing is queued or training: the sweep has ended (or was stopped), as far as the
    /// database says.
    pub fn ended(&self) -> bool {
        !self.runs.is_empty()
            && self
                .runs
                .iter()
                .all(|r| !matches!(r.status, RunStatus::Queued | RunStatus::Running))
    }

    /// The best val accuracy of any epoch of a run so far.
    pub fn best_val(&self, id: &str) -> Option<f64> {
        self.curves
            .get(id)?
            .iter()
            .filter_map(|p| p.val_acc)
            .reduce(f64::max)
    }

    pub fn last_point(&self, id: &str) -> Option<&EpochRow> {
        self.curves.get(id)?.last()
    }

    /// Seconds until the queue is empty at the current pace: the median epoch time of this
    /// sweep, times the epochs left, divided by the runs training at once.
    pub fn eta_secs(&self) -> Option<f64> {
        let mut secs: Vec<f64> = self
            .curves
            .values()
            .flatten()
            .filter_map(|p| p.secs)
            .collect();
        if secs.is_empty() {
            return None;
        }
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        let left: usize = self
            .runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
            .map(|r| r.epochs_planned.saturating_sub(r.epochs_done))
            .sum();
        let parallel = self.count(RunStatus::Running).max(1);
        Some(median * left as f64 / parallel as f64)
    }
}

/// Keeps a [`Snapshot`] of one sweep current.
pub struct Loader {
    /// Read-only: the dashboard never writes through it (see [`Loader::set_paused`]).
    store: Store,
    path: String,
    last_epoch_rowid: i64,
    last_event_id: i64,
    data_version: Option<i64>,
    pub snapshot: Snapshot,
}

impl Loader {
    /// Attaches to `sweep` (or the most recently launched sweep) in the database at `db`.
    /// A missing, empty or foreign database, a schema too old or too new, or an unknown sweep
    /// is an error that says so; the file is never created or migrated.
    pub fn open(db: &Path, sweep: Option<&str>) -> Result<Loader, DashboardError> {
        let store = Store::open_read_only(db)?;
        let (id, name) = store.resolve_sweep(sweep)?;
        let mut loader = Loader {
            store,
            path: db.display().to_string(),
            last_epoch_rowid: 0,
            last_event_id: 0,
            data_version: None,
            snapshot: Snapshot::default(),
        };
        loader.snapshot.sweep.id = id;
        loader.snapshot.sweep.name = name;
        loader.refresh()?;
        Ok(loader)
    }

    pub fn db_path(&self) -> &str {
        &self.path
    }

    /// Reads what changed since the last call. Returns whether anything did.
    pub fn refresh(&mut self) -> Result<bool, DashboardError> {
        let version = self.store.data_version()?;
        if self.data_version == Some(version) {
            return Ok(false);
        }
        self.data_version = Some(version);
        // One read transaction: the runs, epochs and events of a frame agree with each other.
        self.store.begin_read()?;
        let result = self.read_all();
        self.store.end_read()?;
        result.map(|()| true)
    }

    fn read_all(&mut self) -> Result<(), DashboardError> {
        self.read_sweep()?;
        self.read_runs()?;
        self.read_epochs()?;
        self.read_events()?;
        self.read_details()
    }

    fn read_sweep(&mut self) -> Result<(), DashboardError> {
        let id = self.snapshot.sweep.id;
        self.snapshot.sweep = self.store.sweep_meta(id)?;
        self.snapshot.axes = self.store.sweep_axes(id)?;
        Ok(())
    }

    fn read_runs(&mut self) -> Result<(), DashboardError> {
        let id = self.snapshot.sweep.id;
        let axes = &self.snapshot.axes;
        let values = self.store.swept_values(id, axes)?;
        let runs: Vec<RunView> = self
            .store
            .sweep_runs(id)?
            .into_iter()
            .map(|r| RunView {
                params: axes
                    .iter()
                    .map(|k| {
                        values
                            .get(&(r.id.clone(), k.clone()))
                            .map_or_else(|| "-".to_string(), crate::table::cell_text)
                    })
                    .collect(),
                position: r.position as usize + 1,
                status: r.status,
                seed: r.seed as u64,
                slot: r.slot,
                fused: r.fused,
                epochs_done: r.epochs_done as usize,
                epochs_planned: r.epochs_planned as usize,
                split: r.split,
                items_done: r.items_done.unwrap_or(0) as usize,
                items_total: r.items_total.unwrap_or(0) as usize,
                best_epoch: r.best_epoch.map(|e| e as usize),
                error: r.error,
                attempts: r.attempts as u32,
                val_acc: r.val_acc,
                test_acc: r.test_acc,
                never_learned: r.status == RunStatus::Done
                    && r.val_macro_recall
                        .is_some_and(|v| v < crate::store::NEVER_LEARNED_BELOW),
                id: r.id,
            })
            .collect();
        // A resumed run rewrote its epochs after the checkpoint: drop what it no longer has.
        for run in &runs {
            if let Some(curve) = self.snapshot.curves.get_mut(&run.id) {
                curve.retain(|p| p.epoch <= run.epochs_done);
            }
        }
        self.snapshot.runs = runs;
        Ok(())
    }

    fn read_epochs(&mut self) -> Result<(), DashboardError> {
        let id = self.snapshot.sweep.id;
        let rows = self.store.sweep_epochs_after(id, self.last_epoch_rowid)?;
        for (rowid, run, point) in rows {
            self.last_epoch_rowid = self.last_epoch_rowid.max(rowid);
            let curve = self.snapshot.curves.entry(run).or_default();
            curve.retain(|p| p.epoch != point.epoch);
            let at = curve.partition_point(|p| p.epoch < point.epoch);
            curve.insert(at, point);
        }
        Ok(())
    }

    fn read_events(&mut self) -> Result<(), DashboardError> {
        let id = self.snapshot.sweep.id;
        let rows = self
            .store
            .sweep_events_after(id, self.last_event_id, EVENTS_KEPT)?;
        if let Some(last) = rows.last() {
            self.last_event_id = last.id;
        }
        let events = &mut self.snapshot.events;
        events.extend(rows);
        let excess = events.len().saturating_sub(EVENTS_KEPT);
        events.drain(..excess);
        Ok(())
    }

    /// Per-class F1 and confusion of every evaluated run not read yet (read once: a run's
    /// evaluation is written in one transaction when it ends).
    fn read_details(&mut self) -> Result<(), DashboardError> {
        let evaluated: Vec<String> = self
            .snapshot
            .runs
            .iter()
            .filter(|r| r.val_acc.is_some() && !self.snapshot.details.contains_key(&r.id))
            .map(|r| r.id.clone())
            .collect();
        // A run that trains again (retried, restarted) loses its evaluation: forget its detail.
        let unevaluated: Vec<String> = self
            .snapshot
            .runs
            .iter()
            .filter(|r| r.val_acc.is_none())
            .map(|r| r.id.clone())
            .collect();
        for id in unevaluated {
            self.snapshot.details.remove(&id);
        }
        for id in evaluated {
            let detail = self.read_detail(&id)?;
            self.snapshot.details.insert(id, detail);
        }
        Ok(())
    }

    fn read_detail(&self, run: &str) -> Result<RunDetail, DashboardError> {
        let class_f1 = self
            .store
            .class_metrics(run, Some(Split::Val))?
            .into_iter()
            .filter_map(|m| Some((Emotion::from_id(m.class_id as u8)?, m.f1, m.support)))
            .collect();
        let mut confusion = [[0; 7]; 7];
        for (t, p, n) in self.store.confusion_cells(run, Split::Val)? {
            if (0..7).contains(&t) && (0..7).contains(&p) {
                confusion[t as usize][p as usize] = n;
            }
        }
        Ok(RunDetail {
            class_f1,
            confusion,
        })
    }

    /// The sweep's pause flag, written through a short-lived writable connection: the loader's
    /// own connection stays read-only.
    pub fn set_paused(&self, paused: bool) -> Result<(), DashboardError> {
        let store = Store::open_existing(Path::new(&self.path))?;
        store.set_paused(self.snapshot.sweep.id, paused)?;
        Ok(())
    }

    /// Puts a failed run back in the queue (see [`Store::retry_run`]).
    pub fn retry(&self, run: &str) -> Result<bool, DashboardError> {
        let store = Store::open_existing(Path::new(&self.path))?;
        Ok(store.retry_run(run, "retried from the dashboard")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, SweepRecord};

    fn sweep(store: &mut Store, name: &str, runs: usize) -> i64 {
        let record = SweepRecord::for_test(name, &["lr"]);
        let runs: Vec<RunRecord> = (0..runs)
            .map(|i| {
                RunRecord::for_test(
                    format!("{name}{i}"),
                    1,
                    5,
                    vec![("lr".into(), serde_json::Value::from(0.001 * (i + 1) as f64))],
                )
            })
            .collect();
        store.register_sweep(&record, &runs).unwrap()
    }

    fn epoch(store: &mut Store, run: &str, epoch: usize, val: f64) {
        let row = EpochRow {
            epoch,
            train_loss: Some(1.0),
            val_acc: Some(val),
            secs: Some(10.0),
            ..EpochRow::default()
        };
        store.record_epoch(run, &row).unwrap();
    }

    #[test]
    fn reads_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut store = Store::open(&db).unwrap();
        sweep(&mut store, "other", 1);
        sweep(&mut store, "s", 3);
        epoch(&mut store, "other0", 1, 0.9);
        epoch(&mut store, "s0", 1, 0.3);

        let mut loader = Loader::open(&db, Some("s")).unwrap();
        let s = &loader.snapshot;
        assert_eq!(s.sweep.name, "s");
        assert_eq!(s.axes, ["lr"]);
        assert_eq!(s.runs.len(), 3);
        assert_eq!(s.runs[1].params, ["0.002"]);
        assert_eq!(s.curves.len(), 1, "another sweep's epochs stay out");
        assert!(!loader.refresh().unwrap(), "nothing written: nothing read");

        store.claim_run("s1", "cpu#1", 20.0).unwrap();
        epoch(&mut store, "s0", 2, 0.4);
        epoch(&mut store, "s1", 1, 0.2);
        assert!(loader.refresh().unwrap());
        let s = &loader.snapshot;
        assert_eq!(s.curves["s0"].len(), 2);
        assert_eq!(s.best_val("s0"), Some(0.4));
        assert_eq!(s.run("s1").unwrap().status, RunStatus::Running);
        assert_eq!(s.run("s1").unwrap().slot.as_deref(), Some("cpu#1"));
        assert_eq!(s.events.last().unwrap().kind, "launched");
        // 2 epochs × 10 s left for s1 … : median epoch 10 s, (5−2)+(5−1)+5 = 12 epochs, 1 running.
        assert_eq!(s.eta_secs(), Some(120.0));

        // A resumed run rewrote its epochs after its checkpoint: the dashboard follows.
        store.start_attempt("s0", "cpu", 1, 1, Some(1)).unwrap();
        assert!(loader.refresh().unwrap());
        assert_eq!(loader.snapshot.curves["s0"].len(), 1);

        // Pausing goes through the database.
        loader.set_paused(true).unwrap();
        assert!(loader.refresh().unwrap());
        assert!(loader.snapshot.sweep.paused);
        assert!(store.is_paused(loader.snapshot.sweep.id).unwrap());
    }

    #[test]
    fn bad_attachments_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let err = Loader::open(&db, None).err().unwrap().to_string();
        assert!(err.contains("db.sqlite"), "{err}");
        let mut store = Store::open(&db).unwrap();
        let err = Loader::open(&db, None).err().unwrap().to_string();
        assert!(err.contains("no sweep recorded yet"), "{err}");
        sweep(&mut store, "s", 1);
        let err = Loader::open(&db, Some("nope")).err().unwrap().to_string();
        assert!(
            err.contains("no sweep named `nope`") && err.contains("known: s"),
            "{err}"
        );
        store.set_schema_version_for_test(99);
        drop(store);
        let err = Loader::open(&db, Some("s")).err().unwrap().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }

    #[test]
    fn an_ended_sweep_is_known_with_the_time_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut store = Store::open(&db).unwrap();
        sweep(&mut store, "s", 2);
        store.claim_run("s0", "cpu#1", 20.0).unwrap();
        let mut loader = Loader::open(&db, None).unwrap();
        assert!(!loader.snapshot.ended());
        assert_eq!(loader.snapshot.sweep.last_end, None);
        store
            .end_run("s0", RunStatus::Failed, None, Some("boom"), None)
            .unwrap();
        store
            .end_run("s1", RunStatus::Pruned, None, None, Some(1))
            .unwrap();
        assert!(loader.refresh().unwrap());
        assert!(loader.snapshot.ended());
        let end = loader.snapshot.sweep.last_end.unwrap();
        assert!((end - crate::store::now_unix()).abs() < 60.0, "{end}");
    }

    #[test]
    fn retry_requeues_only_failed_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut store = Store::open(&db).unwrap();
        let id = sweep(&mut store, "s", 2);
        store
            .end_run("s0", RunStatus::Failed, Some(1.0), Some("boom"), None)
            .unwrap();
        let loader = Loader::open(&db, None).unwrap();
        assert!(loader.retry("s0").unwrap());
        assert!(!loader.retry("s1").unwrap(), "a queued run is left alone");
        assert_eq!(store.run_status("s0").unwrap(), Some(RunStatus::Queued));
        assert_eq!(store.queued_runs(id).unwrap(), ["s0", "s1"]);
    }
}
