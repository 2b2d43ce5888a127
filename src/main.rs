//! The `fer-lab` command line: parse at the edge, report errors with context, exit ≠ 0.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use fer_lab::data::{self, cache, import};
use fer_lab::device::DeviceSpec;
use fer_lab::report::{self, RankMetric};
use fer_lab::scheduler;
use fer_lab::store::{DEFAULT_DB, Store};
use fer_lab::sweep::Sweep;
use fer_lab::table::Format;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Print a sweep's leaderboard (ranked on val, test shown beside).
    Report(ReportArgs),
    /// List runs with their status.
    Runs(RunsArgs),
    /// Run a read-only SQL query on the results database.
    Sql(SqlArgs),
    /// Measure training-step throughput of models on a device.
    Bench(BenchArgs),
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
    /// Device: auto, cpu (flex), tch-cpu or cuda:N (the last two need the tch feature).
    #[arg(long, default_value = "auto")]
    device: String,
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
    /// Val metric to rank by.
    #[arg(long, value_enum, default_value_t = RankMetric::ValAcc)]
    metric: RankMetric,
    /// Show only the best N runs.
    #[arg(long)]
    top: Option<usize>,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Args)]
struct RunsArgs {
    #[arg(long)]
    sweep: Option<String>,
    /// Only runs with this status (queued, running, done, failed, diverged, …).
    #[arg(long)]
    status: Option<String>,
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
    #[command(flatten)]
    db: DbArg,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
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
        Command::Report(args) => {
            let store = Store::open_read_only(&args.db.db)?;
            let (name, rows, pending) =
                report::leaderboard(&store, args.sweep.as_deref(), args.metric, args.top)?;
            if args.format == Format::Table {
                println!(
                    "sweep {name}: ranked by {:?} (test metrics are shown, never used to rank)",
                    args.metric
                );
            }
            print!("{}", rows.render(args.format));
            if pending > 0 {
                eprintln!(
                    "{pending} run(s) of sweep {name} have no results yet (fer-lab runs --sweep {name})"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(args) => {
            let store = Store::open_read_only(&args.db.db)?;
            let rows = report::runs(&store, args.sweep.as_deref(), args.status.as_deref())?;
            print!("{}", rows.render(args.format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let device: DeviceSpec = args.device.parse().map_err(anyhow::Error::msg)?;
            let models = if args.model.is_empty() {
                fer_lab::bench::default_models()
            } else {
                args.model
                    .iter()
                    .map(|m| fer_lab::bench::parse_model(m))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?
            };
            if args.batch == 0 || args.steps == 0 {
                bail!("--batch and --steps must be at least 1");
            }
            let rows = fer_lab::bench::run(
                &models,
                args.batch,
                3,
                args.steps,
                &device.device(),
                &device.to_string(),
            );
            print!("{}", rows.render(args.format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql(args) => {
            let store = Store::open_read_only(&args.db.db)?;
            let rows = store.query(&args.query, &[])?;
            print!("{}", rows.render(args.format));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn data_import(src: &Path, out: &Path, opts: import::ImportOptions) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let data = import::import(src, opts)?;
    cache::write(out, &data).with_context(|| format!("writing the cache to {}", out.display()))?;
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
    let device: DeviceSpec = args.device.parse().map_err(anyhow::Error::msg)?;
    let sweep = Sweep::load(&args.file, &overrides, args.data.as_deref())?;
    let (data, imported) = data::open(&sweep.data)
        .with_context(|| format!("data of sweep {} ({})", sweep.name, args.file.display()))?;
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
    if args.dry_run {
        // Read the database only if it exists: a dry run never creates or writes anything.
        let store = Store::open_read_only(&args.db.db).ok();
        let rows = scheduler::plan_table(&sweep, &planned, |id| {
            store.as_ref().and_then(|s| s.run_status(id).ok().flatten())
        });
        print!("{}", rows.render(Format::Table));
        return Ok(ExitCode::SUCCESS);
    }
    let mut store = Store::open(&args.db.db)?;
    scheduler::register(&mut store, &sweep, &data, &planned)
        .with_context(|| format!("recording sweep {}", sweep.name))?;
    let summary = scheduler::run_all(&mut store, &data, &planned, device, |line| {
        println!("{line}")
    })?;
    println!(
        "sweep {}: {} trained, {} already done, {} failed",
        sweep.name,
        summary.trained,
        summary.skipped,
        summary.failed.len()
    );
    let (_, rows, _) =
        report::leaderboard(&store, Some(&sweep.name), RankMetric::ValAcc, Some(10))?;
    print!("{}", rows.render(Format::Table));
    if summary.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for (id, why) in &summary.failed {
            eprintln!("failed: run {id}: {why}");
        }
        Ok(ExitCode::from(1))
    }
}
