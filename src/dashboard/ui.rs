//! Drawing a frame from an [`App`]: a pure function of the state (and the terminal size), so
//! render tests draw into ratatui's `TestBackend` and compare with snapshot files.
//!
//! Layout: header (2 lines), panels, event line, key footer. At 140 × 30 and above the runs
//! table and the leaderboard sit left, the selected run and the devices right; below that the
//! runs table stays on top and Tab picks what the lower panel shows.

use super::app::{App, Mode, Panel, Role};
use super::state::{RunView, Snapshot};
use crate::emotion::Emotion;
use crate::stats::Summary;
use crate::store::{EpochRow, RunStatus};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, BorderType, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table,
    TableState, Wrap,
};

pub fn status_color(status: RunStatus) -> Color {
    match status {
        RunStatus::Queued => Color::Gray,
        RunStatus::Running => Color::Cyan,
        RunStatus::Done => Color::Green,
        RunStatus::Failed => Color::Red,
        RunStatus::Diverged => Color::Magenta,
        RunStatus::Pruned => Color::Yellow,
        RunStatus::Interrupted => Color::Blue,
    }
}

pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let [header, body, events, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(6),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    if app.mode == Mode::Details {
        draw_run(frame, app, body, true);
    } else if area.width >= 140 && area.height >= 30 {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(body);
        let board_height = (app.snapshot.runs.len() as u16 + 3).clamp(5, 14);
        let [runs, board] =
            Layout::vertical([Constraint::Min(6), Constraint::Length(board_height)]).areas(left);
        let device_height = app.devices.len().max(1) as u16 + 2;
        let [run, devices] =
            Layout::vertical([Constraint::Min(10), Constraint::Length(device_height)]).areas(right);
        draw_runs(frame, app, runs);
        draw_leaderboard(frame, app, board);
        draw_run(frame, app, run, false);
        draw_devices(frame, app, devices);
    } else {
        // The runs table takes what its rows need, at most half; the lower panel the rest.
        let wanted = app.visible_runs().len() as u16 + 3;
        let runs_height = wanted.clamp(5, (body.height / 2).max(5));
        let [runs, lower] =
            Layout::vertical([Constraint::Length(runs_height), Constraint::Min(3)]).areas(body);
        draw_runs(frame, app, runs);
        match app.panel {
            Panel::Run => draw_run(frame, app, lower, false),
            Panel::Leaderboard => draw_leaderboard(frame, app, lower),
            Panel::Devices => draw_devices(frame, app, lower),
        }
    }
    draw_event_line(frame, &app.snapshot, events);
    draw_footer(frame, app, footer);
    match app.mode {
        Mode::Help => draw_help(frame, area),
        Mode::QuitPrompt => draw_quit_prompt(frame, area),
        _ => {}
    }
}

fn block<'a>(title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let style = if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(style)
        .title(title.into().style(Style::new().bold()))
}

pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let mut title = vec![
        Span::styled("fer-lab ", Style::new().bold().fg(Color::Cyan)),
        Span::styled(s.sweep.name.clone(), Style::new().bold()),
    ];
    // The state comes before the file and data, which a narrow terminal cuts off.
    if s.sweep.paused {
        title.push(Span::raw("  "));
        title.push(Span::styled(
            "PAUSED",
            Style::new().bold().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    // An attached dashboard has no scheduler to ask: the database says when all has ended.
    let ended = match app.role {
        Role::Running { finished } => finished,
        Role::Attached => s.ended(),
    };
    if ended {
        let interrupted = s.count(RunStatus::Interrupted);
        title.push(Span::styled(
            if interrupted > 0 {
                format!("  stopped ({interrupted} left for the next launch)")
            } else {
                "  finished".to_string()
            },
            Style::new().bold().fg(Color::Green),
        ));
    }
    title.push(Span::raw(format!(
        "  {}  data {}",
        s.sweep.file, s.sweep.data_path
    )));
    let mut counts: Vec<Span> = Vec::new();
    for status in RunStatus::ALL {
        let n = s.count(status);
        if n == 0
            && !matches!(
                status,
                RunStatus::Queued | RunStatus::Running | RunStatus::Done
            )
        {
            continue;
        }
        counts.push(Span::styled(
            format!("{} {n}", status.as_str()),
            Style::new().fg(status_color(status)),
        ));
        counts.push(Span::raw("  "));
    }
    counts.push(Span::raw(format!("of {}", s.runs.len())));
    if let Some(start) = s.sweep.started {
        // An ended sweep's clock stops at its last run's end.
        let end = if ended {
            s.sweep.last_end.unwrap_or(app.now)
        } else {
            app.now
        };
        counts.push(Span::raw(format!("  · elapsed {}", duration(end - start))));
    }
    if s.count(RunStatus::Queued) + s.count(RunStatus::Running) > 0
        && let Some(eta) = s.eta_secs()
    {
        counts.push(Span::raw(format!("  · ETA {}", duration(eta))));
    }
    frame.render_widget(
        Paragraph::new(vec![Line::from(title), Line::from(counts)]),
        area,
    );
}

/// A text progress bar of `width` cells for a fraction in [0, 1].
fn bar(fraction: f64, width: usize) -> String {
    let filled = (fraction.clamp(0.0, 1.0) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn fraction(run: &RunView) -> f64 {
    if run.status == RunStatus::Done {
        return 1.0;
    }
    let inside = if run.status == RunStatus::Running
        && run.split.as_deref() == Some("train")
        && run.items_total > 0
    {
        run.items_done as f64 / run.items_total as f64
    } else {
        0.0
    };
    (run.epochs_done as f64 + inside) / run.epochs_planned.max(1) as f64
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1}", 100.0 * v))
}

fn draw_runs(frame: &mut Frame, app: &mut App, area: Rect) {
    let s = &app.snapshot;
    let visible = app.visible_runs();
    // Below 100 columns the slot and loss columns give their room to the swept values (the
    // run panel shows both for the selected run).
    let narrow = area.width < 100;
    let seeds_vary = s.runs.iter().any(|r| r.seed != s.runs[0].seed);
    let mut header: Vec<String> = vec!["run".into()];
    let mut widths: Vec<Constraint> = vec![Constraint::Length(8)];
    for (i, key) in s.axes.iter().enumerate() {
        let key = short_key(key);
        let widest = s
            .runs
            .iter()
            .filter_map(|r| r.params.get(i))
            .map(|v| v.chars().count())
            .chain([key.chars().count()])
            .max()
            .unwrap_or(1);
        widths.push(Constraint::Length(widest.min(14) as u16));
        header.push(key);
    }
    if seeds_vary {
        header.push("seed".into());
        widths.push(Constraint::Length(4));
    }
    if !narrow {
        header.push("slot".into());
        widths.push(Constraint::Length(8));
    }
    // Runs that train as one fused model share a group id.
    let fused = !narrow && s.runs.iter().any(|r| r.fused.is_some());
    if fused {
        header.push("fused".into());
        widths.push(Constraint::Length(7));
    }
    header.extend(["status", "progress"].map(String::from));
    let bar_width = if narrow { 6 } else { 10 };
    widths.extend([
        Constraint::Length(if narrow { 9 } else { 11 }),
        Constraint::Length(bar_width as u16 + 6),
    ]);
    if !narrow {
        header.push("loss".into());
        widths.push(Constraint::Length(6));
    }
    header.extend(["val%", "best%"].map(String::from));
    widths.extend([Constraint::Length(5), Constraint::Length(5)]);

    let rows: Vec<Row> = visible
        .iter()
        .map(|r| {
            let last = s.last_point(&r.id);
            let mut cells: Vec<Cell> = vec![Cell::from(r.id[..r.id.len().min(8)].to_string())];
            cells.extend(r.params.iter().map(|p| Cell::from(p.clone())));
            if seeds_vary {
                cells.push(Cell::from(r.seed.to_string()));
            }
            if !narrow {
                cells.push(Cell::from(r.slot.clone().unwrap_or_else(|| "-".into())));
            }
            if fused {
                let group = r.fused.as_deref().unwrap_or("-");
                cells.push(Cell::from(group[..group.len().min(7)].to_string()));
            }
            cells.push(Cell::from(Span::styled(
                r.status.as_str(),
                Style::new().fg(status_color(r.status)),
            )));
            cells.push(Cell::from(format!(
                "{} {}/{}",
                bar(fraction(r), bar_width),
                r.epochs_done,
                r.epochs_planned
            )));
            if !narrow {
                cells.push(Cell::from(
                    last.and_then(|p| p.train_loss)
                        .map_or_else(|| "-".into(), |l| format!("{l:.3}")),
                ));
            }
            cells.push(Cell::from(pct(last.and_then(|p| p.val_acc))));
            cells.push(Cell::from(pct(s.best_val(&r.id))));
            Row::new(cells)
        })
        .collect();
    let selected = app
        .selected
        .as_deref()
        .and_then(|id| visible.iter().position(|r| r.id == id));
    let title = format!(
        " Runs ({} of {}) · sort: {}{} ",
        visible.len(),
        s.runs.len(),
        app.sort.label(),
        if app.filter.is_empty() {
            String::new()
        } else {
            format!(" · filter: {}", app.filter)
        }
    );
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().bold().fg(Color::Yellow)))
        .column_spacing(1)
        .block(block(title, true))
        .row_highlight_style(
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
        )
        .highlight_symbol("▶");
    let mut state = TableState::default()
        .with_selected(selected)
        .with_offset(app.runs_offset);
    frame.render_stateful_widget(table, area, &mut state);
    app.runs_area = area;
    app.runs_offset = state.offset();
}

/// The last component of a dotted key, for narrow column headers (`augment.rotation` → `rotation`).
fn short_key(key: &str) -> String {
    key.rsplit('.').next().unwrap_or(key).to_string()
}

fn bounds(values: impl Iterator<Item = f64>) -> [f64; 2] {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        [0.0, 1.0]
    } else if (hi - lo) < 1e-9 {
        [lo - 0.5, hi + 0.5]
    } else {
        let pad = (hi - lo) * 0.05;
        [lo - pad, hi + pad]
    }
}

fn series(curve: &[EpochRow], f: impl Fn(&EpochRow) -> Option<f64>) -> Vec<(f64, f64)> {
    curve
        .iter()
        .filter_map(|p| f(p).filter(|v| v.is_finite()).map(|v| (p.epoch as f64, v)))
        .collect()
}

fn chart<'a>(
    title: &'a str,
    train: &'a [(f64, f64)],
    val: &'a [(f64, f64)],
    epochs: usize,
    scale: f64,
) -> Chart<'a> {
    let [lo, hi] = bounds(train.iter().chain(val).map(|p| p.1));
    let label = |v: f64| Span::raw(format!("{:.2}", v * scale));
    let datasets = vec![
        Dataset::default()
            .name("train")
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(train),
        Dataset::default()
            .name("val")
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Yellow))
            .data(val),
    ];
    Chart::new(datasets)
        .block(
            Block::new().title(
                Line::from(vec![
                    Span::raw(title).bold(),
                    Span::styled("  ━ train", Style::new().fg(Color::Cyan)),
                    Span::styled("  ━ val", Style::new().fg(Color::Yellow)),
                ])
                .centered(),
            ),
        )
        .x_axis(
            Axis::default()
                .bounds([1.0, epochs.max(2) as f64])
                .labels([Span::raw("1"), Span::raw(epochs.max(2).to_string())]),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels([label(lo), label(hi)]),
        )
        .legend_position(None)
}

fn draw_run(frame: &mut Frame, app: &App, area: Rect, full: bool) {
    let s = &app.snapshot;
    let Some(run) = app.selected_run() else {
        frame.render_widget(
            Paragraph::new("no run selected").block(block(" Run ", app.panel == Panel::Run)),
            area,
        );
        return;
    };
    let params = crate::table::key_values(&s.axes, &run.params);
    let title = format!(" Run {} {} seed={} ", run.id, params, run.seed);
    let outer = block(title, app.panel == Panel::Run || full);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);

    let curve = s.curves.get(&run.id).map(Vec::as_slice).unwrap_or(&[]);
    let last = curve.last();
    let mut info = vec![Span::styled(
        run.status.as_str(),
        Style::new().fg(status_color(run.status)).bold(),
    )];
    info.push(Span::raw(format!(
        "  epoch {}/{}",
        run.epochs_done, run.epochs_planned
    )));
    if let Some(lr) = last.and_then(|p| p.lr) {
        info.push(Span::raw(format!("  lr {lr:.2e}")));
    }
    if let Some(e) = run.best_epoch {
        info.push(Span::raw(format!("  best epoch {e}")));
    }
    if let Some(v) = run.val_acc {
        info.push(Span::raw(format!("  val {:.2} %", 100.0 * v)));
    }
    if let Some(t) = run.test_acc {
        info.push(Span::raw(format!("  test {:.2} %", 100.0 * t)));
    }
    if let Some(slot) = &run.slot {
        info.push(Span::raw(format!("  on {slot}")));
    }
    if let Some(group) = &run.fused {
        let together = s
            .runs
            .iter()
            .filter(|r| r.fused.as_ref() == Some(group))
            .count();
        info.push(Span::raw(format!("  fused in {group} ({together} runs)")));
    }
    if run.attempts > 1 {
        info.push(Span::raw(format!("  attempt {}", run.attempts)));
    }
    // An error in red; a run that finished without learning gets the reason in its place.
    let note = match (&run.error, run.never_learned) {
        (Some(error), _) => Some((error.as_str(), Color::Red)),
        (None, true) => Some((crate::store::NEVER_LEARNED, Color::Yellow)),
        (None, false) => None,
    };
    let error_lines = if note.is_some() { 3 } else { 0 };
    let detail = s.details.get(&run.id);
    let detail_height = if detail.is_some() && inner.height >= 20 {
        9
    } else {
        0
    };
    let [info_area, charts_area, error_area, detail_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(error_lines),
        Constraint::Length(detail_height),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(Line::from(info)), info_area);

    if curve.is_empty() {
        frame.render_widget(
            Paragraph::new("no epoch finished yet").alignment(Alignment::Center),
            charts_area,
        );
    } else {
        let loss = (
            series(curve, |p| p.train_loss),
            series(curve, |p| p.val_loss),
        );
        let acc = (series(curve, |p| p.train_acc), series(curve, |p| p.val_acc));
        // A column between the charts: the accuracy chart's y labels otherwise touch the loss
        // chart's last points.
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .spacing(1)
                .areas(charts_area);
        let epochs = run.epochs_planned.max(curve.len());
        frame.render_widget(chart("loss", &loss.0, &loss.1, epochs, 1.0), left);
        frame.render_widget(chart("accuracy %", &acc.0, &acc.1, epochs, 100.0), right);
    }
    if let Some((text, color)) = note {
        frame.render_widget(
            Paragraph::new(text)
                .style(Style::new().fg(color))
                .wrap(Wrap { trim: true }),
            error_area,
        );
    }
    if let Some(detail) = detail
        && detail_height > 0
    {
        let [f1_area, confusion_area] =
            Layout::horizontal([Constraint::Length(34), Constraint::Min(30)]).areas(detail_area);
        let mut lines = vec![Line::from("val F1 of the best epoch").bold()];
        for (emotion, f1, support) in &detail.class_f1 {
            lines.push(Line::from(vec![
                Span::raw(format!("{:<8} ", emotion.name())),
                Span::styled(bar(*f1, 12), Style::new().fg(f1_color(*f1))),
                Span::raw(format!(" {f1:.2} {support:>4}")),
            ]));
        }
        frame.render_widget(Paragraph::new(lines), f1_area);
        let mut rows = vec![
            Row::new(
                std::iter::once("true\\pred".to_string())
                    .chain(Emotion::ALL.iter().map(|e| e.name()[..3].to_string())),
            )
            .style(Style::new().bold().fg(Color::Yellow)),
        ];
        for (t, emotion) in Emotion::ALL.iter().enumerate() {
            let total: i64 = detail.confusion[t].iter().sum();
            let mut cells = vec![Cell::from(emotion.name().to_string())];
            for p in 0..7 {
                let n = detail.confusion[t][p];
                let share = n as f64 / total.max(1) as f64;
                let style = if t == p {
                    Style::new().fg(Color::Green).bold()
                } else if share >= 0.15 {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new()
                };
                cells.push(Cell::from(Span::styled(n.to_string(), style)));
            }
            rows.push(Row::new(cells));
        }
        let mut widths = vec![Constraint::Length(9)];
        widths.extend([Constraint::Length(5); 7]);
        frame.render_widget(Table::new(rows, widths), confusion_area);
    }
}

fn f1_color(f1: f64) -> Color {
    if f1 >= 0.6 {
        Color::Green
    } else if f1 >= 0.4 {
        Color::Yellow
    } else {
        Color::Red
    }
}

/// Runs that differ only by seed form a cell.
pub struct CellStats {
    pub params: Vec<String>,
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub test_mean: Option<f64>,
}

/// Mean ± sd of the evaluated val accuracy per cell, best first.
pub fn cells(s: &Snapshot) -> Vec<CellStats> {
    let evaluated: Vec<&RunView> = s.runs.iter().filter(|r| r.val_acc.is_some()).collect();
    let groups = crate::stats::cells_over_seeds(evaluated.iter().map(|r| r.params.as_slice()));
    let mut out: Vec<CellStats> = groups
        .into_iter()
        .map(|(params, idx)| {
            let vals: Vec<f64> = idx
                .iter()
                .map(|&i| evaluated[i].val_acc.unwrap_or(0.0))
                .collect();
            let tests: Vec<f64> = idx.iter().filter_map(|&i| evaluated[i].test_acc).collect();
            let val = Summary::of(&vals).expect("a cell has an evaluated run");
            CellStats {
                params: params.to_vec(),
                n: val.n,
                mean: val.mean,
                sd: val.sd,
                test_mean: Summary::of(&tests).map(|t| t.mean),
            }
        })
        .collect();
    out.sort_by(|a, b| b.mean.total_cmp(&a.mean));
    out
}

fn draw_leaderboard(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let focused = app.panel == Panel::Leaderboard;
    let grouped = cells(s);
    let by_cell = grouped.iter().any(|c| c.n > 1);
    let mut header: Vec<String> = vec!["#".into()];
    header.extend(s.axes.iter().map(|k| short_key(k)));
    let mut widths = vec![Constraint::Length(3)];
    widths.extend(s.axes.iter().map(|_| Constraint::Max(12)));
    let rows: Vec<Row> = if by_cell {
        header.extend(["val % mean ± sd", "n", "test %"].map(String::from));
        widths.extend([
            Constraint::Length(15),
            Constraint::Length(3),
            Constraint::Length(6),
        ]);
        grouped
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut cells = vec![(i + 1).to_string()];
                cells.extend(c.params.iter().cloned());
                cells.push(format!("{:.2} ± {:.2}", 100.0 * c.mean, 100.0 * c.sd));
                cells.push(c.n.to_string());
                cells.push(pct(c.test_mean));
                Row::new(cells)
            })
            .collect()
    } else {
        header.extend(["run", "val %", "test %"].map(String::from));
        widths.extend([
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(6),
        ]);
        let mut done: Vec<&RunView> = s.runs.iter().filter(|r| r.val_acc.is_some()).collect();
        done.sort_by(|a, b| {
            b.val_acc
                .unwrap_or(0.0)
                .total_cmp(&a.val_acc.unwrap_or(0.0))
        });
        done.iter()
            .enumerate()
            .map(|(i, r)| {
                let mut cells = vec![(i + 1).to_string()];
                cells.extend(r.params.iter().cloned());
                cells.push(r.id[..r.id.len().min(8)].to_string());
                cells.push(pct(r.val_acc));
                cells.push(pct(r.test_acc));
                Row::new(cells)
            })
            .collect()
    };
    let title = if by_cell {
        " Leaderboard · cells over seeds, by val accuracy "
    } else {
        " Leaderboard · by val accuracy "
    };
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new("no run evaluated yet").block(block(title, focused)),
            area,
        );
        return;
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().bold().fg(Color::Yellow)))
        .block(block(title, focused));
    frame.render_widget(table, area);
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

fn draw_devices(frame: &mut Frame, app: &App, area: Rect) {
    let s = &app.snapshot;
    let lines: Vec<Line> = app
        .devices
        .iter()
        .map(|d| {
            let on: Vec<&str> = s
                .runs
                .iter()
                .filter(|r| r.status == RunStatus::Running)
                .filter(|r| {
                    r.slot
                        .as_deref()
                        .and_then(|slot| slot.split('#').next())
                        .is_some_and(|dev| dev == d.name || (d.name == "cpu" && dev == "tch-cpu"))
                })
                .map(|r| &r.id[..r.id.len().min(8)])
                .collect();
            let mut spans = vec![Span::styled(format!("{:<7}", d.name), Style::new().bold())];
            if let Some(u) = d.util {
                spans.push(Span::raw(format!(" {} {:>3.0}%", bar(u / 100.0, 8), u)));
            }
            if let Some((used, total)) = d.memory {
                spans.push(Span::raw(format!("  mem {}/{} GiB", gib(used), gib(total))));
            }
            if let Some(model) = &d.model {
                spans.push(Span::raw(format!("  {model}")));
            }
            spans.push(Span::raw(format!(
                "  runs: {}",
                if on.is_empty() {
                    "-".to_string()
                } else {
                    on.join(" ")
                }
            )));
            Line::from(spans)
        })
        .collect();
    let body = if lines.is_empty() {
        vec![Line::from("sampling…")]
    } else {
        lines
    };
    frame.render_widget(
        Paragraph::new(body).block(block(" Devices ", app.panel == Panel::Devices)),
        area,
    );
}

fn draw_event_line(frame: &mut Frame, s: &Snapshot, area: Rect) {
    let line = match s.events.last() {
        None => Line::from("no events yet").dark_gray(),
        Some(e) => {
            let color = match e.kind.as_str() {
                "done" => Color::Green,
                "failed" => Color::Red,
                "diverged" => Color::Magenta,
                "pruned" => Color::Yellow,
                _ => Color::Gray,
            };
            Line::from(vec![
                Span::raw(format!("{} ", e.at)),
                Span::styled(format!("{} {}", e.run_id, e.kind), Style::new().fg(color)),
                Span::raw(
                    e.detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default(),
                ),
            ])
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let text = match app.mode {
        Mode::Filter => format!("filter: {}▏ (Enter keep, Esc clear)", app.filter),
        _ => match &app.message {
            Some(m) => m.clone(),
            None if area.width < 100 => {
                "↑↓ select ⏎ details Tab panel s sort / filter p pause r retry q quit ? help".into()
            }
            None => "↑↓/jk select  Enter details  Tab panel  s sort  / filter  p pause  r retry  q quit  ? help".into(),
        },
    };
    frame.render_widget(
        Paragraph::new(text).style(Style::new().fg(Color::Black).bg(Color::Gray)),
        area,
    );
}

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let keys = [
        ("↑ ↓  j k", "select a run (PgUp PgDn g G jump)"),
        ("Enter", "the selected run full screen, again to go back"),
        ("Tab", "switch panel: run, leaderboard, devices"),
        ("s", "sort: sweep order, status, best val"),
        ("/", "filter by id, status, slot or key=value"),
        ("p", "pause / resume launching new runs"),
        ("r", "retry the selected failed run"),
        ("q", "quit (asks whether to stop a sweep it runs)"),
        ("mouse", "click a run to select it"),
    ];
    let lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<10}"), Style::new().bold().fg(Color::Cyan)),
                Span::raw(*what),
            ])
        })
        .collect();
    let rect = popup(area, 64, keys.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(block(" Keys (Esc to close) ", true)),
        rect,
    );
}

fn draw_quit_prompt(frame: &mut Frame, area: Rect) {
    let lines = vec![
        Line::from("Leave the dashboard. The sweep:"),
        Line::from(vec![
            Span::styled("  s ", Style::new().bold().fg(Color::Cyan)),
            Span::raw("stop it: running epochs finish and checkpoint"),
        ]),
        Line::from(vec![
            Span::styled("  k ", Style::new().bold().fg(Color::Cyan)),
            Span::raw("keep it training headless, progress as text"),
        ]),
        Line::from(vec![
            Span::styled("  Esc ", Style::new().bold().fg(Color::Cyan)),
            Span::raw("back to the dashboard"),
        ]),
    ];
    let rect = popup(area, 56, 6);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(block(" Quit? ", true)), rect);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::state::{EventView, RunDetail, SweepMeta};
    use crate::dashboard::system::DeviceStats;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    const NOW: f64 = 1_790_000_000.0;

    fn run(i: usize, status: RunStatus, seed: u64, done: usize) -> RunView {
        RunView {
            id: format!("{:x}{:x}0c0ffee00", 0xa + i, seed),
            position: i + 1,
            status,
            seed,
            params: vec![
                ["0.001", "0.0003", "0.0001"][i % 3].to_string(),
                ["cross_entropy", "focal"][(i / 3) % 2].to_string(),
            ],
            slot: (status != RunStatus::Queued).then(|| format!("cpu#{}", i % 2 + 1)),
            fused: None,
            epochs_done: done,
            epochs_planned: 10,
            split: (status == RunStatus::Running).then(|| "train".to_string()),
            items_done: 14000,
            items_total: 28709,
            best_epoch: (status == RunStatus::Done).then(|| done - 1),
            error: None,
            attempts: 1,
            val_acc: None,
            test_acc: None,
            never_learned: false,
        }
    }

    fn curve(epochs: usize, shift: f64) -> Vec<EpochRow> {
        (1..=epochs)
            .map(|e| {
                let t = e as f64;
                EpochRow {
                    epoch: e,
                    train_loss: Some(1.8 - 0.6 * (1.0 - (-t / 4.0).exp()) - shift),
                    train_acc: Some(0.25 + 0.35 * (1.0 - (-t / 4.0).exp()) + shift),
                    val_loss: Some(1.7 - 0.45 * (1.0 - (-t / 3.0).exp()) - shift),
                    val_acc: Some(0.3 + 0.28 * (1.0 - (-t / 3.0).exp()) + shift),
                    lr: Some(1e-3),
                    secs: Some(40.0 + t),
                    write_ms: None,
                }
            })
            .collect()
    }

    fn detail() -> RunDetail {
        let mut confusion = [[0i64; 7]; 7];
        for (t, row) in confusion.iter_mut().enumerate() {
            for (p, cell) in row.iter_mut().enumerate() {
                *cell = if t == p {
                    300 - 20 * t as i64
                } else {
                    (t + p) as i64 * 3
                };
            }
        }
        RunDetail {
            class_f1: Emotion::ALL
                .iter()
                .enumerate()
                .map(|(i, e)| (*e, 0.3 + 0.08 * i as f64, 100 + 50 * i as i64))
                .collect(),
            confusion,
        }
    }

    fn sweep_meta() -> SweepMeta {
        SweepMeta {
            id: 1,
            name: "loss".into(),
            file: "experiments/loss.toml".into(),
            data_path: "data/fer2013".into(),
            started: Some(NOW - 3725.0),
            last_end: None,
            paused: false,
        }
    }

    fn empty() -> Snapshot {
        Snapshot {
            sweep: SweepMeta {
                started: None,
                ..sweep_meta()
            },
            axes: vec!["lr".into(), "loss".into()],
            runs: (0..4).map(|i| run(i, RunStatus::Queued, 1, 0)).collect(),
            ..Snapshot::default()
        }
    }

    fn event(id: i64, run: &str, kind: &str, detail: &str) -> EventView {
        EventView {
            id,
            at: format!("12:0{id}:00"),
            run_id: run.into(),
            kind: kind.into(),
            detail: Some(detail.into()),
        }
    }

    fn running() -> Snapshot {
        let mut s = empty();
        s.sweep = sweep_meta();
        s.runs = vec![
            run(0, RunStatus::Done, 1, 10),
            run(1, RunStatus::Done, 1, 10),
            run(2, RunStatus::Running, 1, 6),
            run(3, RunStatus::Running, 1, 2),
            run(4, RunStatus::Queued, 1, 0),
            run(5, RunStatus::Queued, 1, 0),
        ];
        for (i, r) in s.runs.iter_mut().enumerate() {
            if r.epochs_done > 0 {
                s.curves
                    .insert(r.id.clone(), curve(r.epochs_done, 0.01 * i as f64));
            }
            if r.status == RunStatus::Done {
                r.val_acc = Some(0.58 + 0.01 * i as f64);
                r.test_acc = Some(0.59 + 0.01 * i as f64);
                s.details.insert(r.id.clone(), detail());
            }
        }
        s.events = vec![
            event(1, &s.runs[0].id, "done", "val 0.5800"),
            event(2, &s.runs[3].id, "launched", "attempt 1 on cpu#2"),
        ];
        s
    }

    fn finished_with_failures() -> Snapshot {
        let mut s = running();
        s.runs = (0..6)
            .map(|i| run(i % 3, RunStatus::Done, 1 + (i / 3) as u64, 10))
            .collect();
        for (i, r) in s.runs.iter_mut().enumerate() {
            r.position = i + 1;
            r.val_acc = Some(0.58 + 0.01 * (i % 3) as f64 + 0.004 * (i / 3) as f64);
            r.test_acc = Some(0.6 + 0.01 * (i % 3) as f64);
            s.curves.insert(r.id.clone(), curve(10, 0.005 * i as f64));
            s.details.insert(r.id.clone(), detail());
        }
        let mut failed = run(6, RunStatus::Failed, 1, 3);
        failed.error =
            Some("worker exited (signal: 9 (SIGKILL)) without a result: out of memory".into());
        failed.attempts = 2;
        s.curves.insert(failed.id.clone(), curve(3, 0.0));
        let mut diverged = run(7, RunStatus::Diverged, 1, 2);
        diverged.error = Some("loss became NaN at epoch 2".into());
        s.runs.push(failed);
        s.runs.push(diverged);
        s.events
            .push(event(3, &s.runs[6].id, "failed", "out of memory"));
        // It ended 10 minutes ago: its clock says 52 minutes, not 1h02m and counting.
        s.sweep.last_end = Some(NOW - 600.0);
        s
    }

    fn render(snapshot: Snapshot, role: Role, size: (u16, u16), select: usize) -> String {
        let mut app = App::new(snapshot, role);
        app.now = NOW;
        app.selected = app.snapshot.runs.get(select).map(|r| r.id.clone());
        app.devices = vec![DeviceStats {
            name: "cpu".into(),
            model: None,
            util: Some(97.0),
            memory: Some((3 << 30, 24 << 30)),
        }];
        let mut terminal = Terminal::new(TestBackend::new(size.0, size.1)).unwrap();
        terminal.draw(|f| draw(f, &mut app)).unwrap();
        terminal.backend().to_string()
    }

    #[test]
    fn empty_sweep() {
        let role = Role::Running { finished: false };
        insta::assert_snapshot!("empty_80x24", render(empty(), role, (80, 24), 0));
        insta::assert_snapshot!("empty_200x60", render(empty(), role, (200, 60), 0));
    }

    #[test]
    fn running_sweep() {
        let role = Role::Running { finished: false };
        insta::assert_snapshot!("running_80x24", render(running(), role, (80, 24), 2));
        insta::assert_snapshot!("running_200x60", render(running(), role, (200, 60), 0));
    }

    #[test]
    fn finished_sweep_with_failures() {
        let s = finished_with_failures();
        insta::assert_snapshot!(
            "finished_80x24",
            render(s.clone(), Role::Attached, (80, 24), 6)
        );
        insta::assert_snapshot!("finished_200x60", render(s, Role::Attached, (200, 60), 6));
    }

    #[test]
    fn an_attached_dashboard_knows_when_the_sweep_ended() {
        let s = finished_with_failures();
        let out = render(s.clone(), Role::Attached, (80, 24), 0);
        let header: Vec<&str> = out.lines().take(2).collect();
        assert!(header[0].contains("finished"), "{out}");
        assert!(header[1].contains("elapsed 52m05s"), "{out}");
        let mut still = s;
        still.runs[0].status = RunStatus::Running;
        let out = render(still, Role::Attached, (80, 24), 0);
        let header: Vec<&str> = out.lines().take(2).collect();
        assert!(!header[0].contains("finished"), "{out}");
        assert!(header[1].contains("elapsed 1h02m"), "{out}");
    }

    #[test]
    fn a_run_that_never_learned_says_so() {
        let mut s = finished_with_failures();
        s.runs[0].never_learned = true;
        let out = render(s, Role::Attached, (120, 40), 0);
        assert!(out.contains("never learned: val at chance"), "{out}");
    }

    #[test]
    fn cells_over_seeds_have_mean_and_sd() {
        let s = finished_with_failures();
        let cells = cells(&s);
        // Three cells of two seeds; the failed and diverged runs have no evaluation.
        assert_eq!(cells.iter().map(|c| c.n).collect::<Vec<_>>(), [2, 2, 2]);
        assert!((cells[0].mean - 0.602).abs() < 1e-9);
        // sd of 0.60 and 0.604 (n − 1 in the denominator).
        assert!((cells[0].sd - 0.004 / 2f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn runs_that_train_together_show_their_group() {
        let mut s = running();
        let out = render(s.clone(), Role::Attached, (120, 40), 2);
        assert!(
            !out.contains("fused"),
            "no column while nothing fuses: {out}"
        );
        for r in &mut s.runs[2..4] {
            r.fused = Some("g0123456789".into());
            r.slot = Some("cpu#1".into());
        }
        let out = render(s, Role::Attached, (120, 40), 2);
        assert!(out.contains("fused"), "{out}");
        assert_eq!(out.matches("g012345 ").count(), 2, "{out}");
        assert!(out.contains("fused in g0123456789 (2 runs)"), "{out}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(3725.0), "1h02m");
        assert_eq!(duration(125.0), "2m05s");
    }
}
