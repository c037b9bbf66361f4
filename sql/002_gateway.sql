-- llmq schema, version 2: interactive calls (the HTTP face) and batch
-- priorities. Every HTTP try that reaches an upstream, from a batch job or
-- from a program calling llmqd's OpenAI-compatible endpoint, is now a row:
-- batch tries in attempts, interactive tries in calls; the view traffic
-- shows both.

ALTER TABLE batches ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;  -- the batch's, for the index

-- The scheduler takes the highest priority first, then batches in turn
-- (round-robin by batch), then each batch's jobs in order.
CREATE INDEX jobs_ready ON jobs (lane, priority, batch_id, id) WHERE state = 'queued';

CREATE TABLE calls (
	id              INTEGER PRIMARY KEY,
	call_id         TEXT NOT NULL,             -- one per HTTP request; its tries share it
	n               INTEGER NOT NULL,          -- try number, 1 for the first
	lane            TEXT NOT NULL,
	endpoint        TEXT NOT NULL,             -- e.g. /v1/chat/completions
	model           TEXT,
	stream          INTEGER NOT NULL DEFAULT 0,
	caller_uid      INTEGER,                   -- peer uid on the Unix listener; NULL on TCP
	started_at      INTEGER NOT NULL,          -- when the call reached the gate
	ended_at        INTEGER NOT NULL,
	outcome         TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'retry',
	                                'rate_limited', 'aborted', 'refused')),
	status_code     INTEGER,                   -- upstream's; NULL when none came
	error_code      TEXT,
	retry_after_ms  INTEGER,
	tokens_charged  INTEGER NOT NULL,
	tokens_used     INTEGER,
	gate_wait_ms    INTEGER,
	latency_ms      INTEGER,                   -- upstream latency
	request_id      TEXT,
	request_body    TEXT,                      -- only with http_log_bodies
	response_body   TEXT
);
CREATE INDEX calls_started ON calls (started_at);

-- For people: every try of the host's traffic, batch and interactive.
CREATE VIEW traffic AS
SELECT 'batch' AS class, a.lane, j.url AS endpoint, j.model,
       datetime(a.started_at / 1000, 'unixepoch') AS started, a.started_at,
       a.outcome, a.status_code, a.error_code, a.tokens_charged, a.tokens_used,
       a.gate_wait_ms, a.latency_ms, a.request_id, b.submitter_uid AS uid
  FROM attempts a JOIN jobs j ON j.id = a.job_id JOIN batches b ON b.id = j.batch_id
UNION ALL
SELECT 'interactive', c.lane, c.endpoint, c.model,
       datetime(c.started_at / 1000, 'unixepoch'), c.started_at,
       c.outcome, c.status_code, c.error_code, c.tokens_charged, c.tokens_used,
       c.gate_wait_ms, c.latency_ms, c.request_id, c.caller_uid
  FROM calls c;
