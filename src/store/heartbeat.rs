//! A worker's one recorder (its store handle, or its journal), shared by the threads of its
//! process (training's epoch sinks, the heartbeat, the signal handler), and the heartbeat that
//! renews its runs' leases.
//!
//! One connection per worker rather than one per thread: writes from one process never wait on
//! each other's SQLite locks, and whoever reads the database sees one writer per run.

use super::StoreError;
use super::recorder::Recorder;
use crate::data::Split;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// A recorder shared between the threads of one process; clones share the one connection
/// (or journal).
#[derive(Clone)]
pub struct SharedRecorder(Arc<Mutex<Box<dyn Recorder>>>);

impl SharedRecorder {
    pub fn new(recorder: Box<dyn Recorder>) -> SharedRecorder {
        SharedRecorder(Arc::new(Mutex::new(recorder)))
    }

    /// The recorder, for one short piece of work. A thread that panicked while holding it
    /// left no half-done write behind (SQLite rolls back an open transaction when it is
    /// dropped; a journal line is one write), so it stays usable.
    pub fn lock(&self) -> MutexGuard<'_, Box<dyn Recorder>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What one heartbeat publishes about the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Beat {
    /// The run's training time over all its attempts so far.
    pub wall_secs: f64,
    /// Where the running split is: (split, items done, items total).
    pub split: Option<Split>,
    pub done: usize,
    pub total: usize,
    /// Unix seconds of the first training step, once it happened.
    pub first_step_at: Option<f64>,
}

/// The thread that renews a run's lease while its worker lives. The lease is what tells a
/// scheduler (this one, a later one, or one on another machine) that the run is still held.
pub struct Heartbeat {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<(), StoreError>>,
}

impl Heartbeat {
    /// Beats now and every `every` until [`Heartbeat::stop`]; each beat holds the runs (one,
    /// or the members of a fused group, which share one worker and one progress) for
    /// `lease_secs` more. The first error ends the beats (the leases then expire, as a dead
    /// worker's would) and is returned by `stop`.
    pub fn start(
        store: SharedRecorder,
        runs: Vec<String>,
        lease_secs: f64,
        every: Duration,
        beat: impl Fn() -> Beat + Send + 'static,
    ) -> Heartbeat {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<(), StoreError> {
            let pid = std::process::id();
            let mut first_step_seen = false;
            let beat_all = |b: &Beat| -> Result<(), StoreError> {
                let mut store = store.lock();
                for run in &runs {
                    store.beat(run, pid, lease_secs, b)?;
                }
                Ok(())
            };
            loop {
                let b = beat();
                first_step_seen |= b.first_step_at.is_some();
                beat_all(&b)?;
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // A run shorter than one beat still records when it started training.
            let b = beat();
            if !first_step_seen && b.first_step_at.is_some() {
                beat_all(&b)?;
            }
            Ok(())
        });
        Heartbeat { stop, thread }
    }

    /// Stops the beats and waits for the last one.
    pub fn stop(self) -> Result<(), StoreError> {
        drop(self.stop);
        self.thread.join().unwrap_or(Ok(()))
    }
}
