//! Results written as given, not earned by training: the synthetic sweep that `fer-lab bench
//! dashboard` and `bench report` measure on, and the fixtures of the report's tests. Kept in
//! the store so that no reader or benchmark holds SQL of its own; nothing that trains calls it.

use super::records::{RunRecord, RunStatus, SweepRecord};
use super::{Store, StoreError};
use crate::data::Split;
use rusqlite::params;
use serde_json::Value;
use std::path::Path;

/// A run's row as a synthetic writer sets it; `None` leaves a column as it was.
#[derive(Debug, Clone)]
pub struct SyntheticState {
    pub status: RunStatus,
    pub epochs_done: usize,
    pub best_epoch: Option<usize>,
    pub params: Option<i64>,
    pub slot: Option<String>,
    pub launched_at: Option<f64>,
    /// Where inside an epoch: `runs.split` as a worker writes it, and items done and total.
    pub progress: Option<(Split, usize, usize)>,
}

/// One split's evaluation with its per-class metrics and confusion cells, as given.
#[derive(Debug, Clone)]
pub struct SyntheticEval {
    pub split: Split,
    pub epoch: usize,
    pub n: usize,
    pub accuracy: f64,
    pub loss: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    /// (class id, precision, recall, F1, support).
    pub classes: Vec<(i64, f64, f64, f64, i64)>,
    /// (true id, predicted id, count); cells left out are absent, not zero.
    pub confusion: Vec<(i64, i64, i64)>,
}

impl Store {
    /// Overwrites a run's status and progress.
    pub fn set_synthetic_state(&self, run: &str, s: &SyntheticState) -> Result<(), StoreError> {
        let (split, items_done, items_total) = match s.progress {
            Some((split, done, total)) => (
                Some(split.progress_name()),
                Some(done as i64),
                Some(total as i64),
            ),
            None => (None, None, None),
        };
        self.conn
            .prepare_cached(
                "UPDATE runs SET status = ?2, epochs_done = ?3, best_epoch = ?4,
                     params = coalesce(?5, params), slot = coalesce(?6, slot),
                     launched_at = coalesce(?7, launched_at), split = coalesce(?8, split),
                     items_done = coalesce(?9, items_done), items_total = coalesce(?10, items_total)
                 WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run,
                    s.status,
                    s.epochs_done as i64,
                    s.best_epoch.map(|e| e as i64),
                    s.params,
                    s.slot,
                    s.launched_at,
                    split,
                    items_done,
                    items_total
                ])
            })
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Adds one split's evaluation of a run.
    pub fn add_synthetic_eval(&self, run: &str, e: &SyntheticEval) -> Result<(), StoreError> {
        let err = |x| self.err(x);
        self.conn
            .prepare_cached(
                "INSERT INTO evals (run_id, split, epoch, n, accuracy, loss, macro_precision,
                     macro_recall, macro_f1) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run,
                    e.split,
                    e.epoch as i64,
                    e.n as i64,
                    e.accuracy,
                    e.loss,
                    e.macro_precision,
                    e.macro_recall,
                    e.macro_f1
                ])
            })
            .map_err(err)?;
        let mut classes = self
            .conn
            .prepare_cached(
                "INSERT INTO class_metrics (run_id, split, class_id, precision, recall, f1, support)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(err)?;
        for &(class, precision, recall, f1, support) in &e.classes {
            classes
                .execute(params![run, e.split, class, precision, recall, f1, support])
                .map_err(err)?;
        }
        let mut confusion = self
            .conn
            .prepare_cached(
                "INSERT INTO confusion (run_id, split, true_id, pred_id, count)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(err)?;
        for &(t, p, count) in &e.confusion {
            confusion
                .execute(params![run, e.split, t, p, count])
                .map_err(err)?;
        }
        Ok(())
    }
}

/// Fills `db` with a sweep named `bench` of `runs` × `epochs`; the first `running` runs are left
/// running halfway, the others done with per-class metrics and confusion on val and test.
pub fn synthetic_sweep(
    db: &Path,
    runs: usize,
    epochs: usize,
    running: usize,
) -> Result<(), StoreError> {
    let mut store = Store::open(db)?;
    let sweep = SweepRecord {
        name: "bench".into(),
        file: "bench.toml".into(),
        spec: String::new(),
        data_path: "data/fer2013".into(),
        data_fingerprint: "f".into(),
        axes: vec!["lr".into(), "dropout".into(), "model.width".into()],
    };
    let records: Vec<RunRecord> = (0..runs)
        .map(|i| RunRecord {
            id: format!("{i:012x}"),
            seed: (i % 3) as u64 + 1,
            config_json: format!("{{\"cell\":{}}}", i / 3),
            model: "baseline".into(),
            epochs,
            params: vec![
                (
                    "lr".into(),
                    Value::from([1e-3, 3e-4, 1e-4, 3e-3][i / 3 % 4]),
                ),
                ("dropout".into(), Value::from(0.1 * (i / 12 % 6) as f64)),
                // Cells of three seeds: every 72 runs another width.
                ("model.width".into(), Value::from(8 * (1 + i / 72))),
            ],
            artifact_dir: "x".into(),
        })
        .collect();
    store.register_sweep(&sweep, &records)?;
    let e = |err| store.err(err);
    // One transaction for the whole fill, opened by hand so the store's methods run inside it.
    store.conn.execute_batch("BEGIN").map_err(e)?;
    for (i, run) in records.iter().enumerate() {
        let done = if i < running { epochs / 2 } else { epochs };
        let status = if i < running {
            RunStatus::Running
        } else {
            RunStatus::Done
        };
        store.set_synthetic_state(
            &run.id,
            &SyntheticState {
                status,
                epochs_done: done,
                best_epoch: Some(done),
                params: None,
                slot: Some("cpu#1".into()),
                launched_at: Some(1.7e9),
                progress: Some((Split::Train, 100, 28709)),
            },
        )?;
        let mut epoch_row = store
            .conn
            .prepare_cached(
                "INSERT INTO epochs (run_id, epoch, train_loss, train_acc, val_loss, val_acc, lr, secs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0.001, 40.0)",
            )
            .map_err(e)?;
        for epoch in 1..=done {
            let t = epoch as f64;
            epoch_row
                .execute(params![
                    run.id,
                    epoch as i64,
                    1.8 / t.sqrt(),
                    0.6 - 0.3 / t,
                    1.6 / t.sqrt(),
                    0.55 - 0.3 / t
                ])
                .map_err(e)?;
        }
        if i >= running {
            for split in [Split::Val, Split::Test] {
                let eval = SyntheticEval {
                    split,
                    epoch: done,
                    n: 3589,
                    accuracy: 0.5 + (i % 100) as f64 / 1000.0,
                    loss: 1.1,
                    macro_precision: 0.5,
                    macro_recall: 0.5,
                    macro_f1: 0.5,
                    classes: (0..7).map(|c| (c, 0.5, 0.5, 0.5, 500)).collect(),
                    confusion: (0..7)
                        .flat_map(|c| (0..7).map(move |p| (c, p, if c == p { 300 } else { 10 })))
                        .collect(),
                };
                store.add_synthetic_eval(&run.id, &eval)?;
            }
        }
    }
    store.conn.execute_batch("COMMIT").map_err(e)
}
