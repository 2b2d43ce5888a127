//! The live terminal dashboard of a whole sweep (ratatui + crossterm).
//!
//! It reads everything from SQLite — the same way whether `fer-lab sweep` opened it next to
//! the scheduler or `fer-lab dashboard` attached from another terminal — so any number can
//! watch one sweep and none slows training (WAL readers never block the writers).
//!
//! - [`state`]: the view model — the data of a frame and its incremental loader;
//! - [`app`]: selection, sort, filter, dialogs and what each key does;
//! - [`ui`]: drawing a frame (pure; snapshot-tested);
//! - [`system`]: CPU / RAM / GPU load for the devices panel.

pub mod app;
pub mod bench;
pub mod state;
pub mod system;
pub mod ui;

use app::{Action, App, Role};
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;
pub use state::{DashboardError, Loader};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// At most this many frames a second: enough to watch, cheap enough to leave open.
pub const FRAME: Duration = Duration::from_millis(250);

/// How a dashboard that runs the sweep was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Quit; the sweep (if still running) goes on without the dashboard.
    Quit,
    /// Quit and stop the sweep gracefully.
    StopSweep,
}

/// `fer-lab dashboard`: watch a sweep until `q`.
pub fn attach(db: &Path, sweep: Option<&str>) -> Result<(), DashboardError> {
    let mut loader = Loader::open(db, sweep)?;
    let mut app = App::new(loader.snapshot.clone(), Role::Attached);
    with_terminal(|terminal| run(terminal, &mut app, &mut loader, None)).map(|_| ())
}

/// The dashboard of a sweep this process runs: `finished` turns true when the scheduler is done.
pub fn live(db: &Path, sweep: &str, finished: Arc<AtomicBool>) -> Result<Exit, DashboardError> {
    let mut loader = Loader::open(db, Some(sweep))?;
    let mut app = App::new(
        loader.snapshot.clone(),
        Role::Running {
            finished: finished.load(Ordering::SeqCst),
        },
    );
    with_terminal(|terminal| run(terminal, &mut app, &mut loader, Some(&finished)))
}

/// Sets the terminal up (raw mode, alternate screen, mouse) and restores it afterwards — also
/// when `f` fails or panics (ratatui's init installs a panic hook that restores it).
fn with_terminal<T>(
    f: impl FnOnce(&mut ratatui::DefaultTerminal) -> Result<T, DashboardError>,
) -> Result<T, DashboardError> {
    let mut terminal = ratatui::try_init()?;
    let _ = execute!(std::io::stdout(), EnableMouseCapture);
    let result = f(&mut terminal);
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::try_restore()?;
    result
}

/// Unix seconds now.
fn now() -> f64 {
    crate::store::now_unix()
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    loader: &mut Loader,
    finished: Option<&AtomicBool>,
) -> Result<Exit, DashboardError> {
    let mut sampler = system::Sampler::new();
    let mut dirty = true;
    let mut last_frame: Option<Instant> = None;
    let mut last_read = Instant::now();
    loop {
        // Draw at most every FRAME; a key press shows at the next frame, not before.
        if dirty && last_frame.is_none_or(|t| t.elapsed() >= FRAME) {
            app.now = now();
            app.devices = sampler.sample().to_vec();
            terminal.draw(|frame| ui::draw(frame, app))?;
            last_frame = Some(Instant::now());
            dirty = false;
        }
        let wait = last_frame
            .map_or(Duration::ZERO, |t| FRAME.saturating_sub(t.elapsed()))
            .max(Duration::from_millis(10));
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(key) => {
                    app.message = None;
                    match app.on_key(key) {
                        Action::None => {}
                        Action::Quit => return Ok(Exit::Quit),
                        Action::StopSweep => return Ok(Exit::StopSweep),
                        Action::TogglePause => {
                            let paused = !app.snapshot.sweep.paused;
                            loader.set_paused(paused)?;
                            app.message = Some(
                                if paused {
                                    "paused: no new runs start (p to resume); running runs go on"
                                } else {
                                    "resumed launching"
                                }
                                .into(),
                            );
                        }
                        Action::Retry(id) => {
                            app.message = Some(if loader.retry(&id)? {
                                if matches!(app.role, Role::Running { finished: false }) {
                                    format!("run {id} queued again")
                                } else {
                                    format!(
                                        "run {id} queued again: the next `fer-lab sweep` of this file trains it"
                                    )
                                }
                            } else {
                                format!("run {id} is no longer failed")
                            });
                        }
                    }
                    dirty = true;
                }
                Event::Mouse(mouse) => {
                    app.on_mouse(mouse);
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        if last_read.elapsed() >= FRAME {
            last_read = Instant::now();
            if let Some(done) = finished {
                let finished = done.load(Ordering::SeqCst);
                if app.role != (Role::Running { finished }) {
                    app.role = Role::Running { finished };
                    dirty = true;
                }
            }
            if loader.refresh()? {
                app.snapshot = loader.snapshot.clone();
                app.fix_selection();
                dirty = true;
            }
            // The elapsed clock and device load move even when the database does not.
            if last_frame.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
                dirty = true;
            }
        }
    }
}
