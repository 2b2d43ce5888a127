//! `fer-lab bench --dashboard`: what the dashboard costs. A synthetic sweep of `runs` runs ×
//! `epochs` epochs (per-class metrics and confusion for the finished ones) goes into a temporary
//! database; a writer thread keeps 8 runs "training" (an epoch row and a heartbeat every 250 ms);
//! the dashboard attaches, and draws a 200 × 60 frame at its full rate (4 a second) into an
//! off-screen buffer for `seconds`. Reported: time to the first frame (open, read everything,
//! draw) and the CPU time of the dashboard's thread as a share of one core.

use super::app::{App, Role};
use super::model::Loader;
use crate::store::{RunRecord, Store, StoreError, SweepRecord};
use crate::table::Rows;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use rusqlite::params;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Fills `db` with a sweep of `runs` × `epochs`; the first `running` runs are left running.
/// Also what `fer-lab bench --report` times the report on.
pub fn synthetic(
    db: &std::path::Path,
    runs: usize,
    epochs: usize,
    running: usize,
) -> Result<(), StoreError> {
    let mut store = Store::open(db)?;
    let sweep = SweepRecord {
        name: "bench".into(),
        file: "bench.toml".into(),
        spec: String::new(),
        data_path: "data/fer2013".into(),
        data_fingerprint: "f".into(),
        axes: vec!["lr".into(), "dropout".into(), "model.width".into()],
    };
    let records: Vec<RunRecord> = (0..runs)
        .map(|i| RunRecord {
            id: format!("{i:012x}"),
            seed: (i % 3) as u64 + 1,
            config_json: format!("{{\"cell\":{}}}", i / 3),
            model: "baseline".into(),
            epochs,
            params: vec![
                (
                    "lr".into(),
                    Value::from([1e-3, 3e-4, 1e-4, 3e-3][i / 3 % 4]),
                ),
                ("dropout".into(), Value::from(0.1 * (i / 12 % 6) as f64)),
                // Cells of three seeds: every 72 runs another width.
                ("model.width".into(), Value::from(8 * (1 + i / 72))),
            ],
            artifact_dir: "x".into(),
        })
        .collect();
    store.register_sweep(&sweep, &records)?;
    let conn = store.conn();
    let e = |err| store.sqlite_error(err);
    conn.execute_batch("BEGIN").map_err(e)?;
    for (i, run) in records.iter().enumerate() {
        let done = if i < running { epochs / 2 } else { epochs };
        let status = if i < running { "running" } else { "done" };
        conn.execute(
            "UPDATE runs SET status = ?2, epochs_done = ?3, slot = 'cpu#1', launched_at = 1.7e9,
                 best_epoch = ?3, split = 'train', items_done = 100, items_total = 28709
             WHERE id = ?1",
            params![run.id, status, done as i64],
        )
        .map_err(e)?;
        for epoch in 1..=done {
            let t = epoch as f64;
            conn.execute(
                "INSERT INTO epochs (run_id, epoch, train_loss, train_acc, val_loss, val_acc, lr, secs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0.001, 40.0)",
                params![run.id, epoch as i64, 1.8 / t.sqrt(), 0.6 - 0.3 / t, 1.6 / t.sqrt(), 0.55 - 0.3 / t],
            )
            .map_err(e)?;
        }
        if i >= running {
            for split in ["val", "test"] {
                conn.execute(
                    "INSERT INTO evals (run_id, split, epoch, n, accuracy, loss, macro_precision,
                         macro_recall, macro_f1) VALUES (?1, ?2, ?3, 3589, ?4, 1.1, 0.5, 0.5, 0.5)",
                    params![run.id, split, done as i64, 0.5 + (i % 100) as f64 / 1000.0],
                )
                .map_err(e)?;
                for c in 0..7i64 {
                    conn.execute(
                        "INSERT INTO class_metrics (run_id, split, class_id, precision, recall, f1, support)
                         VALUES (?1, ?2, ?3, 0.5, 0.5, 0.5, 500)",
                        params![run.id, split, c],
                    )
                    .map_err(e)?;
                    for p in 0..7i64 {
                        conn.execute(
                            "INSERT INTO confusion (run_id, split, true_id, pred_id, count)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![run.id, split, c, p, if c == p { 300 } else { 10 }],
                        )
                        .map_err(e)?;
                    }
                }
            }
        }
    }
    conn.execute_batch("COMMIT").map_err(e)
}

/// Runs the measurement; returns the table to print.
pub fn run(runs: usize, epochs: usize, seconds: f64) -> Result<Rows, super::DashboardError> {
    let dir = std::env::temp_dir().join(format!("fer-lab-dashboard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::Folder(dir.clone(), e))?;
    let db = dir.join("bench.sqlite");
    let running = 8.min(runs);
    let result = (|| {
        synthetic(&db, runs, epochs, running)?;
        // The writer: running runs record an epoch and a heartbeat every 250 ms, as workers do.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || -> Result<usize, StoreError> {
                let store = Store::open(&db)?;
                let mut written = 0;
                let mut next = vec![epochs / 2 + 1; running];
                while !stop.load(Ordering::SeqCst) {
                    for (i, epoch) in next.iter_mut().enumerate() {
                        if *epoch > epochs {
                            continue;
                        }
                        let id = format!("{i:012x}");
                        store.conn().execute(
                            "INSERT INTO epochs (run_id, epoch, train_loss, val_acc, secs) VALUES (?1, ?2, 1.0, 0.5, 40.0)",
                            params![id, *epoch as i64],
                        ).map_err(|e| store.sqlite_error(e))?;
                        store
                            .conn()
                            .execute(
                                "UPDATE runs SET epochs_done = ?2 WHERE id = ?1",
                                params![id, *epoch as i64],
                            )
                            .map_err(|e| store.sqlite_error(e))?;
                        store.set_progress(&id, Some(crate::data::Split::Train), 1000, 28709)?;
                        *epoch += 1;
                        written += 1;
                    }
                    std::thread::sleep(super::FRAME);
                }
                Ok(written)
            })
        };

        let cpu0 = thread_cpu();
        let started = Instant::now();
        let mut loader = Loader::open(&db, Some("bench"))?;
        let mut app = App::new(loader.snapshot.clone(), Role::Attached);
        let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap_or_else(|e| match e {});
        terminal
            .draw(|f| super::ui::draw(f, &mut app))
            .unwrap_or_else(|e| match e {});
        let first_frame = started.elapsed();
        let first_cpu = thread_cpu() - cpu0;

        let cpu1 = thread_cpu();
        let loop_start = Instant::now();
        let mut frames = 0usize;
        let mut refreshed = 0usize;
        while loop_start.elapsed().as_secs_f64() < seconds {
            let frame_start = Instant::now();
            if loader.refresh()? {
                app.snapshot = loader.snapshot.clone();
                app.fix_selection();
                refreshed += 1;
            }
            terminal
                .draw(|f| super::ui::draw(f, &mut app))
                .unwrap_or_else(|e| match e {});
            frames += 1;
            std::thread::sleep(super::FRAME.saturating_sub(frame_start.elapsed()));
        }
        let wall = loop_start.elapsed().as_secs_f64();
        let cpu = (thread_cpu() - cpu1).as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let written = writer
            .join()
            .map_err(|_| std::io::Error::other("the writer thread panicked"))??;

        let mut rows = Rows::new(["measure", "value"]);
        let mut row = |k: &str, v: String| rows.push(vec![Value::from(k), Value::from(v)]);
        row(
            "runs × epochs in the database",
            format!(
                "{runs} × {epochs} ({} epoch rows)",
                loader.snapshot.curves.values().map(Vec::len).sum::<usize>()
            ),
        );
        row(
            "time to first frame (open, read all, draw)",
            format!("{:.0} ms", first_frame.as_secs_f64() * 1e3),
        );
        row(
            "  of which CPU",
            format!("{:.0} ms", first_cpu.as_secs_f64() * 1e3),
        );
        row(
            "frames drawn (200 × 60)",
            format!("{frames} in {wall:.1} s = {:.1}/s", frames as f64 / wall),
        );
        row(
            "refreshes that read new rows",
            format!("{refreshed} ({written} epoch rows written meanwhile)"),
        );
        row(
            "dashboard CPU, share of one core",
            format!("{:.2} %", 100.0 * cpu / wall),
        );
        row(
            "CPU per frame",
            format!("{:.2} ms", cpu * 1e3 / frames.max(1) as f64),
        );
        Ok(rows)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
