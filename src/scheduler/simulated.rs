//! `fer-lab bench scheduler`: the scheduler's own cost at scale, with a simulated executor
//! whose workers finish at once. Each launched run's journal gets its start, every epoch and
//! its evaluations in one go, and the run ends at the next poll after its journal is merged.
//! What is left is what the sweep's process does per run on a cluster: claim, task file, merge,
//! bookkeeping.

use super::executor::{Ended, Executor, Launch, Launched, MemoryUse};
use super::slots::Slot;
use super::{FixedPlan, Options, Planned, StopSignal};
use crate::data::Split;
use crate::device::DeviceSpec;
use crate::metrics::{Confusion, Evaluation};
use crate::store::journal::{Entry, Layout};
use crate::store::{EpochRow, RunRecord, RunState, Store, StoreError, SweepRecord};
use crate::sweep::PlannedRun;
use crate::table::Rows;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Workers that finish the moment they start.
struct FinishAtOnce {
    journal: PathBuf,
    sweep_id: i64,
    epochs: usize,
    finished: Vec<String>,
    eval: Evaluation,
}

impl FinishAtOnce {
    fn write(&self, run: &str) -> std::io::Result<()> {
        let mut lines = vec![Entry::Start {
            device: "cuda:0".into(),
            params: 839_047,
            flops: 1,
            resume_from: None,
        }];
        for epoch in 1..=self.epochs {
            let t = epoch as f64;
            lines.push(Entry::Epoch {
                row: EpochRow {
                    epoch,
                    train_loss: Some(1.8 / t.sqrt()),
                    train_acc: Some(0.6 - 0.3 / t),
                    val_loss: Some(1.6 / t.sqrt()),
                    val_acc: Some(0.55 - 0.3 / t),
                    lr: Some(1e-3),
                    secs: Some(40.0),
                    write_ms: None,
                },
            });
        }
        lines.push(Entry::Finish {
            best_epoch: self.epochs,
            wall_secs: 40.0 * self.epochs as f64,
            evals: vec![
                (Split::Val, self.eval.clone(), 3589),
                (Split::Test, self.eval.clone(), 3589),
            ],
        });
        let path = Layout::new(&self.journal).run(run);
        std::fs::create_dir_all(path.parent().expect("a run file has a folder"))?;
        let mut text = String::new();
        for line in lines {
            text.push_str(&serde_json::to_string(&line).expect("entries serialise"));
            text.push('\n');
        }
        std::fs::File::create(path)?.write_all(text.as_bytes())
    }
}

impl Executor for FinishAtOnce {
    fn launch(&mut self, launch: Launch<'_>, store: &Store) -> std::io::Result<Launched> {
        let name = launch.runs[0].clone();
        store
            .write_task(&self.journal, &name, launch.runs)
            .map_err(std::io::Error::other)?;
        for run in launch.runs {
            self.write(run)?;
            self.finished.push(run.clone());
        }
        Ok(Launched::default())
    }

    fn poll(&mut self, store: &mut Store) -> Result<Vec<Ended>, StoreError> {
        let runs = std::mem::take(&mut self.finished);
        store.merge_journals(&self.journal, self.sweep_id, &runs)?;
        Ok(runs
            .into_iter()
            .map(|run| Ended {
                run,
                exit: "exit status: 0".into(),
                log_tail: String::new(),
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

/// Trains `runs` simulated runs of `epochs` epochs through the scheduler's policy loop with
/// `slots` at once (a Slurm launch has one slot per run) and measures it.
pub fn run(runs: usize, epochs: usize, slots: usize) -> Result<Rows, StoreError> {
    let tmp = std::env::temp_dir().join(format!("fer-lab-scheduler-bench-{}", std::process::id()));
    let rows = measure(&tmp, runs, epochs, slots);
    let _ = std::fs::remove_dir_all(&tmp);
    rows
}

fn measure(tmp: &Path, runs: usize, epochs: usize, slots: usize) -> Result<Rows, StoreError> {
    let db = tmp.join("fer-lab.sqlite");
    let mut store = Store::open(&db)?;
    let record = SweepRecord {
        name: "bench".into(),
        file: "bench.toml".into(),
        spec: String::new(),
        data_path: "data".into(),
        data_fingerprint: "f".into(),
        axes: vec!["lr".into()],
    };
    let planned: Vec<Planned> = (0..runs)
        .map(|i| Planned {
            id: format!("{i:012x}"),
            run: PlannedRun {
                config: Default::default(),
                seed: i as u64,
                swept: Vec::new(),
            },
            artifact_dir: tmp.join("bench").join(format!("{i:012x}")),
            label: String::new(),
        })
        .collect();
    let records: Vec<RunRecord> = planned
        .iter()
        .map(|p| RunRecord {
            id: p.id.clone(),
            seed: p.run.seed,
            config_json: "{}".into(),
            model: "baseline".into(),
            epochs,
            params: vec![("lr".into(), Value::from(1e-3))],
            artifact_dir: p.artifact_dir.display().to_string(),
        })
        .collect();
    let sweep_id = store.register_sweep(&record, &records)?;
    let mut confusion = Confusion::default();
    for c in 0..7 {
        confusion.counts[c][c] = 300;
    }
    let mut executor = FinishAtOnce {
        journal: tmp.join("journal"),
        sweep_id,
        epochs,
        finished: Vec::new(),
        eval: Evaluation::from_confusion(confusion, 1.1),
    };
    let opts = Options {
        slots: (0..slots.max(1))
            .map(|index| Slot {
                device: DeviceSpec::Cuda(0),
                index,
                threads: 1,
            })
            .collect(),
        max_retries: 0,
        fail_fast: false,
        keep_checkpoints: false,
        pruning: None,
        data: PathBuf::new(),
        stagger: Duration::ZERO,
        gpu_cap: 1,
        gpu_auto: false,
        fuse: crate::device::fusion::Fuse::Off,
        executor: crate::cluster::ExecutorKind::Slurm,
        slurm: Default::default(),
        sweep_name: "bench".into(),
        worker_output: std::sync::Arc::new(|_| {}),
    };
    let started = Instant::now();
    let summary = super::run_sweep_on(
        &mut executor,
        &mut FixedPlan,
        &mut store,
        sweep_id,
        &planned,
        &opts,
        &StopSignal::default(),
        &mut |_| {},
    )?;
    let secs = started.elapsed().as_secs_f64();
    let mut rows = Rows::new([
        "runs",
        "epochs",
        "slots",
        "runs done",
        "wall s",
        "runs / s",
        "ms per run",
        "database MB",
    ]);
    rows.push(vec![
        Value::from(runs),
        Value::from(epochs),
        Value::from(slots),
        Value::from(summary.trained),
        Value::from((secs * 10.0).round() / 10.0),
        Value::from((runs as f64 / secs).round()),
        Value::from((secs * 1e4 / runs as f64).round() / 10.0),
        Value::from((std::fs::metadata(&db).map_or(0, |m| m.len()) as f64 / 1e5).round() / 10.0),
    ]);
    Ok(rows)
}
