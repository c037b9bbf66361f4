-- llmq schema, version 3: a submit's idempotency key, kept with its batch. A
-- submit repeated with the same key (the connection dropped after the batch
-- was sent, and the client sends it again) is answered with the batch that
-- is already stored instead of storing a second copy. Keys are per submitter.

ALTER TABLE batches ADD COLUMN idempotency_key TEXT;

CREATE UNIQUE INDEX batches_idempotency ON batches (submitter_uid, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
