//! `fer-lab worker` (hidden): one run, or one fused group of runs, in its own process,
//! started by the scheduler.

use super::*;

#[derive(Args)]
pub(crate) struct WorkerArgs {
    /// The sweep's database, for a worker on its machine.
    #[arg(long, required_unless_present = "journal", conflicts_with = "journal")]
    pub(crate) db: Option<PathBuf>,
    /// A journal folder on a shared filesystem instead of the database (a cluster node).
    #[arg(long)]
    pub(crate) journal: Option<PathBuf>,
    #[arg(long, required_unless_present = "group", conflicts_with = "group")]
    pub(crate) run: Option<String>,
    /// A fused group's id: its claimed members train as one model.
    #[arg(long)]
    pub(crate) group: Option<String>,
    #[arg(long)]
    pub(crate) device: String,
    #[arg(long)]
    pub(crate) data: PathBuf,
    #[arg(long)]
    pub(crate) sweep_id: i64,
    /// The sweep's pruning rule, as JSON.
    #[arg(long)]
    pub(crate) pruning: Option<String>,
    #[arg(long)]
    pub(crate) keep_checkpoints: bool,
}

pub(crate) fn run(args: WorkerArgs) -> Result<ExitCode> {
    let pruning = args
        .pruning
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--pruning")?;
    let code = fer_lab::worker::run(fer_lab::worker::WorkerArgs {
        records: match (args.db, args.journal) {
            (Some(db), _) => fer_lab::worker::Records::Database(db),
            (None, Some(dir)) => fer_lab::worker::Records::Journal(dir),
            (None, None) => unreachable!("clap requires --db or --journal"),
        },
        assignment: match (args.run, args.group) {
            (Some(run), _) => fer_lab::worker::Assignment::Run(run),
            (None, Some(group)) => fer_lab::worker::Assignment::Group(group),
            (None, None) => unreachable!("clap requires --run or --group"),
        },
        device: args.device.parse().map_err(anyhow::Error::msg)?,
        data: args.data,
        sweep_id: args.sweep_id,
        pruning,
        keep_checkpoints: args.keep_checkpoints,
    })?;
    Ok(ExitCode::from(code as u8))
}
