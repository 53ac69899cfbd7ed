-- Order ids become integers (docs/design/order-ids.md). Existing orders get
-- 1, 2, 3, ... in created_at order; their sagas follow. The mapping from the
-- old UUIDs stays in order_id_map: `dop migrate` carries it to payments_db
-- and inventory_db, which hold the same order ids on other servers, and the
-- old ids can still be looked up there (logs written before the change).
-- Run with no saga in flight and the outboxes and queues drained
-- (docs/operations.md, "Integer order ids"). MySQL 8 and MariaDB.
CREATE TABLE order_id_map (
  old_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  new_id BIGINT NOT NULL,
  UNIQUE KEY uq_order_id_map_new (new_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO order_id_map (old_id, new_id)
  SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) FROM orders;

ALTER TABLE orders ADD COLUMN new_id BIGINT NULL FIRST;
UPDATE orders o JOIN order_id_map m ON m.old_id = o.id SET o.new_id = m.new_id;
ALTER TABLE orders DROP PRIMARY KEY, DROP COLUMN id;
ALTER TABLE orders CHANGE new_id id BIGINT NOT NULL FIRST, ADD PRIMARY KEY (id);

-- A saga without its order cannot exist (both are written in one
-- transaction); if one did, the NOT NULL below stops the migration.
ALTER TABLE saga_states ADD COLUMN new_order_id BIGINT NULL AFTER saga_id;
UPDATE saga_states s JOIN order_id_map m ON m.old_id = s.order_id SET s.new_order_id = m.new_id;
ALTER TABLE saga_states DROP INDEX uq_saga_order, DROP COLUMN order_id;
ALTER TABLE saga_states CHANGE new_order_id order_id BIGINT NOT NULL, ADD UNIQUE KEY uq_saga_order (order_id);

-- The block allocator's one row per id sequence: a replica reserves ids
-- [next_id, next_id + N) by moving next_id on.
CREATE TABLE id_blocks (
  name VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  next_id BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO id_blocks (name, next_id) SELECT 'orders', COALESCE(MAX(id), 0) + 1 FROM orders;
