//! What a live worker renews: its lease (the heartbeat), its pid, where it is in a split.

use super::records::RunStatus;
use super::{Store, StoreError, now_sql};
use crate::data::Split;
use rusqlite::params;

/// Seconds since the Unix epoch, the unit of leases.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Store {
    /// The worker's heartbeat: it is alive and holds the run for `lease_secs` more, and the run
    /// has trained `wall_secs` in all (so a killed attempt's time is not lost).
    pub fn heartbeat(
        &self,
        id: &str,
        pid: u32,
        lease_secs: f64,
        wall_secs: f64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "UPDATE runs SET worker_pid = ?2, lease_expires = ?3, wall_secs = ?4,
                         heartbeat_at = {}
                     WHERE id = ?1 AND status = ?5",
                    now_sql()
                ),
                params![
                    id,
                    pid,
                    now_unix() + lease_secs,
                    wall_secs,
                    RunStatus::Running
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The scheduler records the pid of the worker it just started, so that a later launch can
    /// tell a dead worker from a live one before the worker's first heartbeat.
    pub fn set_worker_pid(&self, id: &str, pid: u32) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET worker_pid = ?2 WHERE id = ?1 AND status = ?3",
                params![id, pid, RunStatus::Running],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The batch job an executor submitted for the run's worker (a Slurm array task).
    pub fn set_batch_job(&self, id: &str, job: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET batch_job = ?2 WHERE id = ?1 AND status = ?3",
                params![id, job, RunStatus::Running],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The running runs of a sweep: whose workers' journals a remote executor merges.
    pub fn running_runs(&self, sweep_id: i64) -> Result<Vec<String>, StoreError> {
        self.runs_with_status(sweep_id, RunStatus::Running)
    }

    /// Where a running run is inside its current split (from the worker's heartbeat); None
    /// before its first split starts, stored as an empty `runs.split` as it always was.
    pub fn set_progress(
        &self,
        id: &str,
        split: Option<Split>,
        done: usize,
        total: usize,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET split = ?2, items_done = ?3, items_total = ?4 WHERE id = ?1",
                params![
                    id,
                    split.map_or("", Split::progress_name),
                    done as i64,
                    total as i64
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// When the worker ran its first training step (scheduler overhead = this − launched_at).
    pub fn set_first_step(&self, id: &str, at: f64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET first_step_at = ?2 WHERE id = ?1",
                params![id, at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
