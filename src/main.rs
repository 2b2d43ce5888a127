//! The `fer-lab` command line: parse at the edge, report errors with context, exit ≠ 0.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use fer_lab::dashboard::Exit;
use fer_lab::data::{self, cache, import};
use fer_lab::device::DeviceSpec;
use fer_lab::progress::Progress;
use fer_lab::report::{self, RankMetric};
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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import and inspect FER-2013.
    #[command(subcommand)]
    Data(DataCommand),
    /// Expand a sweep file into runs, train them and record everything.
    Sweep(SweepArgs),
    /// What helped: cells over seeds with CIs and Welch tests, per-key effects, classes, plots.
    Report(ReportArgs),
    /// List runs with their status.
    Runs(RunsArgs),
    /// Run a read-only SQL query on the results database.
    Sql(SqlArgs),
    /// Classify images with a trained run's best model.
    Predict(PredictArgs),
    /// Write a trained run's model and its config to hand it on.
    Export(ExportArgs),
    /// Watch a running or finished sweep live in the terminal (read-only; any number at once).
    Dashboard(DashboardArgs),
    /// Measure speed: training step, data pipeline, evaluation (vs PyTorch: bench/compare.sh).
    Bench(BenchArgs),
    /// Train one run of a sweep (started by the scheduler, one process per run).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Args)]
struct WorkerArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    run: String,
    #[arg(long)]
    device: String,
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    sweep_id: i64,
    /// The sweep's pruning rule, as JSON.
    #[arg(long)]
    pruning: Option<String>,
    #[arg(long)]
    keep_checkpoints: bool,
}

/// Which trained run: `--run ID`, or the best finished run (on val) of a sweep.
#[derive(Args)]
struct RunChoice {
    /// A run id (or a unique prefix of 4+ characters) from `fer-lab runs`.
    #[arg(long, conflicts_with_all = ["best", "sweep"])]
    run: Option<String>,
    /// The best finished run on val accuracy (the default without --run).
    #[arg(long)]
    best: bool,
    /// With --best: of this sweep (default: the most recently launched).
    #[arg(long)]
    sweep: Option<String>,
}

impl RunChoice {
    fn resolve(&self, db: &Path) -> Result<fer_lab::predict::TrainedRun> {
        let store = Store::open_read_only(db)?;
        Ok(fer_lab::predict::resolve(
            &store,
            self.run.as_deref(),
            self.sweep.as_deref(),
        )?)
    }
}

#[derive(Args)]
struct PredictArgs {
    /// Images (JPEG, PNG, BMP; any size: center-cropped and resized to 48×48 grayscale).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    which: RunChoice,
    /// Device: auto, cpu (flex), tch-cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    which: RunChoice,
    /// Where to write the model (burn's burnpack format); `<out>.json` gets its config.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Args)]
struct DashboardArgs {
    /// Sweep name (default: the most recently launched).
    #[arg(long)]
    sweep: Option<String>,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Args)]
struct BenchArgs {
    /// Model to measure: a name (baseline, compact, residual, attention, vgg) or an inline
    /// table like '{ kind = "vgg", width = 0.25 }'. Repeatable; default: all five.
    #[arg(long)]
    model: Vec<String>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps (the median is reported), after 3 warm-up steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Device: auto, cpu (flex), tch-cpu or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// A stage to measure as bench/compare.sh does (prints one JSON line): the training step,
    /// the data pipeline on real images, or evaluation on the real val split.
    #[arg(long, value_enum, conflicts_with_all = ["dashboard", "report"])]
    stage: Option<fer_lab::bench::Stage>,
    /// The imported data: real training images for the step, the loader for --stage data, the
    /// val split for --stage eval.
    #[arg(long, default_value = "data/fer2013")]
    data: PathBuf,
    /// Measure the dashboard instead: time to first frame and CPU use on a synthetic sweep.
    #[arg(long)]
    dashboard: bool,
    /// Time the gradients of the baseline's convolutions instead: burn's formulation against
    /// fer-lab's (src/model/conv.rs), on --device at --batch.
    #[arg(long, conflicts_with_all = ["dashboard", "report", "stage"])]
    conv: bool,
    /// List what libtorch runs in one training step of --model instead (tch builds): every
    /// ATen operator and autograd node with its input shapes, per phase (forward, backward,
    /// optimizer) — the native kernels each layer uses.
    #[arg(long, conflicts_with_all = ["dashboard", "report", "stage", "conv"])]
    ops: bool,
    /// Measure `fer-lab report` instead, on a synthetic sweep of --runs finished runs.
    #[arg(long, conflicts_with = "dashboard")]
    report: bool,
    /// With --dashboard or --report: runs in the synthetic sweep (default 500, or 2000 with
    /// --report).
    #[arg(long)]
    runs: Option<usize>,
    /// With --dashboard: epochs per run.
    #[arg(long, default_value_t = 50, requires = "dashboard")]
    epochs: usize,
    /// With --dashboard: seconds of drawing at 4 frames a second.
    #[arg(long, default_value_t = 20.0, requires = "dashboard")]
    seconds: f64,
}

impl BenchArgs {
    /// The device of a timed benchmark, after checking the sizes every timed mode uses.
    fn timed_device(&self) -> Result<DeviceSpec> {
        if self.batch == 0 || self.steps == 0 {
            bail!("--batch and --steps must be at least 1");
        }
        self.device.parse().map_err(anyhow::Error::msg)
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Import a FER-2013 download (CSV, folder tree, .zip or .tar.gz) into a fast cache.
    Import {
        /// fer2013.csv, a folder with train/ (validation/) test/, or a .zip / .tar.gz of either.
        src: PathBuf,
        /// Cache directory to write.
        #[arg(long, default_value = "data/fer2013")]
        out: PathBuf,
        /// Center-crop and resize images that are not 48×48 (refused otherwise).
        #[arg(long)]
        resize: bool,
        /// Share of each class of train carved out as val when the source has no val split.
        #[arg(long, default_value_t = 0.1)]
        val_fraction: f64,
        /// Seed of that carve.
        #[arg(long, default_value_t = 2013)]
        split_seed: u64,
    },
    /// Show what an imported cache holds.
    Info {
        #[arg(default_value = "data/fer2013")]
        cache: PathBuf,
    },
}

#[derive(Args)]
struct DbArg {
    /// Results database.
    #[arg(long, default_value = DEFAULT_DB, env = "FER_LAB_DB")]
    db: PathBuf,
}

#[derive(Args)]
struct SweepArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    /// Print the planned runs and train nothing.
    #[arg(long)]
    dry_run: bool,
    /// Devices: auto (every GPU, else the CPU), cpu (flex), tch-cpu, or a list like
    /// cuda:0,cuda:1 (tch-cpu and cuda need the tch feature). Overrides [resources] devices.
    #[arg(long, visible_alias = "device")]
    devices: Option<String>,
    /// Runs at once per device (default: 1 per CPU; per GPU, as many as the measured memory of
    /// a run allows, up to 8).
    #[arg(long)]
    per_device: Option<usize>,
    /// Retries of a run after a failure that counts: its own error, or a crash before it saved
    /// a new checkpoint; a killed scheduler never counts (default 1).
    #[arg(long)]
    max_retries: Option<u32>,
    /// Retry runs that failed in earlier launches (they resume from their last checkpoint).
    #[arg(long)]
    retry_failed: bool,
    /// Train this run again from scratch (repeatable; an id from `fer-lab runs`).
    #[arg(long, value_name = "RUN")]
    restart: Vec<String>,
    /// Stop the sweep at the first failed run.
    #[arg(long)]
    fail_fast: bool,
    /// Keep each finished run's epoch checkpoints beside best.bpk (removed by default once the
    /// run is done; a run resumes from them only while it trains). Overrides [resources]
    /// keep_checkpoints.
    #[arg(long)]
    keep_checkpoints: bool,
    /// Print progress lines (and a bar per running run) instead of opening the dashboard.
    /// Implied when stdout is not a terminal.
    #[arg(long)]
    no_tui: bool,
    /// Use this data instead of the file's `data` (a cache or any importable source).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override a base value, e.g. --set epochs=1 (repeatable; grid values still win).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Args)]
struct ReportArgs {
    /// Sweep name (default: the most recently launched).
    #[arg(long)]
    sweep: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Val metric to rank by (test metrics are shown beside, never used to rank).
    #[arg(long, value_enum, default_value_t = RankMetric::ValAcc)]
    metric: RankMetric,
    /// Show only the best N cells (or runs, with --runs).
    #[arg(long)]
    top: Option<usize>,
    /// One row per run instead of cells over seeds, effects and the best cell's classes.
    #[arg(long)]
    runs: bool,
    /// Also write the figures (learning curves, effects, confusion, per-class F1) as PNG and SVG
    /// into this folder.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["runs", "compare"])]
    plots: Option<PathBuf>,
    /// Compare two sweeps (best cells, tested over seeds) or two runs (ids or prefixes).
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "runs")]
    compare: Option<Vec<String>>,
    /// Write the report to this file instead of stdout (written whole, or not at all).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Args)]
struct RunsArgs {
    #[arg(long)]
    sweep: Option<String>,
    /// Only runs with this status.
    #[arg(long, value_enum)]
    status: Option<fer_lab::store::RunStatus>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Args)]
struct SqlArgs {
    /// The query, e.g. "SELECT * FROM leaderboard" (may start with an SQL `--` comment).
    #[arg(allow_hyphen_values = true)]
    query: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Stop the query after this many seconds (a runaway recursive query otherwise runs until
    /// killed).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    #[command(flatten)]
    db: DbArg,
}

/// Keeps glibc from handing big tensor buffers back to the kernel after every step.
///
/// burn allocates and frees buffers of several MiB per layer per step. With glibc's defaults
/// those above its (adaptive) mmap threshold are mmap'd and munmap'd each time, and freed heap
/// tops are trimmed: a profile of the flex training step showed ~22 % of the time in the
/// kernel (page faults, TLB shootdowns). A fixed 32 MiB mmap threshold and a 1 GiB trim
/// threshold keep the memory in the process for reuse: the flex step went from 556 to about
/// 900 img/s (docs/benchmarks.md). `FER_LAB_MALLOC=default` keeps glibc's behaviour.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("FER_LAB_MALLOC").is_none_or(|v| v != "default") {
        // SAFETY: mallopt only sets allocator parameters; called once, before any threads.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 2 is for bad input; the machine failing at what was asked (a full disk, an I/O error) is a
/// runtime error, 1.
fn exit_code(e: &anyhow::Error) -> u8 {
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
    match cause.downcast_ref::<PredictError>() {
        Some(PredictError::Store(s)) => return Some(s),
        Some(PredictError::Report(r)) => return of_report(r),
        _ => {}
    }
    match cause.downcast_ref::<DashboardError>() {
        Some(DashboardError::Store(s)) => Some(s),
        Some(DashboardError::Report(r)) => of_report(r),
        _ => None,
    }
}

/// A table for stdout: on a terminal, fitted to its width.
fn render_for_stdout(rows: &fer_lab::table::Rows, format: Format) -> String {
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
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Data(DataCommand::Import {
            src,
            out,
            resize,
            val_fraction,
            split_seed,
        }) => data_import(
            &src,
            &out,
            import::ImportOptions {
                resize,
                val_fraction,
                split_seed,
            },
        ),
        Command::Data(DataCommand::Info { cache: dir }) => {
            let data = cache::read(&dir)?;
            print_data_summary(&data);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep(args) => sweep(args),
        Command::Predict(args) => {
            let run = args.which.resolve(&args.db.db)?;
            let device: DeviceSpec = args.device.parse().map_err(anyhow::Error::msg)?;
            let predictions = fer_lab::predict::predict(&run, &args.images, &device.device())?;
            let mut headers = vec!["image".to_string(), "emotion".to_string()];
            headers.extend(
                fer_lab::emotion::Emotion::ALL
                    .iter()
                    .map(|e| e.name().to_string()),
            );
            let mut rows = fer_lab::table::Rows::new(headers);
            for p in &predictions {
                let mut row = vec![
                    serde_json::Value::from(p.image.display().to_string()),
                    serde_json::Value::from(p.emotion.name()),
                ];
                row.extend(
                    p.probabilities
                        .iter()
                        .map(|&x| serde_json::Value::from((f64::from(x) * 1e4).round() / 1e4)),
                );
                rows.push(row);
            }
            if args.format == Format::Table {
                println!(
                    "run {}{}: probabilities of the seven classes",
                    run.id,
                    run.val_acc
                        .map(|v| format!(" (val accuracy {:.2} %)", 100.0 * v))
                        .unwrap_or_default()
                );
            }
            emit(&rows.render(args.format))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            let run = args.which.resolve(&args.db.db)?;
            let sidecar = fer_lab::predict::export(&run, &args.out, &DeviceSpec::Flex.device())?;
            println!(
                "run {}: model written to {}, its config to {}",
                run.id,
                args.out.display(),
                sidecar.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboard(args) => {
            fer_lab::dashboard::attach(&args.db.db, args.sweep.as_deref())
                .with_context(|| format!("dashboard of {}", args.db.db.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            let store = Store::open_read_only(&args.db.db)?;
            let text = if let Some(pair) = &args.compare {
                report::compare::compare(&store, &pair[0], &pair[1], args.metric, args.format)?
            } else if args.runs {
                let (name, rows, pending) =
                    report::leaderboard(&store, args.sweep.as_deref(), args.metric, args.top)?;
                if pending > 0 {
                    eprintln!(
                        "{pending} run(s) of sweep {name} have no results yet (fer-lab runs --sweep {name})"
                    );
                }
                if args.format == Format::Table {
                    format!(
                        "sweep {name}: ranked by {:?} (test metrics are shown, never used to rank)\n{}",
                        args.metric,
                        rows.render(args.format)
                    )
                } else {
                    rows.render(args.format)
                }
            } else {
                let analysis =
                    report::analysis::analyse(&store, args.sweep.as_deref(), args.metric)?;
                let html = args.format == Format::Html;
                if args.plots.is_none() && !html {
                    analysis.render(args.format, args.top)
                } else {
                    // Figures only when asked for: they read every epoch of the top cells.
                    let curves = report::plots::curves(&store, &analysis)?;
                    let figures = report::plots::figures(&analysis, &curves);
                    if let Some(dir) = &args.plots {
                        let written = report::plots::write(dir, &figures)?;
                        eprintln!(
                            "{} figure files written to {}",
                            written.len(),
                            dir.display()
                        );
                    }
                    if html {
                        let svgs = figures
                            .iter()
                            .map(|f| f.svg().map(|svg| (f.name.clone(), svg)))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| anyhow::anyhow!("drawing a figure: {e}"))?;
                        analysis.html(args.top, &svgs)
                    } else {
                        analysis.render(args.format, args.top)
                    }
                }
            };
            match &args.out {
                Some(path) => write_atomically(path, text.as_bytes())
                    .with_context(|| format!("writing the report to {}", path.display()))?,
                None => emit(&text)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(args) => {
            let store = Store::open_read_only(&args.db.db)?;
            let rows = report::runs(&store, args.sweep.as_deref(), args.status)?;
            emit(&render_for_stdout(&rows, args.format))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let pruning = args
                .pruning
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("--pruning")?;
            let code = fer_lab::worker::run(fer_lab::worker::WorkerArgs {
                db: args.db,
                run: args.run,
                device: args.device.parse().map_err(anyhow::Error::msg)?,
                data: args.data,
                sweep_id: args.sweep_id,
                pruning,
                keep_checkpoints: args.keep_checkpoints,
            })?;
            Ok(ExitCode::from(code as u8))
        }
        Command::Bench(args) if args.stage.is_some() => {
            use fer_lab::bench::{self as b, Stage};
            let stage = args.stage.expect("guarded");
            let device = args.timed_device()?;
            let spec = match args.model.as_slice() {
                [] => b::parse_model("baseline").map_err(anyhow::Error::msg)?,
                [one] => b::parse_model(one).map_err(anyhow::Error::msg)?,
                _ => bail!("--stage measures one --model at a time"),
            };
            let threads = std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(rayon::current_num_threads);
            let dev = device.device();
            let (data, _) = data::open(&args.data)
                .with_context(|| format!("--data {}", args.data.display()))?;
            let (seconds, images) = match stage {
                Stage::Step => (
                    b::train_step_seconds(
                        &spec,
                        args.batch,
                        3,
                        args.steps,
                        &dev,
                        Some(&data.train),
                    ),
                    args.batch,
                ),
                Stage::Data | Stage::Eval => {
                    if stage == Stage::Data {
                        (
                            b::data_seconds(&data, args.batch, 3, args.steps, &dev),
                            args.batch,
                        )
                    } else {
                        (
                            b::eval_seconds(&data, &spec, args.batch, &dev),
                            data.val.len(),
                        )
                    }
                }
            };
            println!(
                "{}",
                b::stage_line(
                    stage,
                    &spec,
                    args.batch,
                    seconds,
                    images,
                    threads,
                    (&device.to_string(), &dev)
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) if args.conv => {
            let device = args.timed_device()?;
            println!(
                "the baseline's convolutions on {device}, batch {}, median of {} calls:",
                args.batch, args.steps
            );
            let rows = fer_lab::bench::conv_rows(&device.device(), args.batch, args.steps);
            print!("{}", rows.render(args.format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) if args.ops => {
            let device = args.timed_device()?;
            let spec = match args.model.as_slice() {
                [] => fer_lab::bench::parse_model("baseline").map_err(anyhow::Error::msg)?,
                [one] => fer_lab::bench::parse_model(one).map_err(anyhow::Error::msg)?,
                _ => bail!("--ops traces one --model at a time"),
            };
            if device == DeviceSpec::Flex {
                bail!("--ops traces libtorch: use --device tch-cpu or cuda:N");
            }
            #[cfg(feature = "tch")]
            {
                let data = data::open(&args.data).ok().map(|(d, _)| d);
                let rows = fer_lab::bench::ops_rows(
                    &spec,
                    args.batch,
                    &device.device(),
                    data.as_ref().map(|d| &d.train),
                );
                println!(
                    "what libtorch runs in one training step of {} at batch {} on {device}:",
                    spec.kind(),
                    args.batch
                );
                print!("{}", rows.render(args.format));
            }
            #[cfg(not(feature = "tch"))]
            let _ = spec;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) if args.report => {
            let runs = args.runs.unwrap_or(2000);
            if runs == 0 {
                bail!("--runs must be ≥ 1");
            }
            let rows = fer_lab::report::bench::run(runs, 7).context("report benchmark")?;
            println!("fer-lab report on a synthetic sweep of {runs} finished runs (7 repeats):");
            print!("{}", rows.render(args.format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) if args.dashboard => {
            let runs = args.runs.unwrap_or(500);
            if runs == 0 || args.epochs < 2 || args.seconds <= 0.0 {
                bail!("--runs must be ≥ 1, --epochs ≥ 2 and --seconds > 0");
            }
            let rows = fer_lab::dashboard::bench::run(runs, args.epochs, args.seconds)
                .context("dashboard benchmark")?;
            print!("{}", rows.render(args.format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let device = args.timed_device()?;
            let models = if args.model.is_empty() {
                fer_lab::bench::default_models()
            } else {
                args.model
                    .iter()
                    .map(|m| fer_lab::bench::parse_model(m))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?
            };
            // Real faces when the data is imported (see `train_step_seconds`), else synthetic.
            let data = match data::open(&args.data) {
                Ok((data, _)) => Some(data),
                Err(e) => {
                    eprintln!(
                        "no data at {} ({e}): timing synthetic pixels",
                        args.data.display()
                    );
                    None
                }
            };
            let rows = fer_lab::bench::run(
                &models,
                args.batch,
                3,
                args.steps,
                &device.device(),
                &device.to_string(),
                data.as_ref().map(|d| &d.train),
            );
            print!("{}", rows.render(args.format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql(args) => {
            let limit = match args.timeout {
                Some(t) if !(t.is_finite() && t > 0.0) => {
                    bail!("--timeout {t}: give a number of seconds greater than 0")
                }
                Some(t) => Some(std::time::Duration::from_secs_f64(t)),
                None => None,
            };
            let store = Store::open_read_only(&args.db.db)?;
            let rows = match limit {
                Some(limit) => store.query_for(&args.query, limit),
                None => store.query(&args.query, &[]),
            };
            let rows = match rows {
                Err(e @ StoreError::Timeout(_)) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
                other => other?,
            };
            emit(&render_for_stdout(&rows, args.format))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn data_import(src: &Path, out: &Path, opts: import::ImportOptions) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    // Ctrl-C or SIGTERM: remove the half-written cache's temporary folder, then stop.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing the Ctrl-C handler")?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _no_more_writes = cache::abandon_write();
            eprintln!("interrupted: no cache written");
            std::process::exit(130);
        }
    });
    let data = import::import(src, opts)?;
    let written = cache::write(out, &data)
        .with_context(|| format!("writing the cache to {}", out.display()))?;
    for stale in &written.removed_stale {
        println!(
            "removed {}, left by an import that was killed",
            stale.display()
        );
    }
    print_data_summary(&data);
    println!(
        "wrote {} ({} images) in {:.1}s",
        out.display(),
        data.train.len() + data.val.len() + data.test.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_data_summary(data: &data::FerData) {
    let m = &data.manifest;
    println!("source: {}", m.source);
    println!("layout: {}", m.layout.describe());
    println!("fingerprint: {}", &m.fingerprint[..16]);
    println!("{}", data::count_table(&m.counts));
    println!(
        "test is FER-2013 PrivateTest: {}",
        if m.test_is_private_test { "yes" } else { "no" }
    );
    for note in &m.notes {
        println!("note: {note}");
    }
    for warning in &m.warnings {
        println!("warning: {warning}");
    }
}

/// Writes a file whole or not at all: a temporary file beside it, renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

/// Runs the scheduler on a thread while the dashboard owns the terminal. Leaving the dashboard
/// either stops the sweep gracefully or lets it go on headless with text progress.
fn run_with_dashboard(
    mut store: Store,
    sweep_id: i64,
    name: &str,
    planned: Vec<scheduler::Planned>,
    opts: scheduler::Options,
    stop: scheduler::StopSignal,
) -> Result<(scheduler::SweepSummary, Store)> {
    let db = store.path().to_path_buf();
    // While the dashboard is up, lines go nowhere (they are in run_events and worker.log);
    // once it is left, to stdout.
    let quiet = Arc::new(AtomicBool::new(true));
    let output: scheduler::Output = {
        let quiet = quiet.clone();
        Arc::new(move |line: &str| {
            if !quiet.load(Ordering::SeqCst) {
                println!("{line}");
            }
        })
    };
    let finished = Arc::new(AtomicBool::new(false));
    let scheduler = {
        let (output, finished, stop) = (output.clone(), finished.clone(), stop.clone());
        let opts = scheduler::Options {
            worker_output: output.clone(),
            ..opts
        };
        std::thread::spawn(move || {
            let summary =
                scheduler::run_sweep(&mut store, sweep_id, &planned, &opts, &stop, |line| {
                    output(line)
                });
            finished.store(true, Ordering::SeqCst);
            summary.map(|summary| (summary, store))
        })
    };
    let exit = fer_lab::dashboard::live(&db, name, finished.clone());
    quiet.store(false, Ordering::SeqCst);
    match exit {
        Ok(Exit::StopSweep) => {
            println!("stopping: running epochs finish and checkpoint (Ctrl-C to stop now)");
            stop.request(scheduler::StopLevel::Finish);
        }
        Ok(Exit::Quit) if !finished.load(Ordering::SeqCst) => {
            println!(
                "sweep {name} goes on without the dashboard (fer-lab dashboard --sweep {name} to watch it again)"
            );
        }
        Ok(Exit::Quit) => {}
        Err(e) => {
            // The dashboard failed, not the sweep: say why and go on with text.
            eprintln!("dashboard: {e}; continuing with text progress");
        }
    }
    Ok(scheduler
        .join()
        .map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))??)
}

fn parse_set(pair: &str) -> Result<(String, toml::Value)> {
    let Some((key, value)) = pair.split_once('=') else {
        bail!("--set {pair}: expected KEY=VALUE, e.g. --set epochs=1");
    };
    // A TOML value if it parses as one (1, 0.5, true, [1, 2]), else a bare string.
    let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key.trim().to_string(), value))
}

fn sweep(args: SweepArgs) -> Result<ExitCode> {
    let overrides = args
        .set
        .iter()
        .map(|s| parse_set(s))
        .collect::<Result<Vec<_>>>()?;
    let sweep = Sweep::load(&args.file, &overrides, args.data.as_deref())?;
    let (data, imported) = data::open(&sweep.data).with_context(|| match &args.data {
        Some(_) => format!("--data of sweep {}", sweep.name),
        None => format!(
            "data of sweep {} ({}; a relative path there is read from the file's folder)",
            sweep.name,
            args.file.display()
        ),
    })?;
    let results_dir = match args.db.db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let planned = scheduler::plan(&sweep, &data.manifest.fingerprint, &results_dir);
    println!(
        "sweep {}: {} run{} ({} axes: {}), data {} [{}]{}",
        sweep.name,
        planned.len(),
        if planned.len() == 1 { "" } else { "s" },
        sweep.axes.len(),
        if sweep.axes.is_empty() {
            "-".to_string()
        } else {
            sweep.axes.join(", ")
        },
        sweep.data.display(),
        data.short_fingerprint(),
        if imported {
            " imported in memory (no cache)"
        } else {
            ""
        }
    );
    for warning in &data.manifest.warnings {
        println!("data warning: {warning}");
    }
    // What the launch would refuse, a dry run refuses too.
    let found = scheduler::devices::discover();
    let devices_text = match (&args.devices, &sweep.resources.devices) {
        (Some(d), _) => d.clone(),
        (None, Some(scheduler::devices::DeviceChoice::Named(d))) => d.clone(),
        (None, Some(scheduler::devices::DeviceChoice::List(l))) => l.join(","),
        (None, None) => "auto".into(),
    };
    let devices = scheduler::devices::choose(&devices_text, &found).map_err(anyhow::Error::msg)?;
    let per_device = args.per_device.or(sweep.resources.per_device);
    if per_device == Some(0) {
        bail!("--per-device 0 runs nothing");
    }
    if args.dry_run {
        // A dry run never creates or writes anything; it reads the statuses of a database
        // that exists, and refuses one the launch would refuse.
        let store = match Store::open_read_only(&args.db.db) {
            Ok(store) => Some(store),
            Err(StoreError::NoDatabase(_) | StoreError::EmptyDatabase(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let rows = scheduler::plan_table(&sweep, &planned, |id| {
            store.as_ref().and_then(|s| s.run_status(id).ok().flatten())
        });
        print!("{}", rows.render(Format::Table));
        return Ok(ExitCode::SUCCESS);
    }
    const GPU_CAP: usize = 8;
    let slots = scheduler::devices::slots(&devices, per_device, GPU_CAP, &found);
    let mut store = Store::open(&args.db.db)?;
    let sweep_id = scheduler::register(&mut store, &sweep, &data, &planned)
        .with_context(|| format!("recording sweep {}", sweep.name))?;
    for run in &args.restart {
        let Some(p) = planned.iter().find(|p| &p.id == run) else {
            bail!(
                "--restart {run}: no run with that id in sweep {} (fer-lab runs --sweep {})",
                sweep.name,
                sweep.name
            );
        };
        store.reset_run(&p.id)?;
        if p.artifact_dir.exists() {
            std::fs::remove_dir_all(&p.artifact_dir)
                .with_context(|| format!("removing {}", p.artifact_dir.display()))?;
        }
    }
    if args.retry_failed {
        for p in &planned {
            if store.run_status(&p.id)? == Some(fer_lab::store::RunStatus::Failed) {
                store.retry_run(&p.id, "--retry-failed")?;
            }
        }
    }
    println!(
        "devices: {} ({} slot{})",
        devices
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        slots.len(),
        if slots.len() == 1 { "" } else { "s" }
    );
    let opts = scheduler::Options {
        slots,
        max_retries: args
            .max_retries
            .or(sweep.resources.max_retries)
            .unwrap_or(1),
        fail_fast: args.fail_fast,
        keep_checkpoints: args.keep_checkpoints
            || sweep.resources.keep_checkpoints.unwrap_or(false),
        pruning: sweep.pruning,
        data: sweep.data.clone(),
        stagger: std::time::Duration::from_millis(500),
        gpu_cap: GPU_CAP,
        gpu_auto: per_device.is_none(),
        worker_output: scheduler::stdout_output(),
    };
    let stop = scheduler::stop_signal().context("installing the Ctrl-C handler")?;
    let terminal = std::io::stdout().is_terminal();
    let (summary, store) = if terminal && !args.no_tui {
        run_with_dashboard(store, sweep_id, &sweep.name, planned, opts, stop)?
    } else {
        let mut progress = if terminal {
            Progress::bars(&args.db.db, sweep_id)
        } else {
            Progress::plain()
        };
        let output = progress.output();
        let opts = scheduler::Options {
            worker_output: output.clone(),
            ..opts
        };
        let summary = scheduler::run_sweep(&mut store, sweep_id, &planned, &opts, &stop, |line| {
            output(line)
        })?;
        progress.finish();
        (summary, store)
    };
    println!(
        "sweep {}: {} trained, {} already done, {} pruned, {} diverged, {} failed{}",
        sweep.name,
        summary.trained,
        summary.skipped,
        summary.pruned,
        summary.diverged.len(),
        summary.failed.len(),
        if summary.interrupted > 0 {
            format!(", {} left for the next launch", summary.interrupted)
        } else {
            String::new()
        }
    );
    let (_, rows, _) =
        report::leaderboard(&store, Some(&sweep.name), RankMetric::ValAcc, Some(10))?;
    emit(&render_for_stdout(&rows, Format::Table))?;
    for (id, why) in &summary.failed {
        eprintln!("failed: run {id}: {}", fer_lab::table::printable(why));
    }
    Ok(if summary.interrupted > 0 {
        ExitCode::from(130)
    } else if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
