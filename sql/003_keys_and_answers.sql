-- llmq schema, version 3: a submit's idempotency key, and answers kept so
-- that results can be written without rebuilding them.

-- A submit repeated with the same key (the connection dropped after the
-- batch was sent, and the client sends it again) is answered with the batch
-- already stored instead of storing a second copy. Keys are per submitter.
ALTER TABLE batches ADD COLUMN idempotency_key TEXT;

CREATE UNIQUE INDEX batches_idempotency ON batches (submitter_uid, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- 1 when jobs.response is valid JSON on one line (llmqd compacts answers as
-- they come): a result line then embeds it as it is. 0 for anything else,
-- and for rows written before this version.
ALTER TABLE jobs ADD COLUMN response_json INTEGER NOT NULL DEFAULT 0;
