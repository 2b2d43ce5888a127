-- fer-lab schema, version 6: runs that train together as one fused model.
-- Released: never edit; add 0007_*.sql.

-- A fused group is how runs execute, not what they are: each member keeps its id, rows and
-- results. The group and a member's place in it are kept so that a killed group resumes as
-- the same group from its checkpoint (results/<sweep>/groups/<group>/); NULL for a run that
-- trains alone.
ALTER TABLE runs ADD COLUMN fused_group TEXT;
ALTER TABLE runs ADD COLUMN fused_index INTEGER;
CREATE INDEX runs_by_fused_group ON runs (fused_group, fused_index);
