//! Journals: how a worker on another machine (a cluster node) records its runs without ever
//! opening the database. SQLite over a network filesystem is what corrupts other sweep tools'
//! results (WAL needs every process on one host; lock-based modes break on NFS and Lustre), so
//! the database stays on the machine of the sweep's process, and workers append to files.
//!
//! A journal folder, on the filesystem the workers and the sweep's process share:
//!
//! - `tasks/<name>.json`: what a worker of run (or fused group) `name` needs, written by the
//!   sweep's process when it launches the worker: each run as the database has it then, and how
//!   far its journal had been merged ([`Task`]).
//! - `runs/<run>.jsonl`: what the run's workers recorded, one JSON [`Entry`] per line, appended.
//! - `pruning.json`: every run's best val accuracy so far at each epoch, rewritten by the sweep's
//!   process as it merges, for the pruning rule ([`Pruning`]).
//!
//! **Concurrency contract.** One worker appends to a run's file at a time (the run's lease says
//! which); a line is one `write` and ends in a newline. Only the sweep's process writes SQLite:
//! [`Store::merge_journals`] reads complete lines past the offset it merged to and applies them
//! together with the new offset in one transaction. A crash of the worker leaves at most a
//! partial last line, which is never merged; a crash of the merger rolls back the transaction
//! and the next merge applies the same lines. Every record lands exactly once.

use super::{
    Beat, EpochRow, GroupMember, Recorder, RunStatus, Store, StoreError, StoredRun, now_unix,
};
use crate::data::Split;
use crate::metrics::Evaluation;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// One thing a worker recorded about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    Start {
        device: String,
        params: usize,
        flops: u64,
        resume_from: Option<usize>,
    },
    Epoch {
        row: EpochRow,
    },
    Beat {
        pid: u32,
        /// When it beat: the lease runs from then, however late the merge.
        at: f64,
        lease_secs: f64,
        wall_secs: f64,
        split: Option<Split>,
        done: usize,
        total: usize,
        first_step_at: Option<f64>,
    },
    Finish {
        best_epoch: usize,
        wall_secs: f64,
        evals: Vec<(Split, Evaluation, usize)>,
    },
    End {
        status: RunStatus,
        wall_secs: Option<f64>,
        error: Option<String>,
        stopped_epoch: Option<usize>,
    },
}

/// A run as its worker finds it in a task file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRun {
    pub member: GroupMember,
    pub epochs: Vec<EpochRow>,
    pub wall_secs: f64,
    /// How far `runs/<id>.jsonl` was merged when the task was written: what the worker
    /// replays on top of this snapshot (a requeued task's own earlier lines).
    pub merged: u64,
}

/// What a worker of one run, or of one fused group (its members in order), needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub runs: Vec<TaskRun>,
}

/// The pruning rule's view of the sweep: for each run, its best val accuracy up to epoch e at
/// index e − 1.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pruning {
    pub best_so_far: HashMap<String, Vec<f64>>,
}

/// A journal folder's files.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    pub fn task(&self, name: &str) -> PathBuf {
        self.dir.join("tasks").join(format!("{name}.json"))
    }
    pub fn run(&self, run: &str) -> PathBuf {
        self.dir.join("runs").join(format!("{run}.jsonl"))
    }
    fn run_key(run: &str) -> String {
        format!("runs/{run}.jsonl")
    }
    pub fn pruning(&self) -> PathBuf {
        self.dir.join("pruning.json")
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Journal(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename: a reader sees the old file
/// or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| io_error(folder, e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// A worker's journal: the task's snapshot, brought up to date with what earlier attempts of
/// this task appended, and the files it appends to.
pub struct Journal {
    layout: Layout,
    runs: Vec<TaskRun>,
}

impl Journal {
    /// The journal of task `name` in `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Journal, StoreError> {
        let layout = Layout::new(dir);
        let path = layout.task(name);
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        let task: Task = serde_json::from_str(&text).map_err(|e| io_error(&path, e))?;
        let mut journal = Journal {
            layout,
            runs: task.runs,
        };
        for i in 0..journal.runs.len() {
            let run = &journal.runs[i];
            let path = journal.layout.run(&run.member.id);
            drop_partial_line(&path)?;
            let (entries, _) = read_complete(&path, run.merged)?;
            for entry in entries {
                journal.apply(i, &entry);
            }
        }
        Ok(journal)
    }

    fn index(&self, run: &str) -> Result<usize, StoreError> {
        self.runs
            .iter()
            .position(|r| r.member.id == run)
            .ok_or_else(|| StoreError::Journal(format!("run {run} is not in this task")))
    }

    /// What merging `entry` does to the database, done to the snapshot.
    fn apply(&mut self, i: usize, entry: &Entry) {
        let run = &mut self.runs[i];
        match entry {
            Entry::Start { resume_from, .. } => {
                let kept = resume_from.unwrap_or(0);
                run.epochs.retain(|r| r.epoch <= kept);
                run.member.run.epochs_done = kept;
                run.member.status = RunStatus::Running;
            }
            Entry::Epoch { row } => {
                run.epochs.retain(|r| r.epoch != row.epoch);
                run.epochs.push(*row);
                run.epochs.sort_by_key(|r| r.epoch);
                run.member.run.epochs_done = run.member.run.epochs_done.max(row.epoch);
            }
            Entry::Beat { wall_secs, .. } => run.wall_secs = *wall_secs,
            Entry::Finish { wall_secs, .. } => {
                run.member.status = RunStatus::Done;
                run.wall_secs = *wall_secs;
            }
            Entry::End {
                status, wall_secs, ..
            } => {
                run.member.status = *status;
                run.wall_secs = wall_secs.unwrap_or(run.wall_secs);
            }
        }
    }

    /// Appends `entry` to `run`'s file (one write of one line) and applies it here.
    fn append(&mut self, run: &str, entry: Entry) -> Result<(), StoreError> {
        let i = self.index(run)?;
        let path = self.layout.run(run);
        let folder = path.parent().expect("a run file has a folder");
        std::fs::create_dir_all(folder).map_err(|e| io_error(folder, e))?;
        let mut line = serde_json::to_string(&entry).expect("entries serialise");
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        file.write_all(line.as_bytes())
            .map_err(|e| io_error(&path, e))?;
        // Beats are many and only ever superseded; anything else must survive a crash.
        if !matches!(entry, Entry::Beat { .. }) {
            file.sync_data().map_err(|e| io_error(&path, e))?;
        }
        self.apply(i, &entry);
        Ok(())
    }
}

impl Recorder for Journal {
    fn stored_run(&self, id: &str) -> Result<Option<StoredRun>, StoreError> {
        Ok(self
            .runs
            .iter()
            .find(|r| r.member.id == id)
            .map(|r| r.member.run.clone()))
    }
    fn group_members(&self, _group: &str) -> Result<Vec<GroupMember>, StoreError> {
        Ok(self.runs.iter().map(|r| r.member.clone()).collect())
    }
    fn start_attempt(
        &mut self,
        id: &str,
        device: &str,
        params: usize,
        flops: u64,
        resume_from: Option<usize>,
    ) -> Result<f64, StoreError> {
        let wall = self.runs[self.index(id)?].wall_secs;
        self.append(
            id,
            Entry::Start {
                device: device.into(),
                params,
                flops,
                resume_from,
            },
        )?;
        Ok(wall)
    }
    fn epoch_rows(&self, run: &str) -> Result<Vec<EpochRow>, StoreError> {
        Ok(self.runs[self.index(run)?].epochs.clone())
    }
    fn record_epoch(&mut self, run: &str, row: &EpochRow) -> Result<(), StoreError> {
        self.append(run, Entry::Epoch { row: *row })
    }
    fn others_best_val_acc(
        &self,
        _sweep_id: i64,
        run: &str,
        epoch: usize,
    ) -> Result<Vec<f64>, StoreError> {
        let path = self.layout.pruning();
        let pruning: Pruning = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| io_error(&path, e))?,
            // Nothing merged yet: no other run has reached any epoch.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Pruning::default(),
            Err(e) => return Err(io_error(&path, e)),
        };
        Ok(pruning
            .best_so_far
            .iter()
            .filter(|(id, _)| id.as_str() != run)
            .filter_map(|(_, best)| best.get(epoch.checked_sub(1)?).copied())
            .collect())
    }
    fn beat(
        &mut self,
        run: &str,
        pid: u32,
        lease_secs: f64,
        beat: &Beat,
    ) -> Result<(), StoreError> {
        self.append(
            run,
            Entry::Beat {
                pid,
                at: now_unix(),
                lease_secs,
                wall_secs: beat.wall_secs,
                split: beat.split,
                done: beat.done,
                total: beat.total,
                first_step_at: beat.first_step_at,
            },
        )
    }
    fn finish_run(
        &mut self,
        id: &str,
        best_epoch: usize,
        wall_secs: f64,
        evals: &[(Split, &Evaluation, usize)],
    ) -> Result<(), StoreError> {
        let evals = evals
            .iter()
            .map(|(split, eval, n)| (*split, (*eval).clone(), *n))
            .collect();
        self.append(
            id,
            Entry::Finish {
                best_epoch,
                wall_secs,
                evals,
            },
        )
    }
    fn end_run(
        &mut self,
        id: &str,
        status: RunStatus,
        wall_secs: Option<f64>,
        error: Option<&str>,
        stopped_epoch: Option<usize>,
    ) -> Result<(), StoreError> {
        self.append(
            id,
            Entry::End {
                status,
                wall_secs,
                error: error.map(String::from),
                stopped_epoch,
            },
        )
    }
    fn epochs_done(&self, run: &str) -> Result<Option<usize>, StoreError> {
        Ok(self
            .runs
            .iter()
            .find(|r| r.member.id == run)
            .map(|r| r.member.run.epochs_done))
    }
}

/// Cuts what a killed worker left of a line it was writing: this worker appends after it, and
/// no merge ever read it (merges take complete lines only).
fn drop_partial_line(path: &Path) -> Result<(), StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path, e)),
    };
    if bytes.last().is_none_or(|&b| b == b'\n') {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.set_len(keep as u64).map_err(|e| io_error(path, e))
}

/// The complete lines of `path` past byte `from`, parsed, and the offset after the last one.
/// A missing file has none. A line that does not parse is an error: it can only be another
/// program's, since a worker writes whole lines.
fn read_complete(path: &Path, from: u64) -> Result<(Vec<Entry>, u64), StoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), from)),
        Err(e) => return Err(io_error(path, e)),
    };
    file.seek(std::io::SeekFrom::Start(from))
        .map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Ok((Vec::new(), from));
    };
    let mut entries = Vec::new();
    for (n, line) in bytes[..end].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry = serde_json::from_slice(line)
            .map_err(|e| io_error(path, format!("line {} past byte {from}: {e}", n + 1)))?;
        entries.push(entry);
    }
    Ok((entries, from + end as u64 + 1))
}

/// What one merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Entries applied to the database.
    pub entries: usize,
    /// Runs whose file had new complete lines.
    pub runs: Vec<String>,
    /// Runs whose journal could not be read or has a line that is not an entry, and why:
    /// skipped (the others merge), and tried again at the next merge.
    pub unreadable: Vec<(String, String)>,
}

impl Store {
    /// How far a run's journal is merged.
    pub fn journal_offset(&self, run: &str) -> Result<u64, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT offset FROM journal_offsets WHERE file = ?1",
                [Layout::run_key(run)],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.unwrap_or(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Merges the new complete lines of the journals of `runs` in `dir` into the database, each
    /// run's lines and its new offset in one transaction, then rewrites the pruning snapshot of
    /// `sweep_id` when anything was merged.
    pub fn merge_journals(
        &mut self,
        dir: &Path,
        sweep_id: i64,
        runs: &[String],
    ) -> Result<Merged, StoreError> {
        let layout = Layout::new(dir);
        let mut merged = Merged::default();
        for run in runs {
            let from = self.journal_offset(run)?;
            let (entries, to) = match read_complete(&layout.run(run), from) {
                Ok(read) => read,
                Err(e) => {
                    merged.unreadable.push((run.clone(), e.to_string()));
                    continue;
                }
            };
            if to == from {
                continue;
            }
            self.merge_entries(run, &entries, to)?;
            merged.entries += entries.len();
            merged.runs.push(run.clone());
        }
        if !merged.runs.is_empty() {
            self.write_pruning(&layout, sweep_id)?;
        }
        Ok(merged)
    }

    /// Applies `entries` of `run` and records `offset`, all or nothing.
    fn merge_entries(
        &mut self,
        run: &str,
        entries: &[Entry],
        offset: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute_batch("SAVEPOINT journal_merge")
            .map_err(|e| self.err(e))?;
        let applied = self.apply_entries(run, entries).and_then(|()| {
            self.conn
                .execute(
                    "INSERT INTO journal_offsets (file, offset) VALUES (?1, ?2)
                     ON CONFLICT (file) DO UPDATE SET offset = ?2",
                    rusqlite::params![Layout::run_key(run), offset as i64],
                )
                .map(|_| ())
                .map_err(|e| self.err(e))
        });
        let end = if applied.is_ok() {
            "RELEASE journal_merge"
        } else {
            "ROLLBACK TO journal_merge; RELEASE journal_merge"
        };
        self.conn.execute_batch(end).map_err(|e| self.err(e))?;
        applied
    }

    fn apply_entries(&mut self, run: &str, entries: &[Entry]) -> Result<(), StoreError> {
        // Only the newest beat matters; the others were superseded before anyone read them.
        let last_beat = entries
            .iter()
            .rposition(|e| matches!(e, Entry::Beat { .. }));
        for (i, entry) in entries.iter().enumerate() {
            match entry {
                Entry::Start {
                    device,
                    params,
                    flops,
                    resume_from,
                } => {
                    self.start_attempt(run, device, *params, *flops, *resume_from)?;
                }
                Entry::Epoch { row } => {
                    self.record_epoch(run, row)?;
                }
                Entry::Beat {
                    pid,
                    at,
                    lease_secs,
                    wall_secs,
                    split,
                    done,
                    total,
                    first_step_at,
                } if Some(i) == last_beat => {
                    let left = lease_secs - (now_unix() - at);
                    self.heartbeat(run, *pid, left, *wall_secs)?;
                    self.set_progress(run, *split, *done, *total)?;
                    if let Some(at) = first_step_at {
                        self.set_first_step(run, *at)?;
                    }
                }
                Entry::Beat { .. } => {}
                Entry::Finish {
                    best_epoch,
                    wall_secs,
                    evals,
                } => {
                    let evals: Vec<(Split, &Evaluation, usize)> =
                        evals.iter().map(|(s, e, n)| (*s, e, *n)).collect();
                    self.finish_run(run, *best_epoch, *wall_secs, &evals)?;
                }
                Entry::End {
                    status,
                    wall_secs,
                    error,
                    stopped_epoch,
                } => {
                    self.end_run(run, *status, *wall_secs, error.as_deref(), *stopped_epoch)?;
                }
            }
        }
        Ok(())
    }

    /// Rewrites `pruning.json`: every run of the sweep's best val accuracy so far per epoch.
    fn write_pruning(&self, layout: &Layout, sweep_id: i64) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.run_id, e.epoch, e.val_acc FROM epochs e
                 JOIN sweep_runs sr ON sr.run_id = e.run_id AND sr.sweep_id = ?1
                 ORDER BY e.run_id, e.epoch",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, i64, Option<f64>)> = stmt
            .query_map([sweep_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut pruning = Pruning::default();
        for (run, epoch, acc) in rows {
            let best = pruning.best_so_far.entry(run).or_default();
            if best.len() + 1 != epoch as usize {
                continue;
            }
            let before = best.last().copied().unwrap_or(f64::NAN);
            best.push(acc.map_or(before, |a| a.max(before)));
        }
        let bytes = serde_json::to_vec(&pruning).expect("the snapshot serialises");
        write_atomically(&layout.pruning(), &bytes)
    }

    /// Writes the task file of `name` for `runs` (one, or a group's members in order), from
    /// what the database holds now: what their worker reads instead of the database.
    pub fn write_task(&self, dir: &Path, name: &str, runs: &[String]) -> Result<(), StoreError> {
        let mut task = Task {
            runs: Vec::with_capacity(runs.len()),
        };
        for id in runs {
            let run = self
                .stored_run(id)?
                .ok_or_else(|| StoreError::Journal(format!("run {id} is not in the database")))?;
            let state = self
                .run_state(id)?
                .ok_or_else(|| StoreError::Journal(format!("run {id} is not in the database")))?;
            let wall_secs: Option<f64> = self
                .conn
                .query_row("SELECT wall_secs FROM runs WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .map_err(|e| self.err(e))?;
            task.runs.push(TaskRun {
                member: GroupMember {
                    id: id.clone(),
                    status: state.status,
                    run,
                },
                epochs: self.epoch_rows(id)?,
                wall_secs: wall_secs.unwrap_or(0.0),
                merged: self.journal_offset(id)?,
            });
        }
        let bytes = serde_json::to_vec_pretty(&task).expect("a task serialises");
        write_atomically(&Layout::new(dir).task(name), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, SweepRecord};

    fn row(epoch: usize, acc: f64) -> EpochRow {
        EpochRow {
            epoch,
            train_loss: Some(1.0 / epoch as f64),
            val_acc: Some(acc),
            ..EpochRow::default()
        }
    }

    /// The database's rows of run `r`: (epoch, val acc), its status and epochs done.
    fn db_rows(store: &Store, run: &str) -> (Vec<(usize, Option<f64>)>, RunStatus, usize) {
        let state = store.run_state(run).unwrap().unwrap();
        let rows = store.epoch_rows(run).unwrap();
        (
            rows.iter().map(|r| (r.epoch, r.val_acc)).collect(),
            state.status,
            state.epochs_done,
        )
    }

    #[test]
    fn a_journal_lands_in_the_database_exactly_once_whatever_crashes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = Store::open(&tmp.path().join("db.sqlite")).unwrap();
        let runs: Vec<RunRecord> = ["a", "b"]
            .iter()
            .map(|id| RunRecord::for_test(*id, 1, 3, vec![]))
            .collect();
        let sweep = store
            .register_sweep(&SweepRecord::for_test("s", &[]), &runs)
            .unwrap();
        let ids = ["a".to_string(), "b".to_string()];
        store.claim_run("a", "slurm#1", 20.0).unwrap();
        store.write_task(&dir, "a", &ids[..1]).unwrap();

        // The worker: a start, two epochs, and half a line when it is killed.
        let mut journal = Journal::open(&dir, "a").unwrap();
        assert_eq!(journal.stored_run("a").unwrap().unwrap().epochs_done, 0);
        journal.start_attempt("a", "cuda:0", 10, 20, None).unwrap();
        journal.record_epoch("a", &row(1, 0.3)).unwrap();
        journal.record_epoch("a", &row(2, 0.4)).unwrap();
        let file = Layout::new(&dir).run("a");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(b"{\"entry\": \"epo").unwrap();

        // The merge takes the complete lines, once; the partial one waits.
        let merged = store.merge_journals(&dir, sweep, &ids).unwrap();
        assert_eq!(merged.entries, 3);
        assert_eq!(
            db_rows(&store, "a"),
            (vec![(1, Some(0.3)), (2, Some(0.4))], RunStatus::Running, 2)
        );
        assert_eq!(store.merge_journals(&dir, sweep, &ids).unwrap().entries, 0);
        let pruning: Pruning =
            serde_json::from_str(&std::fs::read_to_string(Layout::new(&dir).pruning()).unwrap())
                .unwrap();
        assert_eq!(pruning.best_so_far["a"], [0.3, 0.4]);

        // A merger that died mid-way rolled back: the same lines apply once more, and nothing
        // doubles. (A failing entry rolls its whole batch back, offset included.)
        let before = store.journal_offset("a").unwrap();
        let bad = store.merge_entries(
            "a",
            &[
                Entry::Epoch { row: row(3, 0.9) },
                Entry::End {
                    status: RunStatus::Queued,
                    wall_secs: None,
                    error: None,
                    stopped_epoch: None,
                },
            ],
            before + 100,
        );
        assert!(bad.is_err(), "queued is not an end");
        assert_eq!(store.journal_offset("a").unwrap(), before);
        assert_eq!(db_rows(&store, "a").0.len(), 2, "epoch 3 rolled back");

        // The task is requeued: its next worker cuts the killed one's half line, sees its own
        // epochs, resumes from epoch 2, and records the rest.
        let mut again = Journal::open(&dir, "a").unwrap();
        assert!(std::fs::read_to_string(&file).unwrap().ends_with("}\n"));
        assert_eq!(again.epochs_done("a").unwrap(), Some(2));
        assert_eq!(again.epoch_rows("a").unwrap().len(), 2);
        again.start_attempt("a", "cuda:0", 10, 20, Some(2)).unwrap();
        again.record_epoch("a", &row(3, 0.35)).unwrap();
        let mut confusion = crate::metrics::Confusion::default();
        confusion.add(1, 1);
        let eval = Evaluation::from_confusion(confusion, 0.5);
        again
            .finish_run(
                "a",
                2,
                9.0,
                &[(Split::Val, &eval, 7), (Split::Test, &eval, 7)],
            )
            .unwrap();
        store.merge_journals(&dir, sweep, &ids).unwrap();
        assert_eq!(
            db_rows(&store, "a"),
            (
                vec![(1, Some(0.3)), (2, Some(0.4)), (3, Some(0.35))],
                RunStatus::Done,
                3
            )
        );
        // Another program's line in b's journal: b is skipped and said, a merges on.
        std::fs::create_dir_all(Layout::new(&dir).run("b").parent().unwrap()).unwrap();
        std::fs::write(Layout::new(&dir).run("b"), "not json\n").unwrap();
        let merged = store.merge_journals(&dir, sweep, &ids).unwrap();
        assert_eq!(merged.unreadable.len(), 1);
        assert!(merged.unreadable[0].1.contains("line 1"), "{merged:?}");
        std::fs::remove_file(Layout::new(&dir).run("b")).unwrap();
        // The pruning view of another run sees a's best so far.
        store.write_task(&dir, "b", &ids[1..]).unwrap();
        let b = Journal::open(&dir, "b").unwrap();
        assert_eq!(b.others_best_val_acc(sweep, "b", 3).unwrap(), [0.4]);
        assert_eq!(
            b.others_best_val_acc(sweep, "b", 4).unwrap(),
            Vec::<f64>::new()
        );
    }
}
