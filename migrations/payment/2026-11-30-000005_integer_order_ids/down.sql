-- Back to UUID order ids. The integers cannot be turned back into the
-- UUIDs here (the mapping lives in orders_db): each id is written as its
-- decimal text, and a rollback of orders_db must be followed by rewriting
-- these rows from its order_id_map (docs/operations.md).
ALTER TABLE payments ADD COLUMN old_order_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER id;
UPDATE payments SET old_order_id = CAST(order_id AS CHAR);
ALTER TABLE payments DROP INDEX uq_payments_order, DROP COLUMN order_id;
ALTER TABLE payments CHANGE old_order_id order_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, ADD UNIQUE KEY uq_payments_order (order_id);
