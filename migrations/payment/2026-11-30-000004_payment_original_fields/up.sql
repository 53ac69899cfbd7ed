-- The original's payment JSON has `updated_at`, and POST /payments records a
-- payment no saga started (its saga_id is then NULL). Rows that exist get
-- their creation time as their last update (set explicitly, so ON UPDATE
-- does not stamp them with the migration's time). Both run on MySQL 8 and
-- MariaDB.
ALTER TABLE payments
  MODIFY saga_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
  ADD COLUMN updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
    ON UPDATE CURRENT_TIMESTAMP(6) AFTER created_at;
UPDATE payments SET updated_at = created_at;
