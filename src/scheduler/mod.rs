//! The scheduler: plan a sweep's runs, record them, and train what is not done yet on every
//! slot of every device, each run in its own worker process (`fer-lab worker`).
//!
//! All state lives in SQLite, so the scheduler can die at any point: runs are claimed with a
//! lease that the worker renews; a run whose lease expired (or whose worker is gone) is resumed
//! from its last checkpoint by the next launch. Workers run in their own process group (a
//! terminal's Ctrl-C reaches only the scheduler, which decides what to tell them) and die with
//! the scheduler (Linux parent-death signal), so no orphan keeps training unseen.

pub mod devices;
pub mod pruning;

use crate::data::FerData;
use crate::store::{RunRecord, RunState, RunStatus, Store, StoreError, SweepRecord, now_unix};
use crate::sweep::{PlannedRun, Sweep, run_id};
use crate::table::Rows;
use devices::Slot;
use pruning::Pruning;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A planned run with its identity and where its files go.
#[derive(Debug, Clone)]
pub struct Planned {
    pub id: String,
    pub run: PlannedRun,
    pub artifact_dir: PathBuf,
    /// The swept values of this run, `key=value …`, for progress lines.
    pub label: String,
}

/// Gives every run of `sweep` its id (which needs the data fingerprint) and folder.
pub fn plan(sweep: &Sweep, fingerprint: &str, results_dir: &Path) -> Vec<Planned> {
    sweep
        .runs
        .iter()
        .map(|run| {
            let id = run_id(&run.config, fingerprint, run.seed);
            let flat: std::collections::HashMap<String, Value> =
                run.config.flatten().into_iter().collect();
            let label = sweep
                .axes
                .iter()
                .map(|k| {
                    format!(
                        "{k}={}",
                        flat.get(k).map_or(String::new(), crate::table::cell_text)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            Planned {
                artifact_dir: results_dir.join(&sweep.name).join(&id),
                id,
                run: run.clone(),
                label,
            }
        })
        .collect()
}

/// The table `sweep --dry-run` prints: one row per run, swept values as columns.
pub fn plan_table(
    sweep: &Sweep,
    planned: &[Planned],
    status: impl Fn(&str) -> Option<RunStatus>,
) -> Rows {
    let mut headers = vec!["#".to_string(), "run".to_string()];
    headers.extend(sweep.axes.iter().cloned());
    headers.extend(["seed", "model", "epochs", "status"].map(String::from));
    let mut rows = Rows::new(headers);
    for (i, p) in planned.iter().enumerate() {
        let mut row = vec![Value::from(i + 1), Value::from(p.id.clone())];
        let flat: std::collections::HashMap<String, Value> =
            p.run.config.flatten().into_iter().collect();
        row.extend(
            sweep
                .axes
                .iter()
                .map(|k| flat.get(k).cloned().unwrap_or(Value::Null)),
        );
        row.push(Value::from(p.run.seed));
        row.push(Value::from(p.run.config.model.kind()));
        row.push(Value::from(p.run.config.epochs));
        row.push(Value::from(status(&p.id).map_or("new", RunStatus::as_str)));
        rows.push(row);
    }
    rows
}

/// Writes the sweep and all its runs to the store in one transaction.
pub fn register(
    store: &mut Store,
    sweep: &Sweep,
    data: &FerData,
    planned: &[Planned],
) -> Result<i64, StoreError> {
    let record = SweepRecord {
        name: sweep.name.clone(),
        file: sweep.file.display().to_string(),
        spec: sweep.spec.clone(),
        data_path: sweep.data.display().to_string(),
        data_fingerprint: data.manifest.fingerprint.clone(),
        axes: sweep.axes.clone(),
    };
    let runs: Vec<RunRecord> = planned
        .iter()
        .map(|p| RunRecord {
            id: p.id.clone(),
            seed: p.run.seed,
            config_json: serde_json::to_string(&p.run.config).expect("config serialises"),
            model: p.run.config.model.kind().to_string(),
            epochs: p.run.config.epochs,
            params: p.run.config.flatten(),
            artifact_dir: p.artifact_dir.display().to_string(),
        })
        .collect();
    store.register_sweep(&record, &runs)
}

/// How a sweep went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepSummary {
    /// Runs that finished (`done`) in this launch.
    pub trained: usize,
    /// Runs that were done before this launch.
    pub skipped: usize,
    pub pruned: usize,
    pub diverged: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    /// Runs left `interrupted` or `queued` by a stop: the next launch continues them.
    pub interrupted: usize,
}

/// How a launch runs its runs.
#[derive(Clone)]
pub struct Options {
    pub slots: Vec<Slot>,
    /// Retries after a failure that counts (see the reaping in [`run_sweep`]).
    pub max_retries: u32,
    pub fail_fast: bool,
    /// Keep a finished run's epoch checkpoints (see [`crate::worker::WorkerArgs`]).
    pub keep_checkpoints: bool,
    pub pruning: Option<Pruning>,
    /// The data the workers load (the sweep's, or `--data`).
    pub data: PathBuf,
    /// Seconds between two launches on the same device (so two runs never race for it).
    pub stagger: Duration,
    /// Upper bound of runs per GPU when its capacity is measured.
    pub gpu_cap: usize,
    /// Whether GPUs open slots by measured memory (no explicit `per_device`).
    pub gpu_auto: bool,
    /// Where the workers' progress lines go (stdout, a progress bar's log, or nowhere while a
    /// dashboard owns the terminal).
    pub worker_output: Output,
}

/// A sink for lines of text, shared with the threads that read workers' stdout.
pub type Output = Arc<dyn Fn(&str) + Send + Sync>;

/// Lines to stdout.
pub fn stdout_output() -> Output {
    Arc::new(|line: &str| println!("{line}"))
}

/// How far a sweep is asked to stop. Ordered: each level asks for more than the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopLevel {
    /// Keep launching.
    Continue,
    /// Launch nothing new; running epochs finish and checkpoint (the first Ctrl-C).
    Finish,
    /// Kill the workers now (a second Ctrl-C, or SIGTERM).
    Now,
}

/// The stop requests a scheduler polls: Ctrl-C presses and SIGTERM from its signal thread, a
/// dashboard's "stop sweep", `--fail-fast`. Shared between threads; clones share one level.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicUsize>);

impl StopSignal {
    pub fn level(&self) -> StopLevel {
        // A count of presses: a third Ctrl-C asks for no more than the second.
        match self.0.load(Ordering::SeqCst) {
            0 => StopLevel::Continue,
            1 => StopLevel::Finish,
            _ => StopLevel::Now,
        }
    }

    /// Asks for at least `level` (a request never lowers one already made).
    pub fn request(&self, level: StopLevel) {
        self.0.fetch_max(level as usize, Ordering::SeqCst);
    }

    /// One more press of Ctrl-C, asking for at least `level`.
    fn press(&self, level: StopLevel) {
        let now = self.0.load(Ordering::SeqCst);
        self.0
            .store((now + 1).max(level as usize), Ordering::SeqCst);
    }
}

/// Installs the SIGINT / SIGTERM handling of the scheduler.
pub fn stop_signal() -> std::io::Result<StopSignal> {
    let presses = StopSignal::default();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let counter = presses.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            counter.press(if signal == signal_hook::consts::SIGTERM {
                StopLevel::Now
            } else {
                StopLevel::Finish
            });
        }
    });
    Ok(presses)
}

/// Why a worker failed, as far as the scheduler's policy cares: out of memory is retried with
/// fewer neighbours on its GPU; anything else is an ordinary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    OutOfMemory,
    Other,
}

impl FailureCause {
    /// Classifies a failure from its message (the worker's recorded error, or the tail of its
    /// log): CUDA, libtorch and the allocator all say "out of memory", in any case.
    pub fn of(message: &str) -> FailureCause {
        if message.to_ascii_lowercase().contains("out of memory") {
            FailureCause::OutOfMemory
        } else {
            FailureCause::Other
        }
    }
}

/// A worker process the scheduler started.
struct Running {
    child: Child,
    run: String,
    slot: Slot,
    started: Instant,
    first_step_seen: bool,
    /// The newest complete checkpoint when it was launched: a worker that dies after saving a
    /// newer one made progress.
    checkpoint_at_launch: Option<usize>,
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
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

/// The last lines of a worker's stderr log, for the error a crash records.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // A crashed worker's stderr may hold anything; this text reaches the terminal.
    crate::table::printable(&lines[lines.len().saturating_sub(3)..].join(" | "))
}

fn spawn_worker(
    exe: &Path,
    db: &Path,
    sweep_id: i64,
    planned: &Planned,
    slot: Slot,
    opts: &Options,
) -> std::io::Result<Child> {
    std::fs::create_dir_all(&planned.artifact_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(planned.artifact_dir.join("worker.log"))?;
    let mut cmd = Command::new(exe);
    // A GPU is pinned with CUDA_VISIBLE_DEVICES: inside the worker it is always cuda:0.
    let device = match slot.device {
        crate::device::DeviceSpec::Cuda(i) => {
            cmd.env("CUDA_VISIBLE_DEVICES", i.to_string());
            "cuda:0".to_string()
        }
        other => other.to_string(),
    };
    cmd.arg("worker")
        .arg("--db")
        .arg(db)
        .args(["--run", &planned.id, "--device", &device])
        .arg("--data")
        .arg(&opts.data)
        .args(["--sweep-id", &sweep_id.to_string()]);
    if opts.keep_checkpoints {
        cmd.arg("--keep-checkpoints");
    }
    if let Some(p) = &opts.pruning {
        cmd.args([
            "--pruning",
            &serde_json::to_string(p).expect("pruning serialises"),
        ]);
    }
    let threads = slot.threads.to_string();
    cmd.env("RAYON_NUM_THREADS", &threads)
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; prctl is one.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
    }
    let mut child = cmd.spawn()?;
    // Forward the worker's progress lines, prefixed with its run id.
    let stdout = child.stdout.take().expect("stdout is piped");
    let prefix = format!("[{}]", &planned.id);
    let output = opts.worker_output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            output(&format!("{prefix}{line}"));
        }
    });
    Ok(child)
}

/// Trains every run of `planned` that is not finished, on all `opts.slots`, until the queue is
/// empty or a stop is asked. Failures are reported as they happen. `log` receives one line per
/// event.
pub fn run_sweep(
    store: &mut Store,
    sweep_id: i64,
    planned: &[Planned],
    opts: &Options,
    stop: &StopSignal,
    mut log: impl FnMut(&str),
) -> Result<SweepSummary, StoreError> {
    let exe =
        std::env::current_exe().map_err(|e| StoreError::Folder(PathBuf::from("fer-lab"), e))?;
    let db = store.path().to_path_buf();
    let by_id: HashMap<&str, &Planned> = planned.iter().map(|p| (p.id.as_str(), p)).collect();
    let position: HashMap<&str, usize> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i + 1))
        .collect();
    let total = planned.len();
    let label = |id: &str| {
        let p = by_id[id];
        format!(
            "[{}/{total}] run {} {} seed={}",
            position[id], p.id, p.label, p.run.seed
        )
    };

    let mut summary = SweepSummary::default();
    let mut queue: VecDeque<String> = VecDeque::new();
    // Runs another live worker holds (an earlier scheduler's, still finishing): wait for them.
    let mut foreign: Vec<String> = Vec::new();
    let now = now_unix();
    for p in planned {
        let Some(state) = store.run_state(&p.id)? else {
            continue;
        };
        match state.status {
            RunStatus::Done => {
                summary.skipped += 1;
                log(&format!("{}: done already, skipped", label(&p.id)));
            }
            RunStatus::Pruned => summary.pruned += 1,
            RunStatus::Diverged => summary
                .diverged
                .push((p.id.clone(), state.error.unwrap_or_default())),
            RunStatus::Failed if state.failures > opts.max_retries => {
                log(&format!(
                    "{}: failed {} times, not retried (--retry-failed to retry)",
                    label(&p.id),
                    state.failures
                ));
                summary
                    .failed
                    .push((p.id.clone(), state.error.unwrap_or_default()));
            }
            RunStatus::Running
                if !state.lease_expired(now)
                    && state.worker_pid.is_none_or(crate::process::alive) =>
            {
                log(&format!("{}: {}", label(&p.id), waiting_for(&state, now)));
                foreign.push(p.id.clone());
            }
            RunStatus::Running => {
                // The launch that ran it died (or its worker did, unseen): not the run's
                // failure, so it does not count against max_retries.
                store.requeue(&p.id, "its worker is gone: the launch that ran it stopped")?;
                log(&format!(
                    "{}: its worker is gone (the last launch was stopped); resuming it",
                    label(&p.id)
                ));
                queue.push_back(p.id.clone());
            }
            RunStatus::Queued | RunStatus::Interrupted | RunStatus::Failed => {
                queue.push_back(p.id.clone())
            }
        }
    }

    let mut running: Vec<Running> = Vec::new();
    let mut last_launch: HashMap<String, Instant> = HashMap::new();
    let mut gpu_capacity: HashMap<String, usize> = HashMap::new();
    let mut stop_level = StopLevel::Continue;
    let mut paused = false;
    let mut last_poll = Instant::now() - Duration::from_secs(10);
    loop {
        // A dashboard steers through the database: pause launching, or put runs back in the
        // queue (`r` on a failed run). Polled, not per iteration: reads are cheap, not free.
        if last_poll.elapsed() >= Duration::from_millis(500) {
            last_poll = Instant::now();
            let now_paused = store.is_paused(sweep_id)?;
            if now_paused != paused {
                paused = now_paused;
                log(if paused {
                    "paused: no new launches until resumed (p in the dashboard)"
                } else {
                    "resumed launching"
                });
            }
            for id in store.queued_runs(sweep_id)? {
                let known = queue.contains(&id)
                    || running.iter().any(|r| r.run == id)
                    || foreign.contains(&id);
                if !known && by_id.contains_key(id.as_str()) {
                    summary.failed.retain(|(f, _)| *f != id);
                    summary.diverged.retain(|(d, _)| *d != id);
                    log(&format!("{}: queued again", label(&id)));
                    queue.push_back(id);
                }
            }
        }
        // Ctrl-C: the first press lets running epochs finish and checkpoint, the second stops now.
        let asked = stop.level();
        if asked > stop_level {
            stop_level = asked;
            if stop_level == StopLevel::Finish {
                log(
                    "stopping: no new runs; running epochs finish and checkpoint (Ctrl-C again to stop now)",
                );
                for r in &running {
                    signal(&r.child, nix::sys::signal::Signal::SIGINT);
                }
            } else {
                log("stopping now");
                for r in &mut running {
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    let done = store.run_state(&r.run)?.map(|s| s.epochs_done);
                    store.end_run(&r.run, RunStatus::Interrupted, None, None, done)?;
                }
                summary.interrupted += running.len() + queue.len();
                running.clear();
                break;
            }
        }

        // Reap finished workers.
        let mut i = 0;
        while i < running.len() {
            let exited = running[i].child.try_wait().ok().flatten();
            let Some(exit) = exited else {
                if !running[i].first_step_seen
                    && store
                        .run_state(&running[i].run)?
                        .is_some_and(|s| s.epochs_done > 0 || s.status != RunStatus::Running)
                {
                    running[i].first_step_seen = true;
                }
                i += 1;
                continue;
            };
            let r = running.remove(i);
            let state = store.run_state(&r.run)?.expect("a claimed run exists");
            let worker_log = by_id[r.run.as_str()].artifact_dir.join("worker.log");
            match state.status {
                RunStatus::Done => summary.trained += 1,
                RunStatus::Pruned => {
                    summary.pruned += 1;
                    log(&format!("{}: pruned", label(&r.run)));
                }
                RunStatus::Interrupted => summary.interrupted += 1,
                RunStatus::Diverged => {
                    let why = state.error.clone().unwrap_or_default();
                    log(&format!("{}: DIVERGED: {why}", label(&r.run)));
                    summary.diverged.push((r.run.clone(), why));
                }
                RunStatus::Failed | RunStatus::Running | RunStatus::Queued => {
                    // Failed as recorded by the worker, or the worker died without recording.
                    let recorded = state.status == RunStatus::Failed;
                    let why = if recorded {
                        state.error.clone().unwrap_or_default()
                    } else {
                        format!(
                            "worker exited ({exit}) without a result: {}",
                            log_tail(&worker_log)
                        )
                    };
                    let oom = FailureCause::of(&why) == FailureCause::OutOfMemory;
                    let on_gpu = matches!(r.slot.device, crate::device::DeviceSpec::Cuda(_));
                    let neighbours = running
                        .iter()
                        .filter(|o| o.slot.device == r.slot.device)
                        .count();
                    let checkpoint = crate::train::resumable_epoch(
                        &by_id[r.run.as_str()].artifact_dir,
                        state.epochs_done,
                    );
                    let progressed = checkpoint > r.checkpoint_at_launch;
                    // What counts against max_retries (the README's crash-safety paragraph):
                    // the worker's own error, and a death that saved no new checkpoint (a crash
                    // that would recur). A death after progress resumes uncounted: each such
                    // retry is at least one epoch further, so it cannot loop. Out of GPU memory
                    // counts only when the run was alone on its GPU.
                    let counts = if oom && on_gpu {
                        neighbours == 0
                    } else {
                        recorded || !progressed
                    };
                    if oom && on_gpu && neighbours > 0 {
                        // Fewer neighbours on that GPU, and the run goes back in the queue as it was.
                        gpu_capacity.insert(r.slot.device.to_string(), neighbours);
                        store.requeue(&r.run, "out of GPU memory: fewer runs per GPU")?;
                        queue.push_front(r.run.clone());
                        log(&format!(
                            "{}: out of GPU memory, requeued with fewer neighbours",
                            label(&r.run)
                        ));
                    } else if !counts {
                        let epoch = checkpoint.unwrap_or(0);
                        store.requeue(
                            &r.run,
                            &format!("{why}; resumes from epoch {epoch}, not counted as a failure"),
                        )?;
                        if stop_level == StopLevel::Continue {
                            queue.push_back(r.run.clone());
                            log(&format!(
                                "{}: worker died after the checkpoint of epoch {epoch}; resuming: {why}",
                                label(&r.run)
                            ));
                        } else {
                            summary.interrupted += 1;
                        }
                    } else {
                        let failures = store.count_failure(&r.run)?;
                        if failures <= opts.max_retries && stop_level == StopLevel::Continue {
                            store.requeue(&r.run, &format!("failure {failures}: {why}"))?;
                            queue.push_back(r.run.clone());
                            log(&format!(
                                "{}: FAILED (failure {failures} of at most {}), retrying: {why}",
                                label(&r.run),
                                opts.max_retries + 1
                            ));
                        } else {
                            if !recorded {
                                store.end_run(&r.run, RunStatus::Failed, None, Some(&why), None)?;
                            }
                            log(&format!("{}: FAILED: {why}", label(&r.run)));
                            summary.failed.push((r.run.clone(), why));
                            if opts.fail_fast && stop_level == StopLevel::Continue {
                                log("--fail-fast: stopping the sweep");
                                stop.request(StopLevel::Finish);
                            }
                        }
                    }
                }
            }
        }

        // Runs held by another worker: done when they end, ours when their lease expires.
        let now = now_unix();
        let mut still = Vec::new();
        for id in foreign.drain(..) {
            match store.run_state(&id)? {
                Some(s)
                    if s.status == RunStatus::Running
                        && (s.lease_expired(now)
                            || s.worker_pid.is_some_and(|p| !crate::process::alive(p))) =>
                {
                    store.requeue(&id, "its worker is gone: the launch that ran it stopped")?;
                    log(&format!("{}: its worker is gone; resuming it", label(&id)));
                    queue.push_back(id);
                }
                Some(s) if s.status == RunStatus::Running => still.push(id),
                Some(s) if s.status == RunStatus::Done => summary.trained += 1,
                _ => queue.push_back(id),
            }
        }
        foreign = still;

        // Launch into free slots, one device start at a time.
        if stop_level == StopLevel::Continue && !paused {
            for slot in &opts.slots {
                if queue.is_empty() {
                    break;
                }
                let device = slot.device.to_string();
                let busy = running.iter().any(|r| r.slot == *slot);
                let on_device = running
                    .iter()
                    .filter(|r| r.slot.device == slot.device)
                    .count();
                let unmeasured =
                    if opts.gpu_auto && matches!(slot.device, crate::device::DeviceSpec::Cuda(_)) {
                        1
                    } else {
                        usize::MAX
                    };
                let capacity = gpu_capacity.get(&device).copied().unwrap_or(unmeasured);
                let starting = running.iter().any(|r| {
                    r.slot.device == slot.device
                        && !r.first_step_seen
                        && r.started.elapsed() < opts.stagger * 10
                });
                let recent = last_launch
                    .get(&device)
                    .is_some_and(|t| t.elapsed() < opts.stagger);
                if busy || on_device >= capacity || starting || recent {
                    continue;
                }
                let id = queue.pop_front().expect("queue is not empty");
                let p = by_id[id.as_str()];
                let checkpoint_at_launch = crate::train::resumable_epoch(
                    &p.artifact_dir,
                    store.run_state(&id)?.map_or(0, |s| s.epochs_done),
                );
                let attempt = store.claim_run(&id, &slot.name(), crate::worker::LEASE_SECS)?;
                log(&format!(
                    "{}: training on {}{}",
                    label(&id),
                    slot.name(),
                    if attempt > 1 {
                        format!(" (attempt {attempt})")
                    } else {
                        String::new()
                    }
                ));
                match spawn_worker(&exe, &db, sweep_id, p, *slot, opts) {
                    Ok(child) => {
                        store.set_worker_pid(&id, child.id())?;
                        running.push(Running {
                            child,
                            run: id,
                            slot: *slot,
                            started: Instant::now(),
                            first_step_seen: false,
                            checkpoint_at_launch,
                        })
                    }
                    Err(e) => {
                        let why = format!("could not start a worker: {e}");
                        store.count_failure(&id)?;
                        store.end_run(&id, RunStatus::Failed, None, Some(&why), None)?;
                        log(&format!("{}: FAILED: {why}", label(&id)));
                        summary.failed.push((id, why));
                    }
                }
                last_launch.insert(device, Instant::now());
            }
        }

        // Measure a GPU run's memory once it trains, and fit as many as the card holds.
        for r in &running {
            let device = r.slot.device.to_string();
            if matches!(r.slot.device, crate::device::DeviceSpec::Cuda(_))
                && r.first_step_seen
                && !gpu_capacity.contains_key(&device)
                && let Some((_, mib)) = devices::gpu_memory_by_pid()
                    .into_iter()
                    .find(|(pid, _)| *pid == r.child.id())
            {
                let total = devices::discover()
                    .gpus
                    .iter()
                    .find(|g| {
                        Some(g.index) == device.strip_prefix("cuda:").and_then(|i| i.parse().ok())
                    })
                    .and_then(|g| g.memory_total_mib)
                    .unwrap_or(0);
                let cap = devices::gpu_capacity(total, mib, opts.gpu_cap);
                log(&format!(
                    "{device}: a run uses {mib} MiB of {total} MiB: up to {cap} runs at once"
                ));
                gpu_capacity.insert(device, cap);
            }
        }

        if running.is_empty()
            && (queue.is_empty() || stop_level > StopLevel::Continue)
            && foreign.is_empty()
        {
            summary.interrupted += queue.len();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(summary)
}
