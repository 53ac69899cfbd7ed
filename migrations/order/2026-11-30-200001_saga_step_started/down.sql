ALTER TABLE saga_states DROP COLUMN step_started_at;
