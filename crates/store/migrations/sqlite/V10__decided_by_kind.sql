-- How who decided an approval was identified (`token`, `open`, `cli`, `mcp`,
-- `runtime`), beside `decided_by`, their name. Approvals decided before this column
-- existed keep it NULL; expired ones were decided by the runtime.
ALTER TABLE approvals ADD COLUMN decided_by_kind TEXT;
UPDATE approvals SET decided_by_kind = 'runtime' WHERE status = 'expired';
