//! Training one run with burn-train: `Learner` + `SupervisedTraining`, its accuracy / loss /
//! learning-rate metrics and its checkpointer, with [`hook::EpochHook`] handing every finished
//! epoch to the caller's [`sink::EpochSink`], whose verdict may stop the run. After training, the
//! best-on-val checkpoint is evaluated on val and test. Training never opens the database: the
//! caller passes the epochs of an attempt it resumes and keeps what the sink receives.

pub mod eval;
pub mod group;
pub mod hook;
pub mod sink;

use crate::config::RunConfig;
use crate::data::SplitImages;
use crate::data::batcher::{FerBatch, FerBatcher, IndexDataset};
use crate::loss::Loss;
use crate::metrics::Evaluation;
use crate::model::{self, FerModel, ModelSize, Precision, precision};
use crate::store::EpochRow;
use burn::data::dataloader::DataLoaderBuilder;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::EventStoreClient;
use burn::train::metric::store::{Aggregate, Direction, Split as MetricSplit};
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep,
};
use burn::train::{MetricEarlyStoppingStrategy, StoppingCondition};
use hook::{EpochHook, HookState, Progress, QuietRenderer};
use sink::{EpochSink, StopReason};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

/// The three splits, shared (cheaply cloned) between loaders and evaluation.
#[derive(Clone)]
pub struct Splits {
    pub train: Arc<SplitImages>,
    pub val: Arc<SplitImages>,
    pub test: Arc<SplitImages>,
}

/// The model plus what its training step needs beyond weights.
#[derive(Module, Debug)]
pub struct Classifier {
    pub model: FerModel,
    #[module(skip)]
    loss: Loss,
    #[module(skip)]
    precision: Precision,
}

impl Classifier {
    fn output(&self, batch: FerBatch) -> ClassificationOutput {
        let logits = precision::with(self.precision, || self.model.forward(batch.images));
        let loss = match batch.mix {
            // Mixup / CutMix: the same blend of the losses against both labels.
            Some((partners, lam)) => {
                self.loss.forward(logits.clone(), batch.targets.clone()) * lam
                    + self.loss.forward(logits.clone(), partners) * (1.0 - lam)
            }
            None => self.loss.forward(logits.clone(), batch.targets.clone()),
        };
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for Classifier {
    type Input = FerBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: FerBatch) -> TrainOutput<ClassificationOutput> {
        let item = self.output(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for Classifier {
    type Input = FerBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: FerBatch) -> ClassificationOutput {
        self.output(batch)
    }
}

/// Why a run did not produce results.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("diverged: loss became NaN or infinite at epoch {epoch}")]
    Diverged { epoch: usize },
    #[error("pruned after epoch {epoch}")]
    Pruned { epoch: usize },
    #[error("interrupted after epoch {epoch} (checkpointed; the next launch resumes it)")]
    Interrupted { epoch: usize },
    #[error("training failed: {0}")]
    Training(String),
    /// The run asks for what its device cannot do (bf16 on flex).
    #[error("{0}")]
    Device(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A member of a resumed fused group that had stopped (pruned, diverged, interrupted) in
    /// an earlier attempt: its outcome was reported then.
    #[error("stopped after epoch {epoch} in an earlier attempt of its group")]
    StoppedEarlier { epoch: usize },
}

/// A saved model that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct LoadError {
    pub path: String,
    /// burn's message; not a `source`, so that anyhow does not print it twice.
    pub why: String,
}

/// One run to train.
pub struct RunSpec<'a> {
    pub config: &'a RunConfig,
    pub seed: u64,
    pub device: &'a Device,
    /// `results/<sweep>/<run>/`: burn-train's checkpoints and the best model.
    pub artifact_dir: &'a Path,
    /// Resume from the checkpoint of this epoch; the caller passes the epochs up to it.
    pub resume_from: Option<usize>,
    /// Where the running split is, for whoever watches (the worker's heartbeat).
    pub progress: Arc<Progress>,
}

/// The latest epoch whose model, optimizer and scheduler checkpoints all exist, up to `max`.
pub fn resumable_epoch(artifact_dir: &Path, max: usize) -> Option<usize> {
    (1..=max).rev().find(|&e| {
        ["model", "optim", "scheduler"].iter().all(|name| {
            artifact_dir
                .join("checkpoint")
                .join(format!("{name}-{e}.bpk"))
                .is_file()
        })
    })
}

/// burn-train checkpointing that keeps exactly two epochs: the last (to resume from) and the
/// best on val accuracy so far (to evaluate). It reads val accuracy from the hook's state, which
/// holds the epochs of an attempt this one resumed too, so the best epoch survives a resume.
struct BestAndLast {
    state: Arc<Mutex<HookState>>,
    kept: BTreeSet<usize>,
}

impl CheckpointingStrategy for BestAndLast {
    fn checkpointing(
        &mut self,
        epoch: usize,
        _store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        // The hook records the epoch on burn-train's event thread: wait for it (briefly).
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        let best = loop {
            let state = self.state.lock().expect("hook state lock");
            if state.epochs.iter().any(|r| r.epoch == epoch) || Instant::now() > deadline {
                break best_epoch(&state.epochs);
            }
            drop(state);
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        self.kept.insert(epoch);
        let mut actions = vec![CheckpointingAction::Save];
        let stale: Vec<usize> = self
            .kept
            .iter()
            .copied()
            .filter(|&k| k != epoch && Some(k) != best)
            .collect();
        for k in stale {
            self.kept.remove(&k);
            actions.push(CheckpointingAction::Delete(k));
        }
        actions
    }
}

/// The epoch with the highest val accuracy, and that accuracy; ties go to the earlier epoch.
fn best_val(epochs: &[EpochRow]) -> Option<(usize, f64)> {
    epochs
        .iter()
        .filter_map(|row| row.val_acc.map(|acc| (row.epoch, acc)))
        .fold(
            None,
            |best: Option<(usize, f64)>, (epoch, acc)| match best {
                Some((_, best_acc)) if best_acc >= acc => best,
                _ => Some((epoch, acc)),
            },
        )
}

/// The epoch with the highest val accuracy; ties go to the earlier epoch.
fn best_epoch(epochs: &[EpochRow]) -> Option<usize> {
    best_val(epochs).map(|(epoch, _)| epoch)
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub best_epoch: usize,
    pub epochs: Vec<EpochRow>,
    pub val: Evaluation,
    pub test: Evaluation,
    pub size: ModelSize,
    pub wall_secs: f64,
    pub best_model: PathBuf,
}

/// File name of the best-on-val model inside a run's artifact directory.
pub const BEST_MODEL: &str = "best.bpk";

/// Builds the model of a run with fresh weights (seeded through the device).
pub fn init_model(config: &RunConfig, seed: u64, device: &Device) -> FerModel {
    device.seed(seed);
    let mut model = FerModel::new(&config.model, config.input_side(), config.dropout, device)
        .with_weights_drawn();
    model.dropout_mut().seed(seed);
    model
}

/// Loads a checkpoint of a run (a saved [`Classifier`]) onto `device`.
pub fn load_model(config: &RunConfig, path: &Path, device: &Device) -> Result<FerModel, LoadError> {
    let record = ModuleRecord::load(path).map_err(|e| LoadError {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let classifier = Classifier {
        model: FerModel::new(&config.model, config.input_side(), config.dropout, device),
        loss: Loss::cross_entropy(),
        precision: config.precision,
    };
    Ok(classifier.load_record(record).model)
}

/// Saves `model` as a run's checkpoint is saved (a [`Classifier`]), so [`load_model`] reads it.
pub fn save_model(model: &FerModel, path: &Path) -> Result<(), TrainError> {
    let classifier = Classifier {
        model: model.clone(),
        loss: Loss::cross_entropy(),
        precision: Precision::F32,
    };
    classifier
        .into_record()
        .save(path)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

/// Trains one run to the end, handing each finished epoch to `sink`, then evaluates the
/// best-on-val checkpoint on val and test. `earlier` are the recorded epochs of the attempt
/// `spec.resume_from` resumes (those after its checkpoint are ignored; all of them on a fresh
/// start). The caller records the outcome.
pub fn train_run(
    spec: &RunSpec<'_>,
    splits: &Splits,
    earlier: Vec<EpochRow>,
    sink: Box<dyn EpochSink>,
) -> Result<RunOutcome, TrainError> {
    let started = Instant::now();
    let config = spec.config;
    // Before anything is touched: a run its device cannot train leaves its artifacts as they are.
    config
        .precision
        .check_device(spec.device)
        .map_err(TrainError::Device)?;
    let checkpoints = spec.artifact_dir.join("checkpoint");
    let resume_from = spec.resume_from.filter(|&e| e > 0);
    if resume_from.is_none() && checkpoints.exists() {
        // A fresh start: checkpoints an earlier, unfinished attempt left must not be mistaken
        // for this attempt's best epoch.
        std::fs::remove_dir_all(&checkpoints)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", checkpoints.display())))?;
    }
    std::fs::create_dir_all(spec.artifact_dir)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", spec.artifact_dir.display())))?;

    let autodiff = spec.device.clone().autodiff();
    let model = init_model(config, spec.seed, &autodiff);
    let size = model::size(&model, &config.model, config.input_side());
    let classifier = Classifier {
        model,
        loss: Loss::new(
            &config.loss,
            config.label_smoothing,
            &splits.train.class_counts(),
        ),
        precision: config.precision,
    };

    // One loader thread keeps batch order (and so augmentation visits) deterministic; the
    // batcher parallelises augmentation itself.
    let train_loader = DataLoaderBuilder::new(FerBatcher::train(
        splits.train.clone(),
        config.augment,
        config.crop,
        spec.seed,
    ))
    .batch_size(config.batch_size)
    .num_workers(1)
    .set_device(autodiff.clone())
    .build(IndexDataset::train(
        splits.train.len(),
        spec.seed,
        resume_from.unwrap_or(0) as u32,
    ));
    let valid_loader = DataLoaderBuilder::new(FerBatcher::eval(splits.val.clone(), config.crop))
        .batch_size(config.batch_size.max(256))
        .num_workers(1)
        .set_device(spec.device.clone())
        .build(IndexDataset::eval(splits.val.len()));

    // The epochs of the attempt this one resumes: the schedule, the best-epoch choice and the
    // sink see the whole run.
    let earlier: Vec<EpochRow> = match resume_from {
        Some(e) => earlier.into_iter().filter(|r| r.epoch <= e).collect(),
        None => Vec::new(),
    };
    let history = Arc::new(crate::optim::schedule::ValHistory::default());
    for row in &earlier {
        history.push(row.val_acc.unwrap_or(f64::NAN));
    }
    let kept: BTreeSet<usize> = earlier
        .iter()
        .map(|r| r.epoch)
        .filter(|&e| checkpoint_path(spec.artifact_dir, e).is_file())
        .collect();
    let training = SupervisedTraining::new(spec.artifact_dir, train_loader, valid_loader);
    let interrupter = training.interrupter();
    let (hook, hook_state) = EpochHook::new(sink, interrupter, history.clone(), earlier);
    let mut training = training
        .metric_train_numeric(AccuracyMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_train_numeric(LearningRateMetric::new())
        .with_metric_logger(hook)
        .with_checkpointing_strategy(BestAndLast {
            state: hook_state.clone(),
            kept,
        })
        .with_default_checkpointers()
        .with_application_logger(None)
        .renderer(Box::new(QuietRenderer {
            progress: spec.progress.clone(),
        }))
        .num_epochs(config.epochs);
    let dropout = classifier.model.dropout().streams();
    if let Some(e) = resume_from {
        training = training.checkpoint(e);
        // Where the uninterrupted run's scheduler would have started them at the end of epoch e.
        dropout.start_epoch(e as u32);
    }
    if let Some(patience) = config.early_stopping {
        training = training.early_stopping(MetricEarlyStoppingStrategy::new(
            &AccuracyMetric::new(),
            Aggregate::Mean,
            Direction::Highest,
            MetricSplit::Valid,
            StoppingCondition::NoImprovementSince { n_epochs: patience },
        ));
    }

    let iters_per_epoch = splits.train.len().div_ceil(config.batch_size);
    let lr = crate::optim::schedule::EpochSchedule::new(
        config.lr,
        config.schedule.clone(),
        config.epochs,
        iters_per_epoch,
        history,
    )
    .reseeding(dropout);
    let result = training.launch(Learner::new(
        classifier,
        crate::optim::build(&config.optimizer, config.weight_decay, config.grad_clip),
        lr,
    ));
    let state = hook_state.lock().expect("hook state lock").clone();
    if let Some(epoch) = state.diverged_at {
        return Err(TrainError::Diverged { epoch });
    }
    if let Some((StopReason::SinkFailed(why), _)) = &state.stopped {
        return Err(TrainError::Training(format!("recording metrics: {why}")));
    }
    if let Some(error) = result.error {
        return Err(TrainError::Training(error.to_string()));
    }
    match state.stopped {
        Some((StopReason::Pruned, epoch)) => return Err(TrainError::Pruned { epoch }),
        Some((StopReason::Interrupted, epoch)) => return Err(TrainError::Interrupted { epoch }),
        Some((StopReason::SinkFailed(_), _)) | None => {}
    }
    let stopped_early = config.early_stopping.is_some() && !state.epochs.is_empty();
    if state.epochs.len() < config.epochs && !stopped_early {
        let why = result
            .interrupted
            .map(|i| format!("{i:?}"))
            .unwrap_or_else(|| "stopped early".into());
        return Err(TrainError::Training(format!(
            "only {} of {} epochs recorded ({why})",
            state.epochs.len(),
            config.epochs
        )));
    }

    let best_epoch = best_checkpoint(spec.artifact_dir, &state.epochs)?;
    let best_model = spec.artifact_dir.join(BEST_MODEL);
    let checkpoint = checkpoint_path(spec.artifact_dir, best_epoch);
    std::fs::copy(&checkpoint, &best_model)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", checkpoint.display())))?;
    let model = load_model(config, &best_model, spec.device)
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let eval_batch = config.batch_size.max(256);
    let inference = eval::Inference::of(config);
    let val = eval::evaluate(&model, &splits.val, eval_batch, inference, spec.device);
    let test = eval::evaluate(&model, &splits.test, eval_batch, inference, spec.device);
    Ok(RunOutcome {
        best_epoch,
        epochs: state.epochs,
        val,
        test,
        size,
        wall_secs: started.elapsed().as_secs_f64(),
        best_model,
    })
}

fn checkpoint_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join("checkpoint").join(format!("model-{epoch}.bpk"))
}

/// The best-on-val epoch, which [`BestAndLast`] kept on disk.
fn best_checkpoint(dir: &Path, epochs: &[EpochRow]) -> Result<usize, TrainError> {
    best_epoch(epochs)
        .filter(|&e| checkpoint_path(dir, e).is_file())
        .ok_or_else(|| TrainError::Checkpoint(format!("no best checkpoint in {}", dir.display())))
}
