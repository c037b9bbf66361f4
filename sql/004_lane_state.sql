-- llmq schema, version 4: the lane's state is not its jobs' fault.

-- Tries that did not spend one of the job's attempts (a 429, no credit, an
-- upstream that could not be reached), and how long the job has waited
-- because of its lane: jobs.attempts - jobs.free_tries is what counts
-- against retry_max_attempts.
ALTER TABLE jobs ADD COLUMN free_tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lane_wait_ms INTEGER NOT NULL DEFAULT 0;

-- What llmqd learned about a lane's upstream, kept across restarts: the
-- window over which the provider enforces its per-minute limits
-- ('minute', or 'second' when a 429 came although its headers said there
-- was room), when, and where the provider's one-second windows start (ms
-- into a wall-clock second, from a 429's retry-after; NULL: not known).
CREATE TABLE lane_state (
	lane        TEXT NOT NULL,
	base_url    TEXT NOT NULL,
	window      TEXT NOT NULL CHECK (window IN ('minute', 'second')),
	learned_at  INTEGER NOT NULL,
	phase_ms    INTEGER,
	PRIMARY KEY (lane, base_url)
);

-- When a batch's completion window ended with requests still unanswered:
-- those were failed with error_code 'batch_expired' (as the hosted Batch API
-- reports them); the batch then completes as expired.
ALTER TABLE batches ADD COLUMN expired_at INTEGER;
