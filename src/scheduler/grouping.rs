//! Which runs launch together: the scheduler's half of fused runs ([`crate::train::group`]).
//!
//! A run that a fused group was training when it stopped resumes with that group, whatever
//! `--fuse` says now: only the same group resumes its checkpoint bitwise. A run with its own
//! checkpoint resumes alone. Any other run takes with it, in queue order, the queued runs it
//! can fuse with ([`group::fusable`]: same model shape, batch size, epochs and optimizer kind)
//! up to the device's group size, and the group is recorded before it is claimed.

use super::Planned;
use crate::store::{Store, StoreError};
use crate::train::{self, group};
use std::collections::VecDeque;
use std::path::PathBuf;

/// The runs one worker trains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// One run, or a group's members that train now, in member order.
    pub runs: Vec<String>,
    pub group: Option<FusedGroup>,
}

/// A group a batch trains in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusedGroup {
    pub id: String,
    /// `results/<sweep>/groups/<id>/`: its checkpoints and its worker's log.
    pub dir: PathBuf,
}

/// The group `id` resumes with, when it has one with a checkpoint and every other member of it
/// is queued here or ended; the queued members leave `queue`.
fn resumable_group(
    store: &Store,
    planned: &Planned,
    queue: &mut VecDeque<String>,
) -> Result<Option<Batch>, StoreError> {
    let Some(gid) = store.group_of(&planned.id)? else {
        return Ok(None);
    };
    let dir = group::group_dir(&planned.artifact_dir, &gid);
    let members = store.group_members(&gid)?;
    let most = members.iter().map(|m| m.run.epochs_done).max().unwrap_or(0);
    if most == 0 || group::resumable_epoch(&dir, most).is_none() {
        return Ok(None);
    }
    let waiting = |m: &crate::store::GroupMember| m.id == planned.id || queue.contains(&m.id);
    // A member queued or running elsewhere is in the way; one that ended keeps its slice.
    if !members.iter().all(|m| waiting(m) || m.status.has_ended()) {
        return Ok(None);
    }
    let runs: Vec<String> = members
        .iter()
        .filter(|m| waiting(m))
        .map(|m| m.id.clone())
        .collect();
    queue.retain(|q| !runs.contains(q));
    Ok(Some(Batch {
        runs,
        group: Some(FusedGroup { id: gid, dir }),
    }))
}

/// Whether a run resumes from a checkpoint of its own or of its group's: it does not join a
/// new group.
fn resumes(store: &Store, planned: &Planned) -> Result<bool, StoreError> {
    let done = store.run_state(&planned.id)?.map_or(0, |s| s.epochs_done);
    if done == 0 {
        return Ok(false);
    }
    if train::resumable_epoch(&planned.artifact_dir, done).is_some() {
        return Ok(true);
    }
    Ok(match store.group_of(&planned.id)? {
        Some(gid) => {
            group::resumable_epoch(&group::group_dir(&planned.artifact_dir, &gid), done).is_some()
        }
        None => false,
    })
}

/// What launches with `first` (just taken from the front of `queue`): its group to resume, a
/// new group of up to `size` runs (recorded in the store), or `first` alone. `planned` finds
/// a queued run's plan.
pub fn batch<'p>(
    store: &mut Store,
    first: &'p Planned,
    size: usize,
    queue: &mut VecDeque<String>,
    planned: impl Fn(&str) -> &'p Planned,
) -> Result<Batch, StoreError> {
    if let Some(batch) = resumable_group(store, first, queue)? {
        return Ok(batch);
    }
    let alone = Batch {
        runs: vec![first.id.clone()],
        group: None,
    };
    if size <= 1 || resumes(store, first)? {
        store.leave_group(&first.id)?;
        return Ok(alone);
    }
    let mut runs = vec![first.id.clone()];
    let mut i = 0;
    while runs.len() < size && i < queue.len() {
        let other = planned(&queue[i]);
        if group::fusable(&first.run.config, &other.run.config).is_ok() && !resumes(store, other)? {
            runs.push(queue.remove(i).expect("i < queue.len()"));
        } else {
            i += 1;
        }
    }
    if runs.len() == 1 {
        store.leave_group(&first.id)?;
        return Ok(alone);
    }
    let ids: Vec<&str> = runs.iter().map(String::as_str).collect();
    let id = group::group_id(&ids);
    store.form_group(&id, &ids)?;
    Ok(Batch {
        group: Some(FusedGroup {
            dir: group::group_dir(&first.artifact_dir, &id),
            id,
        }),
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, RunStatus, SweepRecord};
    use crate::sweep::PlannedRun;
    use std::path::Path;

    fn planned(id: &str, dir: &Path, epochs: usize) -> Planned {
        let config = crate::config::RunConfig {
            epochs,
            ..Default::default()
        };
        Planned {
            id: id.into(),
            run: PlannedRun {
                config,
                seed: 1,
                swept: Vec::new(),
            },
            artifact_dir: dir.join("s").join(id),
            label: String::new(),
        }
    }

    #[test]
    fn queued_runs_that_fuse_go_together_up_to_the_size_and_a_group_resumes_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        // e has other epochs: it cannot fuse with the rest.
        let plans: Vec<Planned> = ["a", "b", "e", "c", "d"]
            .iter()
            .map(|id| planned(id, dir.path(), if *id == "e" { 3 } else { 2 }))
            .collect();
        let records: Vec<RunRecord> = plans
            .iter()
            .map(|p| RunRecord::for_test(p.id.clone(), 1, p.run.config.epochs, vec![]))
            .collect();
        store
            .register_sweep(&SweepRecord::for_test("s", &[]), &records)
            .unwrap();
        let find = |id: &str| plans.iter().find(|p| p.id == id).unwrap();
        let mut queue: VecDeque<String> = ["b", "e", "c", "d"].map(String::from).into();

        let first = batch(&mut store, find("a"), 3, &mut queue, find).unwrap();
        assert_eq!(first.runs, ["a", "b", "c"]);
        let g = first.group.clone().unwrap();
        assert_eq!(g.dir, dir.path().join("s/groups").join(&g.id));
        assert_eq!(queue, ["e", "d"]);
        assert_eq!(store.group_of("c").unwrap(), Some(g.id.clone()));

        // Off: one at a time.
        let mut q = VecDeque::from(["d".to_string()]);
        let alone = batch(&mut store, find("e"), 1, &mut q, find).unwrap();
        assert_eq!(
            (alone.runs, alone.group, q.len()),
            (vec!["e".into()], None, 1)
        );

        // The group trained an epoch and was killed; b was pruned meanwhile. a comes back
        // first and takes c with it, as members 0 and 2 of the same group, even with fusion
        // off now; b's slice stays.
        std::fs::create_dir_all(&g.dir).unwrap();
        for f in ["group-model-1.bpk", "group-optim-1.bpk"] {
            std::fs::write(g.dir.join(f), b"x").unwrap();
        }
        for id in ["a", "b", "c"] {
            let row = crate::store::EpochRow {
                epoch: 1,
                ..Default::default()
            };
            store.record_epoch(id, &row).unwrap();
        }
        store
            .end_run("b", RunStatus::Pruned, None, None, Some(1))
            .unwrap();
        let mut queue: VecDeque<String> = ["d", "c"].map(String::from).into();
        let resumed = batch(&mut store, find("a"), 1, &mut queue, find).unwrap();
        assert_eq!(resumed.runs, ["a", "c"]);
        assert_eq!(resumed.group.unwrap().id, g.id);
        assert_eq!(queue, ["d"]);

        // A member queued nowhere here (running elsewhere): the group cannot resume, and a run
        // with a group checkpoint joins no new group either.
        let mut queue: VecDeque<String> = ["d".to_string()].into();
        let mut store_c = store;
        store_c.claim_run("c", "cpu#9", 20.0).unwrap();
        let solo = batch(&mut store_c, find("a"), 4, &mut queue, find).unwrap();
        assert_eq!(solo.runs, ["a"]);
        assert_eq!(store_c.group_of("a").unwrap(), None);
    }
}
