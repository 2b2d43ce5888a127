//! The scheduler's policy loop: sort the plan into done / waiting / queued, then until the queue
//! is empty or a stop is asked — steer (pause, runs put back, runs added), reap what ended and
//! decide what a failure means (retry, resume uncounted, fewer runs per GPU, give up), wait for
//! runs another launch holds, launch into free slots, measure GPU memory to open more slots.
//! Everything about processes is the [`Executor`]'s.

use super::executor::{Ended, Executor, Launch};
use super::grouping::{self, Batch};
use super::slots::{self, Slot};
use super::{FailureCause, Options, Planned, StopLevel, StopSignal, SweepSummary};
use crate::device::DeviceSpec;
use crate::store::{RunState, RunStatus, Store, StoreError, now_unix};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Where runs created while the sweep runs come from (an adaptive search that plans the next
/// runs from the results so far). Asked about twice a second.
pub trait RunSource {
    /// New runs of the sweep, already registered in the store as `queued` by the source; they
    /// join the back of the queue.
    fn next_runs(&mut self, store: &mut Store, sweep_id: i64) -> Result<Vec<Planned>, StoreError>;
}

/// The plan fixed at launch: no run is added while the sweep runs.
pub struct FixedPlan;

impl RunSource for FixedPlan {
    fn next_runs(&mut self, _: &mut Store, _: i64) -> Result<Vec<Planned>, StoreError> {
        Ok(Vec::new())
    }
}

/// The runs this launch knows, in the order they were planned or added.
struct Runs {
    planned: Vec<Planned>,
    index: HashMap<String, usize>,
}

impl Runs {
    fn new(planned: &[Planned]) -> Runs {
        let mut runs = Runs {
            planned: Vec::new(),
            index: HashMap::new(),
        };
        for p in planned {
            runs.admit(p.clone());
        }
        runs
    }

    /// Adds a run; false when it is known already.
    fn admit(&mut self, p: Planned) -> bool {
        if self.index.contains_key(&p.id) {
            return false;
        }
        self.index.insert(p.id.clone(), self.planned.len());
        self.planned.push(p);
        true
    }

    fn get(&self, id: &str) -> &Planned {
        &self.planned[self.index[id]]
    }

    fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    fn label(&self, id: &str) -> String {
        let p = self.get(id);
        format!(
            "[{}/{}] run {} {} seed={}",
            self.index[id] + 1,
            self.planned.len(),
            p.id,
            p.label,
            p.run.seed
        )
    }
}

/// A run whose worker this launch started.
struct Running {
    run: String,
    /// Which worker: a group's members share one.
    worker: u64,
    /// How many runs that worker trains.
    batch: usize,
    /// Where its checkpoints are: the run's folder, or its group's.
    group_dir: Option<std::path::PathBuf>,
    slot: Slot,
    started: Instant,
    first_step_seen: bool,
    /// The newest complete checkpoint when it was launched: a worker that dies after saving a
    /// newer one made progress.
    checkpoint_at_launch: Option<usize>,
}

/// Why a run that looks alive is not launched yet, for the line a relaunch prints while it
/// waits instead of sitting silent for up to a lease.
fn waiting_for(state: &RunState, now: f64) -> String {
    let left = state.lease_expires.map_or(0.0, |t| (t - now).max(0.0));
    match state.worker_pid {
        Some(pid) => format!(
            "held by a live worker (pid {pid}) of another launch; waiting for it to end, or at most {left:.0} s for its lease to expire"
        ),
        None => format!(
            "launched by another scheduler whose worker has not reported yet; waiting for it, or at most {left:.0} s for its lease to expire"
        ),
    }
}

/// One launch of a sweep: the state its policy loop keeps between iterations.
pub struct Sweeper<'a> {
    store: &'a mut Store,
    sweep_id: i64,
    opts: &'a Options,
    stop: &'a StopSignal,
    executor: &'a mut dyn Executor,
    source: &'a mut dyn RunSource,
    log: &'a mut dyn FnMut(&str),
    runs: Runs,
    summary: SweepSummary,
    queue: VecDeque<String>,
    /// Runs another live worker holds (an earlier scheduler's, still finishing): wait for them.
    foreign: Vec<String>,
    running: Vec<Running>,
    last_launch: HashMap<String, Instant>,
    gpu_capacity: HashMap<String, usize>,
    /// Fused groups on a device after one ran out of its memory: at most this many runs.
    group_cap: HashMap<String, usize>,
    workers_started: u64,
    stop_level: StopLevel,
    paused: bool,
    last_poll: Instant,
}

impl<'a> Sweeper<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &'a mut Store,
        sweep_id: i64,
        planned: &[Planned],
        opts: &'a Options,
        stop: &'a StopSignal,
        executor: &'a mut dyn Executor,
        source: &'a mut dyn RunSource,
        log: &'a mut dyn FnMut(&str),
    ) -> Sweeper<'a> {
        Sweeper {
            store,
            sweep_id,
            opts,
            stop,
            executor,
            source,
            log,
            runs: Runs::new(planned),
            summary: SweepSummary::default(),
            queue: VecDeque::new(),
            foreign: Vec::new(),
            running: Vec::new(),
            last_launch: HashMap::new(),
            gpu_capacity: HashMap::new(),
            group_cap: HashMap::new(),
            workers_started: 0,
            stop_level: StopLevel::Continue,
            paused: false,
            last_poll: Instant::now() - Duration::from_secs(10),
        }
    }

    fn say(&mut self, id: &str, what: &str) {
        let line = format!("{}: {what}", self.runs.label(id));
        (self.log)(&line);
    }

    /// Runs the loop until the queue is empty or a stop is asked.
    pub fn run(mut self) -> Result<SweepSummary, StoreError> {
        self.executor.attach(self.store)?;
        let ids: Vec<String> = self.runs.planned.iter().map(|p| p.id.clone()).collect();
        for id in ids {
            self.triage(id)?;
        }
        loop {
            self.steer()?;
            if self.follow_stop()? {
                break;
            }
            self.reap()?;
            self.watch_foreign()?;
            if self.stop_level == StopLevel::Continue && !self.paused {
                self.launch_into_free_slots()?;
            }
            self.measure_gpu_memory();
            if self.running.is_empty()
                && (self.queue.is_empty() || self.stop_level > StopLevel::Continue)
                && self.foreign.is_empty()
            {
                self.summary.interrupted += self.queue.len();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(self.summary)
    }

    /// Sorts a planned run by what the store says of it at launch.
    fn triage(&mut self, id: String) -> Result<(), StoreError> {
        let Some(state) = self.store.run_state(&id)? else {
            return Ok(());
        };
        let now = now_unix();
        match state.status {
            RunStatus::Done => {
                self.summary.skipped += 1;
                self.say(&id, "done already, skipped");
            }
            RunStatus::Pruned => self.summary.pruned += 1,
            RunStatus::Diverged => self
                .summary
                .diverged
                .push((id, state.error.unwrap_or_default())),
            RunStatus::Failed if state.failures > self.opts.max_retries => {
                let line = format!(
                    "failed {} times, not retried (--retry-failed to retry)",
                    state.failures
                );
                self.say(&id, &line);
                self.summary
                    .failed
                    .push((id, state.error.unwrap_or_default()));
            }
            RunStatus::Running
                if (!state.lease_expired(now) || self.executor.known_alive(&state))
                    && !self.executor.known_gone(&state) =>
            {
                self.say(&id, &waiting_for(&state, now));
                self.foreign.push(id);
            }
            RunStatus::Running => {
                // The launch that ran it died (or its worker did, unseen): not the run's
                // failure, so it does not count against max_retries.
                self.store
                    .requeue(&id, "its worker is gone: the launch that ran it stopped")?;
                self.say(
                    &id,
                    "its worker is gone (the last launch was stopped); resuming it",
                );
                self.queue.push_back(id);
            }
            // A requeued batch task (stopped before a time limit) still holds it.
            RunStatus::Queued | RunStatus::Interrupted if self.executor.known_alive(&state) => {
                self.say(
                    &id,
                    "held by a batch job still in the queue; waiting for it",
                );
                self.foreign.push(id);
            }
            RunStatus::Queued | RunStatus::Interrupted | RunStatus::Failed => {
                self.queue.push_back(id)
            }
        }
        Ok(())
    }

    /// A dashboard steers through the database: pause launching, or put runs back in the queue
    /// (`r` on a failed run); a [`RunSource`] may add runs. Polled, not per iteration: reads are
    /// cheap, not free.
    fn steer(&mut self) -> Result<(), StoreError> {
        if self.last_poll.elapsed() < Duration::from_millis(500) {
            return Ok(());
        }
        self.last_poll = Instant::now();
        let now_paused = self.store.is_paused(self.sweep_id)?;
        if now_paused != self.paused {
            self.paused = now_paused;
            (self.log)(if self.paused {
                "paused: no new launches until resumed (p in the dashboard)"
            } else {
                "resumed launching"
            });
        }
        for p in self.source.next_runs(self.store, self.sweep_id)? {
            let id = p.id.clone();
            if self.runs.admit(p) {
                self.say(&id, "added to the sweep");
                self.queue.push_back(id);
            }
        }
        for id in self.store.queued_runs(self.sweep_id)? {
            let known = self.queue.contains(&id)
                || self.running.iter().any(|r| r.run == id)
                || self.foreign.contains(&id);
            if !known && self.runs.contains(&id) {
                self.summary.failed.retain(|(f, _)| *f != id);
                self.summary.diverged.retain(|(d, _)| *d != id);
                self.say(&id, "queued again");
                self.queue.push_back(id);
            }
        }
        Ok(())
    }

    /// Ctrl-C: the first press lets running epochs finish and checkpoint, the second stops now.
    /// True when the loop must end at once.
    fn follow_stop(&mut self) -> Result<bool, StoreError> {
        let asked = self.stop.level();
        if asked <= self.stop_level {
            return Ok(false);
        }
        self.stop_level = asked;
        if self.stop_level == StopLevel::Finish {
            (self.log)(
                "stopping: no new runs; running epochs finish and checkpoint (Ctrl-C again to stop now)",
            );
            for r in &self.running {
                self.executor.stop_gracefully(&r.run);
            }
            return Ok(false);
        }
        (self.log)("stopping now");
        for r in &self.running {
            self.executor.kill(&r.run);
            let done = self.store.run_state(&r.run)?.map(|s| s.epochs_done);
            self.store
                .end_run(&r.run, RunStatus::Interrupted, None, None, done)?;
        }
        self.summary.interrupted += self.running.len() + self.queue.len();
        self.running.clear();
        Ok(true)
    }

    /// Takes in the runs whose worker ended, in launch order (a failure's neighbours on its
    /// GPU are those still running after it).
    fn reap(&mut self) -> Result<(), StoreError> {
        let mut ended: HashMap<String, Ended> = self
            .executor
            .poll(self.store)?
            .into_iter()
            .map(|e| (e.run.clone(), e))
            .collect();
        let mut i = 0;
        while i < self.running.len() {
            if let Some(end) = ended.remove(&self.running[i].run) {
                let r = self.running.remove(i);
                self.on_ended(r, end)?;
                continue;
            }
            if !self.running[i].first_step_seen
                && self
                    .store
                    .run_state(&self.running[i].run)?
                    .is_some_and(|s| s.epochs_done > 0 || s.status != RunStatus::Running)
            {
                self.running[i].first_step_seen = true;
            }
            i += 1;
        }
        Ok(())
    }

    fn on_ended(&mut self, r: Running, end: Ended) -> Result<(), StoreError> {
        let state = self.store.run_state(&r.run)?.expect("a claimed run exists");
        match state.status {
            RunStatus::Done => self.summary.trained += 1,
            RunStatus::Pruned => {
                self.summary.pruned += 1;
                self.say(&r.run, "pruned");
            }
            RunStatus::Interrupted => self.summary.interrupted += 1,
            RunStatus::Diverged => {
                let why = state.error.clone().unwrap_or_default();
                self.say(&r.run, &format!("DIVERGED: {why}"));
                self.summary.diverged.push((r.run.clone(), why));
            }
            RunStatus::Failed | RunStatus::Running | RunStatus::Queued => {
                self.on_failure(r, &state, &end)?
            }
        }
        Ok(())
    }

    /// A worker failed as recorded by itself, or died without recording anything.
    fn on_failure(&mut self, r: Running, state: &RunState, end: &Ended) -> Result<(), StoreError> {
        let recorded = state.status == RunStatus::Failed;
        let why = if recorded {
            state.error.clone().unwrap_or_default()
        } else {
            format!(
                "worker exited ({}) without a result: {}",
                end.exit, end.log_tail
            )
        };
        let oom = FailureCause::of(&why) == FailureCause::OutOfMemory;
        let on_gpu = matches!(r.slot.device, DeviceSpec::Cuda(_));
        // Other workers on its GPU; its group mates share its worker.
        let neighbours = self
            .running
            .iter()
            .filter(|o| o.slot.device == r.slot.device && o.worker != r.worker)
            .map(|o| o.worker)
            .collect::<std::collections::HashSet<_>>()
            .len();
        let checkpoint = self.checkpoint(&r.run, r.group_dir.as_deref(), state.epochs_done);
        let progressed = checkpoint > r.checkpoint_at_launch;
        // What counts against max_retries (the README's crash-safety paragraph): the worker's
        // own error, and a death that saved no new checkpoint (a crash that would recur). A
        // death after progress resumes uncounted: each such retry is at least one epoch
        // further, so it cannot loop. Out of GPU memory counts only when the run was alone on
        // its GPU.
        let counts = if oom && on_gpu {
            neighbours == 0 && r.batch == 1
        } else {
            recorded || !progressed
        };
        if oom && on_gpu && r.batch > 1 && neighbours == 0 {
            // Smaller groups on that GPU; its members go back as they were.
            let device = r.slot.device.to_string();
            let smaller = (r.batch / 2).max(1);
            if self.group_cap.get(&device).is_none_or(|&c| c > smaller) {
                self.group_cap.insert(device, smaller);
            }
            // It starts again in a smaller group: this one's checkpoint would only run out again.
            self.store.leave_group(&r.run)?;
            self.store
                .requeue(&r.run, "out of GPU memory: smaller fused groups")?;
            self.say(
                &r.run,
                &format!(
                    "out of GPU memory in a group of {}, requeued for groups of at most {smaller}",
                    r.batch
                ),
            );
            self.queue.push_front(r.run);
        } else if oom && on_gpu && neighbours > 0 {
            // Fewer neighbours on that GPU, and the run goes back in the queue as it was.
            self.gpu_capacity
                .insert(r.slot.device.to_string(), neighbours);
            self.store
                .requeue(&r.run, "out of GPU memory: fewer runs per GPU")?;
            self.say(&r.run, "out of GPU memory, requeued with fewer neighbours");
            self.queue.push_front(r.run);
        } else if !counts {
            let epoch = checkpoint.unwrap_or(0);
            self.store.requeue(
                &r.run,
                &format!("{why}; resumes from epoch {epoch}, not counted as a failure"),
            )?;
            if self.stop_level == StopLevel::Continue {
                self.say(
                    &r.run,
                    &format!("worker died after the checkpoint of epoch {epoch}; resuming: {why}"),
                );
                self.queue.push_back(r.run);
            } else {
                self.summary.interrupted += 1;
            }
        } else {
            self.count_failure(r.run, recorded, why)?;
        }
        Ok(())
    }

    /// A failure that counts: retried while the budget lasts, else the run ends `failed`.
    fn count_failure(
        &mut self,
        run: String,
        recorded: bool,
        why: String,
    ) -> Result<(), StoreError> {
        let failures = self.store.count_failure(&run)?;
        if failures <= self.opts.max_retries && self.stop_level == StopLevel::Continue {
            self.store
                .requeue(&run, &format!("failure {failures}: {why}"))?;
            let line = format!(
                "FAILED (failure {failures} of at most {}), retrying: {why}",
                self.opts.max_retries + 1
            );
            self.say(&run, &line);
            self.queue.push_back(run);
            return Ok(());
        }
        if !recorded {
            self.store
                .end_run(&run, RunStatus::Failed, None, Some(&why), None)?;
        }
        self.say(&run, &format!("FAILED: {why}"));
        self.summary.failed.push((run, why));
        if self.opts.fail_fast && self.stop_level == StopLevel::Continue {
            (self.log)("--fail-fast: stopping the sweep");
            self.stop.request(StopLevel::Finish);
        }
        Ok(())
    }

    /// Runs held by another worker: done when they end, ours when their lease expires (or the
    /// executor sees their worker is gone).
    fn watch_foreign(&mut self) -> Result<(), StoreError> {
        let now = now_unix();
        let mut still = Vec::new();
        for id in std::mem::take(&mut self.foreign) {
            match self.store.run_state(&id)? {
                Some(s)
                    if s.status == RunStatus::Running
                        && ((s.lease_expired(now) && !self.executor.known_alive(&s))
                            || self.executor.known_gone(&s)) =>
                {
                    self.store
                        .requeue(&id, "its worker is gone: the launch that ran it stopped")?;
                    self.say(&id, "its worker is gone; resuming it");
                    self.queue.push_back(id);
                }
                Some(s) if s.status == RunStatus::Running => still.push(id),
                Some(s) if s.status == RunStatus::Done => self.summary.trained += 1,
                Some(s) if s.status == RunStatus::Pruned => self.summary.pruned += 1,
                Some(s) if s.status == RunStatus::Diverged => self
                    .summary
                    .diverged
                    .push((id, s.error.unwrap_or_default())),
                Some(s) if self.executor.known_alive(&s) => still.push(id),
                _ => self.queue.push_back(id),
            }
        }
        self.foreign = still;
        Ok(())
    }

    /// Whether `slot` may take a run now: free, under its device's capacity, and no other run
    /// starting on that device (so two runs never race for it) until the memory a worker needs
    /// there is measured; from then on slots start in parallel.
    fn slot_open(&self, slot: &Slot) -> bool {
        let device = slot.device.to_string();
        let busy = self.running.iter().any(|r| r.slot == *slot);
        let on_device = self
            .running
            .iter()
            .filter(|r| r.slot.device == slot.device)
            .map(|r| r.worker)
            .collect::<std::collections::HashSet<_>>()
            .len();
        let unmeasured = if self.opts.gpu_auto && matches!(slot.device, DeviceSpec::Cuda(_)) {
            1
        } else {
            usize::MAX
        };
        let measured = self.gpu_capacity.get(&device).copied();
        let capacity = measured.unwrap_or(unmeasured);
        let starting = self.running.iter().any(|r| {
            r.slot.device == slot.device
                && !r.first_step_seen
                && r.started.elapsed() < self.opts.stagger * 10
        });
        let recent = self
            .last_launch
            .get(&device)
            .is_some_and(|t| t.elapsed() < self.opts.stagger);
        let staggered = measured.is_none() && (starting || recent);
        !(busy || on_device >= capacity || staggered)
    }

    /// Launch into free slots, one device start at a time until the device's memory use is
    /// known.
    fn launch_into_free_slots(&mut self) -> Result<(), StoreError> {
        let opts = self.opts;
        for slot in &opts.slots {
            if self.queue.is_empty() {
                break;
            }
            if !self.slot_open(slot) {
                continue;
            }
            let id = self.queue.pop_front().expect("queue is not empty");
            let device = slot.device.to_string();
            let size = opts
                .fuse
                .group_size(slot.device)
                .min(self.group_cap.get(&device).copied().unwrap_or(usize::MAX));
            let runs = &self.runs;
            let batch =
                grouping::batch(self.store, runs.get(&id), size, &mut self.queue, |other| {
                    runs.get(other)
                })?;
            self.launch(batch, *slot)?;
            self.last_launch.insert(device, Instant::now());
        }
        Ok(())
    }

    /// The newest complete checkpoint of `run`: its own, or its group's.
    fn checkpoint(
        &self,
        run: &str,
        group_dir: Option<&std::path::Path>,
        epochs_done: usize,
    ) -> Option<usize> {
        match group_dir {
            Some(dir) => crate::train::group::resumable_epoch(dir, epochs_done),
            None => crate::train::resumable_epoch(&self.runs.get(run).artifact_dir, epochs_done),
        }
    }

    fn launch(&mut self, batch: Batch, slot: Slot) -> Result<(), StoreError> {
        self.workers_started += 1;
        let worker = self.workers_started;
        let group_dir = batch.group.as_ref().map(|g| g.dir.clone());
        let mut launched_runs = Vec::with_capacity(batch.runs.len());
        for id in &batch.runs {
            let done = self.store.run_state(id)?.map_or(0, |s| s.epochs_done);
            let checkpoint_at_launch = self.checkpoint(id, group_dir.as_deref(), done);
            let attempt = self
                .store
                .claim_run(id, &slot.name(), crate::worker::LEASE_SECS)?;
            let attempt = if attempt > 1 {
                format!(" (attempt {attempt})")
            } else {
                String::new()
            };
            let fused = match &batch.group {
                Some(g) => format!(" fused in {} ({} runs)", g.id, batch.runs.len()),
                None => String::new(),
            };
            self.say(id, &format!("training on {}{fused}{attempt}", slot.name()));
            launched_runs.push(Running {
                run: id.clone(),
                worker,
                batch: batch.runs.len(),
                group_dir: group_dir.clone(),
                slot,
                started: Instant::now(),
                first_step_seen: false,
                checkpoint_at_launch,
            });
        }
        let artifact_dir = group_dir
            .clone()
            .unwrap_or_else(|| self.runs.get(&batch.runs[0]).artifact_dir.clone());
        let launch = Launch {
            runs: &batch.runs,
            group: batch.group.as_ref().map(|g| g.id.as_str()),
            artifact_dir: &artifact_dir,
            slot,
        };
        match self.executor.launch(launch, self.store) {
            Ok(launched) => {
                for r in &launched_runs {
                    if let Some(pid) = launched.pid {
                        self.store.set_worker_pid(&r.run, pid)?;
                    }
                }
                self.running.extend(launched_runs);
            }
            Err(e) => {
                let why = format!("could not start a worker: {e}");
                for id in batch.runs {
                    self.store.count_failure(&id)?;
                    self.store
                        .end_run(&id, RunStatus::Failed, None, Some(&why), None)?;
                    self.say(&id, &format!("FAILED: {why}"));
                    self.summary.failed.push((id, why.clone()));
                }
            }
        }
        Ok(())
    }

    /// Measure a GPU run's memory once it trains, and fit as many as the card holds.
    fn measure_gpu_memory(&mut self) {
        for r in &self.running {
            let device = r.slot.device.to_string();
            if !matches!(r.slot.device, DeviceSpec::Cuda(_))
                || !r.first_step_seen
                || self.gpu_capacity.contains_key(&device)
            {
                continue;
            }
            let Some(memory) = self.executor.memory(&r.run, r.slot.device) else {
                continue;
            };
            let cap = slots::gpu_capacity(memory.total_mib, memory.used_mib, self.opts.gpu_cap);
            (self.log)(&format!(
                "{device}: a run uses {} MiB of {} MiB: up to {cap} runs at once",
                memory.used_mib, memory.total_mib
            ));
            self.gpu_capacity.insert(device, cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::executor::{Launched, MemoryUse};
    use crate::store::{RunRecord, SweepRecord};
    use crate::sweep::PlannedRun;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    fn planned(id: &str, dir: &Path) -> Planned {
        Planned {
            id: id.into(),
            run: PlannedRun {
                config: Default::default(),
                seed: 1,
                swept: Vec::new(),
            },
            artifact_dir: dir.join(id),
            label: String::new(),
        }
    }

    fn records(ids: &[&str]) -> Vec<RunRecord> {
        ids.iter()
            .map(|id| RunRecord::for_test(*id, 1, 1, vec![]))
            .collect()
    }

    /// An executor with no processes: each run it launched ends at the next poll, recorded
    /// `pruned` through its own store handle, as a worker would record its outcome.
    struct EndsAtOnce {
        db: PathBuf,
        launched: Vec<String>,
        pending: Vec<String>,
    }

    impl Executor for EndsAtOnce {
        fn launch(&mut self, launch: Launch<'_>, _: &Store) -> std::io::Result<Launched> {
            self.launched.extend(launch.runs.iter().cloned());
            self.pending.extend(launch.runs.iter().cloned());
            Ok(Launched::default())
        }
        fn poll(&mut self, _: &mut Store) -> Result<Vec<Ended>, StoreError> {
            let store = Store::open(&self.db).unwrap();
            Ok(self
                .pending
                .drain(..)
                .map(|run| {
                    store
                        .end_run(&run, RunStatus::Pruned, None, None, Some(1))
                        .unwrap();
                    Ended {
                        run,
                        exit: "exit status: 0".into(),
                        log_tail: String::new(),
                    }
                })
                .collect())
        }
        fn stop_gracefully(&mut self, _: &str) {}
        fn kill(&mut self, _: &str) {}
        fn memory(&mut self, _: &str, _: DeviceSpec) -> Option<MemoryUse> {
            None
        }
        fn known_gone(&self, _: &RunState) -> bool {
            false
        }
    }

    /// An adaptive search in miniature: once, it plans run `c` and registers it.
    struct AddsC {
        dir: PathBuf,
        added: bool,
    }

    impl RunSource for AddsC {
        fn next_runs(&mut self, store: &mut Store, _: i64) -> Result<Vec<Planned>, StoreError> {
            if std::mem::replace(&mut self.added, true) {
                return Ok(Vec::new());
            }
            store.register_sweep(&SweepRecord::for_test("s", &[]), &records(&["a", "b", "c"]))?;
            Ok(vec![planned("c", &self.dir)])
        }
    }

    #[test]
    fn the_policy_drives_any_executor_and_takes_runs_added_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let mut store = Store::open(&db).unwrap();
        let sweep_id = store
            .register_sweep(&SweepRecord::for_test("s", &[]), &records(&["a", "b"]))
            .unwrap();
        let opts = Options {
            slots: vec![Slot {
                device: DeviceSpec::Flex,
                index: 0,
                threads: 1,
            }],
            max_retries: 0,
            fail_fast: false,
            keep_checkpoints: false,
            pruning: None,
            data: PathBuf::new(),
            stagger: Duration::ZERO,
            gpu_cap: 1,
            gpu_auto: false,
            fuse: crate::device::fusion::Fuse::Off,
            executor: Default::default(),
            slurm: Default::default(),
            sweep_name: "s".into(),
            worker_output: Arc::new(|_| {}),
        };
        let mut executor = EndsAtOnce {
            db: db.clone(),
            launched: Vec::new(),
            pending: Vec::new(),
        };
        let mut source = AddsC {
            dir: dir.path().into(),
            added: false,
        };
        let mut lines = Vec::new();
        let mut log = |line: &str| lines.push(line.to_string());
        let planned = [planned("a", dir.path()), planned("b", dir.path())];
        let summary = super::super::run_sweep_on(
            &mut executor,
            &mut source,
            &mut store,
            sweep_id,
            &planned,
            &opts,
            &StopSignal::default(),
            &mut log,
        )
        .unwrap();
        assert_eq!(executor.launched, ["a", "b", "c"]);
        assert_eq!(summary.pruned, 3);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("[3/3] run c") && l.ends_with("added to the sweep")),
            "{lines:#?}"
        );
    }
}
