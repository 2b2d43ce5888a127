//! A run's lifecycle: claimed, started or resumed, requeued, retried, reset, finished or ended,
//! each change with its event.

use super::records::{EventKind, RunState, RunStatus};
use super::{Store, StoreError, now_sql, now_unix, sqlite};
use crate::data::Split;
use crate::metrics::Evaluation;
use rusqlite::{OptionalExtension, params};

impl Store {
    pub fn run_status(&self, id: &str) -> Result<Option<RunStatus>, StoreError> {
        self.conn
            .query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A worker starts (or resumes) a run on `device`. A fresh start clears everything an earlier
    /// attempt recorded; a resume from epoch `e` keeps epochs 1..=e and drops the rest, so no
    /// epoch row is ever duplicated or left from a lost attempt. The wall time of earlier
    /// attempts is kept (only `--restart` forgets it) and returned: this attempt adds to it.
    pub fn start_attempt(
        &mut self,
        id: &str,
        device: &str,
        params: usize,
        flops: u64,
        resume_from: Option<usize>,
    ) -> Result<f64, StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let kept = resume_from.unwrap_or(0) as i64;
        // A savepoint: alone it is a transaction, and a journal merge nests it in its own.
        let tx = self.conn.savepoint().map_err(e)?;
        tx.execute(
            "DELETE FROM epochs WHERE run_id = ?1 AND epoch > ?2",
            params![id, kept],
        )
        .map_err(e)?;
        for table in ["evals", "class_metrics", "confusion", "predictions"] {
            tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [id])
                .map_err(e)?;
        }
        tx.execute(
            &format!(
                "UPDATE runs SET status = ?6, device = ?2, params = ?3, flops = ?4,
                     started_at = coalesce(CASE WHEN ?5 > 0 THEN started_at END, {now}),
                     finished_at = NULL, error = NULL, stopped_epoch = NULL,
                     epochs_done = ?5, best_epoch = NULL, resumed_from = nullif(?5, 0),
                     first_step_at = NULL
                 WHERE id = ?1",
                now = now_sql()
            ),
            params![
                id,
                device,
                params as i64,
                flops as i64,
                kept,
                RunStatus::Running
            ],
        )
        .map_err(e)?;
        if kept > 0 {
            tx.execute(
                "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, ?2, ?3)",
                params![
                    id,
                    EventKind::Resumed,
                    format!("from the checkpoint of epoch {kept}")
                ],
            )
            .map_err(e)?;
        }
        let wall: Option<f64> = tx
            .query_row("SELECT wall_secs FROM runs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(wall.unwrap_or(0.0))
    }

    /// The scheduler takes a queued run for a worker: status running, one more attempt, a
    /// lease the worker must renew. Returns the attempt number.
    pub fn claim_run(&mut self, id: &str, slot: &str, lease_secs: f64) -> Result<u32, StoreError> {
        let now = now_unix();
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "UPDATE runs SET status = ?5, attempts = attempts + 1, slot = ?2,
                 launched_at = ?3, lease_expires = ?4, worker_pid = NULL, batch_job = NULL
             WHERE id = ?1",
            params![id, slot, now, now + lease_secs, RunStatus::Running],
        )
        .map_err(e)?;
        let attempts: i64 = tx
            .query_row("SELECT attempts FROM runs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(e)?;
        tx.execute(
            "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, ?2, ?3)",
            params![
                id,
                EventKind::Launched,
                format!("attempt {attempts} on {slot}")
            ],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(attempts as u32)
    }

    /// One more failure of a run that counts against its retries; returns how many it has.
    pub fn count_failure(&self, id: &str) -> Result<u32, StoreError> {
        self.conn
            .query_row(
                "UPDATE runs SET failures = failures + 1 WHERE id = ?1 RETURNING failures",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u32)
            .map_err(|e| self.err(e))
    }

    /// Puts a run back in the queue (its checkpoints stay, so it resumes), with the reason.
    pub fn requeue(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, worker_pid = NULL, lease_expires = NULL WHERE id = ?1",
                params![id, RunStatus::Queued],
            )
            .map_err(|e| self.err(e))?;
        self.record_event(id, EventKind::Requeued, Some(reason))
    }

    /// Forgets everything a run recorded: it trains again from scratch.
    pub fn reset_run(&mut self, id: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        for table in [
            "epochs",
            "evals",
            "class_metrics",
            "confusion",
            "predictions",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [id])
                .map_err(e)?;
        }
        // Its fused group cannot resume without it: the others start a new one.
        tx.execute(
            "UPDATE runs SET fused_group = NULL, fused_index = NULL
             WHERE fused_group = (SELECT fused_group FROM runs WHERE id = ?1)",
            [id],
        )
        .map_err(e)?;
        tx.execute(
            "UPDATE runs SET status = ?2, attempts = 0, failures = 0, epochs_done = 0,
                 best_epoch = NULL,
                 error = NULL, stopped_epoch = NULL, resumed_from = NULL, finished_at = NULL,
                 wall_secs = NULL, worker_pid = NULL, lease_expires = NULL
             WHERE id = ?1",
            params![id, RunStatus::Queued],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Puts a failed or diverged run back in the queue with a fresh retry budget; it resumes
    /// from its last checkpoint. Returns false (and changes nothing) for a run in another state.
    pub fn retry_run(&self, id: &str, why: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE runs SET status = ?2, failures = 0, error = NULL, stopped_epoch = NULL,
                     worker_pid = NULL, lease_expires = NULL
                 WHERE id = ?1 AND status IN (?3, ?4)",
                params![
                    id,
                    RunStatus::Queued,
                    RunStatus::Failed,
                    RunStatus::Diverged
                ],
            )
            .map_err(|e| self.err(e))?;
        if changed > 0 {
            self.record_event(id, EventKind::Requeued, Some(why))?;
        }
        Ok(changed > 0)
    }

    /// The queued runs of a sweep, in sweep order: how a scheduler notices runs that a
    /// dashboard put back in the queue.
    pub fn queued_runs(&self, sweep_id: i64) -> Result<Vec<String>, StoreError> {
        self.runs_with_status(sweep_id, RunStatus::Queued)
    }

    /// The runs of a sweep with `status`, in sweep order.
    pub(super) fn runs_with_status(
        &self,
        sweep_id: i64,
        status: RunStatus,
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.id FROM runs r JOIN sweep_runs sr ON sr.run_id = r.id AND sr.sweep_id = ?1
                 WHERE r.status = ?2 ORDER BY sr.position",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![sweep_id, status], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Appends to a run's event log.
    pub fn record_event(
        &self,
        id: &str,
        kind: EventKind,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, ?2, ?3)",
                params![id, kind, detail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// What the scheduler needs to know of a run.
    pub fn run_state(&self, id: &str) -> Result<Option<RunState>, StoreError> {
        self.conn
            .query_row(
                "SELECT status, attempts, lease_expires, worker_pid, epochs_done, error, failures,
                        batch_job
                 FROM runs WHERE id = ?1",
                [id],
                |r| {
                    Ok(RunState {
                        status: r.get(0)?,
                        attempts: r.get::<_, i64>(1)? as u32,
                        lease_expires: r.get(2)?,
                        worker_pid: r.get(3)?,
                        epochs_done: r.get::<_, i64>(4)? as usize,
                        error: r.get(5)?,
                        failures: r.get::<_, i64>(6)? as u32,
                        batch_job: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Stores the evaluations of the best checkpoint and marks the run done, atomically.
    pub fn finish_run(
        &mut self,
        id: &str,
        best_epoch: usize,
        wall_secs: f64,
        evals: &[(Split, &Evaluation, usize)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        // A savepoint: alone it is a transaction, and a journal merge nests it in its own.
        let tx = self.conn.savepoint().map_err(e)?;
        for (split, eval, n) in evals {
            tx.execute(
                "INSERT OR REPLACE INTO evals (run_id, split, epoch, n, accuracy, loss,
                     macro_precision, macro_recall, macro_f1)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    split,
                    best_epoch as i64,
                    *n as i64,
                    eval.accuracy,
                    eval.loss,
                    eval.macro_precision,
                    eval.macro_recall,
                    eval.macro_f1
                ],
            )
            .map_err(e)?;
            for (class, m) in eval.per_class.iter().enumerate() {
                tx.execute(
                    "INSERT OR REPLACE INTO class_metrics (run_id, split, class_id, precision,
                         recall, f1, support)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        split,
                        class as i64,
                        m.precision,
                        m.recall,
                        m.f1,
                        m.support as i64
                    ],
                )
                .map_err(e)?;
            }
            if let Some(p) = &eval.predictions {
                tx.execute(
                    "INSERT OR REPLACE INTO predictions (run_id, split, n, labels, probs)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, split, p.len() as i64, p.label_bytes(), p.prob_bytes()],
                )
                .map_err(e)?;
            }
            for (t, row) in eval.confusion.counts.iter().enumerate() {
                for (p, count) in row.iter().enumerate() {
                    tx.execute(
                        "INSERT OR REPLACE INTO confusion (run_id, split, true_id, pred_id, count)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, split, t as i64, p as i64, *count as i64],
                    )
                    .map_err(e)?;
                }
            }
        }
        tx.execute(
            &format!(
                "UPDATE runs SET status = ?4, best_epoch = ?2, wall_secs = ?3,
                     finished_at = {}, error = NULL, worker_pid = NULL, lease_expires = NULL
                 WHERE id = ?1",
                now_sql()
            ),
            params![id, best_epoch as i64, wall_secs, RunStatus::Done],
        )
        .map_err(e)?;
        tx.execute(
            "INSERT INTO run_events (run_id, kind, detail) VALUES (?1, ?2, ?3)",
            params![id, EventKind::Done, format!("best epoch {best_epoch}")],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Marks a run as ended without results (`failed`, `diverged`, `pruned`, `interrupted`),
    /// with the epoch it stopped at when known. `wall_secs` None keeps the time the worker's
    /// heartbeat last recorded (when the worker is gone and only the scheduler knows).
    pub fn end_run(
        &self,
        id: &str,
        status: RunStatus,
        wall_secs: Option<f64>,
        error: Option<&str>,
        stopped_epoch: Option<usize>,
    ) -> Result<(), StoreError> {
        let kind = EventKind::ended(status).ok_or(StoreError::NotAnEnd {
            run: id.into(),
            status,
        })?;
        self.conn
            .execute(
                &format!(
                    "UPDATE runs SET status = ?2, wall_secs = coalesce(?3, wall_secs), error = ?4,
                         finished_at = {},
                         stopped_epoch = ?5, worker_pid = NULL, lease_expires = NULL
                     WHERE id = ?1",
                    now_sql()
                ),
                params![
                    id,
                    status,
                    wall_secs,
                    error,
                    stopped_epoch.map(|e| e as i64)
                ],
            )
            .map_err(|e| self.err(e))?;
        let detail = match (error, stopped_epoch) {
            (Some(e), _) => Some(e.to_string()),
            (None, Some(epoch)) => Some(format!("at epoch {epoch}")),
            (None, None) => None,
        };
        self.record_event(id, kind, detail.as_deref())
    }
}
