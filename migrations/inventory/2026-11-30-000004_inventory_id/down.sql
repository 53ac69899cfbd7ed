ALTER TABLE inventories DROP COLUMN id;
