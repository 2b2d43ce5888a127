//! Fused groups: which runs train together as one model, and each one's place in it. A group
//! is how runs execute, not what they are: each member keeps its own rows and results.

use super::reads::StoredRun;
use super::records::RunStatus;
use super::{Store, StoreError, sqlite};
use rusqlite::{OptionalExtension, params};

/// One run of a group, with what its worker needs to train it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GroupMember {
    pub id: String,
    pub status: RunStatus,
    pub run: StoredRun,
}

impl Store {
    /// Whether the schema knows fused groups (version 6 on): readers of an older file, which
    /// they never migrate, show every run as alone.
    pub fn has_fused_groups(&self) -> Result<bool, StoreError> {
        Ok(self.schema_version()? >= 6)
    }

    /// Records that `members` train as group `group`, in this order (a member's place is its
    /// slice of the fused model). Replaces any group a member had before.
    pub fn form_group(&mut self, group: &str, members: &[&str]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "UPDATE runs SET fused_group = NULL, fused_index = NULL WHERE fused_group = ?1",
            [group],
        )
        .map_err(e)?;
        for (i, id) in members.iter().enumerate() {
            tx.execute(
                "UPDATE runs SET fused_group = ?2, fused_index = ?3 WHERE id = ?1",
                params![id, group, i as i64],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// The run trains alone from now on.
    pub fn leave_group(&self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET fused_group = NULL, fused_index = NULL WHERE id = ?1",
                [id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The group a run last trained in, if any.
    pub fn group_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT fused_group FROM runs WHERE id = ?1", [id], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    /// The members of `group` in their order (empty for an unknown group).
    pub fn group_members(&self, group: &str) -> Result<Vec<GroupMember>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, status, config, seed, artifact_dir, data_fingerprint, epochs_done
                 FROM runs WHERE fused_group = ?1 ORDER BY fused_index",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([group], |r| {
            Ok(GroupMember {
                id: r.get(0)?,
                status: r.get(1)?,
                run: StoredRun {
                    config_json: r.get(2)?,
                    seed: r.get::<_, i64>(3)? as u64,
                    artifact_dir: r.get(4)?,
                    data_fingerprint: r.get(5)?,
                    epochs_done: r.get::<_, i64>(6)? as usize,
                },
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, SweepRecord};

    #[test]
    fn a_group_keeps_its_order_and_a_new_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let runs: Vec<RunRecord> = ["a", "b", "c"]
            .iter()
            .map(|id| RunRecord::for_test(*id, 1, 3, vec![]))
            .collect();
        store
            .register_sweep(&SweepRecord::for_test("s", &[]), &runs)
            .unwrap();
        assert!(store.has_fused_groups().unwrap());
        store.form_group("g1", &["c", "a"]).unwrap();
        let ids = |store: &Store, g| -> Vec<String> {
            store
                .group_members(g)
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect()
        };
        assert_eq!(ids(&store, "g1"), ["c", "a"]);
        assert_eq!(store.group_of("a").unwrap().as_deref(), Some("g1"));
        assert_eq!(store.group_of("b").unwrap(), None);
        store.form_group("g2", &["a", "b"]).unwrap();
        assert_eq!(ids(&store, "g1"), ["c"]);
        store.form_group("g1", &["b"]).unwrap();
        assert_eq!(ids(&store, "g1"), ["b"]);
        assert_eq!(store.group_of("c").unwrap(), None, "g1 was formed anew");
        store.leave_group("a").unwrap();
        assert_eq!(store.group_of("a").unwrap(), None);
        // A run trained again from scratch takes its group with it: it cannot resume without it.
        store.form_group("g3", &["a", "c"]).unwrap();
        store.reset_run("c").unwrap();
        assert_eq!(store.group_of("a").unwrap(), None);
        assert_eq!(ids(&store, "g1"), ["b"], "other groups stay");
    }
}
