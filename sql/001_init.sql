-- llmq schema, version 1. The schema is an interface: people read it with
-- sqlite3. Times are unix milliseconds (wall clock); the views show them as
-- UTC text.

CREATE TABLE batches (
	id             TEXT PRIMARY KEY,           -- b_<16 hex>
	created_at     INTEGER NOT NULL,
	submitter_uid  INTEGER,                    -- SO_PEERCRED of the submitting client
	input_name     TEXT,                       -- file name the client submitted
	window_ms      INTEGER NOT NULL,           -- completion window
	state          TEXT NOT NULL DEFAULT 'in_progress'
	               CHECK (state IN ('in_progress', 'cancelling', 'completed', 'cancelled')),
	total          INTEGER NOT NULL,           -- number of jobs
	est_tokens     INTEGER NOT NULL,           -- sum of the jobs' estimates
	finished_at    INTEGER
);

CREATE TABLE jobs (
	id                INTEGER PRIMARY KEY,
	batch_id          TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
	line              INTEGER NOT NULL,        -- line number in the submitted file
	custom_id         TEXT NOT NULL,
	url               TEXT NOT NULL,           -- e.g. /v1/chat/completions
	model             TEXT NOT NULL,
	lane              TEXT NOT NULL,           -- the upstream it is routed to
	body              TEXT NOT NULL,           -- request body, JSON
	est_tokens        INTEGER NOT NULL,        -- estimated cost (gate reservation)
	state             TEXT NOT NULL DEFAULT 'queued'
	                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
	attempts          INTEGER NOT NULL DEFAULT 0,
	not_before        INTEGER NOT NULL DEFAULT 0,  -- earliest next launch (backoff)
	status_code       INTEGER,                 -- HTTP status of the final answer
	request_id        TEXT,                    -- upstream x-request-id
	response          TEXT,                    -- upstream body of the final answer
	error_code        TEXT,
	error_message     TEXT,
	prompt_tokens     INTEGER,
	completion_tokens INTEGER,
	total_tokens      INTEGER,
	updated_at        INTEGER NOT NULL,
	finished_at       INTEGER,
	UNIQUE (batch_id, custom_id)
);
CREATE INDEX jobs_queued ON jobs (lane, id) WHERE state = 'queued';
CREATE INDEX jobs_batch_state ON jobs (batch_id, state);

CREATE TABLE attempts (
	id              INTEGER PRIMARY KEY,
	job_id          INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
	n               INTEGER NOT NULL,          -- 1 for the first try
	lane            TEXT NOT NULL,
	started_at      INTEGER NOT NULL,
	ended_at        INTEGER,                   -- NULL while in flight
	outcome         TEXT CHECK (outcome IN ('succeeded', 'failed', 'retry', 'rate_limited',
	                                        'interrupted', 'aborted')),
	status_code     INTEGER,
	error_code      TEXT,
	error_message   TEXT,
	retry_after_ms  INTEGER,                   -- what the upstream asked for
	remaining_tokens   INTEGER,                -- x-ratelimit-remaining-tokens of the answer
	remaining_requests INTEGER,                -- x-ratelimit-remaining-requests of the answer
	tokens_charged  INTEGER NOT NULL,          -- reserved by the gate at launch
	tokens_used     INTEGER,                   -- usage.total_tokens of the answer
	gate_wait_ms    INTEGER,                   -- how long the gate held the job back
	latency_ms      INTEGER,
	request_id      TEXT
);
CREATE INDEX attempts_job ON attempts (job_id);
CREATE INDEX attempts_open ON attempts (job_id) WHERE ended_at IS NULL;

-- For people: one row per batch with counts per state.
CREATE VIEW batch_summary AS
SELECT b.id AS batch_id,
       b.state,
       datetime(b.created_at / 1000, 'unixepoch') AS created,
       b.submitter_uid AS uid,
       b.input_name,
       b.total,
       (SELECT count(*) FROM jobs j WHERE j.batch_id = b.id AND j.state = 'queued') AS queued,
       (SELECT count(*) FROM jobs j WHERE j.batch_id = b.id AND j.state = 'running') AS running,
       (SELECT count(*) FROM jobs j WHERE j.batch_id = b.id AND j.state = 'succeeded') AS succeeded,
       (SELECT count(*) FROM jobs j WHERE j.batch_id = b.id AND j.state = 'failed') AS failed,
       (SELECT count(*) FROM jobs j WHERE j.batch_id = b.id AND j.state = 'cancelled') AS cancelled,
       b.est_tokens,
       (SELECT coalesce(sum(j.total_tokens), 0) FROM jobs j WHERE j.batch_id = b.id) AS tokens_used,
       (SELECT datetime(min(a.started_at) / 1000, 'unixepoch')
          FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.batch_id = b.id) AS first_activity,
       (SELECT datetime(max(coalesce(a.ended_at, a.started_at)) / 1000, 'unixepoch')
          FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.batch_id = b.id) AS last_activity,
       datetime(b.finished_at / 1000, 'unixepoch') AS finished
  FROM batches b;

-- For people: one row per HTTP try.
CREATE VIEW job_history AS
SELECT j.batch_id,
       j.custom_id,
       j.lane,
       a.n AS attempt,
       datetime(a.started_at / 1000, 'unixepoch') AS started,
       a.latency_ms,
       a.outcome,
       a.status_code,
       a.error_code,
       a.retry_after_ms,
       a.remaining_tokens,
       a.remaining_requests,
       a.tokens_charged,
       a.tokens_used,
       a.gate_wait_ms,
       j.state AS job_state
  FROM attempts a JOIN jobs j ON j.id = a.job_id;
