//! What a sweep asks of where its workers run: this machine, or a Slurm cluster and the
//! cluster's options (`--executor`, `[resources] executor`, `[resources.slurm]`, `--slurm
//! KEY=VALUE`). The executors themselves are the scheduler's (`scheduler::local`,
//! `scheduler::slurm`).

use serde::Deserialize;
use std::path::PathBuf;

/// Where workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Child processes on this machine.
    #[default]
    Local,
    /// One Slurm job array; the workers write journals on the shared filesystem.
    Slurm,
}

/// `[resources.slurm]`: the cluster's options. Every key is optional: unset, the cluster's
/// defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--gres`, e.g. `gpu:1` (one task per GPU: Slurm sets `CUDA_VISIBLE_DEVICES`).
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `16G`.
    pub mem: Option<String>,
    /// `--time`, e.g. `04:00:00`: a task that reaches it is requeued and resumes.
    pub time: Option<String>,
    /// At most this many tasks of the array at once (`--array=…%K`).
    pub parallelism: Option<usize>,
    /// More `#SBATCH` options, each as on sbatch's command line (`--account=lab`).
    #[serde(default)]
    pub extra: Vec<String>,
    /// The journal folder on the filesystem the nodes share (default: `journal/` beside the
    /// database). The binary, the data and the results folder must be there too.
    pub journal: Option<PathBuf>,
    /// Seconds before the time limit at which a task is told (USR1) to checkpoint and be
    /// requeued (default 120).
    pub signal_secs: Option<u32>,
}

impl SlurmOptions {
    /// One `--slurm KEY=VALUE`, over what the sweep file set.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let Some((key, value)) = assignment.split_once('=') else {
            return Err(format!(
                "--slurm {assignment}: expected KEY=VALUE, e.g. partition=gpu"
            ));
        };
        let (key, value) = (key.trim(), value.trim().to_string());
        let number = |what: &str| {
            value
                .parse::<u32>()
                .map_err(|_| format!("--slurm {key}={value}: {what} must be a whole number"))
        };
        match key {
            "partition" => self.partition = Some(value),
            "gres" => self.gres = Some(value),
            "cpus_per_task" => self.cpus_per_task = Some(number("cpus_per_task")?),
            "mem" => self.mem = Some(value),
            "time" => self.time = Some(value),
            "parallelism" => self.parallelism = Some(number("parallelism")? as usize),
            "extra" => self.extra.push(value),
            "journal" => self.journal = Some(PathBuf::from(value)),
            "signal_secs" => self.signal_secs = Some(number("signal_secs")?),
            _ => {
                return Err(format!(
                    "--slurm {key}: no such option (partition, gres, cpus_per_task, mem, time, parallelism, extra, journal, signal_secs)"
                ));
            }
        }
        Ok(())
    }

    /// Whether the tasks get a GPU each.
    pub fn wants_gpu(&self) -> bool {
        self.gres.as_deref().is_some_and(|g| g.starts_with("gpu"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_sets_and_refuses_in_words() {
        let mut o = SlurmOptions::default();
        o.set("partition=gpu").unwrap();
        o.set("gres = gpu:1").unwrap();
        o.set("parallelism=8").unwrap();
        o.set("extra=--account=lab").unwrap();
        assert_eq!(o.partition.as_deref(), Some("gpu"));
        assert!(o.wants_gpu());
        assert_eq!(o.parallelism, Some(8));
        assert_eq!(o.extra, ["--account=lab"]);
        assert!(o.set("queue=x").unwrap_err().contains("no such option"));
        assert!(
            o.set("parallelism=many")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(o.set("partition").unwrap_err().contains("KEY=VALUE"));
        let from_toml: SlurmOptions =
            toml::from_str("partition = \"a\"\ntime = \"01:00:00\"\nextra = [\"--qos=x\"]")
                .unwrap();
        assert_eq!(from_toml.time.as_deref(), Some("01:00:00"));
        assert!(toml::from_str::<SlurmOptions>("queue = 1").is_err());
    }
}
