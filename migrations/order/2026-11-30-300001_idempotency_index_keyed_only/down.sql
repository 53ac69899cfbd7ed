ALTER TABLE orders
  ADD UNIQUE KEY uq_orders_user_idempotency_key (user_id, idempotency_key),
  DROP INDEX uq_orders_idempotency;
ALTER TABLE orders
  DROP COLUMN idempotency_user;
