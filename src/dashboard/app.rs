//! The dashboard's state besides the data: selection, sort, filter, focused panel, dialogs —
//! and what each key does. Keys turn into [`Action`]s that the event loop carries out, so
//! this file never touches the terminal or the database.

use super::state::{RunView, Snapshot};
use super::system::DeviceStats;
use crate::store::RunStatus;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent};
use ratatui::crossterm::event::{KeyEventKind, MouseEventKind};
use ratatui::layout::Rect;

/// The panels Tab moves between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Run,
    Leaderboard,
    Devices,
}

impl Panel {
    fn next(self) -> Panel {
        match self {
            Panel::Run => Panel::Leaderboard,
            Panel::Leaderboard => Panel::Devices,
            Panel::Devices => Panel::Run,
        }
    }
}

/// The runs table's order (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Sweep order.
    Position,
    Status,
    /// Best val accuracy so far, best first.
    BestVal,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Position => Sort::Status,
            Sort::Status => Sort::BestVal,
            Sort::BestVal => Sort::Position,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Position => "sweep order",
            Sort::Status => "status",
            Sort::BestVal => "best val",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter after `/`.
    Filter,
    Help,
    /// The selected run full screen (Enter).
    Details,
    /// `q` while the dashboard runs the sweep: stop it, or leave it training headless?
    QuitPrompt,
}

/// What a key asks the event loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Leave the dashboard (attached: just quit; running the sweep: it goes on headless).
    Quit,
    /// Leave and stop the sweep gracefully (running epochs finish and checkpoint).
    StopSweep,
    TogglePause,
    Retry(String),
}

/// Whether this dashboard runs the sweep (launched by `fer-lab sweep`) or watches one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Attached,
    Running {
        /// The scheduler has finished: nothing is left to stop.
        finished: bool,
    },
}

pub struct App {
    pub snapshot: Snapshot,
    pub devices: Vec<DeviceStats>,
    pub role: Role,
    pub mode: Mode,
    pub panel: Panel,
    pub sort: Sort,
    pub filter: String,
    /// The selected run, by id, so the selection survives re-sorting and refreshes.
    pub selected: Option<String>,
    /// A one-line message for the footer (what the last key did).
    pub message: Option<String>,
    /// Unix seconds of "now" for elapsed time; the loop sets it, tests fix it.
    pub now: f64,
    /// Where the runs table was drawn (rows start one line below its top border + header), for
    /// mouse selection.
    pub runs_area: Rect,
    pub runs_offset: usize,
}

impl App {
    pub fn new(snapshot: Snapshot, role: Role) -> App {
        let selected = snapshot.runs.first().map(|r| r.id.clone());
        App {
            snapshot,
            devices: Vec::new(),
            role,
            mode: Mode::Normal,
            panel: Panel::Run,
            sort: Sort::Position,
            filter: String::new(),
            selected,
            message: None,
            now: 0.0,
            runs_area: Rect::default(),
            runs_offset: 0,
        }
    }

    /// The runs the table shows: filtered (id, status, parameters contain the filter text) and
    /// sorted.
    pub fn visible_runs(&self) -> Vec<&RunView> {
        let needle = self.filter.to_lowercase();
        let mut runs: Vec<&RunView> = self
            .snapshot
            .runs
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || r.id.contains(&needle)
                    || r.status.as_str().contains(&needle)
                    || r.slot.as_deref().is_some_and(|s| s.contains(&needle))
                    || r.fused.as_deref().is_some_and(|g| g.contains(&needle))
                    || r.params.iter().any(|p| p.to_lowercase().contains(&needle))
                    || self
                        .snapshot
                        .axes
                        .iter()
                        .zip(&r.params)
                        .any(|(k, v)| format!("{k}={v}").to_lowercase().contains(&needle))
            })
            .collect();
        match self.sort {
            Sort::Position => {}
            Sort::Status => runs.sort_by_key(|r| (status_rank(r.status), r.position)),
            Sort::BestVal => runs.sort_by(|a, b| {
                let (x, y) = (self.snapshot.best_val(&a.id), self.snapshot.best_val(&b.id));
                y.unwrap_or(-1.0)
                    .total_cmp(&x.unwrap_or(-1.0))
                    .then(a.position.cmp(&b.position))
            }),
        }
        runs
    }

    pub fn selected_run(&self) -> Option<&RunView> {
        self.selected
            .as_deref()
            .and_then(|id| self.snapshot.run(id))
    }

    /// Keeps a valid selection after the data or the filter changed.
    pub fn fix_selection(&mut self) {
        let visible = self.visible_runs();
        let ok = self
            .selected
            .as_deref()
            .is_some_and(|id| visible.iter().any(|r| r.id == id));
        if !ok {
            self.selected = visible.first().map(|r| r.id.clone());
        }
    }

    fn move_selection(&mut self, delta: isize) {
        let visible = self.visible_runs();
        if visible.is_empty() {
            return;
        }
        let at = self
            .selected
            .as_deref()
            .and_then(|id| visible.iter().position(|r| r.id == id))
            .unwrap_or(0);
        let to = (at as isize + delta).clamp(0, visible.len() as isize - 1) as usize;
        self.selected = Some(visible[to].id.clone());
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        match self.mode {
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) if !ctrl_c => self.filter.push(c),
                    _ if ctrl_c => self.mode = Mode::Normal,
                    _ => {}
                }
                self.fix_selection();
                return Action::None;
            }
            Mode::QuitPrompt => {
                return match key.code {
                    KeyCode::Char('s') | KeyCode::Char('S') => Action::StopSweep,
                    KeyCode::Char('k') | KeyCode::Char('K') | KeyCode::Char('h') => Action::Quit,
                    _ => {
                        self.mode = Mode::Normal;
                        Action::None
                    }
                };
            }
            Mode::Help | Mode::Details
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?')) =>
            {
                self.mode = Mode::Normal;
                return Action::None;
            }
            _ => {}
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return self.quit(),
            _ if ctrl_c => return self.quit(),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX / 2),
            KeyCode::Enter => {
                self.mode = if self.mode == Mode::Details {
                    Mode::Normal
                } else {
                    Mode::Details
                }
            }
            KeyCode::Tab => self.panel = self.panel.next(),
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.message = Some(format!("sorted by {}", self.sort.label()));
            }
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('p') => return Action::TogglePause,
            KeyCode::Char('r') => {
                return match self.selected_run() {
                    Some(r) if matches!(r.status, RunStatus::Failed | RunStatus::Diverged) => {
                        Action::Retry(r.id.clone())
                    }
                    Some(r) => {
                        self.message = Some(format!(
                            "run {} is {}: only failed or diverged runs are retried",
                            r.id,
                            r.status.as_str()
                        ));
                        Action::None
                    }
                    None => Action::None,
                };
            }
            _ => {}
        }
        Action::None
    }

    fn quit(&mut self) -> Action {
        match self.role {
            Role::Running { finished: false } => {
                self.mode = Mode::QuitPrompt;
                Action::None
            }
            _ => Action::Quit,
        }
    }

    /// A click on a row of the runs table selects that run.
    pub fn on_mouse(&mut self, event: MouseEvent) {
        if event.kind != MouseEventKind::Down(MouseButton::Left) {
            return;
        }
        let area = self.runs_area;
        let first_row = area.y + 2; // border + header
        if event.column < area.x
            || event.column >= area.x + area.width
            || event.row < first_row
            || event.row + 1 >= area.y + area.height
        {
            return;
        }
        let index = self.runs_offset + (event.row - first_row) as usize;
        if let Some(run) = self.visible_runs().get(index) {
            self.selected = Some(run.id.clone());
        }
    }
}

/// Running first, then queued, then the rest; failures before successes so they are seen.
fn status_rank(status: RunStatus) -> u8 {
    match status {
        RunStatus::Running => 0,
        RunStatus::Failed => 1,
        RunStatus::Diverged => 2,
        RunStatus::Queued => 3,
        RunStatus::Interrupted => 4,
        RunStatus::Pruned => 5,
        RunStatus::Done => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEvent;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn run(id: &str, status: RunStatus, lr: &str) -> RunView {
        RunView {
            id: id.into(),
            position: 0,
            status,
            seed: 1,
            params: vec![lr.into()],
            slot: None,
            fused: None,
            epochs_done: 0,
            epochs_planned: 3,
            split: None,
            items_done: 0,
            items_total: 0,
            best_epoch: None,
            error: None,
            attempts: 0,
            val_acc: None,
            test_acc: None,
            never_learned: false,
        }
    }

    fn app(role: Role) -> App {
        let snapshot = Snapshot {
            axes: vec!["lr".into()],
            runs: vec![
                run("aaa", RunStatus::Done, "0.001"),
                run("bbb", RunStatus::Failed, "0.003"),
                run("ccc", RunStatus::Running, "0.001"),
            ],
            ..Snapshot::default()
        };
        App::new(snapshot, role)
    }

    #[test]
    fn keys_select_filter_sort_and_retry() {
        let mut app = app(Role::Attached);
        assert_eq!(app.selected.as_deref(), Some("aaa"));
        app.on_key(key(KeyCode::Down));
        app.on_key(key(KeyCode::Char('j')));
        app.on_key(key(KeyCode::Char('j')));
        assert_eq!(
            app.selected.as_deref(),
            Some("ccc"),
            "stops at the last run"
        );
        assert_eq!(app.on_key(key(KeyCode::Char('r'))), Action::None);
        assert!(app.message.as_deref().unwrap().contains("only failed"));
        app.on_key(key(KeyCode::Char('k')));
        assert_eq!(
            app.on_key(key(KeyCode::Char('r'))),
            Action::Retry("bbb".into())
        );

        // `/lr=0.001` keeps two runs; the selection moves onto one of them.
        app.on_key(key(KeyCode::Char('/')));
        for c in "lr=0.001".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.on_key(key(KeyCode::Enter));
        let ids: Vec<&str> = app.visible_runs().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["aaa", "ccc"]);
        assert_eq!(app.selected.as_deref(), Some("aaa"));
        app.on_key(key(KeyCode::Char('/')));
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.visible_runs().len(), 3);

        // Sort by status: running first, then failures.
        app.on_key(key(KeyCode::Char('s')));
        let ids: Vec<&str> = app.visible_runs().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["ccc", "bbb", "aaa"]);

        app.on_key(key(KeyCode::Tab));
        assert_eq!(app.panel, Panel::Leaderboard);
        app.on_key(key(KeyCode::Enter));
        assert_eq!(app.mode, Mode::Details);
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.on_key(key(KeyCode::Char('p'))), Action::TogglePause);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn quitting_a_running_sweep_asks_first() {
        let mut app = app(Role::Running { finished: false });
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::None);
        assert_eq!(app.mode, Mode::QuitPrompt);
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::None);
        assert_eq!(app.mode, Mode::Normal);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        app.on_key(ctrl_c);
        assert_eq!(app.on_key(key(KeyCode::Char('s'))), Action::StopSweep);
        app.mode = Mode::QuitPrompt;
        assert_eq!(app.on_key(key(KeyCode::Char('k'))), Action::Quit);
        // Once the sweep is over there is nothing to ask.
        let mut app = app_finished();
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
    }

    fn app_finished() -> App {
        app(Role::Running { finished: true })
    }
}
