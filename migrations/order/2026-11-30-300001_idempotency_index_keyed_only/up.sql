-- The unique index on (user_id, idempotency_key) held an entry for every
-- order, keyed or not, filed under its user: with users spread at random
-- every insert touched a random leaf page, the one random write of placing
-- an order beside the listing index by user, and on a large table a random
-- read from disk (docs/design/keys-that-age.md). The original's clients
-- never send an Idempotency-Key. The index is now over a virtual column
-- that is the user for keyed orders and NULL for the rest: keyless orders
-- file under NULL in order-id (time) order, at the index's recent end, and
-- NULLs never conflict in a unique index. Keyed orders keep the rule of
-- 2026-11-30-000004 (per user, byte for byte). Both statements run on MySQL
-- 8 and MariaDB; the second builds the index over every existing order
-- (about a minute per ten million orders, online).
ALTER TABLE orders
  ADD COLUMN idempotency_user BIGINT GENERATED ALWAYS AS (IF(idempotency_key IS NULL, NULL, user_id)) VIRTUAL;
ALTER TABLE orders
  ADD UNIQUE KEY uq_orders_idempotency (idempotency_user, idempotency_key),
  DROP INDEX uq_orders_user_idempotency_key;
