-- llmq schema, version 7: what the live page asks for often, found without
-- reading every row. Today's tries per user (attempts by their start, as
-- calls_started does for calls), and the last tries that ended with an
-- error, newest first (only the rows with an error are in these indexes).
CREATE INDEX attempts_started ON attempts (started_at);
CREATE INDEX attempts_errors ON attempts (id) WHERE error_code IS NOT NULL;
CREATE INDEX calls_errors ON calls (id) WHERE error_code IS NOT NULL;
