//! The records the store reads and writes: a run's status, a sweep and its planned runs, what
//! the scheduler knows of a run, an epoch's curves.

use serde_json::Value;

/// Lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
    Diverged,
    Pruned,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Diverged => "diverged",
            RunStatus::Pruned => "pruned",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "diverged" => RunStatus::Diverged,
            "pruned" => RunStatus::Pruned,
            "interrupted" => RunStatus::Interrupted,
            _ => return None,
        })
    }
}

/// A sweep as stored.
#[derive(Debug, Clone)]
pub struct SweepRecord {
    pub name: String,
    pub file: String,
    pub spec: String,
    pub data_path: String,
    pub data_fingerprint: String,
    pub axes: Vec<String>,
}

#[cfg(test)]
impl SweepRecord {
    /// A sweep record for tests: file `<name>.toml`, data `d`, fingerprint `f`.
    pub(crate) fn for_test(name: &str, axes: &[&str]) -> SweepRecord {
        SweepRecord {
            name: name.into(),
            file: format!("{name}.toml"),
            spec: String::new(),
            data_path: "d".into(),
            data_fingerprint: "f".into(),
            axes: axes.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// A planned run as stored.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: String,
    pub seed: u64,
    pub config_json: String,
    pub model: String,
    pub epochs: usize,
    pub params: Vec<(String, Value)>,
    pub artifact_dir: String,
}

#[cfg(test)]
impl RunRecord {
    /// A baseline run record for tests: config `{}`, artifacts in `x`.
    pub(crate) fn for_test(
        id: impl Into<String>,
        seed: u64,
        epochs: usize,
        params: Vec<(String, Value)>,
    ) -> RunRecord {
        RunRecord {
            id: id.into(),
            seed,
            config_json: "{}".into(),
            model: "baseline".into(),
            epochs,
            params,
            artifact_dir: "x".into(),
        }
    }
}

/// A run as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub status: RunStatus,
    /// Launches, including those lost to a scheduler's death.
    pub attempts: u32,
    /// Failures that count against `max_retries` (see the scheduler).
    pub failures: u32,
    pub lease_expires: Option<f64>,
    pub worker_pid: Option<i64>,
    pub epochs_done: usize,
    pub error: Option<String>,
}

impl RunState {
    /// A `running` run whose worker stopped renewing its lease.
    pub fn lease_expired(&self, now: f64) -> bool {
        self.status == RunStatus::Running && self.lease_expires.is_none_or(|t| t < now)
    }
}

/// One epoch of training curves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: Option<f64>,
    pub train_acc: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub lr: Option<f64>,
    pub secs: Option<f64>,
    /// Milliseconds the hook spent writing this row.
    pub write_ms: Option<f64>,
}

/// The `epochs` columns an [`EpochRow`] is read from, in [`EpochRow::from_row`]'s order.
pub const EPOCH_COLUMNS: &str =
    "epoch, train_loss, train_acc, val_loss, val_acc, lr, secs, write_ms";

impl EpochRow {
    /// Reads [`EPOCH_COLUMNS`] from `r`, starting at column `first`.
    pub fn from_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<EpochRow> {
        Ok(EpochRow {
            epoch: r.get::<_, i64>(first)? as usize,
            train_loss: r.get(first + 1)?,
            train_acc: r.get(first + 2)?,
            val_loss: r.get(first + 3)?,
            val_acc: r.get(first + 4)?,
            lr: r.get(first + 5)?,
            secs: r.get(first + 6)?,
            write_ms: r.get(first + 7)?,
        })
    }
}
