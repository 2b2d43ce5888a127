//! `fer-lab data import | info`.

use super::*;

#[derive(Subcommand)]
pub(crate) enum DataCommand {
    /// Import a FER-2013 download (CSV, folder tree, .zip or .tar.gz) into a fast cache.
    Import {
        /// fer2013.csv, a folder with train/ (validation/) test/, or a .zip / .tar.gz of either.
        src: PathBuf,
        /// Cache directory to write.
        #[arg(long, default_value = "data/fer2013")]
        out: PathBuf,
        /// Center-crop and resize images that are not 48×48 (refused otherwise).
        #[arg(long)]
        resize: bool,
        /// Share of each class of train carved out as val when the source has no val split.
        #[arg(long, default_value_t = 0.1)]
        val_fraction: f64,
        /// Seed of that carve.
        #[arg(long, default_value_t = 2013)]
        split_seed: u64,
    },
    /// Show what an imported cache holds.
    Info {
        #[arg(default_value = "data/fer2013")]
        cache: PathBuf,
    },
}

pub(crate) fn run(cmd: DataCommand) -> Result<ExitCode> {
    match cmd {
        DataCommand::Import {
            src,
            out,
            resize,
            val_fraction,
            split_seed,
        } => data_import(
            &src,
            &out,
            import::ImportOptions {
                resize,
                val_fraction,
                split_seed,
            },
        ),
        DataCommand::Info { cache: dir } => {
            let data = cache::read(&dir)?;
            print_data_summary(&data);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn data_import(src: &Path, out: &Path, opts: import::ImportOptions) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    // Ctrl-C or SIGTERM: remove the half-written cache's temporary folder, then stop.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("installing the Ctrl-C handler")?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _no_more_writes = cache::abandon_write();
            eprintln!("interrupted: no cache written");
            std::process::exit(130);
        }
    });
    let data = import::import(src, opts)?;
    let written = cache::write(out, &data)
        .with_context(|| format!("writing the cache to {}", out.display()))?;
    for stale in &written.removed_stale {
        println!(
            "removed {}, left by an import that was killed",
            stale.display()
        );
    }
    print_data_summary(&data);
    println!(
        "wrote {} ({} images) in {:.1}s",
        out.display(),
        data.train.len() + data.val.len() + data.test.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_data_summary(data: &fer_lab::data::FerData) {
    let m = &data.manifest;
    println!("source: {}", m.source);
    println!("layout: {}", m.layout.describe());
    println!("fingerprint: {}", &m.fingerprint[..16]);
    println!("{}", fer_lab::data::count_table(&m.counts));
    println!(
        "test is FER-2013 PrivateTest: {}",
        if m.test_is_private_test { "yes" } else { "no" }
    );
    for note in &m.notes {
        println!("note: {note}");
    }
    for warning in &m.warnings {
        println!("warning: {warning}");
    }
}
