-- Back to UUID order ids. The integers cannot be turned back into the
-- UUIDs here (the mapping lives in orders_db): each id is written as its
-- decimal text, and a rollback of orders_db must be followed by rewriting
-- these rows from its order_id_map (docs/operations.md).
ALTER TABLE inventory_logs ADD COLUMN old_order_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER id;
UPDATE inventory_logs SET old_order_id = CAST(order_id AS CHAR);
ALTER TABLE inventory_logs DROP INDEX uq_inventory_logs_order_action, DROP COLUMN order_id;
ALTER TABLE inventory_logs CHANGE old_order_id order_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, ADD UNIQUE KEY uq_inventory_logs_order_action (order_id, action);
