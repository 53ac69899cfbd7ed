-- The original's saga and order states (docs/contract.md section 2):
-- - saga_states gains the original's last_event_id (the message id of the
--   last event that moved the saga) and retry_count (how many times its
--   pending command was sent again), and failed_step: the step a FAILED saga
--   failed at, since a FAILED saga's current_step is now DONE, as in the
--   original (it tells a failed reserve from a failed compensation, which
--   an operator's retry and the audit need);
-- - an order whose stock is reserved is INVENTORY_RESERVED (18 characters:
--   the status column widens).
-- Existing rows move to the new states. All statements run on MySQL 8 and
-- MariaDB.
ALTER TABLE orders MODIFY status VARCHAR(32) NOT NULL;
ALTER TABLE saga_states
  ADD COLUMN last_event_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER failure_reason,
  ADD COLUMN retry_count INT NOT NULL DEFAULT 0 AFTER last_event_id,
  ADD COLUMN failed_step VARCHAR(32) NULL AFTER retry_count;
UPDATE saga_states
  SET failed_step = current_step, current_step = 'DONE', updated_at = updated_at
  WHERE status = 'FAILED' AND current_step <> 'DONE';
UPDATE orders o JOIN saga_states s ON s.order_id = o.id
  SET o.status = 'INVENTORY_RESERVED', o.updated_at = o.updated_at
  WHERE o.status = 'PENDING' AND s.status = 'IN_PROGRESS'
    AND s.current_step = 'PROCESSING_PAYMENT';
