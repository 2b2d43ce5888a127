//! The `fer-lab` binary: tunes the allocator and hands the command line to [`cli`].

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// Keeps glibc from handing big tensor buffers back to the kernel after every step.
///
/// burn allocates and frees buffers of several MiB per layer per step. With glibc's defaults
/// those above its (adaptive) mmap threshold are mmap'd and munmap'd each time, and freed heap
/// tops are trimmed: a profile of the flex training step showed ~22 % of the time in the
/// kernel (page faults, TLB shootdowns). A fixed 32 MiB mmap threshold and a 1 GiB trim
/// threshold keep the memory in the process for reuse: the flex step went from 556 to about
/// 900 img/s (docs/benchmarks.md). `FER_LAB_MALLOC=default` keeps glibc's behaviour.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("FER_LAB_MALLOC").is_none_or(|v| v != "default") {
        // SAFETY: mallopt only sets allocator parameters; called once, before any threads.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
