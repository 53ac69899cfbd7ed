-- Back to one key shared by all users, compared in the table's default
-- collation. Fails (duplicate key) once two users, or two keys differing
-- only in case, have placed orders: those rows must be resolved by hand
-- before going back.
ALTER TABLE orders
  DROP INDEX uq_orders_user_idempotency_key,
  ADD UNIQUE KEY uq_orders_idempotency_key (idempotency_key);
ALTER TABLE orders
  MODIFY idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 NULL;
