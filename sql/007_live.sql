-- llmq schema, version 7: what the live page asks for every few seconds,
-- kept rather than counted, so that it costs the same however many requests
-- the day held.

-- Each user's tries per day (the local day the try started on, in llmqd's
-- time zone), by class, lane and model: kept by triggers in the transaction
-- that ends a try (an attempt's ended_at set, a call's row written), as
-- job_counts keeps the jobs. uid -1: callers nobody could tell (anonymous).
-- Calls llmqd refused never went upstream and are not counted.
CREATE TABLE usage_daily (
	day          TEXT NOT NULL,                -- YYYY-MM-DD
	uid          INTEGER NOT NULL,
	class        TEXT NOT NULL CHECK (class IN ('batch', 'interactive')),
	lane         TEXT NOT NULL,
	model        TEXT NOT NULL,                -- '' when a call named none
	requests     INTEGER NOT NULL,             -- tries sent upstream
	tokens       INTEGER NOT NULL,             -- usage the answers reported
	failed       INTEGER NOT NULL,             -- tries whose outcome is failed
	rate_limited INTEGER NOT NULL,             -- tries answered 429
	PRIMARY KEY (day, uid, class, lane, model)
) WITHOUT ROWID;

INSERT INTO usage_daily (day, uid, class, lane, model, requests, tokens, failed, rate_limited)
SELECT date(a.started_at / 1000, 'unixepoch', 'localtime'), coalesce(b.submitter_uid, -1),
       'batch', a.lane, j.model, count(*), coalesce(sum(a.tokens_used), 0),
       coalesce(sum(a.outcome = 'failed'), 0), coalesce(sum(a.status_code = 429), 0)
  FROM attempts a JOIN jobs j ON j.id = a.job_id JOIN batches b ON b.id = j.batch_id
 WHERE a.ended_at IS NOT NULL
 GROUP BY 1, 2, 4, 5;
INSERT INTO usage_daily (day, uid, class, lane, model, requests, tokens, failed, rate_limited)
SELECT date(started_at / 1000, 'unixepoch', 'localtime'), coalesce(caller_uid, -1),
       'interactive', lane, coalesce(model, ''), count(*), coalesce(sum(tokens_used), 0),
       coalesce(sum(outcome = 'failed'), 0), coalesce(sum(status_code = 429), 0)
  FROM calls WHERE outcome != 'refused'
 GROUP BY 1, 2, 4, 5;

-- An attempt ends (or is written ended: a send libcurl repeated).
CREATE TRIGGER usage_attempt_end AFTER UPDATE OF ended_at ON attempts
    WHEN OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
BEGIN
	INSERT INTO usage_daily (day, uid, class, lane, model, requests, tokens, failed,
	                         rate_limited)
	VALUES (date(NEW.started_at / 1000, 'unixepoch', 'localtime'),
	        coalesce((SELECT b.submitter_uid FROM jobs j JOIN batches b ON b.id = j.batch_id
	                   WHERE j.id = NEW.job_id), -1),
	        'batch', NEW.lane, coalesce((SELECT model FROM jobs WHERE id = NEW.job_id), ''),
	        1, coalesce(NEW.tokens_used, 0), NEW.outcome IS 'failed', NEW.status_code IS 429)
	ON CONFLICT (day, uid, class, lane, model) DO UPDATE SET
	    requests = requests + 1,
	    tokens = tokens + excluded.tokens,
	    failed = failed + excluded.failed,
	    rate_limited = rate_limited + excluded.rate_limited;
END;

CREATE TRIGGER usage_attempt_ended AFTER INSERT ON attempts WHEN NEW.ended_at IS NOT NULL
BEGIN
	INSERT INTO usage_daily (day, uid, class, lane, model, requests, tokens, failed,
	                         rate_limited)
	VALUES (date(NEW.started_at / 1000, 'unixepoch', 'localtime'),
	        coalesce((SELECT b.submitter_uid FROM jobs j JOIN batches b ON b.id = j.batch_id
	                   WHERE j.id = NEW.job_id), -1),
	        'batch', NEW.lane, coalesce((SELECT model FROM jobs WHERE id = NEW.job_id), ''),
	        1, coalesce(NEW.tokens_used, 0), NEW.outcome IS 'failed', NEW.status_code IS 429)
	ON CONFLICT (day, uid, class, lane, model) DO UPDATE SET
	    requests = requests + 1,
	    tokens = tokens + excluded.tokens,
	    failed = failed + excluded.failed,
	    rate_limited = rate_limited + excluded.rate_limited;
END;

CREATE TRIGGER usage_call AFTER INSERT ON calls WHEN NEW.outcome != 'refused'
BEGIN
	INSERT INTO usage_daily (day, uid, class, lane, model, requests, tokens, failed,
	                         rate_limited)
	VALUES (date(NEW.started_at / 1000, 'unixepoch', 'localtime'), coalesce(NEW.caller_uid, -1),
	        'interactive', NEW.lane, coalesce(NEW.model, ''), 1, coalesce(NEW.tokens_used, 0),
	        NEW.outcome IS 'failed', NEW.status_code IS 429)
	ON CONFLICT (day, uid, class, lane, model) DO UPDATE SET
	    requests = requests + 1,
	    tokens = tokens + excluded.tokens,
	    failed = failed + excluded.failed,
	    rate_limited = rate_limited + excluded.rate_limited;
END;

-- The last tries that ended with an error, newest first: only the rows with
-- an error are in these indexes.
CREATE INDEX attempts_errors ON attempts (id) WHERE error_code IS NOT NULL;
CREATE INDEX calls_errors ON calls (id) WHERE error_code IS NOT NULL;
