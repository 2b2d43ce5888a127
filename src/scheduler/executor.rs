//! The seam between the scheduler's policy (what to run next, where, what a failure means) and
//! whatever actually runs a worker: local child processes today ([`super::local`]), a batch
//! queue such as Slurm next.
//!
//! The policy never touches a process: it claims a run in the store, asks the executor to
//! launch it on a slot, polls the executor for runs whose worker ended, and reads how each run
//! ended from the store (the worker records it). Whether a run that some *other* launch holds is
//! still alive comes from its lease in the store, which every worker renews wherever it runs;
//! an executor may only shorten that wait when it can see for certain that a worker is gone.

use super::slots::Slot;
use crate::device::DeviceSpec;
use crate::store::{RunState, Store, StoreError};
use std::path::Path;

/// What the policy claimed and wants started in one worker: a run, or the members of a fused
/// group (`fer-lab worker --group …`), which train as one model and end together.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The runs the worker trains (one, unless `group`).
    pub runs: &'a [String],
    pub group: Option<&'a str>,
    /// `results/<sweep>/<run>/`, or a group's `results/<sweep>/groups/<group>/`: where the
    /// worker keeps its checkpoints (and, locally, its log).
    pub artifact_dir: &'a Path,
    pub slot: Slot,
}

/// What the executor knows of a worker it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Launched {
    /// The worker's process id on this machine, when there is one: the store keeps it so that
    /// a later launch here can tell a dead worker before its first heartbeat.
    pub pid: Option<u32>,
}

/// A worker that ended, however it ended; the store says whether it recorded a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub run: String,
    /// How it ended, in words (`exit status: 1`, `signal: 9 (SIGKILL)`, a batch job's state).
    pub exit: String,
    /// The last lines it wrote about itself, for the error a crash records.
    pub log_tail: String,
}

/// GPU memory one running worker uses, and what its device has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub used_mib: u64,
    /// 0 when the device's size is unknown.
    pub total_mib: u64,
}

/// Runs workers for the scheduler's policy. Every call returns promptly: the policy loop polls.
pub trait Executor {
    /// Before the policy sorts the runs at its start: catch up on what workers of an earlier
    /// launch recorded where the policy cannot see it (a journal not merged yet), so that their
    /// leases say whether they still live. Nothing for workers that write the database.
    fn attach(&mut self, _store: &mut Store) -> Result<(), StoreError> {
        Ok(())
    }

    /// Starts the worker of `launch.runs` on `launch.slot` (or queues it to start with the
    /// next [`Executor::poll`]). The runs are already claimed (status `running`, a lease); the
    /// worker renews the leases and records the outcomes. `store` is what the worker needs to
    /// know, for an executor whose workers cannot read it.
    fn launch(&mut self, launch: Launch<'_>, store: &Store) -> std::io::Result<Launched>;

    /// The runs whose worker ended since the last poll, each reported once (every member of a
    /// group whose worker ended). An executor that
    /// cannot watch its workers end (a remote job whose state it cannot query) should report
    /// one once its lease in the store has expired, as the policy does for another launch's.
    ///
    /// Before it answers, whatever its workers recorded outside the database is in it (a
    /// remote executor merges their journals into `store`), so the policy reads how each
    /// ended run ended from the store.
    fn poll(&mut self, store: &mut Store) -> Result<Vec<Ended>, StoreError>;

    /// Asks the worker of `run` to finish and checkpoint its epoch, then stop (the first
    /// Ctrl-C). A group's worker stops all its members.
    fn stop_gracefully(&mut self, run: &str);

    /// Ends the worker of `run` now and returns once it is gone (a second Ctrl-C); nothing
    /// when it is gone already (a group mate's kill ended it).
    fn kill(&mut self, run: &str);

    /// GPU memory of the worker of `run` on `device`, when the executor can measure it; the
    /// policy packs as many workers per GPU as the measurement allows.
    fn memory(&mut self, run: &str, device: DeviceSpec) -> Option<MemoryUse>;

    /// Whether the worker that holds `state` (started by another launch) is certainly gone,
    /// before its lease says so. `false` when the executor cannot tell: the lease decides.
    fn known_gone(&self, state: &RunState) -> bool;

    /// Whether the worker that holds `state` certainly still lives, or waits to start, even
    /// when its lease expired (a batch job still queued). `false` when the executor cannot
    /// tell: the lease decides.
    fn known_alive(&self, _state: &RunState) -> bool {
        false
    }
}
