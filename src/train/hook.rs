//! fer-lab's hook into burn-train: a `MetricLogger` that streams each epoch's train and val
//! loss / accuracy and the learning rate into SQLite as the epoch ends, and a renderer that
//! stays quiet (progress lines are the sweep's job, the dashboard reads SQLite).
//!
//! burn-train calls loggers on its event-processor thread, so these writes never stall the
//! training step.

use super::schedule::ValHistory;
use crate::store::{EpochRow, Store};
use burn::train::logger::{
    EvaluationProgressLogger, InMemoryMetricLogger, MetricLogger, TrainingProgressLogger,
};
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use burn::train::{Interrupter, LearnerSummary};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why training stopped before its last epoch, by the hook's own decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The pruning rule judged the run not worth finishing.
    Pruned,
    /// A graceful stop was asked for (first Ctrl-C): the epoch finished and was checkpointed.
    Interrupted,
}

/// What the hook learned, shared with the thread that launched training.
#[derive(Debug, Default, Clone)]
pub struct HookState {
    /// Every epoch of the run, those of an earlier attempt it resumed from included.
    pub epochs: Vec<EpochRow>,
    /// First epoch whose train loss was NaN or infinite.
    pub diverged_at: Option<usize>,
    /// An SQLite error while recording (training is stopped when it happens).
    pub store_error: Option<String>,
    /// Set when the gate stopped training, with the epoch.
    pub stopped: Option<(StopReason, usize)>,
}

/// Called with each finished epoch (used for progress lines).
pub type EpochCallback = Box<dyn FnMut(&EpochRow) + Send>;

/// Asked after each recorded epoch, with all epochs so far, whether training should stop.
pub type EpochGate = Box<dyn FnMut(&[EpochRow]) -> Option<StopReason> + Send>;

pub struct SqliteHook {
    store: Store,
    run_id: String,
    names: HashMap<MetricId, String>,
    row: EpochRow,
    epoch_started: Instant,
    memory: InMemoryMetricLogger,
    state: Arc<Mutex<HookState>>,
    interrupter: Interrupter,
    on_epoch: Option<EpochCallback>,
    gate: Option<EpochGate>,
    history: Arc<ValHistory>,
}

impl SqliteHook {
    /// `earlier` are the epochs of the attempt this one resumes (empty for a fresh start).
    pub fn new(
        store: Store,
        run_id: &str,
        interrupter: Interrupter,
        on_epoch: Option<EpochCallback>,
        gate: Option<EpochGate>,
        history: Arc<ValHistory>,
        earlier: Vec<EpochRow>,
    ) -> (SqliteHook, Arc<Mutex<HookState>>) {
        let state = Arc::new(Mutex::new(HookState {
            epochs: earlier,
            ..HookState::default()
        }));
        let hook = SqliteHook {
            store,
            run_id: run_id.to_string(),
            names: HashMap::new(),
            row: EpochRow::default(),
            epoch_started: Instant::now(),
            memory: InMemoryMetricLogger::default(),
            state: state.clone(),
            interrupter,
            on_epoch,
            gate,
            history,
        };
        (hook, state)
    }

    fn finish_epoch(&mut self, epoch: usize) {
        let mut row = std::mem::take(&mut self.row);
        row.epoch = epoch;
        row.secs = Some(self.epoch_started.elapsed().as_secs_f64());
        self.epoch_started = Instant::now();
        let diverged = row.train_loss.is_some_and(|l| !l.is_finite())
            || row.val_loss.is_some_and(|l| !l.is_finite());
        self.history.push(row.val_acc.unwrap_or(f64::NAN));
        match self.store.record_epoch(&self.run_id, &row) {
            Ok(ms) => row.write_ms = Some(ms),
            Err(e) => {
                self.state.lock().expect("hook state lock").store_error = Some(e.to_string());
                self.interrupter
                    .stop(Some("could not record metrics in SQLite"));
            }
        }
        let mut state = self.state.lock().expect("hook state lock");
        state.epochs.push(row);
        if diverged && state.diverged_at.is_none() {
            state.diverged_at = Some(epoch);
            self.interrupter.stop(Some("loss is NaN or infinite"));
        }
        if state.diverged_at.is_none()
            && state.stopped.is_none()
            && let Some(gate) = &mut self.gate
            && let Some(reason) = gate(&state.epochs)
        {
            state.stopped = Some((reason, epoch));
            self.interrupter.stop(Some(match reason {
                StopReason::Pruned => "pruned",
                StopReason::Interrupted => "interrupted",
            }));
        }
        drop(state);
        if let Some(callback) = &mut self.on_epoch {
            callback(&row);
        }
    }
}

impl MetricLogger for SqliteHook {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        for numeric in &update.entries_numeric {
            // The epoch-level value arrives once, as a `Final` entry, when the split ends.
            let Some(NumericEntry::Final(value)) = numeric.numeric_entry else {
                continue;
            };
            let Some(name) = self.names.get(&numeric.entry.metric_id) else {
                continue;
            };
            match (split, name.as_str()) {
                (Split::Train, "Loss") => self.row.train_loss = Some(value),
                (Split::Train, "Accuracy") => self.row.train_acc = Some(value / 100.0),
                (Split::Train, "Learning Rate") => self.row.lr = Some(value),
                (Split::Valid, "Loss") => self.row.val_loss = Some(value),
                (Split::Valid, "Accuracy") => self.row.val_acc = Some(value / 100.0),
                _ => {}
            }
        }
        self.memory.log(update, epoch, split);
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        self.memory.read_numeric(name, epoch, split)
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.to_string());
        self.memory.log_metric_definition(definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        // Validation ends the epoch; it always runs after training in burn-train.
        if summary.split == Split::Valid {
            self.finish_epoch(summary.epoch_number);
        }
        self.memory.log_epoch_summary(summary);
    }
}

/// Where a running split is, for the heartbeat to publish: (split, items done, items total).
#[derive(Debug, Default)]
pub struct Progress {
    pub split: Mutex<Option<crate::data::Split>>,
    pub done: AtomicUsize,
    pub total: AtomicUsize,
    /// Unix seconds of the first training step (the end of start-up overhead).
    pub first_step_at: Mutex<Option<f64>>,
}

/// A renderer that draws nothing — burn-train's own output would interleave with the sweep's
/// progress lines — but keeps [`Progress`] for the heartbeat.
pub struct QuietRenderer {
    pub progress: Arc<Progress>,
}

impl MetricsRendererTraining for QuietRenderer {
    fn update_train(&mut self, _state: MetricState) {}
    fn update_valid(&mut self, _state: MetricState) {}
    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for QuietRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    fn on_test_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for QuietRenderer {
    fn start(&mut self, _: usize, _: usize, _: Option<usize>, _: Option<&str>) {}
    fn update_epoch(&mut self, _epoch: usize) {}
    fn start_split(&mut self, split: &str, total_items: usize) {
        // burn-train names its phases "train" and "valid"; evaluation runs on val.
        *self.progress.split.lock().expect("progress lock") = Some(if split == "train" {
            crate::data::Split::Train
        } else {
            crate::data::Split::Val
        });
        self.progress.total.store(total_items, Ordering::Relaxed);
        self.progress.done.store(0, Ordering::Relaxed);
    }
    fn update_split(&mut self, items_processed: usize) {
        self.progress.done.store(items_processed, Ordering::Relaxed);
        let mut first = self.progress.first_step_at.lock().expect("progress lock");
        if first.is_none() {
            *first = Some(crate::store::now_unix());
        }
    }
    fn end_split(&mut self) {}
    fn end(&mut self) {}
    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for QuietRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for QuietRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _definition: MetricDefinition) {}
}
