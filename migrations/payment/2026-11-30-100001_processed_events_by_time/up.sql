-- Retention (retention.dedup) deletes the inbox rows processed before the
-- window: DELETE ... WHERE processed_at < cutoff ORDER BY processed_at LIMIT n.
-- Without this index every such statement scans the whole table. The key is
-- time-ordered, so each insert appends to the index's last page, also for
-- the UUIDv4 message ids of the original system, which a delete by
-- primary-key range could not handle. See docs/design/keys-that-age.md.
CREATE INDEX idx_processed_events_processed_at ON processed_events (processed_at);
