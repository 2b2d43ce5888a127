//! `fer-lab sql`: a read-only query.

use super::*;

#[derive(Args)]
pub(crate) struct SqlArgs {
    /// The query, e.g. "SELECT * FROM leaderboard" (may start with an SQL `--` comment).
    #[arg(allow_hyphen_values = true)]
    pub(crate) query: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Stop the query after this many seconds (a runaway recursive query otherwise runs until
    /// killed).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,
    #[command(flatten)]
    pub(crate) db: DbArg,
}

pub(crate) fn run(args: SqlArgs) -> Result<ExitCode> {
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
