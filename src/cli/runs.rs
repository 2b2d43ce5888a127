//! `fer-lab runs`.

use super::*;

#[derive(Args)]
pub(crate) struct RunsArgs {
    #[arg(long)]
    pub(crate) sweep: Option<String>,
    /// Only runs with this status.
    #[arg(long, value_enum)]
    pub(crate) status: Option<fer_lab::store::RunStatus>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) db: DbArg,
}

pub(crate) fn run(args: RunsArgs) -> Result<ExitCode> {
    let store = Store::open_read_only(&args.db.db)?;
    let rows = fer_lab::report::runs(&store, args.sweep.as_deref(), args.status)?;
    emit(&render_for_stdout(&rows, args.format))?;
    Ok(ExitCode::SUCCESS)
}
