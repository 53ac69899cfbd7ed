CREATE TABLE orders (
  id CHAR(36) NOT NULL PRIMARY KEY,
  saga_id CHAR(36) NOT NULL,
  user_id BIGINT NOT NULL,
  product_id BIGINT NOT NULL,
  quantity INT NOT NULL,
  total_amount DECIMAL(12,2) NOT NULL,
  status VARCHAR(16) NOT NULL,
  idempotency_key VARCHAR(255) NULL,
  trace_id VARCHAR(64) NOT NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_orders_idempotency_key (idempotency_key),
  KEY idx_orders_user (user_id, created_at),
  CONSTRAINT chk_orders_quantity CHECK (quantity > 0),
  CONSTRAINT chk_orders_amount CHECK (total_amount > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE saga_states (
  saga_id CHAR(36) NOT NULL PRIMARY KEY,
  order_id CHAR(36) NOT NULL,
  status VARCHAR(16) NOT NULL,
  current_step VARCHAR(32) NOT NULL,
  failure_reason VARCHAR(255) NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_saga_order (order_id),
  KEY idx_saga_status_updated (status, updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE saga_events (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  saga_id CHAR(36) NOT NULL,
  event VARCHAR(64) NOT NULL,
  from_status VARCHAR(16) NULL,
  from_step VARCHAR(32) NULL,
  to_status VARCHAR(16) NOT NULL,
  to_step VARCHAR(32) NOT NULL,
  message_id CHAR(36) NULL,
  reason VARCHAR(255) NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY idx_saga_events_saga (saga_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE processed_events (
  message_id CHAR(36) NOT NULL PRIMARY KEY,
  processed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE outbox (
  message_id CHAR(36) NOT NULL PRIMARY KEY,
  exchange VARCHAR(64) NOT NULL,
  routing_key VARCHAR(64) NOT NULL,
  payload TEXT NOT NULL,
  trace_id VARCHAR(64) NOT NULL,
  saga_id CHAR(36) NOT NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  attempts INT NOT NULL DEFAULT 0,
  KEY idx_outbox_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
