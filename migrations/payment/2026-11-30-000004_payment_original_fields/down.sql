-- A payment without a saga cannot go back to a NOT NULL saga_id: such rows
-- (recorded by POST /payments) are deleted first.
DELETE FROM payments WHERE saga_id IS NULL;
ALTER TABLE payments
  DROP COLUMN updated_at,
  MODIFY saga_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;
