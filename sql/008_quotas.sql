-- llmq schema, version 8: what a user holds, summed without reading a row
-- per job or per file. The bytes of a user's uploaded files
-- (files_max_bytes_per_user) come from an index that holds them; the jobs
-- a user has queued or running (queue_max_jobs_per_user) from job_counts,
-- through the user's unfinished batches alone.
CREATE INDEX files_owner_bytes ON files (owner_uid, bytes);
CREATE INDEX batches_unfinished ON batches (submitter_uid)
	WHERE state IN ('validating', 'in_progress', 'cancelling');
