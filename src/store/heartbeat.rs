//! A worker's one store handle, shared by the threads of its process (training's epoch sink,
//! the heartbeat, the signal handler), and the heartbeat that renews its runs' leases.
//!
//! One connection per worker rather than one per thread: writes from one process never wait on
//! each other's SQLite locks, and whoever reads the database sees one writer per run.

use super::{Store, StoreError};
use crate::data::Split;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// A store shared between the threads of one process; clones share the one connection.
#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Store>>);

impl SharedStore {
    pub fn new(store: Store) -> SharedStore {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// The store, for one short piece of work. A thread that panicked while holding it left
    /// no half-done write behind (SQLite rolls back an open transaction when it is dropped), so
    /// the store stays usable.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
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
        store: SharedStore,
        runs: Vec<String>,
        lease_secs: f64,
        every: Duration,
        beat: impl Fn() -> Beat + Send + 'static,
    ) -> Heartbeat {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<(), StoreError> {
            let pid = std::process::id();
            let mut first_step_written = false;
            loop {
                let b = beat();
                {
                    let store = store.lock();
                    for run in &runs {
                        store.heartbeat(run, pid, lease_secs, b.wall_secs)?;
                        store.set_progress(run, b.split, b.done, b.total)?;
                        if !first_step_written && let Some(at) = b.first_step_at {
                            store.set_first_step(run, at)?;
                        }
                    }
                    first_step_written |= b.first_step_at.is_some();
                }
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // A run shorter than one beat still records when it started training.
            if !first_step_written && let Some(at) = beat().first_step_at {
                let store = store.lock();
                for run in &runs {
                    store.set_first_step(run, at)?;
                }
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
