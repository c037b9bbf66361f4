-- llmq schema, version 9: what each try cost, and usage kept per quarter
-- hour and in all.

-- Money is whole nano-dollars (USD x 10^9), never a float: sums of them are
-- exact in any order. A try's cost is worked out when it ends, from the
-- prices llmqd had then (the [prices] of llmqd.conf), so that a later price
-- change does not rewrite history. cost_nusd NULL: no price was known for
-- its model (it counts as costing nothing, and `llmq usage` says so).
-- The usage split the answer reported: prompt tokens (cached ones
-- included), of those the ones the provider served from its cache, and
-- completion tokens; NULL where it said nothing.
ALTER TABLE attempts ADD COLUMN prompt_tokens INTEGER;
ALTER TABLE attempts ADD COLUMN cached_tokens INTEGER;
ALTER TABLE attempts ADD COLUMN completion_tokens INTEGER;
ALTER TABLE attempts ADD COLUMN cost_nusd INTEGER;
ALTER TABLE calls ADD COLUMN prompt_tokens INTEGER;
ALTER TABLE calls ADD COLUMN cached_tokens INTEGER;
ALTER TABLE calls ADD COLUMN completion_tokens INTEGER;
ALTER TABLE calls ADD COLUMN cost_nusd INTEGER;

-- usage_daily (the live page's "today") gains the same figures. Rows
-- written before this version hold no split and no cost: their tokens are
-- unpriced.
ALTER TABLE usage_daily ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN cost_nusd INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN unpriced_tokens INTEGER NOT NULL DEFAULT 0;
UPDATE usage_daily SET unpriced_tokens = tokens;

-- The same per quarter hour of UTC time (at: its start, unix ms), what
-- `llmq usage` reads: any span and any caller's days (a local midnight is a
-- quarter hour's start in every time zone in use) cost the quarters they
-- cover, whatever the queue holds, and they outlive retention, which deletes
-- attempts and calls. Tries before this version are counted at the start of
-- the local day usage_daily kept them under.
CREATE TABLE usage_quarters (
	at                INTEGER NOT NULL,
	uid               INTEGER NOT NULL,        -- -1: callers nobody could tell
	class             TEXT NOT NULL CHECK (class IN ('batch', 'interactive')),
	lane              TEXT NOT NULL,
	model             TEXT NOT NULL,
	requests          INTEGER NOT NULL,
	prompt_tokens     INTEGER NOT NULL,
	cached_tokens     INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	tokens            INTEGER NOT NULL,
	cost_nusd         INTEGER NOT NULL,
	unpriced_tokens   INTEGER NOT NULL,        -- tokens of tries whose model had no price
	failed            INTEGER NOT NULL,
	rate_limited      INTEGER NOT NULL,
	PRIMARY KEY (at, uid, class, lane, model)
) WITHOUT ROWID;

-- And in all, since the first try: the metrics' counters, as many rows as
-- (user, class, lane, model) ever met; rowid is the order they were first
-- seen in (the metrics keep the first ones' names as labels).
CREATE TABLE usage_totals (
	uid               INTEGER NOT NULL,
	class             TEXT NOT NULL,
	lane              TEXT NOT NULL,
	model             TEXT NOT NULL,
	requests          INTEGER NOT NULL,
	prompt_tokens     INTEGER NOT NULL,
	cached_tokens     INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	tokens            INTEGER NOT NULL,
	cost_nusd         INTEGER NOT NULL,
	unpriced_tokens   INTEGER NOT NULL,
	failed            INTEGER NOT NULL,
	rate_limited      INTEGER NOT NULL,
	UNIQUE (uid, class, lane, model)
);

INSERT INTO usage_quarters
SELECT CAST(strftime('%s', day, 'utc') AS INTEGER) * 1000, uid, class, lane, model,
       sum(requests), 0, 0, 0, sum(tokens), 0, sum(tokens), sum(failed), sum(rate_limited)
  FROM usage_daily GROUP BY 1, 2, 3, 4, 5;
INSERT INTO usage_totals
SELECT uid, class, lane, model, sum(requests), 0, 0, 0, sum(tokens), 0, sum(tokens),
       sum(failed), sum(rate_limited)
  FROM usage_daily GROUP BY uid, class, lane, model ORDER BY min(day);

-- One try ended: its figures into the three, in its own transaction. The
-- triggers of version 7 give way to these.
DROP TRIGGER usage_attempt_end;
DROP TRIGGER usage_attempt_ended;
DROP TRIGGER usage_call;

-- What a try adds: its start, who, class, lane, model and figures, written
-- into the view usage_try, whose trigger counts them into the three tables:
-- the job is looked up once per try, and the view holds no rows.
CREATE VIEW usage_try (started_at, uid, class, lane, model, tokens, prompt_tokens,
                       cached_tokens, completion_tokens, cost_nusd, failed, rate_limited) AS
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER usage_try_count INSTEAD OF INSERT ON usage_try
BEGIN
	INSERT INTO usage_daily (day, uid, class, lane, model, requests, tokens, failed,
	                         rate_limited, prompt_tokens, cached_tokens, completion_tokens,
	                         cost_nusd, unpriced_tokens)
	VALUES (date(NEW.started_at / 1000, 'unixepoch', 'localtime'), NEW.uid, NEW.class,
	        NEW.lane, NEW.model, 1, coalesce(NEW.tokens, 0), NEW.failed, NEW.rate_limited,
	        coalesce(NEW.prompt_tokens, 0), coalesce(NEW.cached_tokens, 0),
	        coalesce(NEW.completion_tokens, 0), coalesce(NEW.cost_nusd, 0),
	        CASE WHEN NEW.cost_nusd IS NULL THEN coalesce(NEW.tokens, 0) ELSE 0 END)
	ON CONFLICT (day, uid, class, lane, model) DO UPDATE SET
	    requests = requests + 1,
	    tokens = tokens + excluded.tokens,
	    failed = failed + excluded.failed,
	    rate_limited = rate_limited + excluded.rate_limited,
	    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
	    cached_tokens = cached_tokens + excluded.cached_tokens,
	    completion_tokens = completion_tokens + excluded.completion_tokens,
	    cost_nusd = cost_nusd + excluded.cost_nusd,
	    unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens;
	INSERT INTO usage_quarters (at, uid, class, lane, model, requests, prompt_tokens,
	                            cached_tokens, completion_tokens, tokens, cost_nusd,
	                            unpriced_tokens, failed, rate_limited)
	VALUES (NEW.started_at / 900000 * 900000, NEW.uid, NEW.class, NEW.lane, NEW.model, 1,
	        coalesce(NEW.prompt_tokens, 0), coalesce(NEW.cached_tokens, 0),
	        coalesce(NEW.completion_tokens, 0), coalesce(NEW.tokens, 0),
	        coalesce(NEW.cost_nusd, 0),
	        CASE WHEN NEW.cost_nusd IS NULL THEN coalesce(NEW.tokens, 0) ELSE 0 END,
	        NEW.failed, NEW.rate_limited)
	ON CONFLICT (at, uid, class, lane, model) DO UPDATE SET
	    requests = requests + 1,
	    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
	    cached_tokens = cached_tokens + excluded.cached_tokens,
	    completion_tokens = completion_tokens + excluded.completion_tokens,
	    tokens = tokens + excluded.tokens,
	    cost_nusd = cost_nusd + excluded.cost_nusd,
	    unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens,
	    failed = failed + excluded.failed,
	    rate_limited = rate_limited + excluded.rate_limited;
	INSERT INTO usage_totals (uid, class, lane, model, requests, prompt_tokens, cached_tokens,
	                          completion_tokens, tokens, cost_nusd, unpriced_tokens, failed,
	                          rate_limited)
	VALUES (NEW.uid, NEW.class, NEW.lane, NEW.model, 1, coalesce(NEW.prompt_tokens, 0),
	        coalesce(NEW.cached_tokens, 0), coalesce(NEW.completion_tokens, 0),
	        coalesce(NEW.tokens, 0), coalesce(NEW.cost_nusd, 0),
	        CASE WHEN NEW.cost_nusd IS NULL THEN coalesce(NEW.tokens, 0) ELSE 0 END,
	        NEW.failed, NEW.rate_limited)
	ON CONFLICT (uid, class, lane, model) DO UPDATE SET
	    requests = requests + 1,
	    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
	    cached_tokens = cached_tokens + excluded.cached_tokens,
	    completion_tokens = completion_tokens + excluded.completion_tokens,
	    tokens = tokens + excluded.tokens,
	    cost_nusd = cost_nusd + excluded.cost_nusd,
	    unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens,
	    failed = failed + excluded.failed,
	    rate_limited = rate_limited + excluded.rate_limited;
END;

-- An attempt ends (or is written ended: a send libcurl repeated).
CREATE TRIGGER usage_attempt_end AFTER UPDATE OF ended_at ON attempts
    WHEN OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
BEGIN
	INSERT INTO usage_try
	SELECT NEW.started_at, coalesce(b.submitter_uid, -1), 'batch', NEW.lane, j.model,
	       NEW.tokens_used, NEW.prompt_tokens, NEW.cached_tokens, NEW.completion_tokens,
	       NEW.cost_nusd, NEW.outcome IS 'failed', NEW.status_code IS 429
	  FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE j.id = NEW.job_id;
END;

CREATE TRIGGER usage_attempt_ended AFTER INSERT ON attempts WHEN NEW.ended_at IS NOT NULL
BEGIN
	INSERT INTO usage_try
	SELECT NEW.started_at, coalesce(b.submitter_uid, -1), 'batch', NEW.lane, j.model,
	       NEW.tokens_used, NEW.prompt_tokens, NEW.cached_tokens, NEW.completion_tokens,
	       NEW.cost_nusd, NEW.outcome IS 'failed', NEW.status_code IS 429
	  FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE j.id = NEW.job_id;
END;

CREATE TRIGGER usage_call AFTER INSERT ON calls WHEN NEW.outcome != 'refused'
BEGIN
	INSERT INTO usage_try
	VALUES (NEW.started_at, coalesce(NEW.caller_uid, -1), 'interactive', NEW.lane,
	        coalesce(NEW.model, ''), NEW.tokens_used, NEW.prompt_tokens, NEW.cached_tokens,
	        NEW.completion_tokens, NEW.cost_nusd, NEW.outcome IS 'failed',
	        NEW.status_code IS 429);
END;

-- The traffic view shows the split and the cost, in dollars.
DROP VIEW traffic;
CREATE VIEW traffic AS
SELECT 'batch' AS class, a.lane, j.url AS endpoint, j.model,
       datetime(a.started_at / 1000, 'unixepoch') AS started, a.started_at,
       a.outcome, a.status_code, a.error_code, a.tokens_charged, a.tokens_used,
       a.gate_wait_ms, a.latency_ms, a.request_id, b.submitter_uid AS uid,
       a.prompt_tokens, a.cached_tokens, a.completion_tokens, a.cost_nusd / 1e9 AS cost_usd
  FROM attempts a JOIN jobs j ON j.id = a.job_id JOIN batches b ON b.id = j.batch_id
UNION ALL
SELECT 'interactive', c.lane, c.endpoint, c.model,
       datetime(c.started_at / 1000, 'unixepoch'), c.started_at,
       c.outcome, c.status_code, c.error_code, c.tokens_charged, c.tokens_used,
       c.gate_wait_ms, c.latency_ms, c.request_id, c.caller_uid,
       c.prompt_tokens, c.cached_tokens, c.completion_tokens, c.cost_nusd / 1e9
  FROM calls c;
