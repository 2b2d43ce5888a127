//! Learning-rate schedules: their spec ([`Schedule`], each kind's knobs, defaults and
//! validation) and their implementation as a burn `LrScheduler`, stepped once per batch but
//! defined per epoch: constant, step, cosine with linear warm-up, and reduce-on-plateau of val
//! accuracy.
//!
//! Plateau needs the val accuracy of the epochs before: the SQLite hook publishes each one in a
//! [`ValHistory`], and the first step of an epoch waits for the previous epoch's value, so the
//! learning rate changes at the same batch in every run with the same seed.
//!
//! The last step of every epoch also starts the model's dropout streams at the next epoch:
//! dropout masks then depend on (run seed, epoch, position in the epoch) alone, so a run
//! resumed from a checkpoint (its streams started at the same epoch before it begins)
//! continues exactly as an uninterrupted one would. (burn-train steps the scheduler after each
//! training step, before the optimizer.)

use crate::invalid::InvalidValue;
use crate::model::dropout::DropoutStreams;
use burn::optim::LearningRate;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How the learning rate moves over epochs: `schedule = "cosine"` or
/// `schedule = { kind = "step", step_size = 10, gamma = 0.1 }` in a sweep (a knob of another
/// kind is an error). The bare name is read and written by `crate::config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant(ConstantConfig),
    /// Multiply by `gamma` every `step_size` epochs.
    Step(StepConfig),
    /// Linear warm-up over `warmup` epochs, then cosine decay to `min_lr` by the last epoch.
    Cosine(CosineConfig),
    /// Multiply by `factor` when val accuracy has not improved for `patience` epochs.
    Plateau(PlateauConfig),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Constant(ConstantConfig {})
    }
}

/// The learning rate stays `lr`: no knobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantConfig {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    #[serde(default = "ten")]
    pub step_size: usize,
    #[serde(default = "point_one")]
    pub gamma: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineConfig {
    /// Epochs of linear warm-up, fewer than the run's epochs.
    #[serde(default)]
    pub warmup: usize,
    /// The learning rate at the last epoch, in [0, lr).
    #[serde(default)]
    pub min_lr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateauConfig {
    #[serde(default = "half")]
    pub factor: f64,
    #[serde(default = "three")]
    pub patience: usize,
}

fn ten() -> usize {
    10
}
fn three() -> usize {
    3
}
fn point_one() -> f64 {
    0.1
}
fn half() -> f64 {
    0.5
}

impl Default for StepConfig {
    fn default() -> Self {
        StepConfig {
            step_size: ten(),
            gamma: point_one(),
        }
    }
}

impl Default for PlateauConfig {
    fn default() -> Self {
        PlateauConfig {
            factor: half(),
            patience: three(),
        }
    }
}

impl Schedule {
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Constant(_) => "constant",
            Schedule::Step(_) => "step",
            Schedule::Cosine(_) => "cosine",
            Schedule::Plateau(_) => "plateau",
        }
    }

    /// The name alone when the schedule has no knobs (how run configs write it).
    pub fn bare_name(&self) -> Option<&'static str> {
        matches!(self, Schedule::Constant(_)).then_some("constant")
    }

    /// Checks the knobs against the run's `epochs` and peak `lr`.
    pub fn validate(&self, epochs: usize, lr: f64) -> Result<(), InvalidValue> {
        match self {
            Schedule::Constant(_) => Ok(()),
            Schedule::Step(c) => c.validate(),
            Schedule::Cosine(c) => c.validate(epochs, lr),
            Schedule::Plateau(c) => c.validate(),
        }
    }
}

impl StepConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let StepConfig { step_size, gamma } = *self;
        if step_size == 0 {
            return Err(InvalidValue::new(
                "schedule.step_size",
                "schedule.step_size = 0 must be ≥ 1",
            ));
        }
        if !(gamma > 0.0 && gamma <= 1.0) {
            return Err(InvalidValue::new(
                "schedule.gamma",
                format!("schedule.gamma = {gamma} must be in (0, 1]"),
            ));
        }
        Ok(())
    }
}

impl CosineConfig {
    pub fn validate(&self, epochs: usize, lr: f64) -> Result<(), InvalidValue> {
        let CosineConfig { warmup, min_lr } = *self;
        if warmup >= epochs {
            return Err(InvalidValue::new(
                "schedule.warmup",
                format!("schedule.warmup = {warmup} must be fewer than epochs = {epochs}"),
            ));
        }
        if !(min_lr >= 0.0 && min_lr < lr) {
            return Err(InvalidValue::new(
                "schedule.min_lr",
                format!("schedule.min_lr = {min_lr} must be in [0, lr)"),
            ));
        }
        Ok(())
    }
}

impl PlateauConfig {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let PlateauConfig { factor, patience } = *self;
        if !(factor > 0.0 && factor < 1.0) {
            return Err(InvalidValue::new(
                "schedule.factor",
                format!("schedule.factor = {factor} must be in (0, 1)"),
            ));
        }
        if patience == 0 {
            return Err(InvalidValue::new(
                "schedule.patience",
                "schedule.patience = 0 must be ≥ 1",
            ));
        }
        Ok(())
    }
}

/// Val accuracy per finished epoch, shared between the hook (writer) and the schedule (reader).
#[derive(Debug, Default)]
pub struct ValHistory {
    accs: Mutex<Vec<f64>>,
    ready: Condvar,
}

impl ValHistory {
    pub fn push(&self, acc: f64) {
        self.accs.lock().expect("history lock").push(acc);
        self.ready.notify_all();
    }

    /// The first `n` values, waiting up to `timeout` for them to arrive.
    fn first(&self, n: usize, timeout: Duration) -> Vec<f64> {
        let accs = self.accs.lock().expect("history lock");
        let (accs, _) = self
            .ready
            .wait_timeout_while(accs, timeout, |a| a.len() < n)
            .expect("history lock");
        accs.iter().take(n).copied().collect()
    }
}

/// Number of LR reductions ReduceLROnPlateau (PyTorch semantics, mode "max") makes over `accs`.
pub fn plateau_reductions(accs: &[f64], patience: usize) -> u32 {
    let mut best = f64::NEG_INFINITY;
    let mut bad = 0;
    let mut reductions = 0;
    for &acc in accs {
        // PyTorch's default threshold: a relative improvement of 1e-4.
        if acc > best * (1.0 + 1e-4) || best == f64::NEG_INFINITY {
            best = acc;
            bad = 0;
        } else {
            bad += 1;
            if bad > patience {
                reductions += 1;
                bad = 0;
            }
        }
    }
    reductions
}

#[derive(Clone)]
pub struct EpochSchedule {
    base_lr: f64,
    schedule: Schedule,
    epochs: usize,
    iters_per_epoch: usize,
    step: usize,
    history: Arc<ValHistory>,
    /// The model's dropout streams, started at each epoch (`None` in unit tests).
    reseed: Option<DropoutStreams>,
}

impl EpochSchedule {
    pub fn new(
        base_lr: f64,
        schedule: Schedule,
        epochs: usize,
        iters_per_epoch: usize,
        history: Arc<ValHistory>,
    ) -> Self {
        EpochSchedule {
            base_lr,
            schedule,
            epochs,
            iters_per_epoch: iters_per_epoch.max(1),
            step: 0,
            history,
            reseed: None,
        }
    }

    /// Starts `streams` at each epoch as the epoch before ends.
    pub fn reseeding(mut self, streams: DropoutStreams) -> Self {
        self.reseed = Some(streams);
        self
    }

    /// The learning rate of iteration `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let ipe = self.iters_per_epoch;
        let epoch = step / ipe;
        match self.schedule {
            Schedule::Constant(_) => self.base_lr,
            Schedule::Step(StepConfig { step_size, gamma }) => {
                self.base_lr * gamma.powi((epoch / step_size) as i32)
            }
            Schedule::Cosine(CosineConfig { warmup, min_lr }) => {
                if epoch < warmup {
                    self.base_lr * (step + 1) as f64 / (warmup * ipe) as f64
                } else {
                    let span = ((self.epochs - warmup) * ipe).max(1) as f64;
                    let t = ((step - warmup * ipe) as f64 / span).min(1.0);
                    min_lr
                        + 0.5 * (self.base_lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
            Schedule::Plateau(PlateauConfig { factor, patience }) => {
                let accs = self.history.first(epoch, Duration::from_secs(600));
                self.base_lr * factor.powi(plateau_reductions(&accs, patience) as i32)
            }
        }
    }
}

impl LrScheduler for EpochSchedule {
    fn step(&mut self) -> LearningRate {
        let lr = self.lr_at(self.step);
        self.step += 1;
        if let Some(streams) = &self.reseed
            && self.step.is_multiple_of(self.iters_per_epoch)
        {
            streams.start_epoch((self.step / self.iters_per_epoch) as u32);
        }
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(s: Schedule) -> EpochSchedule {
        EpochSchedule::new(0.1, s, 10, 5, Arc::new(ValHistory::default()))
    }

    #[test]
    fn step_and_cosine_follow_their_formulas() {
        let s = schedule(Schedule::Step(StepConfig {
            step_size: 3,
            gamma: 0.5,
        }));
        assert_eq!(s.lr_at(0), 0.1);
        assert_eq!(s.lr_at(14), 0.1);
        assert!((s.lr_at(15) - 0.05).abs() < 1e-12);
        let c = schedule(Schedule::Cosine(CosineConfig {
            warmup: 2,
            min_lr: 0.0,
        }));
        assert!(
            (c.lr_at(0) - 0.01).abs() < 1e-12,
            "warm-up starts at base/10 steps"
        );
        assert!((c.lr_at(9) - 0.1).abs() < 1e-12, "warm-up ends at base");
        assert!((c.lr_at(10) - 0.1).abs() < 1e-12, "cosine starts at base");
        assert!((c.lr_at(30) - 0.05).abs() < 1e-12, "halfway");
        assert!(c.lr_at(49) < 0.001);
    }

    #[test]
    fn plateau_reduces_after_patience_bad_epochs() {
        assert_eq!(plateau_reductions(&[0.1, 0.2, 0.3], 1), 0);
        assert_eq!(plateau_reductions(&[0.5, 0.4, 0.4], 1), 1);
        assert_eq!(plateau_reductions(&[0.5, 0.4], 1), 0);
        let history = Arc::new(ValHistory::default());
        let s = EpochSchedule::new(
            0.1,
            Schedule::Plateau(PlateauConfig {
                factor: 0.5,
                patience: 1,
            }),
            10,
            2,
            history.clone(),
        );
        for acc in [0.5, 0.4, 0.4] {
            history.push(acc);
        }
        assert_eq!(s.lr_at(0), 0.1);
        assert_eq!(s.lr_at(5), 0.1, "epoch 2 sees 2 epochs: no reduction yet");
        assert_eq!(s.lr_at(6), 0.05, "epoch 3 sees the third bad value");
    }

    #[test]
    fn record_round_trips_the_step() {
        let mut s = schedule(Schedule::default());
        s.step();
        s.step();
        let mut t = schedule(Schedule::default());
        t.load_record(s.to_record());
        assert_eq!(t.step, 2);
    }
}
