//! The `fer-lab` command line, one file per command: parse at the edge, report errors with
//! context, exit ≠ 0. A command's file holds its clap arguments and the function that runs it;
//! adding a command is a file here, a variant of [`Command`] and an arm of [`run`].

mod bench;
mod dashboard;
mod data;
mod predict;
mod report;
mod runs;
mod sql;
mod sweep;
mod worker;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use fer_lab::dashboard::Exit;
use fer_lab::data::{cache, import};
use fer_lab::device::DeviceSpec;
use fer_lab::progress::Progress;
use fer_lab::report::RankMetric;
use fer_lab::scheduler;
use fer_lab::store::{DEFAULT_DB, Store, StoreError};
use fer_lab::sweep::Sweep;
use fer_lab::table::Format;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Parser)]
#[command(
    name = "fer-lab",
    version,
    about = "Sweeps of facial-emotion CNNs on FER-2013, recorded in SQLite"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import and inspect FER-2013.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Expand a sweep file into runs, train them and record everything.
    Sweep(sweep::SweepArgs),
    /// What helped: cells over seeds with CIs and Welch tests, per-key effects, classes, plots.
    Report(report::ReportArgs),
    /// List runs with their status.
    Runs(runs::RunsArgs),
    /// Run a read-only SQL query on the results database.
    Sql(sql::SqlArgs),
    /// Classify images with a trained run's best model.
    Predict(predict::PredictArgs),
    /// Write a trained run's model and its config to hand it on.
    Export(predict::ExportArgs),
    /// Watch a running or finished sweep live in the terminal (read-only; any number at once).
    Dashboard(dashboard::DashboardArgs),
    /// Measure speed: training step, data pipeline, evaluation (vs PyTorch: bench/compare.sh).
    Bench(bench::BenchArgs),
    /// Train one run of a sweep (started by the scheduler, one process per run).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

#[derive(Args)]
pub(crate) struct DbArg {
    /// Results database.
    #[arg(long, default_value = DEFAULT_DB, env = "FER_LAB_DB")]
    pub(crate) db: PathBuf,
}

/// 2 is for bad input; the machine failing at what was asked (a full disk, an I/O error) is a
/// runtime error, 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let runtime = e.chain().any(|cause| {
        store_error(cause).is_some_and(StoreError::is_runtime)
            || cause
                .downcast_ref::<cache::CacheError>()
                .is_some_and(cache::CacheError::is_runtime)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(cache::is_runtime_io)
    });
    if runtime { 1 } else { 2 }
}

/// The store error inside `cause`, also behind the error types that wrap one transparently
/// (which hide it from an error chain).
fn store_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a StoreError> {
    use fer_lab::dashboard::DashboardError;
    use fer_lab::predict::PredictError;
    use fer_lab::report::ReportError;
    let of_report = |r: &'a ReportError| match r {
        ReportError::Store(s) => Some(s),
        _ => None,
    };
    if let Some(s) = cause.downcast_ref::<StoreError>() {
        return Some(s);
    }
    if let Some(r) = cause.downcast_ref::<ReportError>() {
        return of_report(r);
    }
    if let Some(PredictError::Store(s)) = cause.downcast_ref::<PredictError>() {
        return Some(s);
    }
    match cause.downcast_ref::<DashboardError>() {
        Some(DashboardError::Store(s)) => Some(s),
        _ => None,
    }
}

/// A table for stdout: on a terminal, fitted to its width.
pub(crate) fn render_for_stdout(rows: &fer_lab::table::Rows, format: Format) -> String {
    if format == Format::Table
        && std::io::stdout().is_terminal()
        && let Ok((width, _)) = ratatui::crossterm::terminal::size()
    {
        return rows.render_fitted(width);
    }
    rows.render(format)
}

/// Writes a command's result to stdout. A full disk or a closed terminal is an error with
/// one message (exit 1), not a panic; a reader that stopped early (`| head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Runs the command the user gave.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Predict(args) => predict::predict(args),
        Command::Export(args) => predict::export(args),
        Command::Dashboard(args) => dashboard::run(args),
        Command::Report(args) => report::run(args),
        Command::Runs(args) => runs::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Sql(args) => sql::run(args),
    }
}

/// Writes a file whole or not at all: a temporary file beside it, renamed over it.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("report"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
