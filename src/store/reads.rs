//! Typed queries for the worker, pruning, predict and the progress bars. Each returns a struct
//! named for what its reader needs, so no reader indexes an untyped row by position.

use super::records::RunStatus;
use super::{NEVER_LEARNED_BELOW, Store, StoreError};
use crate::data::Split;
use crate::metrics::SplitPredictions;
use rusqlite::{OptionalExtension, params};

/// What a worker needs of its run to train it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredRun {
    pub config_json: String,
    pub seed: u64,
    /// None only in a database written before runs had folders.
    pub artifact_dir: Option<String>,
    pub data_fingerprint: String,
    pub epochs_done: usize,
}

/// Where a trained run's model is, and how it did on val.
#[derive(Debug, Clone)]
pub struct TrainedRunRow {
    pub config_json: String,
    pub artifact_dir: Option<String>,
    pub val_acc: Option<f64>,
}

/// A running run's place, for a progress bar.
#[derive(Debug, Clone)]
pub struct RunningProgress {
    pub id: String,
    pub slot: Option<String>,
    pub epochs_done: usize,
    pub epochs_planned: usize,
    /// None before the worker's first split (see [`Store::set_progress`]).
    pub split: Option<Split>,
    pub items_done: usize,
    pub items_total: usize,
}

impl Store {
    /// The class probabilities run `id`'s best model gave every image of `split`; None when
    /// the run has none recorded (not finished, or finished by a fer-lab older than schema 8).
    pub fn predictions(
        &self,
        id: &str,
        split: Split,
    ) -> Result<Option<SplitPredictions>, StoreError> {
        if self.schema_version()? < 8 {
            return Ok(None);
        }
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT labels, probs FROM predictions WHERE run_id = ?1 AND split = ?2",
                params![id, split],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(labels, probs)| {
            SplitPredictions::from_bytes(&format!("run {id}, {split} predictions"), labels, &probs)
                .map_err(|e| StoreError::Corrupt(self.path.clone(), e))
        })
        .transpose()
    }

    /// The finished runs of a sweep that never learned (see [`NEVER_LEARNED_BELOW`]), in sweep
    /// order.
    pub fn never_learned(&self, sweep_id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 JOIN evals v ON v.run_id = r.id AND v.split = ?4
                 WHERE sr.sweep_id = ?1 AND r.status = ?2 AND v.macro_recall < ?3
                 ORDER BY sr.position",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![sweep_id, RunStatus::Done, NEVER_LEARNED_BELOW, Split::Val],
            |r| r.get(0),
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The run a worker is told to train; None when no run has that id.
    pub fn stored_run(&self, id: &str) -> Result<Option<StoredRun>, StoreError> {
        self.conn
            .query_row(
                "SELECT config, seed, artifact_dir, data_fingerprint, epochs_done
                 FROM runs WHERE id = ?1",
                [id],
                |r| {
                    Ok(StoredRun {
                        config_json: r.get(0)?,
                        seed: r.get::<_, i64>(1)? as u64,
                        artifact_dir: r.get(2)?,
                        data_fingerprint: r.get(3)?,
                        epochs_done: r.get::<_, i64>(4)? as usize,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The best val accuracy up to `epoch` of every other run of the sweep that has reached
    /// `epoch`: what the pruning rule compares a run with.
    pub fn others_best_val_acc(
        &self,
        sweep_id: i64,
        run: &str,
        epoch: usize,
    ) -> Result<Vec<f64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT max(e.val_acc) FROM epochs e
                 JOIN sweep_runs sr ON sr.run_id = e.run_id AND sr.sweep_id = ?1
                 WHERE e.run_id != ?2 AND e.epoch <= ?3
                 GROUP BY e.run_id HAVING max(e.epoch) >= ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<Option<f64>> = stmt
            .query_map(params![sweep_id, run, epoch as i64], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// The ids that `prefix` names: the run with that id, or, from 4 characters on, every run
    /// whose id starts with it; in id order.
    pub fn runs_matching(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM runs WHERE id = ?1 OR (length(?1) >= 4 AND id LIKE ?1 || '%')
                 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([prefix], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The finished run of a sweep with the best val accuracy (the earlier in the sweep on a
    /// tie).
    pub fn best_finished_run(&self, sweep_id: i64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.id FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 JOIN evals v ON v.run_id = r.id AND v.split = ?3
                 WHERE sr.sweep_id = ?1 AND r.status = ?2
                 ORDER BY v.accuracy DESC, sr.position LIMIT 1",
                params![sweep_id, RunStatus::Done, Split::Val],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A run's config, folder and val accuracy; None when no run has that id.
    pub fn trained_run(&self, id: &str) -> Result<Option<TrainedRunRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.config, r.artifact_dir, v.accuracy FROM runs r
                 LEFT JOIN evals v ON v.run_id = r.id AND v.split = ?2 WHERE r.id = ?1",
                params![id, Split::Val],
                |r| {
                    Ok(TrainedRunRow {
                        config_json: r.get(0)?,
                        artifact_dir: r.get(1)?,
                        val_acc: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Where each running run of a sweep is.
    pub fn running_progress(&self, sweep_id: i64) -> Result<Vec<RunningProgress>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id, r.slot, r.epochs_done, r.epochs_planned, r.split, r.items_done,
                        r.items_total
                 FROM runs r JOIN sweep_runs sr ON sr.run_id = r.id AND sr.sweep_id = ?1
                 WHERE r.status = ?2",
            )
            .map_err(|e| self.err(e))?;
        let count = |r: &rusqlite::Row, i| -> rusqlite::Result<usize> {
            Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as usize)
        };
        stmt.query_map(params![sweep_id, RunStatus::Running], |r| {
            let split: Option<String> = r.get(4)?;
            Ok(RunningProgress {
                id: r.get(0)?,
                slot: r.get(1)?,
                epochs_done: count(r, 2)?,
                epochs_planned: count(r, 3)?,
                // '' (no split yet) and a word this fer-lab does not know show as no split.
                split: split.and_then(|s| Split::from_progress_name(&s).ok()),
                items_done: count(r, 5)?,
                items_total: count(r, 6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }
}
