-- Step deadlines (saga.step_timeout, docs/design/barrier.md): when the
-- saga's current step began. updated_at cannot tell: the recovery loop's
-- re-send of a pending command moves it. Sagas that exist start their step
-- at their last update. The deadline check reads the few non-terminal
-- sagas through idx_saga_status and filters on this column, as recovery
-- does on updated_at. MySQL 8 and MariaDB.
ALTER TABLE saga_states
  ADD COLUMN step_started_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) AFTER failed_step;
UPDATE saga_states SET step_started_at = updated_at, updated_at = updated_at;
