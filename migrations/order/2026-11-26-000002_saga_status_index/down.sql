ALTER TABLE saga_states
  DROP INDEX idx_saga_status,
  ADD INDEX idx_saga_status_updated (status, updated_at);
