-- llmq schema, version 11: users take turns. A lane shared by several
-- users' work serves them round-robin by user, then by priority and batch
-- within each user's own: one user's ten batches no longer get ten times
-- another's one. The ready query finds the next user after the one served
-- last in the index below, then that user's highest priority, then their
-- next batch: a few index steps per user, whatever the queue holds.

-- The submitter of the job's batch, kept on the job so that the index can
-- order by it (-1: a batch nobody could tell).
ALTER TABLE jobs ADD COLUMN uid INTEGER NOT NULL DEFAULT -1;
UPDATE jobs SET uid = coalesce((SELECT b.submitter_uid FROM batches b WHERE b.id = jobs.batch_id),
                               -1);

DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (lane, uid, priority, batch_id, id) WHERE state = 'queued';

-- When nothing of a lane may go now (its users' budgets are spent, their
-- jobs back off), the lane sleeps until the next retry is due: the first
-- not_before after now, one index step. It replaces jobs_queued, which no
-- query has used since version 2.
DROP INDEX jobs_queued;
CREATE INDEX jobs_wakeup ON jobs (lane, not_before) WHERE state = 'queued';
