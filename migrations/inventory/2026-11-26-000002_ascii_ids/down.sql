-- Back to the tables' default character set (utf8mb4) and its default collation.
ALTER TABLE inventory_logs
  MODIFY order_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL,
  MODIFY saga_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL,
  MODIFY message_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL;
ALTER TABLE outbox
  MODIFY message_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL,
  MODIFY saga_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL;
