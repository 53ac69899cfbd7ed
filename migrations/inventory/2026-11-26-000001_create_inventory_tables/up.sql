CREATE TABLE inventories (
  product_id BIGINT NOT NULL PRIMARY KEY,
  available_qty INT NOT NULL,
  reserved_qty INT NOT NULL DEFAULT 0,
  version BIGINT NOT NULL DEFAULT 1,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  CONSTRAINT chk_inv_available CHECK (available_qty >= 0),
  CONSTRAINT chk_inv_reserved CHECK (reserved_qty >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE inventory_logs (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_id CHAR(36) NOT NULL,
  saga_id CHAR(36) NOT NULL,
  product_id BIGINT NOT NULL,
  action VARCHAR(16) NOT NULL,
  quantity INT NOT NULL,
  success BOOLEAN NOT NULL,
  reason VARCHAR(255) NULL,
  message_id CHAR(36) NOT NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY uq_inventory_logs_order_action (order_id, action),
  KEY idx_inventory_logs_product (product_id)
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
