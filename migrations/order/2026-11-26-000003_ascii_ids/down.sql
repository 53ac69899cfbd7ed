-- Back to the tables' default character set (utf8mb4) and its default collation.
ALTER TABLE orders
  MODIFY id CHAR(36) CHARACTER SET utf8mb4 NOT NULL,
  MODIFY saga_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL;
ALTER TABLE saga_states
  MODIFY saga_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL,
  MODIFY order_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL;
ALTER TABLE saga_events
  MODIFY saga_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL,
  MODIFY message_id CHAR(36) CHARACTER SET utf8mb4 NULL;
ALTER TABLE processed_events
  MODIFY message_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL;
ALTER TABLE outbox
  MODIFY message_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL,
  MODIFY saga_id CHAR(36) CHARACTER SET utf8mb4 NOT NULL;
