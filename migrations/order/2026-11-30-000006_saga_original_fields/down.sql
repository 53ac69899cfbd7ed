-- Back to dop's earlier states: a reserved order is PENDING, a FAILED saga
-- stays at the step it failed at.
UPDATE orders SET status = 'PENDING', updated_at = updated_at
  WHERE status = 'INVENTORY_RESERVED';
UPDATE saga_states
  SET current_step = failed_step, updated_at = updated_at
  WHERE status = 'FAILED' AND failed_step IS NOT NULL;
ALTER TABLE saga_states
  DROP COLUMN failed_step,
  DROP COLUMN retry_count,
  DROP COLUMN last_event_id;
ALTER TABLE orders MODIFY status VARCHAR(16) NOT NULL;
