//! Training curves, one row per epoch.

use super::records::{EPOCH_COLUMNS, EpochRow};
use super::{Store, StoreError, sqlite};
use rusqlite::params;

impl Store {
    /// Writes one epoch's curves (the training hook calls this as each epoch ends).
    /// The row and the run's progress go in one transaction; the time it took is stored with
    /// the row (`write_ms`) and returned.
    pub fn record_epoch(&mut self, run_id: &str, row: &EpochRow) -> Result<f64, StoreError> {
        let started = std::time::Instant::now();
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        // A savepoint: alone it is a transaction, and a journal merge nests it in its own.
        let tx = self.conn.savepoint().map_err(e)?;
        tx.execute(
            "INSERT INTO epochs (run_id, epoch, train_loss, train_acc, val_loss, val_acc, lr, secs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (run_id, epoch) DO UPDATE SET train_loss = ?3, train_acc = ?4,
                 val_loss = ?5, val_acc = ?6, lr = ?7, secs = ?8",
            params![
                run_id,
                row.epoch as i64,
                row.train_loss,
                row.train_acc,
                row.val_loss,
                row.val_acc,
                row.lr,
                row.secs
            ],
        )
        .map_err(e)?;
        tx.execute(
            "UPDATE runs SET epochs_done = max(epochs_done, ?2) WHERE id = ?1",
            params![run_id, row.epoch as i64],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        self.conn
            .execute(
                "UPDATE epochs SET write_ms = ?3 WHERE run_id = ?1 AND epoch = ?2",
                params![run_id, row.epoch as i64, ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(ms)
    }

    /// Every recorded epoch of a run, in order.
    pub fn epoch_rows(&self, run_id: &str) -> Result<Vec<EpochRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {EPOCH_COLUMNS} FROM epochs WHERE run_id = ?1 ORDER BY epoch"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| EpochRow::from_row(r, 0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Per-epoch val accuracy of a run, in epoch order.
    pub fn val_accuracies(&self, run_id: &str) -> Result<Vec<(usize, f64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT epoch, val_acc FROM epochs WHERE run_id = ?1 AND val_acc IS NOT NULL
                 ORDER BY epoch",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| Ok((r.get::<_, i64>(0)? as usize, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}
