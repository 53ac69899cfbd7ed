-- The original's inventory JSON has an `id` of its own (an AUTO_INCREMENT
-- integer) beside `product_id`. product_id stays the primary key (every
-- read and write goes by it); `id` is a unique AUTO_INCREMENT column, which
-- numbers the existing rows as it is added. Runs on MySQL 8 and MariaDB.
ALTER TABLE inventories
  ADD COLUMN id BIGINT NOT NULL AUTO_INCREMENT UNIQUE FIRST;
