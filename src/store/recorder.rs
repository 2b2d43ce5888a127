//! What a worker writes about its runs, and the little it reads back: one trait, so that the
//! worker is the same whether it writes straight into SQLite (a worker on the database's
//! machine: [`Store`]) or appends to journal files that the sweep's process merges into SQLite
//! (a worker on a cluster node, which never opens the database: [`super::journal::Journal`]).

use super::{Beat, EpochRow, GroupMember, RunStatus, Store, StoreError, StoredRun};
use crate::data::Split;
use crate::metrics::Evaluation;

/// A worker's view of the store. Calls come from the training thread, the heartbeat and the
/// signal handler, one at a time (the worker shares one recorder behind a mutex).
pub trait Recorder: Send {
    /// The run a worker is told to train; None when there is no such run.
    fn stored_run(&self, id: &str) -> Result<Option<StoredRun>, StoreError>;
    /// The members of a fused group, in their order.
    fn group_members(&self, group: &str) -> Result<Vec<GroupMember>, StoreError>;
    /// See [`Store::start_attempt`]; returns the run's wall time of earlier attempts.
    fn start_attempt(
        &mut self,
        id: &str,
        device: &str,
        params: usize,
        flops: u64,
        resume_from: Option<usize>,
    ) -> Result<f64, StoreError>;
    fn epoch_rows(&self, run: &str) -> Result<Vec<EpochRow>, StoreError>;
    fn record_epoch(&mut self, run: &str, row: &EpochRow) -> Result<(), StoreError>;
    /// See [`Store::others_best_val_acc`].
    fn others_best_val_acc(
        &self,
        sweep_id: i64,
        run: &str,
        epoch: usize,
    ) -> Result<Vec<f64>, StoreError>;
    /// The worker `pid` still holds `run` for `lease_secs` more; where it is.
    fn beat(&mut self, run: &str, pid: u32, lease_secs: f64, beat: &Beat)
    -> Result<(), StoreError>;
    fn finish_run(
        &mut self,
        id: &str,
        best_epoch: usize,
        wall_secs: f64,
        evals: &[(Split, &Evaluation, usize)],
    ) -> Result<(), StoreError>;
    fn end_run(
        &mut self,
        id: &str,
        status: RunStatus,
        wall_secs: Option<f64>,
        error: Option<&str>,
        stopped_epoch: Option<usize>,
    ) -> Result<(), StoreError>;
    /// Epochs the run has recorded (None: no such run).
    fn epochs_done(&self, run: &str) -> Result<Option<usize>, StoreError>;
}

impl Recorder for Store {
    fn stored_run(&self, id: &str) -> Result<Option<StoredRun>, StoreError> {
        Store::stored_run(self, id)
    }
    fn group_members(&self, group: &str) -> Result<Vec<GroupMember>, StoreError> {
        Store::group_members(self, group)
    }
    fn start_attempt(
        &mut self,
        id: &str,
        device: &str,
        params: usize,
        flops: u64,
        resume_from: Option<usize>,
    ) -> Result<f64, StoreError> {
        Store::start_attempt(self, id, device, params, flops, resume_from)
    }
    fn epoch_rows(&self, run: &str) -> Result<Vec<EpochRow>, StoreError> {
        Store::epoch_rows(self, run)
    }
    fn record_epoch(&mut self, run: &str, row: &EpochRow) -> Result<(), StoreError> {
        Store::record_epoch(self, run, row).map(|_| ())
    }
    fn others_best_val_acc(
        &self,
        sweep_id: i64,
        run: &str,
        epoch: usize,
    ) -> Result<Vec<f64>, StoreError> {
        Store::others_best_val_acc(self, sweep_id, run, epoch)
    }
    fn beat(
        &mut self,
        run: &str,
        pid: u32,
        lease_secs: f64,
        beat: &Beat,
    ) -> Result<(), StoreError> {
        self.heartbeat(run, pid, lease_secs, beat.wall_secs)?;
        self.set_progress(run, beat.split, beat.done, beat.total)?;
        if let Some(at) = beat.first_step_at {
            self.set_first_step(run, at)?;
        }
        Ok(())
    }
    fn finish_run(
        &mut self,
        id: &str,
        best_epoch: usize,
        wall_secs: f64,
        evals: &[(Split, &Evaluation, usize)],
    ) -> Result<(), StoreError> {
        Store::finish_run(self, id, best_epoch, wall_secs, evals)
    }
    fn end_run(
        &mut self,
        id: &str,
        status: RunStatus,
        wall_secs: Option<f64>,
        error: Option<&str>,
        stopped_epoch: Option<usize>,
    ) -> Result<(), StoreError> {
        Store::end_run(self, id, status, wall_secs, error, stopped_epoch)
    }
    fn epochs_done(&self, run: &str) -> Result<Option<usize>, StoreError> {
        Ok(self.run_state(run)?.map(|s| s.epochs_done))
    }
}
