-- llmq schema, version 5: the Batch API over HTTP. Uploaded input files,
-- and batches that carry the hosted API's fields.

-- An uploaded file (POST /v1/files). Its bytes are a file of their own in
-- the directory beside the database named after it with "-files" appended
-- (llmq.db-files/<id>), written whole before this row exists.
CREATE TABLE files (
	id          TEXT PRIMARY KEY,          -- file-<24 hex>
	owner_uid   INTEGER,                   -- who uploaded it; NULL: an anonymous caller
	created_at  INTEGER NOT NULL,
	filename    TEXT NOT NULL,
	purpose     TEXT NOT NULL,             -- 'batch'
	bytes       INTEGER NOT NULL,
	lines       INTEGER NOT NULL
);
CREATE INDEX files_owner ON files (owner_uid, created_at);

-- batches gains two states, which takes rebuilding the table (the views
-- and the index that name it are made again after it):
--   'validating': being stored, in several transactions so that a large
--       batch does not hold the database; until the last one is in, its
--       jobs wait under their lane's name prefixed with '~' (no lane's
--       queries see them), then are let go a slice at a time, the first
--       making the batch in_progress. A crash before that deletes it.
--   'failed': an input file that did not validate; nothing ran, errors
--       says why.
DROP VIEW batch_summary;
DROP VIEW traffic;
DROP INDEX batches_idempotency;

CREATE TABLE batches_new (
	id             TEXT PRIMARY KEY,           -- b_<16 hex>
	created_at     INTEGER NOT NULL,
	submitter_uid  INTEGER,                    -- SO_PEERCRED of the submitting client, or the HTTP caller
	input_name     TEXT,                       -- file name the client submitted
	window_ms      INTEGER NOT NULL,           -- completion window
	state          TEXT NOT NULL DEFAULT 'in_progress'
	               CHECK (state IN ('validating', 'in_progress', 'cancelling', 'completed',
	                                'cancelled', 'failed')),
	total          INTEGER NOT NULL,           -- number of jobs
	est_tokens     INTEGER NOT NULL,           -- sum of the jobs' estimates
	finished_at    INTEGER,
	priority       INTEGER NOT NULL DEFAULT 0,
	idempotency_key TEXT,
	expired_at     INTEGER,
	endpoint       TEXT,                       -- the Batch API's endpoint, when created over HTTP
	input_file_id  TEXT,                       -- files.id it was made from (the file may be gone)
	metadata       TEXT,                       -- the caller's metadata object, JSON
	errors         TEXT,                       -- a failed batch's errors: JSON [{line, code, message}]
	cancelling_at  INTEGER                     -- when a cancel was asked for
);
INSERT INTO batches_new (id, created_at, submitter_uid, input_name, window_ms, state, total,
                         est_tokens, finished_at, priority, idempotency_key, expired_at)
SELECT id, created_at, submitter_uid, input_name, window_ms, state, total, est_tokens,
       finished_at, priority, idempotency_key, expired_at FROM batches;
DROP TABLE batches;
ALTER TABLE batches_new RENAME TO batches;

CREATE UNIQUE INDEX batches_idempotency ON batches (submitter_uid, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX batches_submitter ON batches (submitter_uid, created_at);

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
