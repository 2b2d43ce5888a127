//! `fer-lab predict` and `fer-lab export`: a trained run's model, used or handed on.

use super::*;

/// Which trained run: `--run ID`, or the best finished run (on val) of a sweep.
#[derive(Args)]
pub(crate) struct RunChoice {
    /// A run id (or a unique prefix of 4+ characters) from `fer-lab runs`.
    #[arg(long, conflicts_with_all = ["best", "sweep"])]
    pub(crate) run: Option<String>,
    /// The best finished run on val accuracy (the default without --run).
    #[arg(long)]
    pub(crate) best: bool,
    /// With --best or --ensemble: of this sweep (default: the most recently launched).
    #[arg(long)]
    pub(crate) sweep: Option<String>,
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
pub(crate) struct PredictArgs {
    /// Images (JPEG, PNG, BMP; any size: center-cropped and resized to 48×48 grayscale).
    #[arg(required = true)]
    pub(crate) images: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) which: RunChoice,
    /// Soft-vote the runs of the best K cells on val (the members `report --ensemble K` scores)
    /// instead of one run.
    #[arg(long, value_name = "K", conflicts_with_all = ["run", "best"])]
    pub(crate) ensemble: Option<usize>,
    /// Device: auto, cpu (flex), tch-cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) db: DbArg,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) which: RunChoice,
    /// Where to write the model (burn's burnpack format); `<out>.json` gets its config.
    #[arg(long)]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) db: DbArg,
}

pub(crate) fn predict(args: PredictArgs) -> Result<ExitCode> {
    let device: DeviceSpec = args.device.parse().map_err(anyhow::Error::msg)?;
    let runs = match args.ensemble {
        Some(k) => ensemble_members(&args.db.db, args.which.sweep.as_deref(), k)?,
        None => vec![args.which.resolve(&args.db.db)?],
    };
    let predictions = fer_lab::predict::predict_ensemble(&runs, &args.images, &device.device())?;
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
        match runs.as_slice() {
            [run] => println!(
                "run {}{}: probabilities of the seven classes",
                run.id,
                run.val_acc
                    .map(|v| format!(" (val accuracy {:.2} %)", 100.0 * v))
                    .unwrap_or_default()
            ),
            many => println!(
                "ensemble of {} runs ({}): their class probabilities averaged",
                many.len(),
                many.iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    emit(&rows.render(args.format))?;
    Ok(ExitCode::SUCCESS)
}

/// Every run of the best `k` cells of a sweep on val accuracy, each with its model: the members
/// `report --ensemble K` scores.
fn ensemble_members(
    db: &Path,
    sweep: Option<&str>,
    k: usize,
) -> Result<Vec<fer_lab::predict::TrainedRun>> {
    let store = Store::open_read_only(db)?;
    let analysis =
        fer_lab::report::analysis::analyse(&store, sweep, fer_lab::report::RankMetric::ValAcc)?;
    let members = fer_lab::report::ensemble::members(&analysis, k)?;
    anyhow::ensure!(
        !members.is_empty(),
        "sweep {} has no finished run yet",
        analysis.sweep
    );
    Ok(members
        .into_iter()
        .map(|r| fer_lab::predict::trained_run(&store, r.id.clone()))
        .collect::<Result<_, _>>()?)
}

pub(crate) fn export(args: ExportArgs) -> Result<ExitCode> {
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
