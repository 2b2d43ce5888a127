//! Progress of a sweep as text, for `--no-tui`, pipes, and a sweep left running headless:
//! plain lines always, and on a terminal an indicatif bar per running run (epoch and batch,
//! read from the workers' heartbeats in SQLite every half second).

use crate::scheduler::Output;
use crate::store::Store;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Text progress of a sweep. Dropping it (or [`Progress::finish`]) stops the bars.
pub struct Progress {
    multi: Option<MultiProgress>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl Progress {
    /// Plain lines only.
    pub fn plain() -> Progress {
        Progress {
            multi: None,
            stop: Arc::new(AtomicBool::new(false)),
            poller: None,
        }
    }

    /// Lines plus a bar per running run of `sweep_id` in the database at `db`.
    pub fn bars(db: &Path, sweep_id: i64) -> Progress {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(4));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (multi, stop, db) = (multi.clone(), stop.clone(), db.to_path_buf());
            std::thread::spawn(move || poll_bars(&multi, &stop, &db, sweep_id))
        };
        Progress {
            multi: Some(multi),
            stop,
            poller: Some(poller),
        }
    }

    /// Where log lines go: above the bars, or straight to stdout.
    pub fn output(&self) -> Output {
        match &self.multi {
            Some(multi) => {
                let multi = multi.clone();
                Arc::new(move |line: &str| {
                    if multi.println(line).is_err() {
                        println!("{line}");
                    }
                })
            }
            None => crate::scheduler::stdout_output(),
        }
    }

    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn poll_bars(multi: &MultiProgress, stop: &AtomicBool, db: &Path, sweep_id: i64) {
    let style = ProgressStyle::with_template(
        "{prefix:.cyan} [{bar:30.cyan/blue}] {percent:>3}% {msg} ({elapsed})",
    )
    .expect("the template is valid")
    .progress_chars("█▉░");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut store = None;
    while !stop.load(Ordering::SeqCst) {
        if store.is_none() {
            store = Store::open_read_only(db).ok();
        }
        if let Some(s) = &store
            && let Ok(rows) = s.running_progress(sweep_id)
        {
            let mut seen = Vec::new();
            for row in rows {
                let id = row.id;
                let slot = row.slot.unwrap_or_else(|| "-".into());
                let done = row.epochs_done as u64;
                let planned = (row.epochs_planned as u64).max(1);
                let split = row.split.map_or("", crate::data::Split::progress_name);
                let (items, total) = (row.items_done as u64, row.items_total as u64);
                let inside = if row.split == Some(crate::data::Split::Train) && total > 0 {
                    items as f64 / total as f64
                } else {
                    0.0
                };
                let bar = bars.entry(id.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(1000));
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("{} {slot}", &id[..id.len().min(8)]));
                    bar
                });
                bar.set_position(((done as f64 + inside) / planned as f64 * 1000.0) as u64);
                bar.set_message(format!(
                    "epoch {}/{planned} {split} {items}/{total}",
                    (done + 1).min(planned)
                ));
                seen.push(id);
            }
            bars.retain(|id, bar| {
                let keep = seen.contains(id);
                if !keep {
                    bar.finish_and_clear();
                    multi.remove(bar);
                }
                keep
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for bar in bars.values() {
        bar.finish_and_clear();
    }
}
