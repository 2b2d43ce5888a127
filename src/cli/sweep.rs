//! `fer-lab sweep`: plan, train, watch.

use super::*;
use fer_lab::cluster::ExecutorKind;
use fer_lab::device::discover;
use fer_lab::scheduler::launch::{self, LaunchRequest};

#[derive(Args)]
pub(crate) struct SweepArgs {
    /// The sweep file (TOML).
    pub(crate) file: PathBuf,
    /// Print the planned runs and train nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Devices: auto (every GPU, else the CPU), cpu (flex), tch-cpu, or a list like
    /// cuda:0,cuda:1 (tch-cpu and cuda need the tch feature). Overrides [resources] devices.
    #[arg(long, visible_alias = "device")]
    pub(crate) devices: Option<String>,
    /// Runs at once per device (default: 1 per CPU; per GPU, as many as the measured memory of
    /// a run allows, up to 8).
    #[arg(long)]
    pub(crate) per_device: Option<usize>,
    /// Train up to N runs that share a model shape, batch size and epochs as one fused model
    /// on one device: auto (GPUs fuse up to 16, CPUs do not: fusion measured slower there),
    /// a number, or off. Overrides [resources] fuse.
    #[arg(long, value_name = "auto|N|off")]
    pub(crate) fuse: Option<fer_lab::device::fusion::Fuse>,
    /// Where workers run: local (child processes here) or slurm (a job array on the cluster
    /// this machine submits to; the binary, data and results must be on its shared
    /// filesystem). Overrides [resources] executor.
    #[arg(long, value_enum)]
    pub(crate) executor: Option<fer_lab::cluster::ExecutorKind>,
    /// A Slurm option over [resources.slurm], e.g. --slurm partition=gpu --slurm gres=gpu:1
    /// (repeatable: partition, gres, cpus_per_task, mem, time, parallelism, extra, journal,
    /// signal_secs).
    #[arg(long = "slurm", value_name = "KEY=VALUE")]
    pub(crate) slurm: Vec<String>,
    /// Retries of a run after a failure that counts: its own error, or a crash before it saved
    /// a new checkpoint; a killed scheduler never counts (default 1).
    #[arg(long)]
    pub(crate) max_retries: Option<u32>,
    /// Retry runs that failed in earlier launches (they resume from their last checkpoint).
    #[arg(long)]
    pub(crate) retry_failed: bool,
    /// Train this run again from scratch (repeatable; an id from `fer-lab runs`).
    #[arg(long, value_name = "RUN")]
    pub(crate) restart: Vec<String>,
    /// Stop the sweep at the first failed run.
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Keep each finished run's epoch checkpoints beside best.bpk (removed by default once the
    /// run is done; a run resumes from them only while it trains). Overrides [resources]
    /// keep_checkpoints.
    #[arg(long)]
    pub(crate) keep_checkpoints: bool,
    /// Print progress lines (and a bar per running run) instead of opening the dashboard.
    /// Implied when stdout is not a terminal.
    #[arg(long)]
    pub(crate) no_tui: bool,
    /// Use this data instead of the file's `data` (a cache or any importable source).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Override a base value, e.g. --set epochs=1 (repeatable; grid values still win).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    #[command(flatten)]
    pub(crate) db: DbArg,
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

pub(crate) fn sweep(args: SweepArgs) -> Result<ExitCode> {
    let overrides = args
        .set
        .iter()
        .map(|s| parse_set(s))
        .collect::<Result<Vec<_>>>()?;
    let sweep = Sweep::load(&args.file, &overrides, args.data.as_deref())?;
    let (data, imported) = fer_lab::data::open(&sweep.data).with_context(|| match &args.data {
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
    print_plan(&sweep, &planned, &data, imported);
    let request = LaunchRequest {
        devices: args.devices.clone(),
        per_device: args.per_device,
        max_retries: args.max_retries,
        fail_fast: args.fail_fast,
        keep_checkpoints: args.keep_checkpoints,
        fuse: args.fuse,
        executor: args.executor,
        slurm: args.slurm.clone(),
    };
    // What the launch would refuse, a dry run refuses too.
    let launch = request.resolve(&sweep, &discover::discover())?;
    if args.dry_run {
        if launch.options.executor == ExecutorKind::Slurm {
            print_sbatch_script(&args.db.db, &launch.options)?;
        }
        return dry_run(&args.db.db, &sweep, &planned);
    }
    if launch.options.executor == ExecutorKind::Slurm {
        fer_lab::scheduler::slurm::check(&launch.options.slurm)?;
    }
    let mut store = Store::open(&args.db.db)?;
    let sweep_id = scheduler::register(&mut store, &sweep, &data, &planned)
        .with_context(|| format!("recording sweep {}", sweep.name))?;
    launch::restart_and_retry(
        &mut store,
        &sweep,
        &planned,
        &args.restart,
        args.retry_failed,
    )?;
    println!("{}", launch.describe());
    let opts = launch.options;
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
    finish(&store, &sweep.name, &summary)
}

/// The plan's first line: runs, axes, data and its fingerprint; then the data's warnings.
fn print_plan(
    sweep: &Sweep,
    planned: &[scheduler::Planned],
    data: &fer_lab::data::FerData,
    imported: bool,
) {
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
}

/// The batch script `--executor slurm` submits, for the plan's runs.
fn print_sbatch_script(db: &Path, opts: &scheduler::Options) -> Result<()> {
    let executor = fer_lab::scheduler::slurm::SlurmExecutor::new(db, 0, opts)?;
    let journal = std::path::absolute(fer_lab::scheduler::slurm::journal_dir(db, &opts.slurm))?;
    let tasks = journal.join("arrays").join("<batch>.tasks");
    print!("{}", executor.script(&tasks));
    println!(
        "# (the sbatch script of each job array; --sweep-id is the sweep's once it is recorded)"
    );
    Ok(())
}

/// The plan with each run's status, without creating or writing anything.
fn dry_run(db: &Path, sweep: &Sweep, planned: &[scheduler::Planned]) -> Result<ExitCode> {
    // A dry run never creates or writes anything; it reads the statuses of a database
    // that exists, and refuses one the launch would refuse.
    let store = match Store::open_read_only(db) {
        Ok(store) => Some(store),
        Err(StoreError::NoDatabase(_) | StoreError::EmptyDatabase(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let rows = scheduler::plan_table(sweep, planned, |id| {
        store.as_ref().and_then(|s| s.run_status(id).ok().flatten())
    });
    print!("{}", rows.render(Format::Table));
    Ok(ExitCode::SUCCESS)
}

/// The summary line, the sweep's top 10 and each failure; the exit code says how it ended.
fn finish(store: &Store, name: &str, summary: &scheduler::SweepSummary) -> Result<ExitCode> {
    println!(
        "sweep {}: {} trained, {} already done, {} pruned, {} diverged, {} failed{}",
        name,
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
        fer_lab::report::leaderboard(store, Some(name), RankMetric::ValAcc, Some(10))?;
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
