-- fer-lab schema, version 8: what ensembles need.
-- Released: never edit; add 0009_*.sql.

-- The class probabilities a finished run's best model gives every image of val and test, in
-- the split's order, and those images' labels: `fer-lab report --ensemble K` averages them
-- over runs from the database alone (no checkpoint, no data set, no GPU).
CREATE TABLE predictions (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    split  TEXT NOT NULL CHECK (split IN ('val', 'test')),
    n      INTEGER NOT NULL,     -- images
    labels BLOB NOT NULL,        -- n bytes: each image's class id (0 Angry … 6 Neutral)
    probs  BLOB NOT NULL,        -- n × 7 little-endian u16: probability × 65535, rounded
    PRIMARY KEY (run_id, split)
);
