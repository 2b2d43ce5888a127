//! Typed queries for the dashboard's loader, which reads a sweep again on every change: the
//! sweep's row, its runs, and only the epochs and events newer than what it holds. Statements
//! are cached on the connection, since the loader asks the same questions up to four times a
//! second. Nothing here writes.

use super::records::{EPOCH_COLUMNS, EpochRow, RunStatus};
use super::{Store, StoreError};
use crate::data::Split;
use rusqlite::params;

/// The sweep itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepMeta {
    pub id: i64,
    pub name: String,
    pub file: String,
    pub data_path: String,
    /// Unix seconds of the earliest start of any of its runs (for elapsed time).
    pub started: Option<f64>,
    /// Unix seconds of the latest end of any of its runs: where the clock of an ended sweep
    /// stops.
    pub last_end: Option<f64>,
    pub paused: bool,
}

/// A run of a sweep with where it is and, once evaluated, how it did.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRunRow {
    pub id: String,
    /// 0-based position in the sweep file's expansion.
    pub position: i64,
    pub status: RunStatus,
    pub seed: i64,
    pub slot: Option<String>,
    /// The fused group it trains (or last trained) in; None alone.
    pub fused: Option<String>,
    pub epochs_done: i64,
    pub epochs_planned: i64,
    /// `runs.split` as the worker wrote it (see [`Split::progress_name`]).
    pub split: Option<String>,
    pub items_done: Option<i64>,
    pub items_total: Option<i64>,
    pub best_epoch: Option<i64>,
    pub error: Option<String>,
    pub attempts: i64,
    pub val_acc: Option<f64>,
    pub test_acc: Option<f64>,
    pub val_macro_recall: Option<f64>,
}

/// One line of a run's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub id: i64,
    /// `HH:MM:SS` (UTC) of the event.
    pub at: String,
    pub run_id: String,
    /// As stored: a reader shows a word it does not know rather than failing on it.
    pub kind: String,
    pub detail: Option<String>,
}

impl Store {
    /// `PRAGMA data_version`: changes whenever another connection has written.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Starts a read transaction, so that several reads see one state of the database; end it
    /// with [`Store::end_read`].
    pub fn begin_read(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.err(e))
    }

    /// Ends what [`Store::begin_read`] started.
    pub fn end_read(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))
    }

    /// A sweep's row with the time span of its runs.
    pub fn sweep_meta(&self, sweep_id: i64) -> Result<SweepMeta, StoreError> {
        // finished_at is ISO text: julianday() turns it into unix seconds like launched_at.
        self.conn
            .prepare_cached(
                "SELECT name, file, data_path, paused, min(r.launched_at),
                        (julianday(max(r.finished_at)) - 2440587.5) * 86400.0
                 FROM sweeps s
                 LEFT JOIN sweep_runs sr ON sr.sweep_id = s.id
                 LEFT JOIN runs r ON r.id = sr.run_id
                 WHERE s.id = ?1 GROUP BY s.id",
            )
            .and_then(|mut stmt| {
                stmt.query_row([sweep_id], |r| {
                    Ok(SweepMeta {
                        id: sweep_id,
                        name: r.get(0)?,
                        file: r.get(1)?,
                        data_path: r.get(2)?,
                        paused: r.get(3)?,
                        started: r.get(4)?,
                        last_end: r.get(5)?,
                    })
                })
            })
            .map_err(|e| self.err(e))
    }

    /// Every run of a sweep, in sweep order.
    pub fn sweep_runs(&self, sweep_id: i64) -> Result<Vec<SweepRunRow>, StoreError> {
        let fused = if self.has_fused_groups()? {
            "r.fused_group"
        } else {
            "NULL"
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT r.id, sr.position, r.status, r.seed, r.slot, r.epochs_done, r.epochs_planned,
                        r.split, r.items_done, r.items_total, r.best_epoch, r.error, r.attempts,
                        v.accuracy, t.accuracy, v.macro_recall, {fused}
                 FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id
                 LEFT JOIN evals v ON v.run_id = r.id AND v.split = ?2
                 LEFT JOIN evals t ON t.run_id = r.id AND t.split = ?3
                 WHERE sr.sweep_id = ?1 ORDER BY sr.position"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![sweep_id, Split::Val, Split::Test], |r| {
            Ok(SweepRunRow {
                id: r.get(0)?,
                position: r.get(1)?,
                status: r.get(2)?,
                seed: r.get(3)?,
                slot: r.get(4)?,
                epochs_done: r.get(5)?,
                epochs_planned: r.get(6)?,
                split: r.get(7)?,
                items_done: r.get(8)?,
                items_total: r.get(9)?,
                best_epoch: r.get(10)?,
                error: r.get(11)?,
                attempts: r.get(12)?,
                val_acc: r.get(13)?,
                test_acc: r.get(14)?,
                val_macro_recall: r.get(15)?,
                fused: r.get(16)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The epoch rows of a sweep's runs written after rowid `after`, as (rowid, run, row), in
    /// the order they were written.
    pub fn sweep_epochs_after(
        &self,
        sweep_id: i64,
        after: i64,
    ) -> Result<Vec<(i64, String, EpochRow)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT e.rowid, e.run_id, {EPOCH_COLUMNS}
                     FROM epochs e
                     WHERE e.rowid > ?1
                       AND e.run_id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = ?2)
                     ORDER BY e.rowid"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![after, sweep_id], |r| {
            Ok((r.get(0)?, r.get(1)?, EpochRow::from_row(r, 2)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The newest `limit` events of a sweep's runs with an id above `after`, oldest first.
    pub fn sweep_events_after(
        &self,
        sweep_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, substr(e.at, 12, 8), e.run_id, e.kind, e.detail FROM run_events e
                 WHERE e.id > ?1
                   AND e.run_id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = ?2)
                 ORDER BY e.id DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let mut events = stmt
            .query_map(params![after, sweep_id, limit as i64], |r| {
                Ok(RunEvent {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    run_id: r.get(2)?,
                    kind: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        events.reverse();
        Ok(events)
    }
}
