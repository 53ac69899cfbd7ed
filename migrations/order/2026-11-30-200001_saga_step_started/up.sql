-- Step deadlines (saga.step_timeout, docs/design/barrier.md): when the
-- saga's current step began. updated_at cannot tell: the recovery loop's
-- re-send of a pending command moves it. Sagas in flight start their step
-- at their last update; finished ones keep the time of the migration, which
-- nothing reads (the deadline check reads only the few sagas in flight,
-- through idx_saga_status, and filters on this column, as recovery does on
-- updated_at). Adding the column is instant on MariaDB 10.4+ and MySQL
-- 8.0.29+, and the UPDATE touches only sagas in flight, so the migration
-- takes moments on a table of ten million sagas (an UPDATE of every row
-- took minutes and a matching undo log). MySQL 8 and MariaDB.
ALTER TABLE saga_states
  ADD COLUMN step_started_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) AFTER failed_step;
UPDATE saga_states SET step_started_at = updated_at, updated_at = updated_at
  WHERE status IN ('IN_PROGRESS', 'COMPENSATING');
