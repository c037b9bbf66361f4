-- llmq schema, version 10: what an operator paused or retried.

-- Steering. A batch an operator paused (llmq pause BATCH) launches nothing
-- until resumed; its requests in flight finish. Kept across restarts.
ALTER TABLE batches ADD COLUMN paused_at INTEGER;
ALTER TABLE batches ADD COLUMN paused_by INTEGER;    -- the uid that paused it
-- llmq retry BATCH --failed queued a finished batch's failed requests again
-- then: its completion window runs from there.
ALTER TABLE batches ADD COLUMN retried_at INTEGER;

-- A lane an operator paused (llmq pause LANE), by the lane's name: kept
-- across restarts until llmq resume.
CREATE TABLE lane_paused (
	lane       TEXT PRIMARY KEY,
	paused_at  INTEGER NOT NULL,
	paused_by  INTEGER
);
