//! `fer-lab report`.

use super::*;

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// Sweep name (default: the most recently launched).
    #[arg(long)]
    pub(crate) sweep: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Val metric to rank by (test metrics are shown beside, never used to rank).
    #[arg(long, value_enum, default_value_t = RankMetric::ValAcc)]
    pub(crate) metric: RankMetric,
    /// Show only the best N cells (or runs, with --runs).
    #[arg(long)]
    pub(crate) top: Option<usize>,
    /// One row per run instead of cells over seeds, effects and the best cell's classes.
    #[arg(long)]
    pub(crate) runs: bool,
    /// Also write the figures (learning curves, effects, confusion, per-class F1) as PNG and SVG
    /// into this folder.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["runs", "compare"])]
    pub(crate) plots: Option<PathBuf>,
    /// Compare two sweeps (best cells, tested over seeds) or two runs (ids or prefixes).
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "runs")]
    pub(crate) compare: Option<Vec<String>>,
    /// Also soft-vote the runs of the best 1..=K cells (chosen on val) from their stored class
    /// probabilities, and report each ensemble's val and test accuracy and per-class F1.
    #[arg(long, value_name = "K", conflicts_with_all = ["runs", "compare"])]
    pub(crate) ensemble: Option<usize>,
    /// Write the report to this file instead of stdout (written whole, or not at all).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) db: DbArg,
}

pub(crate) fn run(args: ReportArgs) -> Result<ExitCode> {
    let store = Store::open_read_only(&args.db.db)?;
    let text = if let Some(pair) = &args.compare {
        fer_lab::report::compare::compare(&store, &pair[0], &pair[1], args.metric, args.format)?
    } else if args.runs {
        let (name, rows, pending) =
            fer_lab::report::leaderboard(&store, args.sweep.as_deref(), args.metric, args.top)?;
        if pending > 0 {
            eprintln!(
                "{pending} run(s) of sweep {name} have no results yet (fer-lab runs --sweep {name})"
            );
        }
        if args.format == Format::Table {
            format!(
                "sweep {name}: ranked by {:?} (test metrics are shown, never used to rank)\n{}",
                args.metric,
                rows.render(args.format)
            )
        } else {
            rows.render(args.format)
        }
    } else {
        let mut analysis =
            fer_lab::report::analysis::analyse(&store, args.sweep.as_deref(), args.metric)?;
        if let Some(k) = args.ensemble {
            analysis.ensemble = Some(fer_lab::report::ensemble::ensembles(&store, &analysis, k)?);
        }
        let html = args.format == Format::Html;
        if args.plots.is_none() && !html {
            analysis.render(args.format, args.top)
        } else {
            // Figures only when asked for: they read every epoch of the top cells.
            let curves = fer_lab::report::plots::curves(&store, &analysis)?;
            let figures = fer_lab::report::plots::figures(&analysis, &curves);
            if let Some(dir) = &args.plots {
                let written = fer_lab::report::plots::write(dir, &figures)?;
                eprintln!(
                    "{} figure files written to {}",
                    written.len(),
                    dir.display()
                );
            }
            if html {
                let svgs = figures
                    .iter()
                    .map(|f| f.svg().map(|svg| (f.name.clone(), svg)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("drawing a figure: {e}"))?;
                analysis.html(args.top, &svgs)
            } else {
                analysis.render(args.format, args.top)
            }
        }
    };
    match &args.out {
        Some(path) => write_atomically(path, text.as_bytes())
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => emit(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}
