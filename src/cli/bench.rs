//! `fer-lab bench`: the step, a stage for bench/compare.sh, the convolutions, the ops trace,
//! the report and the dashboard.

use super::*;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Model to measure: a name (baseline, compact, residual, attention, vgg) or an inline
    /// table like '{ kind = "vgg", width = 0.25 }'. Repeatable; default: all five.
    #[arg(long)]
    pub(crate) model: Vec<String>,
    #[arg(long, default_value_t = 64)]
    pub(crate) batch: usize,
    /// Timed steps (the median is reported), after 3 warm-up steps.
    #[arg(long, default_value_t = 20)]
    pub(crate) steps: usize,
    /// Device: auto, cpu (flex), tch-cpu or cuda:N.
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// A stage to measure as bench/compare.sh does (prints one JSON line): the training step,
    /// the data pipeline on real images, or evaluation on the real val split.
    #[arg(long, value_enum, conflicts_with_all = ["dashboard", "report"])]
    pub(crate) stage: Option<fer_lab::bench::Stage>,
    /// The imported data: real training images for the step, the loader for --stage data, the
    /// val split for --stage eval.
    #[arg(long, default_value = "data/fer2013")]
    pub(crate) data: PathBuf,
    /// Measure the dashboard instead: time to first frame and CPU use on a synthetic sweep.
    #[arg(long)]
    pub(crate) dashboard: bool,
    /// Time the gradients of the baseline's convolutions instead: burn's formulation against
    /// fer-lab's (src/model/conv.rs), on --device at --batch.
    #[arg(long, conflicts_with_all = ["dashboard", "report", "stage"])]
    pub(crate) conv: bool,
    /// List what libtorch runs in one training step of --model instead (tch builds): every
    /// ATen operator and autograd node with its input shapes, per phase (forward, backward,
    /// optimizer) — the native kernels each layer uses.
    #[arg(long, conflicts_with_all = ["dashboard", "report", "stage", "conv"])]
    pub(crate) ops: bool,
    /// Measure `fer-lab report` instead, on a synthetic sweep of --runs finished runs.
    #[arg(long, conflicts_with = "dashboard")]
    pub(crate) report: bool,
    /// With --dashboard or --report: runs in the synthetic sweep (default 500, or 2000 with
    /// --report).
    #[arg(long)]
    pub(crate) runs: Option<usize>,
    /// With --dashboard: epochs per run.
    #[arg(long, default_value_t = 50, requires = "dashboard")]
    pub(crate) epochs: usize,
    /// With --dashboard: seconds of drawing at 4 frames a second.
    #[arg(long, default_value_t = 20.0, requires = "dashboard")]
    pub(crate) seconds: f64,
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

pub(crate) fn run(args: BenchArgs) -> Result<ExitCode> {
    if args.stage.is_some() {
        stage(args)
    } else if args.conv {
        conv(args)
    } else if args.ops {
        ops(args)
    } else if args.report {
        report(args)
    } else if args.dashboard {
        dashboard(args)
    } else {
        steps(args)
    }
}

fn stage(args: BenchArgs) -> Result<ExitCode> {
    use fer_lab::bench::{self as b, Stage};
    let stage = args.stage.expect("guarded");
    let device = args.timed_device()?;
    let spec = match args.model.as_slice() {
        [] => b::parse_model("baseline")?,
        [one] => b::parse_model(one)?,
        _ => bail!("--stage measures one --model at a time"),
    };
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(rayon::current_num_threads);
    let dev = device.device();
    let (data, _) = fer_lab::data::open(&args.data)
        .with_context(|| format!("--data {}", args.data.display()))?;
    let (seconds, images) = match stage {
        Stage::Step => (
            b::train_step_seconds(&spec, args.batch, 3, args.steps, &dev, Some(&data.train)),
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

fn conv(args: BenchArgs) -> Result<ExitCode> {
    let device = args.timed_device()?;
    println!(
        "the baseline's convolutions on {device}, batch {}, median of {} calls:",
        args.batch, args.steps
    );
    let rows = fer_lab::bench::conv_rows(&device.device(), args.batch, args.steps);
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn ops(args: BenchArgs) -> Result<ExitCode> {
    let device = args.timed_device()?;
    let spec = match args.model.as_slice() {
        [] => fer_lab::bench::parse_model("baseline")?,
        [one] => fer_lab::bench::parse_model(one)?,
        _ => bail!("--ops traces one --model at a time"),
    };
    if device == DeviceSpec::Flex {
        bail!("--ops traces libtorch: use --device tch-cpu or cuda:N");
    }
    #[cfg(feature = "tch")]
    {
        let data = fer_lab::data::open(&args.data).ok().map(|(d, _)| d);
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

fn report(args: BenchArgs) -> Result<ExitCode> {
    let runs = args.runs.unwrap_or(2000);
    if runs == 0 {
        bail!("--runs must be ≥ 1");
    }
    let rows = fer_lab::report::bench::run(runs, 7).context("report benchmark")?;
    println!("fer-lab report on a synthetic sweep of {runs} finished runs (7 repeats):");
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn dashboard(args: BenchArgs) -> Result<ExitCode> {
    let runs = args.runs.unwrap_or(500);
    if runs == 0 || args.epochs < 2 || args.seconds <= 0.0 {
        bail!("--runs must be ≥ 1, --epochs ≥ 2 and --seconds > 0");
    }
    let rows = fer_lab::dashboard::bench::run(runs, args.epochs, args.seconds)
        .context("dashboard benchmark")?;
    print!("{}", rows.render(args.format));
    Ok(ExitCode::SUCCESS)
}

fn steps(args: BenchArgs) -> Result<ExitCode> {
    let device = args.timed_device()?;
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
