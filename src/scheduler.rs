//! Running a sweep: plan its runs, record them, train what is not done yet one after another
//! on one device, and record each outcome as it lands.

use crate::data::{FerData, Split};
use crate::device::DeviceSpec;
use crate::store::{RunRecord, RunStatus, Store, StoreError, SweepRecord};
use crate::sweep::{PlannedRun, Sweep, run_id};
use crate::table::Rows;
use crate::train::{self, RunSpec, Splits, TrainError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    pub trained: usize,
    pub skipped: usize,
    pub failed: Vec<(String, String)>,
}

/// Trains every run of `planned` that is not `done`, one after another on `device`.
/// Failures are recorded and reported as they happen; the sweep goes on.
pub fn run_all(
    store: &mut Store,
    data: &FerData,
    planned: &[Planned],
    device: DeviceSpec,
    mut log: impl FnMut(&str),
) -> Result<SweepSummary, StoreError> {
    let splits = Splits {
        train: Arc::new(data.split(Split::Train).clone()),
        val: Arc::new(data.split(Split::Val).clone()),
        test: Arc::new(data.split(Split::Test).clone()),
    };
    let burn_device = device.device();
    let mut summary = SweepSummary::default();
    let total = planned.len();
    for (i, p) in planned.iter().enumerate() {
        let label = format!(
            "[{}/{total}] run {} {} seed={}",
            i + 1,
            p.id,
            p.label,
            p.run.seed
        );
        if store.run_status(&p.id)? == Some(RunStatus::Done) {
            summary.skipped += 1;
            log(&format!("{label}: done already, skipped"));
            continue;
        }
        log(&format!("{label}: training on {device}"));
        let model = crate::model::FerModel::new(&p.run.config, &burn_device);
        let size = crate::model::size(&model, &p.run.config);
        drop(model);
        store.start_run(&p.id, &device.to_string(), size.params, size.flops)?;
        let epochs = p.run.config.epochs;
        let spec = RunSpec {
            run_id: &p.id,
            config: &p.run.config,
            seed: p.run.seed,
            device: &burn_device,
            db_path: store.path(),
            artifact_dir: &p.artifact_dir,
        };
        let on_epoch = {
            let (tx, rx) = std::sync::mpsc::channel::<String>();
            let callback: crate::train::hook::EpochCallback = Box::new(move |row| {
                let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
                let _ = tx.send(format!(
                    "  epoch {:>3}/{epochs}  train loss {} acc {}  val loss {} acc {}  {:.1}s",
                    row.epoch,
                    f(row.train_loss),
                    f(row.train_acc),
                    f(row.val_loss),
                    f(row.val_acc),
                    row.secs.unwrap_or(0.0)
                ));
            });
            (callback, rx)
        };
        let (callback, rx) = on_epoch;
        let started = std::time::Instant::now();
        let outcome = std::thread::scope(|scope| {
            let handle = scope.spawn(|| train::train_run(&spec, &splits, Some(callback)));
            // Print epoch lines as they arrive, until training returns.
            loop {
                match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                    Ok(line) => log(&line),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !handle.is_finished() => {}
                    Err(_) => break,
                }
            }
            for line in rx.try_iter() {
                log(&line);
            }
            handle.join().unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                Err(TrainError::Training(format!("panicked: {why}")))
            })
        });
        let wall = started.elapsed().as_secs_f64();
        match outcome {
            Ok(outcome) => {
                store.finish_run(
                    &p.id,
                    outcome.best_epoch,
                    outcome.wall_secs,
                    &[
                        ("val", &outcome.val, data.val.len()),
                        ("test", &outcome.test, data.test.len()),
                    ],
                )?;
                summary.trained += 1;
                log(&format!(
                    "  done: best epoch {}  val acc {:.4}  test acc {:.4}  test macro-F1 {:.4}  ({:.0}s)",
                    outcome.best_epoch,
                    outcome.val.accuracy,
                    outcome.test.accuracy,
                    outcome.test.macro_f1,
                    outcome.wall_secs
                ));
            }
            Err(TrainError::Store(e)) => return Err(e),
            Err(e) => {
                let status = match e {
                    TrainError::Diverged { .. } => RunStatus::Diverged,
                    _ => RunStatus::Failed,
                };
                let message = e.to_string();
                store.end_run(&p.id, status, wall, Some(&message))?;
                log(&format!(
                    "  {}: run {}: {message}",
                    status.as_str().to_uppercase(),
                    p.id
                ));
                summary.failed.push((p.id.clone(), message));
            }
        }
    }
    Ok(summary)
}
