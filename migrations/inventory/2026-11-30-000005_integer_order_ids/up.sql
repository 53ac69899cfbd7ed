-- Order ids become integers (docs/design/order-ids.md). The new id of each
-- order comes from orders_db, another server in production: `dop migrate`
-- copies the mapping (old UUID -> new integer) of the orders this database
-- names into order_id_map before this runs, and refuses to run it if a row
-- names an order it cannot map. On an empty table the map is not needed.
-- The map is dropped at the end; orders_db keeps the full one.
CREATE TABLE IF NOT EXISTS order_id_map (
  old_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  new_id BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
ALTER TABLE inventory_logs ADD COLUMN new_order_id BIGINT NULL AFTER id;
UPDATE inventory_logs t JOIN order_id_map m ON m.old_id = t.order_id SET t.new_order_id = m.new_id;
ALTER TABLE inventory_logs DROP INDEX uq_inventory_logs_order_action, DROP COLUMN order_id;
ALTER TABLE inventory_logs CHANGE new_order_id order_id BIGINT NOT NULL, ADD UNIQUE KEY uq_inventory_logs_order_action (order_id, action);
DROP TABLE order_id_map;
