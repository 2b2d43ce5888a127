//! Training a fused group: several runs of one architecture as one model ([`crate::model::fuse`])
//! on one device, one forward and one backward for all of them per step.
//!
//! Each member keeps everything that makes it its run: its initial weights (built and seeded as
//! alone), its data order and augmentation (seeded by its seed and the epoch), its dropout rate
//! and masks, its loss and label smoothing, its learning-rate schedule, and its optimizer's
//! weight decay, momentum and clipping ([`crate::optim::members`]). Its epochs go to its own
//! [`EpochSink`]. A member that its sink stops (pruned, interrupted), whose loss diverges, or
//! whose early stopping fires stops moving (learning rate 0, its loss left out of the backward)
//! while the others go on.
//!
//! What members must share to fuse is [`fusable`]: the model's shape, its input side (`crop`),
//! the batch size, the crops per image (`augment.crops`), the number of epochs and the
//! optimizer's kind.
//!
//! Every epoch ends with a group checkpoint — the fused model, the optimizer's state, and each
//! member's best model so far — written after every member's sink has the epoch, so a group
//! killed at any point resumes from its last epoch ([`Checkpoints::resume_from`]) and trains
//! on exactly as it would have without the break.

use super::hook::Progress;
use super::sink::{EpochSink, StopReason, Verdict};
use super::{Splits, TrainError, best_val, eval, init_model, load_model, save_model};
use crate::config::RunConfig;
use crate::data::Split;
use crate::data::batcher::{FerBatcher, FerItem, permutation};
use crate::loss::Loss;
use crate::metrics::Evaluation;
use crate::model::{FerModel, fuse, precision};
use crate::optim::OptimizerSpec;
use crate::optim::members::{MemberOptimizer, MemberRates, MemberSettings};
use crate::optim::schedule::{EpochSchedule, ValHistory};
use crate::store::EpochRow;
use burn::data::dataloader::batcher::Batcher;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::store::ModuleRecord;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// One run of a group: its config, its seed, and where its epochs go.
pub struct Member<'a> {
    pub config: &'a RunConfig,
    pub seed: u64,
    pub sink: &'a mut dyn EpochSink,
    /// When the group resumes: the epochs this run recorded up to the checkpoint.
    pub earlier: Vec<EpochRow>,
    /// When the group resumes: whether this run had already stopped (pruned, diverged, early
    /// stopped) in the earlier attempt. It stays stopped; its slice of the group still trains
    /// nothing.
    pub stopped: bool,
}

/// Where a group keeps its checkpoints, and the epoch to resume from.
pub struct Checkpoints<'a> {
    pub dir: &'a Path,
    pub resume_from: Option<usize>,
}

fn model_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("group-model-{epoch}.bpk"))
}

fn optim_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("group-optim-{epoch}.bpk"))
}

/// A group's folder, beside its members' run folders: `results/<sweep>/groups/<group>/`.
pub fn group_dir(member_dir: &Path, group: &str) -> PathBuf {
    member_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join("groups")
        .join(group)
}

/// The id of a group of these runs, in this order: `g` and 10 hex digits of their ids' hash,
/// so the same runs in the same order are the same group wherever it is formed.
pub fn group_id(members: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(members.join("\n").as_bytes());
    format!("g{}", &crate::data::cache::hex(&digest)[..10])
}

/// Removes what a finished group kept for a resume (its last epoch checkpoint and each
/// member's best model, which the worker has saved in the member's own folder by then);
/// the folder and its worker log stay.
pub fn remove_checkpoints(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "bpk") {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn best_path(dir: &Path, member: usize) -> PathBuf {
    dir.join(format!("best-{member}.bpk"))
}

/// The latest epoch, up to `max`, whose group checkpoint is complete in `dir`.
pub fn resumable_epoch(dir: &Path, max: usize) -> Option<usize> {
    (1..=max)
        .rev()
        .find(|&e| model_path(dir, e).is_file() && optim_path(dir, e).is_file())
}

fn checkpoint_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint(format!("{}: {e}", path.display()))
}

/// What a member that trained to its end produced.
#[derive(Debug)]
pub struct MemberOutcome {
    pub best_epoch: usize,
    pub epochs: Vec<EpochRow>,
    /// The best-on-val model, sliced out of the group: an ordinary model of the run.
    pub best_model: FerModel,
    pub val: Evaluation,
    pub test: Evaluation,
}

/// Why two runs cannot train in one group, or `Ok` when they can.
pub fn fusable(a: &RunConfig, b: &RunConfig) -> Result<(), String> {
    if a.model != b.model {
        return Err("their models differ".into());
    }
    if a.crop != b.crop {
        return Err("their crops differ".into());
    }
    if a.augment.crops != b.augment.crops {
        return Err("their crops per image differ".into());
    }
    if a.precision != b.precision {
        return Err("their precisions differ".into());
    }
    if a.batch_size != b.batch_size {
        return Err("their batch sizes differ".into());
    }
    if a.epochs != b.epochs {
        return Err("their epochs differ".into());
    }
    let kind = |o: &OptimizerSpec| match o {
        OptimizerSpec::Sgd(c) => format!("sgd{}", if c.nesterov { " nesterov" } else { "" }),
        other => other.kind().to_string(),
    };
    if kind(&a.optimizer) != kind(&b.optimizer) {
        return Err("their optimizers differ".into());
    }
    Ok(())
}

/// Where a member stands while the group trains.
struct State {
    rows: Vec<EpochRow>,
    history: Arc<ValHistory>,
    schedule: EpochSchedule,
    loss: Loss,
    batcher: FerBatcher,
    /// `Some` once the member stopped moving: why, and whether that is an error.
    stopped: Option<Result<(), TrainError>>,
    best: Option<(usize, f64, FerModel)>,
}

/// Trains `members` as one fused model on `device`, all epochs, and returns each member's
/// outcome in member order.
///
/// # Panics
/// When the members are not [`fusable`] (the caller forms groups).
pub fn train_group(
    members: Vec<Member<'_>>,
    checkpoints: &Checkpoints<'_>,
    splits: &Splits,
    device: &Device,
    progress: &Progress,
) -> Vec<Result<MemberOutcome, TrainError>> {
    let count = members.len();
    let first = members[0].config;
    for m in &members[1..] {
        if let Err(why) = fusable(first, m.config) {
            panic!("runs that cannot fuse were grouped: {why}");
        }
    }
    let mut sinks = Vec::with_capacity(count);
    let result =
        Group::start(members, &mut sinks, checkpoints, splits, device).and_then(|mut g| {
            for epoch in g.start..g.epochs {
                let started = Instant::now();
                let train = g.train_epoch(epoch, splits, progress);
                g.end_epoch(epoch, train, started, &mut sinks, splits, progress)?;
                if g.states.iter().all(|s| s.stopped.is_some()) {
                    break;
                }
            }
            Ok(g.outcomes(splits))
        });
    // The group could not start (its device cannot train it) or keep its checkpoints: every
    // member failed alike.
    result.unwrap_or_else(|e| {
        (0..count)
            .map(|_| {
                Err(match &e {
                    TrainError::Device(why) => TrainError::Device(why.clone()),
                    other => TrainError::Checkpoint(other.to_string()),
                })
            })
            .collect()
    })
}

/// A group while it trains: the fused model, its optimizer, each member's state.
struct Group<'a> {
    spec: &'a crate::model::ModelSpec,
    /// Each member's config (the crop fusable members share is read from the first).
    configs: Vec<&'a RunConfig>,
    seeds: Vec<u64>,
    device: Device,
    autodiff: Device,
    dir: PathBuf,
    start: usize,
    epochs: usize,
    batch_size: usize,
    iters_per_epoch: usize,
    model: FerModel,
    optim: burn::optim::ModuleOptimizer,
    rates: MemberRates,
    states: Vec<State>,
}

/// What an epoch's steps measured for one member: Σ batch loss, correct, images, batches, Σ
/// learning rate. The loss is a mean over batches (as burn-train's loss metric reports a run
/// alone), accuracy over images.
#[derive(Clone, Copy, Default)]
struct EpochTrain {
    loss: f64,
    correct: usize,
    images: usize,
    batches: usize,
    lr: f64,
}

impl<'a> Group<'a> {
    /// The fused model of `members` (or the checkpoint it resumes), its optimizer and each
    /// member's state; the members' sinks go to `sinks`.
    fn start(
        members: Vec<Member<'a>>,
        sinks: &mut Vec<&'a mut dyn EpochSink>,
        checkpoints: &Checkpoints<'_>,
        splits: &Splits,
        device: &Device,
    ) -> Result<Group<'a>, TrainError> {
        let first = members[0].config;
        first
            .precision
            .check_device(device)
            .map_err(TrainError::Device)?;
        let (spec, batch_size, epochs) = (&first.model, first.batch_size, first.epochs);
        let autodiff = device.clone().autodiff();
        let solos: Vec<FerModel> = members
            .iter()
            .map(|m| init_model(m.config, m.seed, &autodiff))
            .collect();
        let mut model = fuse::stack(spec, first.input_side(), &solos, &autodiff);
        drop(solos);
        let dir = checkpoints.dir;
        std::fs::create_dir_all(dir).map_err(|e| checkpoint_error(dir, e))?;
        let start = checkpoints.resume_from.unwrap_or(0);
        let rates = MemberRates::default();
        let settings = members.iter().map(|m| member_settings(m.config)).collect();
        let mut optim = MemberOptimizer::new(&first.optimizer, settings, rates.clone()).init();
        if let Some(e) = checkpoints.resume_from {
            let path = model_path(dir, e);
            let record = ModuleRecord::load(&path).map_err(|err| checkpoint_error(&path, err))?;
            model = model.load_record(record);
            let path = optim_path(dir, e);
            optim = optim
                .load(&path)
                .map_err(|err| checkpoint_error(&path, err))?;
        }
        let iters_per_epoch = splits.train.len().div_ceil(batch_size);
        let states = members
            .iter()
            .enumerate()
            .map(|(i, m)| member_state(i, m, dir, start, epochs, iters_per_epoch, splits, device))
            .collect::<Result<Vec<_>, _>>()?;
        let mut configs = Vec::new();
        let mut seeds = Vec::new();
        for m in members {
            sinks.push(m.sink);
            configs.push(m.config);
            seeds.push(m.seed);
        }
        Ok(Group {
            spec,
            configs,
            seeds,
            device: device.clone(),
            autodiff,
            dir: dir.to_path_buf(),
            start,
            epochs,
            batch_size,
            iters_per_epoch,
            model,
            optim,
            rates,
            states,
        })
    }

    /// One epoch's steps: each member's batch of its own order and augmentation, one fused
    /// forward and backward over the members still training, one optimizer step.
    fn train_epoch(
        &mut self,
        epoch: usize,
        splits: &Splits,
        progress: &Progress,
    ) -> Vec<EpochTrain> {
        let count = self.states.len();
        progress.start_split(Split::Train, splits.train.len());
        self.model.dropout().streams().start_epoch(epoch as u32);
        let orders: Vec<Vec<usize>> = self
            .seeds
            .iter()
            .map(|&seed| permutation(seed, epoch as u32, splits.train.len()))
            .collect();
        let mut train = vec![EpochTrain::default(); count];
        for step in 0..self.iters_per_epoch {
            let range =
                step * self.batch_size..((step + 1) * self.batch_size).min(splits.train.len());
            // A member that stopped draws no batch (no augmentation, no loss): its slice of
            // the fused model sees a training member's images, which cost nothing more and
            // touch nobody else's slice.
            let training: Vec<usize> = (0..count)
                .filter(|&m| self.states[m].stopped.is_none())
                .collect();
            let Some(&lead) = training.first() else { break };
            let mut batches: Vec<Option<_>> = (0..count)
                .map(|m| {
                    self.states[m].stopped.is_none().then(|| {
                        let items = orders[m][range.clone()]
                            .iter()
                            .map(|&index| FerItem {
                                index,
                                epoch: epoch as u32,
                            })
                            .collect();
                        self.states[m].batcher.batch(items, &self.autodiff)
                    })
                })
                .collect();
            let stand_in = batches[lead].as_ref().map(|b| b.images.clone());
            let images = fuse::images(
                batches
                    .iter()
                    .map(|b| b.as_ref().map(|b| b.images.clone()).or(stand_in.clone()))
                    .map(|images| images.expect("a training member's batch"))
                    .collect(),
            );
            let logits = precision::with(self.configs[0].precision, || self.model.forward(images));
            let mut total: Option<Tensor<1>> = None;
            let (mut losses, mut hits) = (
                Vec::with_capacity(training.len()),
                Vec::with_capacity(training.len()),
            );
            for &m in &training {
                let batch = batches[m].take().expect("a training member's batch");
                let logits = fuse::logits_of(logits.clone(), m);
                let state = &self.states[m];
                let loss = match batch.mix {
                    Some((partners, lam)) => {
                        state.loss.forward(logits.clone(), batch.targets.clone()) * lam
                            + state.loss.forward(logits.clone(), partners) * (1.0 - lam)
                    }
                    None => state.loss.forward(logits.clone(), batch.targets.clone()),
                };
                let t = &mut train[m];
                (t.images, t.batches) = (t.images + batch.targets.dims()[0], t.batches + 1);
                hits.push(correct(logits, batch.targets));
                losses.push(loss.clone().detach());
                total = Some(match total {
                    Some(t) => t + loss,
                    None => loss,
                });
            }
            // Every member's loss and hits in one read-back, not one per member.
            for (&m, (loss, hits)) in training.iter().zip(read_back(losses, hits)) {
                train[m].loss += loss;
                train[m].correct += hits;
            }
            let Some(total) = total else { break };
            let grads = GradientsParams::from_grads(total.backward(), &self.model);
            let lrs: Vec<f64> = self
                .states
                .iter_mut()
                .map(|s| {
                    let lr = burn::lr_scheduler::LrScheduler::step(&mut s.schedule);
                    if s.stopped.is_none() { lr } else { 0.0 }
                })
                .collect();
            for (t, lr) in train.iter_mut().zip(&lrs) {
                t.lr += lr;
            }
            self.rates.set(lrs);
            let model = self.model.clone();
            self.model = self.optim.step(1.0, model, grads);
            progress.advance(range.end);
        }
        train
    }

    /// The end of an epoch: each training member's row to its sink, its best model kept, its
    /// stop (sink's verdict, divergence, early stopping) applied; then the group checkpoint.
    fn end_epoch(
        &mut self,
        epoch: usize,
        train: Vec<EpochTrain>,
        started: Instant,
        sinks: &mut [&mut dyn EpochSink],
        splits: &Splits,
        progress: &Progress,
    ) -> Result<(), TrainError> {
        let inner = self.model.valid();
        progress.start_split(Split::Val, splits.val.len());
        let val = validate(&inner, splits, self.configs[0], &self.states, &self.device);
        let secs = started.elapsed().as_secs_f64();
        for (m, t) in train.into_iter().enumerate() {
            let state = &mut self.states[m];
            if state.stopped.is_some() {
                continue;
            }
            let (val_loss, val_acc) = val[m];
            let row = EpochRow {
                epoch: epoch + 1,
                train_loss: Some(t.loss / t.batches.max(1) as f64),
                train_acc: Some(t.correct as f64 / t.images.max(1) as f64),
                val_loss: Some(val_loss),
                val_acc: Some(val_acc),
                lr: Some(t.lr / self.iters_per_epoch as f64),
                secs: Some(secs),
                write_ms: None,
            };
            state.history.push(val_acc);
            state.rows.push(row);
            let diverged = !(row.train_loss.is_some_and(f64::is_finite) && val_loss.is_finite());
            let verdict = sinks[m].epoch(&state.rows);
            if diverged {
                state.stopped = Some(Err(TrainError::Diverged { epoch: epoch + 1 }));
                continue;
            }
            if state.best.as_ref().is_none_or(|(_, acc, _)| val_acc > *acc) {
                let best = fuse::member(
                    self.spec,
                    self.configs[0].input_side(),
                    &inner,
                    m,
                    &self.device,
                );
                save_model(&best, &best_path(&self.dir, m))?;
                state.best = Some((epoch + 1, val_acc, best));
            }
            state.stopped = match verdict {
                Verdict::Stop(StopReason::Pruned) => {
                    Some(Err(TrainError::Pruned { epoch: epoch + 1 }))
                }
                Verdict::Stop(StopReason::Interrupted) => {
                    Some(Err(TrainError::Interrupted { epoch: epoch + 1 }))
                }
                Verdict::Stop(StopReason::SinkFailed(why)) => Some(Err(TrainError::Training(
                    format!("recording metrics: {why}"),
                ))),
                Verdict::Continue => self.configs[m]
                    .early_stopping
                    .filter(|&patience| no_improvement_since(&state.rows, patience))
                    .map(|_| Ok(())),
            };
        }
        // After every sink has the epoch, as a run alone checkpoints after its sink.
        save_checkpoint(&self.dir, epoch + 1, &self.model, &self.optim)
    }

    /// Each member's outcome: its stop, or its best model evaluated on val and test.
    fn outcomes(self, splits: &Splits) -> Vec<Result<MemberOutcome, TrainError>> {
        let device = self.device;
        self.states
            .into_iter()
            .zip(self.configs)
            .map(|(state, config)| {
                if let Some(Err(e)) = state.stopped {
                    return Err(e);
                }
                let (best_epoch, _, best_model) = state
                    .best
                    .ok_or_else(|| TrainError::Training("no epoch was evaluated".into()))?;
                let eval_batch = config.batch_size.max(256);
                let inference = eval::Inference::of(config);
                let val = eval::evaluate(&best_model, &splits.val, eval_batch, inference, &device);
                let test =
                    eval::evaluate(&best_model, &splits.test, eval_batch, inference, &device);
                Ok(MemberOutcome {
                    best_epoch,
                    epochs: state.rows,
                    best_model,
                    val,
                    test,
                })
            })
            .collect()
    }
}

/// The optimizer settings a member brings to the group's optimizer.
fn member_settings(config: &RunConfig) -> MemberSettings {
    MemberSettings {
        weight_decay: config.weight_decay,
        grad_clip: config.grad_clip,
        momentum: match &config.optimizer {
            OptimizerSpec::Sgd(c) => c.momentum,
            _ => 0.0,
        },
    }
}

/// Member `i`'s state at the group's start: its earlier epochs (when resuming) feed its
/// schedule, its best model comes back from the checkpoint, a member that had stopped stays
/// stopped.
#[allow(clippy::too_many_arguments)]
fn member_state(
    i: usize,
    m: &Member<'_>,
    dir: &Path,
    start: usize,
    epochs: usize,
    iters_per_epoch: usize,
    splits: &Splits,
    device: &Device,
) -> Result<State, TrainError> {
    let history = Arc::new(ValHistory::default());
    let rows: Vec<EpochRow> = m
        .earlier
        .iter()
        .filter(|r| r.epoch <= start)
        .copied()
        .collect();
    for row in &rows {
        history.push(row.val_acc.unwrap_or(f64::NAN));
    }
    let mut schedule = EpochSchedule::new(
        m.config.lr,
        m.config.schedule.clone(),
        epochs,
        iters_per_epoch,
        history.clone(),
    );
    burn::lr_scheduler::LrScheduler::load_record(
        &mut schedule,
        burn::lr_scheduler::LrSchedulerRecord::new()
            .with_scalar("step", (start * iters_per_epoch) as u64),
    );
    let stopped = m
        .stopped
        .then_some(Err(TrainError::StoppedEarlier { epoch: rows.len() }));
    let best = match best_val(&rows) {
        Some((epoch, acc)) if stopped.is_none() => {
            let model = load_model(m.config, &best_path(dir, i), device)
                .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
            Some((epoch, acc, model))
        }
        _ => None,
    };
    Ok(State {
        rows,
        schedule,
        history,
        loss: Loss::new(
            &m.config.loss,
            m.config.label_smoothing,
            &splits.train.class_counts(),
        ),
        batcher: FerBatcher::train(
            splits.train.clone(),
            m.config.augment,
            m.config.crop,
            m.seed,
        ),
        stopped,
        best,
    })
}

/// Writes the group checkpoint of `epoch` and removes the one before (only the last is kept:
/// each member's best model is kept on its own).
fn save_checkpoint(
    dir: &Path,
    epoch: usize,
    model: &FerModel,
    optim: &burn::optim::ModuleOptimizer,
) -> Result<(), TrainError> {
    let (model_file, optim_file) = (model_path(dir, epoch), optim_path(dir, epoch));
    // The optimizer first: a model file is what marks a checkpoint, and it comes last.
    optim
        .save(&optim_file)
        .map_err(|e| checkpoint_error(&optim_file, e))?;
    model
        .clone()
        .into_record()
        .save(&model_file)
        .map_err(|e| checkpoint_error(&model_file, e))?;
    for old in [model_path(dir, epoch - 1), optim_path(dir, epoch - 1)] {
        if old.is_file() {
            std::fs::remove_file(&old).map_err(|e| checkpoint_error(&old, e))?;
        }
    }
    Ok(())
}

/// burn-train's `NoImprovementSince`: the best val accuracy is `patience` or more epochs old.
fn no_improvement_since(rows: &[EpochRow], patience: usize) -> bool {
    match (best_val(rows), rows.last()) {
        (Some((best, _)), Some(last)) => last.epoch - best >= patience,
        _ => false,
    }
}

/// How many of `logits`' top classes are `targets`, as a one-element tensor (read back with
/// the other members' by [`read_back`]).
fn correct(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1, Int> {
    let n = targets.dims()[0];
    logits.argmax(1).reshape([n]).equal(targets).int().sum()
}

/// Each member's one-element loss and hit count, read from the device at once: on a GPU every
/// read waits for the queue, so two reads per step instead of two per member.
fn read_back(losses: Vec<Tensor<1>>, hits: Vec<Tensor<1, Int>>) -> Vec<(f64, usize)> {
    let losses = Tensor::cat(losses, 0).into_data();
    let hits = Tensor::cat(hits, 0).into_data();
    let losses = losses.iter::<f32>().map(f64::from);
    let hits = hits.iter::<i64>().map(|h| h as usize);
    losses.zip(hits).collect()
}

/// Each member's loss (its own, averaged over batches as burn-train's validation reports it)
/// and accuracy on the val split, from one fused forward per batch, with the batch size, crop
/// and precision the members share (read from `first`).
fn validate(
    model: &FerModel,
    splits: &Splits,
    first: &RunConfig,
    states: &[State],
    device: &Device,
) -> Vec<(f64, f64)> {
    let members = states.len();
    let (batch_size, precision) = (first.batch_size, first.precision);
    let batcher = FerBatcher::eval(splits.val.clone(), first.crop);
    let n = splits.val.len();
    let mut sums = vec![(0.0f64, 0usize); members];
    let mut batches = 0usize;
    let eval_batch = batch_size.max(256);
    for start in (0..n).step_by(eval_batch) {
        let items = (start..(start + eval_batch).min(n))
            .map(|index| FerItem { index, epoch: 0 })
            .collect::<Vec<_>>();
        let batch = batcher.batch(items, device);
        batches += 1;
        let images = fuse::images(vec![batch.images; members]);
        let logits = precision::with(precision, || model.forward(images));
        let (mut losses, mut hits) = (Vec::with_capacity(members), Vec::with_capacity(members));
        for (m, state) in states.iter().enumerate() {
            let logits = fuse::logits_of(logits.clone(), m);
            losses.push(state.loss.forward(logits.clone(), batch.targets.clone()));
            hits.push(correct(logits, batch.targets.clone()));
        }
        for (sum, (loss, hits)) in sums.iter_mut().zip(read_back(losses, hits)) {
            sum.0 += loss;
            sum.1 += hits;
        }
    }
    sums.into_iter()
        .map(|(loss, correct)| {
            (
                loss / batches.max(1) as f64,
                correct as f64 / n.max(1) as f64,
            )
        })
        .collect()
}
