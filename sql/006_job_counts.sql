-- llmq schema, version 6: counts kept, not counted. How many jobs a batch
-- has in each state on each lane, and their estimated and used tokens, kept
-- by triggers in the transaction that changes a job, so that no question
-- (ping, status, list, a metrics scrape, admission) reads a row per job: at
-- a million queued jobs each costs what it costs at ten.
CREATE TABLE job_counts (
	batch_id     TEXT NOT NULL,
	lane         TEXT NOT NULL,
	state        TEXT NOT NULL,
	jobs         INTEGER NOT NULL,
	est_tokens   INTEGER NOT NULL,             -- sum of the jobs' estimates
	total_tokens INTEGER NOT NULL,             -- sum of the usage their answers reported
	PRIMARY KEY (batch_id, lane, state)
) WITHOUT ROWID;
CREATE INDEX job_counts_lane ON job_counts (lane, state);

INSERT INTO job_counts (batch_id, lane, state, jobs, est_tokens, total_tokens)
SELECT batch_id, lane, state, count(*), coalesce(sum(est_tokens), 0),
       coalesce(sum(total_tokens), 0)
  FROM jobs GROUP BY batch_id, lane, state;

CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs
BEGIN
	INSERT INTO job_counts (batch_id, lane, state, jobs, est_tokens, total_tokens)
	VALUES (NEW.batch_id, NEW.lane, NEW.state, 1, NEW.est_tokens, coalesce(NEW.total_tokens, 0))
	ON CONFLICT (batch_id, lane, state) DO UPDATE SET
	    jobs = jobs + 1,
	    est_tokens = est_tokens + excluded.est_tokens,
	    total_tokens = total_tokens + excluded.total_tokens;
END;

CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
BEGIN
	UPDATE job_counts SET jobs = jobs - 1,
	                      est_tokens = est_tokens - OLD.est_tokens,
	                      total_tokens = total_tokens - coalesce(OLD.total_tokens, 0)
	 WHERE batch_id = OLD.batch_id AND lane = OLD.lane AND state = OLD.state;
END;

CREATE TRIGGER job_counts_update AFTER UPDATE OF batch_id, lane, state, est_tokens, total_tokens
    ON jobs
    WHEN OLD.batch_id IS NOT NEW.batch_id OR OLD.lane IS NOT NEW.lane
      OR OLD.state IS NOT NEW.state OR OLD.est_tokens IS NOT NEW.est_tokens
      OR OLD.total_tokens IS NOT NEW.total_tokens
BEGIN
	UPDATE job_counts SET jobs = jobs - 1,
	                      est_tokens = est_tokens - OLD.est_tokens,
	                      total_tokens = total_tokens - coalesce(OLD.total_tokens, 0)
	 WHERE batch_id = OLD.batch_id AND lane = OLD.lane AND state = OLD.state;
	INSERT INTO job_counts (batch_id, lane, state, jobs, est_tokens, total_tokens)
	VALUES (NEW.batch_id, NEW.lane, NEW.state, 1, NEW.est_tokens, coalesce(NEW.total_tokens, 0))
	ON CONFLICT (batch_id, lane, state) DO UPDATE SET
	    jobs = jobs + 1,
	    est_tokens = est_tokens + excluded.est_tokens,
	    total_tokens = total_tokens + excluded.total_tokens;
END;

-- A batch gone (retention, a batch not wholly stored) takes its counts along.
CREATE TRIGGER job_counts_batch_delete AFTER DELETE ON batches
BEGIN
	DELETE FROM job_counts WHERE batch_id = OLD.id;
END;

-- The summary people read with sqlite3, from the counts.
DROP VIEW batch_summary;
CREATE VIEW batch_summary AS
SELECT b.id AS batch_id,
       b.state,
       datetime(b.created_at / 1000, 'unixepoch') AS created,
       b.submitter_uid AS uid,
       b.input_name,
       b.total,
       (SELECT coalesce(sum(c.jobs), 0) FROM job_counts c
         WHERE c.batch_id = b.id AND c.state = 'queued') AS queued,
       (SELECT coalesce(sum(c.jobs), 0) FROM job_counts c
         WHERE c.batch_id = b.id AND c.state = 'running') AS running,
       (SELECT coalesce(sum(c.jobs), 0) FROM job_counts c
         WHERE c.batch_id = b.id AND c.state = 'succeeded') AS succeeded,
       (SELECT coalesce(sum(c.jobs), 0) FROM job_counts c
         WHERE c.batch_id = b.id AND c.state = 'failed') AS failed,
       (SELECT coalesce(sum(c.jobs), 0) FROM job_counts c
         WHERE c.batch_id = b.id AND c.state = 'cancelled') AS cancelled,
       b.est_tokens,
       (SELECT coalesce(sum(c.total_tokens), 0) FROM job_counts c
         WHERE c.batch_id = b.id) AS tokens_used,
       (SELECT datetime(min(a.started_at) / 1000, 'unixepoch')
          FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.batch_id = b.id) AS first_activity,
       (SELECT datetime(max(coalesce(a.ended_at, a.started_at)) / 1000, 'unixepoch')
          FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.batch_id = b.id) AS last_activity,
       datetime(b.finished_at / 1000, 'unixepoch') AS finished
  FROM batches b;
