//! `fer-lab bench scheduler`: the scheduler's own cost at scale, with a simulated executor
//! whose workers finish at once. Each launched run's journal gets its start, every epoch and
//! its evaluations in one go, and the run ends at the next poll after its journal is merged.
//! What is left is what the sweep's process does per run on a cluster: claim, task file, merge,
//! bookkeeping.

use super::executor::{Ended, Executor, Launch, Launched, MemoryUse};
use super::slots::Slot;
use super::{FixedPlan, Options, Planned, StopSignal};
use crate::device::DeviceSpec;
use crate::store::journal::Layout;
use crate::store::journal_bench;
use crate::store::{RunState, Store, StoreError};
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
}

impl FinishAtOnce {
    fn write(&self, run: &str) -> std::io::Result<()> {
        let mut lines = vec![journal_bench::start_entry()];
        lines.extend((1..=self.epochs).map(journal_bench::epoch_entry));
        lines.push(journal_bench::finish_entry(self.epochs));
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
    let (sweep_id, records) = journal_bench::simulated_sweep(&mut store, runs, epochs, tmp)?;
    let planned: Vec<Planned> = records
        .iter()
        .map(|r| Planned {
            id: r.id.clone(),
            run: PlannedRun {
                config: Default::default(),
                seed: r.seed,
                swept: Vec::new(),
            },
            artifact_dir: PathBuf::from(&r.artifact_dir),
            label: String::new(),
        })
        .collect();
    let mut executor = FinishAtOnce {
        journal: tmp.join("journal"),
        sweep_id,
        epochs,
        finished: Vec::new(),
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
