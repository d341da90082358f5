-- The version of the binary each worker runs (`runtime overview` lists workers with
-- it). Workers recorded before this column existed show an empty version.
ALTER TABLE workers ADD COLUMN version TEXT NOT NULL DEFAULT '';
