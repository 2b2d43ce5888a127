//! `fer-lab worker` (hidden): one run in its own process, started by the scheduler.

use super::*;

#[derive(Args)]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    pub(crate) db: PathBuf,
    #[arg(long)]
    pub(crate) run: String,
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
