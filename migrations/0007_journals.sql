-- fer-lab schema, version 7: workers that never open the database (cluster nodes).
-- Released: never edit; add 0008_*.sql.

-- A worker on another machine appends what it records to a journal file on the shared
-- filesystem; the sweep's process merges each file into this database and keeps how far it
-- merged in the same transaction, so every record lands exactly once.
CREATE TABLE journal_offsets (
    file   TEXT PRIMARY KEY,      -- the journal file, relative to its journal folder
    offset INTEGER NOT NULL       -- bytes merged so far; always the end of a complete line
);

-- The batch job that runs a run's worker (a Slurm array task, `1234_5`), so that a relaunch
-- of the sweep finds the jobs still queued or running instead of submitting them again.
ALTER TABLE runs ADD COLUMN batch_job TEXT;
