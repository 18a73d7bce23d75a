-- chip_selection_log had two indexes on `at` (chip_selection_log_at_idx, at DESC, from
-- 0005, and chip_selection_log_age_idx, at, from 0013): a btree is read both ways, so
-- the retention prune uses the first, and every selection-log row (written for each
-- message the pool routes, then updated with its result) maintains one index fewer.
DROP INDEX IF EXISTS chip_selection_log_age_idx;
