//! fer-lab's hook into burn-train: a `MetricLogger` that collects each epoch's train and val
//! loss / accuracy and the learning rate and hands the finished epoch to the run's
//! [`EpochSink`], and a renderer that stays quiet (progress lines are the sweep's job, the
//! dashboard reads SQLite).
//!
//! burn-train calls loggers on its event-processor thread, so what the sink does with an epoch
//! never stalls the training step.

use super::sink::{EpochSink, StopReason, Verdict};
use crate::optim::schedule::ValHistory;
use crate::store::EpochRow;
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

/// What the hook learned, shared with the thread that launched training.
#[derive(Debug, Default, Clone)]
pub struct HookState {
    /// Every epoch of the run, those of an earlier attempt it resumed from included.
    pub epochs: Vec<EpochRow>,
    /// First epoch whose train loss was NaN or infinite.
    pub diverged_at: Option<usize>,
    /// Set when the sink stopped training, with the epoch.
    pub stopped: Option<(StopReason, usize)>,
}

pub struct EpochHook {
    sink: Box<dyn EpochSink>,
    names: HashMap<MetricId, String>,
    row: EpochRow,
    epoch_started: Instant,
    memory: InMemoryMetricLogger,
    /// The hook's own copy of the run's epochs, what the sink is shown: the shared state is
    /// not locked while the sink works, so the checkpointer waiting on it is not held up longer.
    epochs: Vec<EpochRow>,
    state: Arc<Mutex<HookState>>,
    interrupter: Interrupter,
    history: Arc<ValHistory>,
}

impl EpochHook {
    /// `earlier` are the epochs of the attempt this one resumes (empty for a fresh start).
    pub fn new(
        sink: Box<dyn EpochSink>,
        interrupter: Interrupter,
        history: Arc<ValHistory>,
        earlier: Vec<EpochRow>,
    ) -> (EpochHook, Arc<Mutex<HookState>>) {
        let state = Arc::new(Mutex::new(HookState {
            epochs: earlier.clone(),
            ..HookState::default()
        }));
        let hook = EpochHook {
            sink,
            names: HashMap::new(),
            row: EpochRow::default(),
            epoch_started: Instant::now(),
            memory: InMemoryMetricLogger::default(),
            epochs: earlier,
            state: state.clone(),
            interrupter,
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
        self.epochs.push(row);
        // Before the epoch enters the shared state: the checkpointer waits for it there, so the
        // sink has kept the epoch before its checkpoint is written.
        let verdict = self.sink.epoch(&self.epochs);
        let mut state = self.state.lock().expect("hook state lock");
        state.epochs.push(row);
        if diverged && state.diverged_at.is_none() {
            state.diverged_at = Some(epoch);
            self.interrupter.stop(Some("loss is NaN or infinite"));
        }
        if state.diverged_at.is_none()
            && state.stopped.is_none()
            && let Verdict::Stop(reason) = verdict
        {
            self.interrupter.stop(Some(match reason {
                StopReason::Pruned => "pruned",
                StopReason::Interrupted => "interrupted",
                StopReason::SinkFailed(_) => "the sink could not keep the epoch",
            }));
            state.stopped = Some((reason, epoch));
        }
    }
}

impl MetricLogger for EpochHook {
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

impl Progress {
    pub fn start_split(&self, split: crate::data::Split, total: usize) {
        *self.split.lock().expect("progress lock") = Some(split);
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    /// `done` items of the split so far; the first call of a run marks its first step.
    pub fn advance(&self, done: usize) {
        self.done.store(done, Ordering::Relaxed);
        let mut first = self.first_step_at.lock().expect("progress lock");
        if first.is_none() {
            *first = Some(crate::store::now_unix());
        }
    }
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
        self.progress.start_split(
            if split == "train" {
                crate::data::Split::Train
            } else {
                crate::data::Split::Val
            },
            total_items,
        );
    }
    fn update_split(&mut self, items_processed: usize) {
        self.progress.advance(items_processed);
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
