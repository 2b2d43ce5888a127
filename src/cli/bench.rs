//! `fer-lab bench`: the training step of each model (the default), and as subcommands a
//! stage for bench/compare.sh, the convolutions, the ops trace, the report and the dashboard.

use super::*;
use anyhow::anyhow;
use fer_lab::bench::Stage;
use fer_lab::model::Precision;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Without a subcommand: the training step of each --model.
    #[command(flatten)]
    step: StepArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// The training step of each model (what `fer-lab bench` alone does).
    Step(StepArgs),
    /// One stage as bench/compare.sh measures it, as one JSON line: the training step, the
    /// data pipeline on real images, or evaluation on the real val split.
    Stage(StageArgs),
    /// The gradients of the baseline's convolutions: burn's formulation against fer-lab's
    /// (src/model/conv.rs).
    Conv(ConvArgs),
    /// What libtorch runs in one training step of a model (tch builds): every ATen operator and
    /// autograd node with its input shapes, per phase (forward, backward, optimizer) — the
    /// native kernels each layer uses.
    Ops(OpsArgs),
    /// Fused groups (many runs as one model, issue 15) against one run alone: step time,
    /// model-images per second and the speed-up over training the runs one at a time.
    Fused(FusedArgs),
    /// How long `fer-lab report` takes on a synthetic sweep of finished runs.
    Report(ReportArgs),
    /// The dashboard's time to first frame and CPU use on a synthetic sweep.
    Dashboard(DashboardArgs),
    /// Merging cluster workers' journals into the database (what `--executor slurm` costs
    /// the submit host), on a simulated sweep.
    Journal(JournalArgs),
    /// The scheduler's own cost per run at scale (claim, task file, journal merge,
    /// bookkeeping), with simulated workers that finish at once.
    Scheduler(SchedulerArgs),
}

#[derive(Args)]
struct SchedulerArgs {
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Runs at once (a Slurm launch has one slot per run).
    #[arg(long)]
    slots: Option<usize>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
struct JournalArgs {
    /// Runs whose workers write journals at once.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Epochs per run (one merge after each).
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Heartbeats per run between two merges.
    #[arg(long, default_value_t = 1)]
    beats: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Batch, steps and device of a timed benchmark.
#[derive(Args, Clone)]
struct Timing {
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps (the median is reported), after 3 warm-up steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Device: auto, cpu (flex), tch-cpu or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// What the layers compute in: f32, or bf16 (mixed precision, as a run's `precision`;
    /// libtorch devices only).
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    precision: Precision,
}

fn parse_precision(text: &str) -> Result<Precision, String> {
    serde_json::from_value(serde_json::Value::from(text))
        .map_err(|_| format!("`{text}` is not a precision: f32 or bf16"))
}

impl Timing {
    /// The device, after checking the sizes every timed mode uses and that the device computes
    /// in --precision.
    fn device(&self) -> Result<DeviceSpec> {
        if self.batch == 0 || self.steps == 0 {
            bail!("--batch and --steps must be at least 1");
        }
        let device: DeviceSpec = self.device.parse().map_err(anyhow::Error::msg)?;
        self.precision
            .check_device(&device.device())
            .map_err(|e| anyhow!("--precision {}: {e}", self.precision.name()))?;
        Ok(device)
    }

    /// `f` with the layers of this thread in --precision.
    fn measure<R>(&self, f: impl FnOnce() -> R) -> R {
        fer_lab::model::precision::with(self.precision, f)
    }
}

#[derive(Args, Clone)]
struct StepArgs {
    /// Model to measure: a name (baseline, compact, residual, attention, vgg) or an inline
    /// table like '{ kind = "vgg", width = 0.25 }'. Repeatable; default: all five.
    #[arg(long)]
    model: Vec<String>,
    #[command(flatten)]
    timing: Timing,
    /// The imported data: its training images are the batch (synthetic pixels without it).
    #[arg(long, default_value = "data/fer2013")]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
struct StageArgs {
    #[arg(value_enum)]
    stage: Stage,
    /// The model (one; default baseline), as `fer-lab bench --model` takes it.
    #[arg(long, default_value = "baseline")]
    model: String,
    #[command(flatten)]
    timing: Timing,
    /// The imported data: real training images for the step, the loader for `data`, the val
    /// split for `eval`.
    #[arg(long, default_value = "data/fer2013")]
    data: PathBuf,
}

#[derive(Args)]
struct ConvArgs {
    #[command(flatten)]
    timing: Timing,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
struct OpsArgs {
    /// The model (one; default baseline).
    #[arg(long, default_value = "baseline")]
    model: String,
    #[command(flatten)]
    timing: Timing,
    /// The imported data: real training images for the traced step, if present.
    #[arg(long, default_value = "data/fer2013")]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
struct FusedArgs {
    /// The model (one; default baseline), as `fer-lab bench --model` takes it.
    #[arg(long, default_value = "baseline")]
    model: String,
    /// Group sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    members: Vec<usize>,
    #[command(flatten)]
    timing: Timing,
    /// The imported data: its training images are the batch (synthetic pixels without it).
    #[arg(long, default_value = "data/fer2013")]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
struct ReportArgs {
    /// Finished runs in the synthetic sweep.
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Args)]
struct DashboardArgs {
    /// Runs in the synthetic sweep.
    #[arg(long, default_value_t = 500)]
    runs: usize,
    /// Epochs per run.
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// Seconds of drawing at 4 frames a second.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(crate) fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.mode {
        None => steps(args.step),
        Some(Mode::Step(a)) => steps(a),
        Some(Mode::Stage(a)) => stage(a),
        Some(Mode::Conv(a)) => conv(a),
        Some(Mode::Ops(a)) => ops(a),
        Some(Mode::Fused(a)) => fused(a),
        Some(Mode::Report(a)) => report(a),
        Some(Mode::Dashboard(a)) => dashboard(a),
        Some(Mode::Journal(a)) => journal(a),
        Some(Mode::Scheduler(a)) => scheduler_bench(a),
    }
}

fn stage(args: StageArgs) -> Result<ExitCode> {
    use fer_lab::bench as b;
    let stage = args.stage;
    let device = args.timing.device()?;
    let spec = b::parse_model(&args.model)?;
    let (batch, steps) = (args.timing.batch, args.timing.steps);
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(rayon::current_num_threads);
    let dev = device.device();
    let (data, _) = fer_lab::data::open(&args.data)
        .with_context(|| format!("--data {}", args.data.display()))?;
    let (seconds, images) = args.timing.measure(|| match stage {
        Stage::Step => (
            b::train_step_seconds(&spec, batch, 3, steps, &dev, Some(&data.train)),
            batch,
        ),
        Stage::Data => (b::data_seconds(&data, batch, 3, steps, &dev), batch),
        Stage::Eval => (b::eval_seconds(&data, &spec, batch, &dev), data.val.len()),
    });
    let mut line = b::stage_line(
        stage,
        &spec,
        batch,
        seconds,
        images,
        threads,
        (&device.to_string(), &dev),
    );
    line["precision"] = serde_json::Value::from(args.timing.precision.name());
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn conv(args: ConvArgs) -> Result<ExitCode> {
    if !args.timing.precision.is_f32() {
        bail!(
            "bench conv compares float32 formulations of the baseline's gradients: leave out --precision"
        );
    }
    let device = args.timing.device()?;
    let (batch, steps) = (args.timing.batch, args.timing.steps);
    println!("the baseline's convolutions on {device}, batch {batch}, median of {steps} calls:");
    let rows = fer_lab::bench::conv_rows(&device.device(), batch, steps);
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn ops(args: OpsArgs) -> Result<ExitCode> {
    let device = args.timing.device()?;
    let spec = fer_lab::bench::parse_model(&args.model)?;
    if device == DeviceSpec::Flex {
        bail!("bench ops traces libtorch: use --device tch-cpu or cuda:N");
    }
    #[cfg(feature = "tch")]
    {
        let data = fer_lab::data::open(&args.data).ok().map(|(d, _)| d);
        let rows = args.timing.measure(|| {
            fer_lab::bench::ops_rows(
                &spec,
                args.timing.batch,
                &device.device(),
                data.as_ref().map(|d| &d.train),
            )
        });
        println!(
            "what libtorch runs in one training step of {} at batch {} on {device}:",
            spec.kind(),
            args.timing.batch
        );
        print!("{}", rows.render(args.format));
    }
    #[cfg(not(feature = "tch"))]
    let _ = spec;
    Ok(ExitCode::SUCCESS)
}

fn fused(args: FusedArgs) -> Result<ExitCode> {
    let device = args.timing.device()?;
    let spec = fer_lab::bench::parse_model(&args.model)?;
    if args.members.contains(&0) {
        bail!("--members: a group has at least 1 run");
    }
    let data = fer_lab::data::open(&args.data).ok().map(|(d, _)| d);
    let rows = args.timing.measure(|| {
        fer_lab::bench::fused_rows(
            &spec,
            &args.members,
            args.timing.batch,
            3,
            args.timing.steps,
            &device.device(),
            &device.to_string(),
            data.as_ref().map(|d| &d.train),
        )
    });
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn report(args: ReportArgs) -> Result<ExitCode> {
    let runs = args.runs;
    if runs == 0 {
        bail!("--runs must be ≥ 1");
    }
    let rows = fer_lab::report::bench::run(runs, 7).context("report benchmark")?;
    println!("fer-lab report on a synthetic sweep of {runs} finished runs (7 repeats):");
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn scheduler_bench(args: SchedulerArgs) -> Result<ExitCode> {
    if args.runs == 0 || args.epochs == 0 || args.slots == Some(0) {
        bail!("--runs, --epochs and --slots must be ≥ 1");
    }
    let slots = args.slots.unwrap_or(args.runs);
    let rows = fer_lab::scheduler::simulated::run(args.runs, args.epochs, slots)
        .context("scheduler benchmark")?;
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn journal(args: JournalArgs) -> Result<ExitCode> {
    if args.runs == 0 || args.epochs == 0 {
        bail!("--runs and --epochs must be ≥ 1");
    }
    let rows = fer_lab::store::journal_bench::run(args.runs, args.epochs, args.beats)
        .context("journal benchmark")?;
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn dashboard(args: DashboardArgs) -> Result<ExitCode> {
    let runs = args.runs;
    if runs == 0 || args.epochs < 2 || args.seconds <= 0.0 {
        bail!("--runs must be ≥ 1, --epochs ≥ 2 and --seconds > 0");
    }
    let rows = fer_lab::dashboard::bench::run(runs, args.epochs, args.seconds)
        .context("dashboard benchmark")?;
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn steps(args: StepArgs) -> Result<ExitCode> {
    let device = args.timing.device()?;
    let models = if args.model.is_empty() {
        fer_lab::bench::default_models()
    } else {
        args.model
            .iter()
            .map(|m| fer_lab::bench::parse_model(m))
            .collect::<Result<Vec<_>, _>>()?
    };
    // Real faces when the data is imported (see `train_step_seconds`), else synthetic.
    let data = match fer_lab::data::open(&args.data) {
        Ok((data, _)) => Some(data),
        Err(e) => {
            eprintln!(
                "no data at {} ({e}): timing synthetic pixels",
                args.data.display()
            );
            None
        }
    };
    let rows = args.timing.measure(|| {
        fer_lab::bench::run(
            &models,
            args.timing.batch,
            3,
            args.timing.steps,
            &device.device(),
            &device.to_string(),
            data.as_ref().map(|d| &d.train),
        )
    });
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}
