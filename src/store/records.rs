//! The records the store reads and writes: a run's status, a sweep and its planned runs, what
//! the scheduler knows of a run, an epoch's curves.

use crate::data::Split;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde_json::Value;

/// Lifecycle of a run, as `runs.status` stores it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
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
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Done,
        RunStatus::Failed,
        RunStatus::Diverged,
        RunStatus::Pruned,
        RunStatus::Interrupted,
    ];

    /// Whether the run is over for now: done, or stopped in a way no resume continues (a
    /// failed run trains again only when retried). Queued, running and interrupted runs
    /// still train.
    pub fn has_ended(self) -> bool {
        matches!(
            self,
            RunStatus::Done | RunStatus::Failed | RunStatus::Diverged | RunStatus::Pruned
        )
    }

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
}

/// A word that names no variant of a stored enum: what `FromStr` says, and what reading such a
/// word from the database says (a file written by something else, or a newer fer-lab).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{found}` (expected one of: {expected})")]
pub struct UnknownWord {
    pub what: &'static str,
    pub found: String,
    pub expected: String,
}

fn parse_word<T: Copy>(
    what: &'static str,
    all: &[T],
    name: fn(T) -> &'static str,
    s: &str,
) -> Result<T, UnknownWord> {
    all.iter()
        .copied()
        .find(|v| name(*v) == s)
        .ok_or_else(|| UnknownWord {
            what,
            found: s.to_string(),
            expected: all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", "),
        })
}

/// `ToSql`, `FromSql` and `FromStr` of an enum stored as one of its words.
macro_rules! stored_as_word {
    ($ty:ty, $what:literal, $name:ident) => {
        impl std::str::FromStr for $ty {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                parse_word($what, &<$ty>::ALL, <$ty>::$name, s)
            }
        }

        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.$name()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: UnknownWord| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

stored_as_word!(RunStatus, "run status", as_str);

/// What a line of a run's event log (`run_events.kind`) records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Launched,
    Resumed,
    Requeued,
    Done,
    Failed,
    Diverged,
    Pruned,
    Interrupted,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Launched,
        EventKind::Resumed,
        EventKind::Requeued,
        EventKind::Done,
        EventKind::Failed,
        EventKind::Diverged,
        EventKind::Pruned,
        EventKind::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Launched => "launched",
            EventKind::Resumed => "resumed",
            EventKind::Requeued => "requeued",
            EventKind::Done => "done",
            EventKind::Failed => "failed",
            EventKind::Diverged => "diverged",
            EventKind::Pruned => "pruned",
            EventKind::Interrupted => "interrupted",
        }
    }

    /// The event of a run ending in `status`; None for a status no run ends in.
    pub fn ended(status: RunStatus) -> Option<EventKind> {
        match status {
            RunStatus::Done => Some(EventKind::Done),
            RunStatus::Failed => Some(EventKind::Failed),
            RunStatus::Diverged => Some(EventKind::Diverged),
            RunStatus::Pruned => Some(EventKind::Pruned),
            RunStatus::Interrupted => Some(EventKind::Interrupted),
            RunStatus::Queued | RunStatus::Running => None,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

stored_as_word!(EventKind, "event kind", as_str);

// `evals`, `class_metrics` and `confusion` store a split as `Split::as_str` ("val"); the
// heartbeat's `runs.split` says "valid" for the same split (see [`Split::progress_name`]).
stored_as_word!(Split, "split", as_str);

impl Split {
    /// The split as `runs.split` stores where a running worker is: burn-train's phase names.
    pub fn progress_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "valid",
            Split::Test => "test",
        }
    }

    /// Reads `runs.split` (see [`Split::progress_name`]).
    pub fn from_progress_name(s: &str) -> Result<Split, UnknownWord> {
        parse_word("split", &Split::ALL, Split::progress_name, s)
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
    /// The batch job running its worker, when an executor that submits jobs launched it.
    pub batch_job: Option<String>,
}

impl RunState {
    /// A `running` run whose worker stopped renewing its lease.
    pub fn lease_expired(&self, now: f64) -> bool {
        self.status == RunStatus::Running && self.lease_expires.is_none_or(|t| t < now)
    }
}

/// One epoch of training curves.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn stored_words_round_trip_and_unknown_ones_are_errors() {
        let conn = Connection::open_in_memory().unwrap();
        for status in RunStatus::ALL {
            let back: RunStatus = conn.query_row("SELECT ?1", [status], |r| r.get(0)).unwrap();
            assert_eq!(back, status);
            assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), status);
        }
        for kind in EventKind::ALL {
            let back: EventKind = conn.query_row("SELECT ?1", [kind], |r| r.get(0)).unwrap();
            assert_eq!(back, kind);
        }
        // A status this fer-lab does not know is an error, never a guess.
        let err = conn
            .query_row("SELECT 'donee'", [], |r| r.get::<_, RunStatus>(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown run status `donee`"), "{err}");
        assert!(err.contains("queued, running, done"), "{err}");
    }

    #[test]
    fn a_split_is_val_in_evals_and_valid_in_runs() {
        let conn = Connection::open_in_memory().unwrap();
        let stored: String = conn
            .query_row("SELECT ?1", [Split::Val], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, "val");
        assert_eq!(Split::Val.progress_name(), "valid");
        for split in Split::ALL {
            assert_eq!(Split::from_progress_name(split.progress_name()), Ok(split));
            assert_eq!(split.as_str().parse::<Split>(), Ok(split));
        }
        assert!(Split::from_progress_name("val").is_err());
    }
}
