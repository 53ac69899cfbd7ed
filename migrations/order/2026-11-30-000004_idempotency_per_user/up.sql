-- An Idempotency-Key belongs to its user and is compared byte for byte
-- (docs/contract.md section 4): two users may use the same key, and `abc`
-- and `ABC` are two keys. The column gets a binary collation (the table's
-- default, utf8mb4_general_ci on MariaDB and utf8mb4_0900_ai_ci on MySQL 8,
-- ignores case and, on MySQL 8, trailing-space and accent differences) and
-- the unique index covers (user_id, idempotency_key) instead of the key
-- alone. Both statements run on MySQL 8 and MariaDB.
ALTER TABLE orders
  MODIFY idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
ALTER TABLE orders
  DROP INDEX uq_orders_idempotency_key,
  ADD UNIQUE KEY uq_orders_user_idempotency_key (user_id, idempotency_key);
