//! `fer-lab bench journal`: what merging cluster workers' journals costs the sweep's process,
//! on a simulated sweep: N runs whose workers all append an epoch (and its heartbeats) before
//! each merge, as N tasks of a job array would between two polls.

use super::journal::{Entry, Layout};
use super::{RunRecord, RunStatus, Store, StoreError, SweepRecord};
use crate::data::Split;
use crate::metrics::{Confusion, Evaluation};
use crate::table::Rows;
use serde_json::Value;
use std::io::Write;
use std::time::Instant;

fn append(layout: &Layout, run: &str, entries: &[Entry]) -> Result<(), StoreError> {
    let path = layout.run(run);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::Journal(format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(entry).expect("entries serialise"));
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .map_err(|e| StoreError::Journal(format!("{}: {e}", path.display())))
}

fn folder_mb(dir: &std::path::Path) -> f64 {
    let mut bytes = 0u64;
    for entry in walk(dir) {
        bytes += entry.metadata().map_or(0, |m| m.len());
    }
    bytes as f64 / 1e6
}

fn walk(dir: &std::path::Path) -> Vec<std::fs::DirEntry> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry);
        }
    }
    out
}

/// A simulated sweep of `runs` runs of `epochs` epochs, registered in `store`: its id and
/// its runs' records (ids `000000000000`, `000000000001`, …, folders under `dir`).
pub fn simulated_sweep(
    store: &mut Store,
    runs: usize,
    epochs: usize,
    dir: &std::path::Path,
) -> Result<(i64, Vec<RunRecord>), StoreError> {
    let sweep = SweepRecord {
        name: "bench".into(),
        file: "bench.toml".into(),
        spec: String::new(),
        data_path: "data".into(),
        data_fingerprint: "f".into(),
        axes: vec!["lr".into()],
    };
    let records: Vec<RunRecord> = (0..runs)
        .map(|i| RunRecord {
            id: format!("{i:012x}"),
            seed: i as u64,
            config_json: "{}".into(),
            model: "baseline".into(),
            epochs,
            params: vec![("lr".into(), Value::from(1e-3))],
            artifact_dir: dir.join(format!("{i:012x}")).display().to_string(),
        })
        .collect();
    Ok((store.register_sweep(&sweep, &records)?, records))
}

/// A simulated worker's start, `epoch`'s line, and its finish.
pub fn start_entry() -> Entry {
    Entry::Start {
        device: "cuda:0".into(),
        params: 839_047,
        flops: 1,
        resume_from: None,
    }
}

pub fn epoch_entry(epoch: usize) -> Entry {
    let t = epoch as f64;
    Entry::Epoch {
        row: crate::store::EpochRow {
            epoch,
            train_loss: Some(1.8 / t.sqrt()),
            train_acc: Some(0.6 - 0.3 / t),
            val_loss: Some(1.6 / t.sqrt()),
            val_acc: Some(0.55 - 0.3 / t),
            lr: Some(1e-3),
            secs: Some(40.0),
            write_ms: None,
        },
    }
}

pub fn finish_entry(best_epoch: usize) -> Entry {
    let mut confusion = Confusion::default();
    for c in 0..7 {
        confusion.counts[c][c] = 300;
    }
    let eval = Evaluation::from_confusion(confusion, 1.1);
    Entry::Finish {
        best_epoch,
        wall_secs: 40.0 * best_epoch as f64,
        evals: vec![(Split::Val, eval.clone(), 2100), (Split::Test, eval, 2100)],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Merges `epochs` waves of journal lines of `runs` runs (an epoch and `beats` heartbeats per
/// run per wave, then a finish) and measures each merge, an idle merge, and the sizes.
pub fn run(runs: usize, epochs: usize, beats: usize) -> Result<Rows, StoreError> {
    let tmp = std::env::temp_dir().join(format!("fer-lab-journal-bench-{}", std::process::id()));
    let rows = measure(&tmp, runs, epochs, beats);
    let _ = std::fs::remove_dir_all(&tmp);
    rows
}

fn measure(
    tmp: &std::path::Path,
    runs: usize,
    epochs: usize,
    beats: usize,
) -> Result<Rows, StoreError> {
    let dir = tmp.join("journal");
    let layout = Layout::new(&dir);
    std::fs::create_dir_all(dir.join("runs")).map_err(|e| StoreError::Journal(e.to_string()))?;
    let db = tmp.join("fer-lab.sqlite");
    let mut store = Store::open(&db)?;
    let (sweep_id, records) = simulated_sweep(&mut store, runs, epochs, &tmp.join("bench"))?;
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    for id in &ids {
        store.claim_run(id, "slurm#1", 3600.0)?;
        append(&layout, id, &[start_entry()])?;
    }
    let mut waves = Vec::with_capacity(epochs);
    let mut entries = 0usize;
    let started = Instant::now();
    for epoch in 1..=epochs {
        for (i, id) in ids.iter().enumerate() {
            let mut lines: Vec<Entry> = (0..beats)
                .map(|b| Entry::Beat {
                    pid: i as u32,
                    at: crate::store::now_unix(),
                    lease_secs: 20.0,
                    wall_secs: (epoch * beats + b) as f64 * 2.0,
                    split: Some(Split::Train),
                    done: b * 1000,
                    total: 28709,
                    first_step_at: Some(1.7e9),
                })
                .collect();
            lines.push(epoch_entry(epoch));
            if epoch == epochs {
                lines.push(finish_entry(epoch));
            }
            append(&layout, id, &lines)?;
        }
        let t = Instant::now();
        let merged = store.merge_journals(&dir, sweep_id, &ids)?;
        waves.push(t.elapsed().as_secs_f64());
        entries += merged.entries;
    }
    let total = started.elapsed().as_secs_f64();
    let t = Instant::now();
    let idle = store.merge_journals(&dir, sweep_id, &ids)?;
    let idle_secs = t.elapsed().as_secs_f64();
    assert_eq!(idle.entries, 0);
    let done = ids
        .iter()
        .filter(|id| store.run_status(id).ok().flatten() == Some(RunStatus::Done))
        .count();
    let merge_secs: f64 = waves.iter().sum();
    let mut rows = Rows::new([
        "runs",
        "epochs",
        "entries merged",
        "merge s (all waves)",
        "entries / s",
        "one wave ms (median)",
        "idle merge ms",
        "runs done",
        "database MB",
        "journals MB",
        "wall s (writing included)",
    ]);
    rows.push(vec![
        Value::from(runs),
        Value::from(epochs),
        Value::from(entries),
        Value::from((merge_secs * 100.0).round() / 100.0),
        Value::from((entries as f64 / merge_secs).round()),
        Value::from((median(waves) * 1e4).round() / 10.0),
        Value::from((idle_secs * 1e4).round() / 10.0),
        Value::from(done),
        Value::from((std::fs::metadata(&db).map_or(0, |m| m.len()) as f64 / 1e5).round() / 10.0),
        Value::from((folder_mb(&dir) * 10.0).round() / 10.0),
        Value::from((total * 10.0).round() / 10.0),
    ]);
    Ok(rows)
}
