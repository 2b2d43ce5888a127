//! `fer-lab bench dashboard`: what the dashboard costs. A synthetic sweep of `runs` runs ×
//! `epochs` epochs (per-class metrics and confusion for the finished ones) goes into a temporary
//! database; a writer thread keeps 8 runs "training" (an epoch row and a heartbeat every 250 ms);
//! the dashboard attaches, and draws a 200 × 60 frame at its full rate (4 a second) into an
//! off-screen buffer for `seconds`. Reported: time to the first frame (open, read everything,
//! draw) and the CPU time of the dashboard's thread as a share of one core.

use super::app::{App, Role};
use super::state::Loader;
use crate::store::{EpochRow, Store, StoreError};
use crate::table::Rows;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Runs the measurement; returns the table to print.
pub fn run(runs: usize, epochs: usize, seconds: f64) -> Result<Rows, super::DashboardError> {
    let dir = std::env::temp_dir().join(format!("fer-lab-dashboard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::Folder(dir.clone(), e))?;
    let db = dir.join("bench.sqlite");
    let running = 8.min(runs);
    let result = (|| {
        crate::store::synthetic_sweep(&db, runs, epochs, running)?;
        // The writer: running runs record an epoch and a heartbeat every 250 ms, as workers do.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || -> Result<usize, StoreError> {
                let mut store = Store::open(&db)?;
                let mut written = 0;
                let mut next = vec![epochs / 2 + 1; running];
                while !stop.load(Ordering::SeqCst) {
                    for (i, epoch) in next.iter_mut().enumerate() {
                        if *epoch > epochs {
                            continue;
                        }
                        let id = format!("{i:012x}");
                        let row = EpochRow {
                            epoch: *epoch,
                            train_loss: Some(1.0),
                            val_acc: Some(0.5),
                            secs: Some(40.0),
                            ..EpochRow::default()
                        };
                        store.record_epoch(&id, &row)?;
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
