//! `fer-lab dashboard`.

use super::*;

#[derive(Args)]
pub(crate) struct DashboardArgs {
    /// Sweep name (default: the most recently launched).
    #[arg(long)]
    pub(crate) sweep: Option<String>,
    #[command(flatten)]
    pub(crate) db: DbArg,
}

pub(crate) fn run(args: DashboardArgs) -> Result<ExitCode> {
    fer_lab::dashboard::attach(&args.db.db, args.sweep.as_deref())
        .with_context(|| format!("dashboard of {}", args.db.db.display()))?;
    Ok(ExitCode::SUCCESS)
}
