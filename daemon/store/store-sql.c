/*
 * store-sql.c - the SQL text of every statement the store prepares, by its
 * enum stmt_id (store-private.h): text alone, run by its family's file
 * (store-batches.c, store-jobs.c, ...). Nothing here is built from data:
 * every value is bound.
 */
#include "store/store-private.h"

/* A batch with its counts per state and its tokens, from job_counts (kept by
 * triggers): no question reads a row per job. */
#define BATCH_COUNT(state)                                                                         \
	"(SELECT coalesce(sum(c.jobs), 0) FROM job_counts c WHERE c.batch_id = b.id AND "          \
	"c.state = '" state "'), "
#define BATCH_COLUMNS_WITH(tokens)                                                                 \
	"b.id, b.state, b.created_at, b.submitter_uid, b.input_name, b.window_ms, b.total, "       \
	"b.est_tokens, b.finished_at, " BATCH_COUNT("queued") BATCH_COUNT("running")               \
	    BATCH_COUNT("succeeded") BATCH_COUNT("failed") BATCH_COUNT("cancelled") tokens         \
	    ", b.expired_at, b.endpoint, b.input_file_id, b.metadata, b.errors, "                  \
	    "b.cancelling_at, " BATCH_NAME ", b.paused_at, b.paused_by, b.retried_at "
/* What a person calls the batch: llmq submit's --name (or its file's name);
 * for one made over HTTP, its metadata's description (or name), else the
 * uploaded file's name. */
#define BATCH_NAME                                                                                 \
	"coalesce(CASE WHEN json_valid(b.metadata) THEN coalesce("                                 \
	"json_extract(b.metadata, '$.description'), json_extract(b.metadata, '$.name')) END, "     \
	"b.input_name)"
/* Tokens used and still pending. */
#define BATCH_COLUMNS                                                                              \
	BATCH_COLUMNS_WITH("(SELECT coalesce(sum(c.total_tokens), 0) FROM job_counts c WHERE "     \
	                   "c.batch_id = b.id), "                                                  \
	                   "(SELECT coalesce(sum(c.est_tokens), 0) FROM job_counts c "             \
	                   "   WHERE c.batch_id = b.id AND c.state IN ('queued', 'running'))")
#define BATCH_COLUMNS_BRIEF BATCH_COLUMNS_WITH("NULL, NULL")

#define FILE_COLUMNS "id, owner_uid, created_at, filename, purpose, bytes, lines "

/* The usage rows of a report's pieces (store_usage_query): quarters of
 * usage_quarters, and whole days of usage_daily. */
#define USAGE_FIGURES(t)                                                                           \
	t ".uid, " t ".class, " t ".lane, " t ".model, " t ".requests, " t ".prompt_tokens, " t    \
	  ".cached_tokens, " t ".completion_tokens, " t ".tokens, " t ".cost_nusd, " t             \
	  ".unpriced_tokens, " t ".failed, " t ".rate_limited "
#define USAGE_PIECES                                                                               \
	"SELECT json_extract(p.value, '$[0]') AS period, " USAGE_FIGURES(                          \
	    "u") "FROM json_each(?1) p JOIN usage_quarters u ON json_extract(p.value, '$[1]') = "  \
	         "'q' "                                                                            \
	         "AND u.at >= json_extract(p.value, '$[2]') AND u.at < json_extract(p.value, "     \
	         "'$[3]') "                                                                        \
	         "UNION ALL SELECT json_extract(p.value, '$[0]'), " USAGE_FIGURES(                 \
	             "d") "FROM json_each(?1) p JOIN usage_daily d ON json_extract(p.value, "      \
	                  "'$[1]') = 'd' "                                                         \
	                  "AND d.day >= json_extract(p.value, '$[2]') AND d.day < "                \
	                  "json_extract(p.value, '$[3]')"

/* One Batch API output line, built by SQLite's JSON functions. */
/*
 * A result line in three parts - what precedes the body, the body, what
 * follows. An answer stored as one line of valid JSON (response_json) comes
 * as NULL here and is read in chunks straight from its row (incremental
 * blob I/O): a large answer is never loaded whole nor rebuilt as JSON. One
 * that is not (an older row, a non-JSON body) is rendered by SQLite.
 */
#define RESULT_LINE                                                                                \
	"SELECT id, "                                                                              \
	"  '{\"id\":' || json_quote('batch_req_' || id) || ',\"custom_id\":' || "                  \
	"    json_quote(custom_id) || ',\"response\":' || CASE WHEN status_code IS NULL "          \
	"    THEN 'null' ELSE '{\"status_code\":' || status_code || ',\"request_id\":' || "        \
	"    json_quote(request_id) || ',\"body\":' END, "                                         \
	"  CASE WHEN status_code IS NULL THEN '' "                                                 \
	"    WHEN response_json THEN NULL "                                                        \
	"    WHEN response IS NULL THEN 'null' "                                                   \
	"    WHEN json_valid(response) AND instr(response, char(10)) = 0 "                         \
	"      AND instr(response, char(13)) = 0 THEN response "                                   \
	"    WHEN json_valid(response) THEN json(response) "                                       \
	"    ELSE json_quote(response) END, "                                                      \
	"  CASE WHEN status_code IS NULL THEN '' ELSE '}' END || ',\"error\":' || "                \
	"    CASE WHEN error_code IS NULL THEN 'null' "                                            \
	"    ELSE json_object('code', error_code, 'message', error_message) END || '}' "           \
	"FROM jobs WHERE batch_id = ?1 AND id > ?2 "

const char *const store_sql[S__COUNT] = {
    [S_RECOVER_ATTEMPTS] = "UPDATE attempts SET ended_at = ?1, outcome = 'interrupted', "
                           "error_code = 'interrupted', "
                           "error_message = 'llmqd stopped while the request was in flight' "
                           "WHERE ended_at IS NULL AND started_at < ?2",
    [S_RECOVER_JOBS] = "UPDATE jobs SET state = 'queued', updated_at = ?1 "
                       "WHERE state = 'running' AND updated_at < ?2",
    [S_BATCH_INSERT] = "INSERT INTO batches (id, created_at, submitter_uid, input_name, "
                       "window_ms, total, est_tokens, priority, idempotency_key, state, "
                       "endpoint, input_file_id, metadata, errors, finished_at) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, coalesce(?10, "
                       "'in_progress'), ?11, ?12, ?13, ?14, ?15)",
    [S_BATCH_BY_KEY] = "SELECT id, total FROM batches WHERE submitter_uid IS ?1 "
                       "AND idempotency_key = ?2",
    [S_EXPIRE_MARK] = "UPDATE batches SET expired_at = ?1 WHERE state = 'in_progress' "
                      "AND expired_at IS NULL "
                      "AND coalesce(retried_at, created_at) + window_ms <= ?1",
    [S_EXPIRE_JOBS] = "UPDATE jobs SET state = 'failed', error_code = 'batch_expired', "
                      "error_message = 'the batch''s completion window ended before this "
                      "request was answered', finished_at = ?1, updated_at = ?1 "
                      "WHERE state = 'queued' AND batch_id IN (SELECT id FROM batches "
                      "WHERE state = 'in_progress' AND expired_at IS NOT NULL)",
    [S_EXPIRE_FINISH] = "UPDATE batches SET state = 'completed', finished_at = ?1 "
                        "WHERE state = 'in_progress' AND expired_at IS NOT NULL "
                        "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = batches.id "
                        "AND j.state IN ('queued', 'running'))",
    [S_LANE_WINDOW_GET] = "SELECT window, learned_at, phase_ms FROM lane_state WHERE lane = ?1 "
                          "AND base_url = ?2",
    [S_LANE_WINDOW_SET] = "INSERT INTO lane_state (lane, base_url, window, learned_at, "
                          "phase_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (lane, base_url) "
                          "DO UPDATE SET window = excluded.window, learned_at = "
                          "excluded.learned_at, phase_ms = excluded.phase_ms",
    /* The job's uid is its batch's submitter's: the ready query orders by it. */
    [S_JOB_INSERT] = "INSERT INTO jobs (batch_id, line, custom_id, url, model, lane, body, "
                     "est_tokens, updated_at, priority, uid) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, coalesce((SELECT "
                     "submitter_uid FROM batches WHERE id = ?1), -1))",
    [S_RECOVER_LOADING] = "DELETE FROM batches WHERE state = 'validating' AND created_at < ?1",
    [S_RECOVER_HELD] = "UPDATE jobs SET lane = substr(lane, 2) WHERE lane GLOB '~*' "
                       "AND updated_at < ?1",
    [S_BATCH_RELEASE_JOBS] = "UPDATE jobs SET lane = substr(lane, 2) WHERE id BETWEEN ?2 AND ?3 "
                             "AND batch_id = ?1 AND lane GLOB '~*'",
    [S_BATCH_RELEASE] = "UPDATE batches SET state = 'in_progress' WHERE id = ?1 "
                        "AND state = 'validating'",
    [S_BATCH_DELETE] = "DELETE FROM batches WHERE id = ?1",
    /* A slice of jobs in one statement, from the caller's rows (store-slice.c). */
    [S_JOBS_INSERT_SLICE] = "INSERT INTO jobs (batch_id, line, custom_id, url, model, lane, "
                            "body, est_tokens, updated_at, priority, uid) "
                            "SELECT ?1, line, custom_id, url, model, ?2 || lane, body, "
                            "est_tokens, ?3, ?4, coalesce((SELECT submitter_uid FROM batches "
                            "WHERE id = ?1), -1) FROM llmq_slice(?5) ORDER BY line",
    /* A batch stored in slices gets its figures (and its key) once whole. */
    [S_BATCH_START] = "UPDATE batches SET state = 'in_progress', created_at = ?2, total = ?3, "
                      "est_tokens = ?4, idempotency_key = ?5 WHERE id = ?1 "
                      "AND state = 'validating'",
    /* The ready query, by jobs_ready (lane, uid, priority, batch_id, id): the
     * next user with a ready job after ?3, their highest priority below ?3,
     * then their next batch after ?4 at it. */
    [S_NEXT_USER] = "SELECT uid FROM jobs WHERE state = 'queued' AND lane = ?1 AND uid > ?3 "
                    "AND not_before <= ?2 ORDER BY uid LIMIT 1",
    [S_NEXT_PRIORITY] = "SELECT priority FROM jobs WHERE state = 'queued' AND lane = ?1 "
                        "AND uid = ?4 AND priority < ?3 AND not_before <= ?2 "
                        "ORDER BY priority DESC LIMIT 1",
    /* The batch's pause is looked at for the one row found: a paused batch
     * is stepped over by its id, never row by row. */
    [S_NEXT_READY] = "SELECT id, batch_id, custom_id, url, body, est_tokens, attempts, "
                     "updated_at, free_tries, lane_wait_ms, model, "
                     "(SELECT b.paused_at IS NOT NULL FROM batches b WHERE b.id = jobs.batch_id), "
                     "uid FROM jobs WHERE state = 'queued' AND lane = ?1 AND uid = ?5 "
                     "AND priority = ?3 AND batch_id > ?4 AND not_before <= ?2 "
                     "ORDER BY batch_id, id LIMIT 1",
    /* The same within batch ?4, after job ?6: past the jobs whose launch is
     * on its way to the writer (still queued here). */
    [S_NEXT_READY_IN] = "SELECT id, batch_id, custom_id, url, body, est_tokens, attempts, "
                        "updated_at, free_tries, lane_wait_ms, model, "
                        "(SELECT b.paused_at IS NOT NULL FROM batches b "
                        "WHERE b.id = jobs.batch_id), "
                        "uid FROM jobs WHERE state = 'queued' AND lane = ?1 AND uid = ?5 "
                        "AND priority = ?3 AND batch_id = ?4 AND id > ?6 AND not_before <= ?2 "
                        "ORDER BY id LIMIT 1",
    [S_BATCH_STATES] = "SELECT count(*) FROM batches WHERE state = ?1",
    /* Never a batch whose results are being read (?3: their ids, a JSON array). */
    [S_PRUNE_JOBS] = "DELETE FROM jobs WHERE id IN (SELECT j.id FROM batches b "
                     "JOIN jobs j ON j.batch_id = b.id WHERE b.state IN ('completed', "
                     "'cancelled') AND b.finished_at < ?1 AND b.id NOT IN (SELECT value "
                     "FROM json_each(?3)) LIMIT ?2)",
    [S_PRUNE_BATCHES] = "DELETE FROM batches WHERE state IN ('completed', 'cancelled') "
                        "AND finished_at < ?1 AND NOT EXISTS (SELECT 1 FROM jobs j "
                        "WHERE j.batch_id = batches.id) AND id NOT IN (SELECT value "
                        "FROM json_each(?3))",
    [S_PRUNE_CALLS] = "DELETE FROM calls WHERE id IN (SELECT id FROM calls "
                      "WHERE started_at < ?1 ORDER BY id LIMIT ?2)",
    [S_CALL_INSERT] = "INSERT INTO calls (call_id, n, lane, endpoint, model, stream, caller_uid, "
                      "started_at, ended_at, outcome, status_code, error_code, retry_after_ms, "
                      "tokens_charged, tokens_used, gate_wait_ms, latency_ms, request_id, "
                      "request_body, response_body, prompt_tokens, cached_tokens, "
                      "completion_tokens, cost_nusd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                      "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, "
                      "?23, ?24)",
    /* By jobs_wakeup: the first retry due after now of a batch not paused. */
    [S_NEXT_WAKEUP] = "SELECT not_before FROM jobs WHERE state = 'queued' AND lane = ?1 "
                      "AND not_before > ?2 AND (SELECT b.paused_at FROM batches b "
                      "WHERE b.id = jobs.batch_id) IS NULL ORDER BY not_before LIMIT 1",
    [S_JOB_START] = "UPDATE jobs SET state = 'running', attempts = attempts + 1, "
                    "updated_at = ?2 WHERE id = ?1 AND state = 'queued'",
    [S_ATTEMPT_INSERT] = "INSERT INTO attempts (job_id, n, lane, started_at, tokens_charged, "
                         "gate_wait_ms) VALUES (?1, (SELECT attempts FROM jobs WHERE id = ?1), "
                         "?2, ?3, ?4, ?5)",
    [S_ATTEMPT_END] = "UPDATE attempts SET ended_at = ?2, outcome = ?3, status_code = ?4, "
                      "error_code = ?5, error_message = ?6, retry_after_ms = ?7, "
                      "tokens_used = ?8, latency_ms = ?9, request_id = ?10, "
                      "remaining_tokens = ?11, remaining_requests = ?12, prompt_tokens = ?13, "
                      "cached_tokens = ?14, completion_tokens = ?15, cost_nusd = ?16 "
                      "WHERE id = ?1 AND ended_at IS NULL",
    [S_ATTEMPT_LOST] = "INSERT INTO attempts (job_id, n, lane, started_at, ended_at, outcome, "
                       "error_code, error_message, tokens_charged) SELECT job_id, n, lane, "
                       "started_at, ?2, 'retry', 'connection_lost', 'sent on a reused "
                       "connection that had died; libcurl sent it again', tokens_charged "
                       "FROM attempts WHERE id = ?1",
    [S_JOB_FINISH] = "UPDATE jobs SET state = ?2, status_code = ?3, request_id = ?4, "
                     "response = ?5, error_code = ?6, error_message = ?7, prompt_tokens = ?8, "
                     "completion_tokens = ?9, total_tokens = ?10, updated_at = ?11, "
                     "finished_at = ?11, response_json = ?12 WHERE id = ?1 AND state = "
                     "'running'",
    [S_JOB_REQUEUE] = "UPDATE jobs SET state = 'queued', not_before = ?2, updated_at = ?3, "
                      "free_tries = free_tries + ?4, lane_wait_ms = lane_wait_ms + ?5 "
                      "WHERE id = ?1 AND state = 'running'",
    [S_BATCH_REFRESH] =
        "UPDATE batches SET state = CASE state WHEN 'cancelling' THEN 'cancelled' "
        "ELSE 'completed' END, finished_at = ?2 "
        "WHERE id = (SELECT batch_id FROM jobs WHERE id = ?1) "
        "AND state IN ('in_progress', 'cancelling') AND NOT EXISTS (SELECT 1 FROM jobs j "
        "WHERE j.batch_id = batches.id AND j.state IN ('queued', 'running')) RETURNING id",
    [S_BATCH_GET] = "SELECT " BATCH_COLUMNS "FROM batches b WHERE b.id = ?1",
    [S_BATCH_BRIEF] = "SELECT " BATCH_COLUMNS_BRIEF "FROM batches b WHERE b.id = ?1",
    [S_BATCH_LIST] = "SELECT " BATCH_COLUMNS "FROM batches b "
                     "WHERE (?2 = -1 OR b.submitter_uid = ?2) AND (?3 IS NULL OR b.state IN "
                     "(SELECT value FROM json_each(?3))) AND b.created_at >= ?4 "
                     "ORDER BY b.created_at DESC, b.rowid DESC LIMIT ?1",
    [S_BATCH_PAGE] = "SELECT " BATCH_COLUMNS_BRIEF "FROM batches b WHERE b.submitter_uid IS ?1 "
                     "AND (?2 IS NULL OR (b.created_at, b.rowid) < (SELECT created_at, rowid "
                     "FROM batches WHERE id = ?2 AND submitter_uid IS ?1)) ORDER BY b.created_at "
                     "DESC, b.rowid DESC "
                     "LIMIT ?3",
    [S_FILE_INSERT] = "INSERT INTO files (id, owner_uid, created_at, filename, purpose, bytes, "
                      "lines) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_FILE_GET] = "SELECT " FILE_COLUMNS "FROM files WHERE id = ?1",
    [S_FILE_LIST] = "SELECT " FILE_COLUMNS "FROM files WHERE owner_uid IS ?1 "
                    "AND (?2 IS NULL OR (created_at, rowid) < (SELECT created_at, rowid "
                    "FROM files WHERE id = ?2 AND owner_uid IS ?1)) ORDER BY created_at DESC, "
                    "rowid DESC LIMIT ?3",
    [S_FILE_DELETE] = "DELETE FROM files WHERE id = ?1",
    [S_BATCH_CANCEL_JOBS] = "UPDATE jobs SET state = 'cancelled', error_code = 'batch_cancelled', "
                            "error_message = 'the batch was cancelled before this request ran', "
                            "updated_at = ?2, finished_at = ?2 "
                            "WHERE batch_id = ?1 AND state = 'queued'",
    [S_BATCH_CANCEL] = "UPDATE batches SET cancelling_at = ?2, "
                       "state = CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = ?1 "
                       "AND j.state = 'running') THEN 'cancelling' ELSE 'cancelled' END, "
                       "finished_at = CASE WHEN EXISTS (SELECT 1 FROM jobs j "
                       "WHERE j.batch_id = ?1 AND j.state = 'running') THEN NULL ELSE ?2 END "
                       "WHERE id = ?1 AND state = 'in_progress'",
    [S_RESULTS_OK] = RESULT_LINE "AND state = 'succeeded' ORDER BY id LIMIT ?3",
    [S_RESULTS_ERR] = RESULT_LINE "AND state IN ('failed', 'cancelled') ORDER BY id LIMIT ?3",
    [S_BACKLOG] = "SELECT coalesce(sum(jobs), 0), coalesce(sum(est_tokens), 0) FROM job_counts "
                  "WHERE lane = ?1 AND state IN ('queued', 'running')",
    [S_BACKLOG_ALL] = "SELECT coalesce(sum(jobs), 0), coalesce(sum(est_tokens), 0) "
                      "FROM job_counts WHERE state IN ('queued', 'running')",
    /* The lane's work up to and with a batch: its own, and that of the
     * batches stored before it. */
    [S_BACKLOG_UPTO] = "SELECT coalesce(sum(c.jobs), 0), coalesce(sum(c.est_tokens), 0) "
                       "FROM job_counts c JOIN batches b ON b.id = c.batch_id "
                       "WHERE c.lane = ?1 AND c.state IN ('queued', 'running') "
                       "AND b.rowid <= (SELECT rowid FROM batches WHERE id = ?2)",
    [S_BATCH_LANES] = "SELECT lane, count(*), min(CASE WHEN state = 'queued' THEN not_before END), "
                      "max(CASE WHEN state = 'queued' THEN not_before END) FROM jobs "
                      "WHERE batch_id = ?1 AND state IN ('queued', 'running') GROUP BY lane "
                      "ORDER BY lane LIMIT ?2",
    /* The same from the counts: no row per job is read. */
    [S_BATCH_LANE_COUNTS] = "SELECT lane, sum(jobs) FROM job_counts WHERE batch_id = ?1 "
                            "AND state IN ('queued', 'running') GROUP BY lane "
                            "HAVING sum(jobs) > 0 ORDER BY lane LIMIT ?2",
    /* A day's tries per user, batch and interactive, as the triggers keep them. */
    [S_USAGE_DAY] = "SELECT uid, sum(requests), sum(tokens), sum(failed), sum(rate_limited), "
                    "sum(cost_nusd), sum(unpriced_tokens) "
                    "FROM usage_daily WHERE day = ?1 GROUP BY uid ORDER BY 3 DESC, 2 DESC "
                    "LIMIT ?2",
    /* Each piece's rows, found by the primary keys' ranges (at, day first):
     * a report reads the rows of the span asked about alone. */
    [S_USAGE_REPORT] = "SELECT CASE WHEN ?2 THEN x.period END, CASE WHEN ?3 THEN x.uid END, "
                       "CASE WHEN ?4 THEN x.model END, CASE WHEN ?5 THEN x.lane END, "
                       "CASE WHEN ?6 THEN x.class END, sum(x.requests), sum(x.prompt_tokens), "
                       "sum(x.cached_tokens), sum(x.completion_tokens), sum(x.tokens), "
                       "sum(x.cost_nusd), sum(x.unpriced_tokens), sum(x.failed), "
                       "sum(x.rate_limited) FROM (" USAGE_PIECES ") x "
                       "WHERE (?7 OR x.uid = ?8) GROUP BY 1, 2, 3, 4, 5 "
                       "ORDER BY 1, sum(x.cost_nusd) DESC, sum(x.tokens) DESC, 2, 3, 4, 5",
    [S_USAGE_UNPRICED] = "SELECT x.model, sum(x.unpriced_tokens) FROM (" USAGE_PIECES ") x "
                         "WHERE (?7 OR x.uid = ?8) AND x.unpriced_tokens > 0 GROUP BY x.model "
                         "ORDER BY 2 DESC, 1",
    [S_USAGE_TOTALS] = "SELECT uid, class, lane, model, requests, prompt_tokens, cached_tokens, "
                       "completion_tokens, tokens, cost_nusd, unpriced_tokens, failed, "
                       "rate_limited FROM usage_totals ORDER BY rowid",
    [S_LANE_PAUSED_GET] = "SELECT paused_at, paused_by FROM lane_paused WHERE lane = ?1",
    [S_LANE_PAUSED_SET] = "INSERT INTO lane_paused (lane, paused_at, paused_by) "
                          "VALUES (?1, ?2, ?3) ON CONFLICT (lane) DO NOTHING",
    [S_LANE_PAUSED_DEL] = "DELETE FROM lane_paused WHERE lane = ?1",
    [S_BATCH_PAUSE] = "UPDATE batches SET paused_at = ?2, paused_by = ?3 WHERE id = ?1 "
                      "AND (paused_at IS NULL) = (?2 IS NOT NULL)",
    [S_BATCHES_PAUSED] = "SELECT count(*) FROM batches WHERE paused_at IS NOT NULL "
                         "AND state IN ('validating', 'in_progress')",
    /* A new attempt: the earlier ones stay in attempts, and no longer count
     * against retry_max_attempts (attempts - free_tries is what counts). */
    [S_RETRY_JOBS] = "UPDATE jobs SET state = 'queued', not_before = ?2, updated_at = ?2, "
                     "free_tries = attempts, lane_wait_ms = 0, status_code = NULL, "
                     "request_id = NULL, response = NULL, response_json = 0, "
                     "error_code = NULL, error_message = NULL, prompt_tokens = NULL, "
                     "completion_tokens = NULL, total_tokens = NULL, finished_at = NULL "
                     "WHERE batch_id = ?1 AND state = 'failed'",
    [S_RETRY_BATCH] = "UPDATE batches SET state = 'in_progress', finished_at = NULL, "
                      "expired_at = NULL, retried_at = ?2 WHERE id = ?1 AND state = 'completed'",
    /* The newest tries with an error, of the last ?3 such tries of each class
     * (attempts_errors, calls_errors): a bound however long ago the last
     * error of a user was. */
    [S_RECENT_ERRORS] =
        "SELECT class, lane, at, status_code, error_code, error_message, batch_id, custom_id, "
        "uid, model FROM ("
        "  SELECT 'batch' AS class, a.lane, coalesce(a.ended_at, a.started_at) AS at, "
        "    a.status_code, a.error_code, a.error_message, j.batch_id, j.custom_id, "
        "    b.submitter_uid AS uid, j.model "
        "  FROM (SELECT * FROM attempts WHERE error_code IS NOT NULL ORDER BY id DESC LIMIT ?3) a "
        "  JOIN jobs j ON j.id = a.job_id JOIN batches b ON b.id = j.batch_id "
        "  WHERE (?1 = -1 OR b.submitter_uid IS ?1) AND a.started_at >= ?4 "
        "  UNION ALL "
        "  SELECT 'interactive', c.lane, c.ended_at, c.status_code, c.error_code, NULL, NULL, "
        "    NULL, c.caller_uid, c.model "
        "  FROM (SELECT * FROM calls WHERE error_code IS NOT NULL ORDER BY id DESC LIMIT ?3) c "
        "  WHERE (?1 = -1 OR c.caller_uid IS ?1) AND c.started_at >= ?4) "
        "ORDER BY at DESC LIMIT ?2",
    [S_JOB_BATCH_STATE] = "SELECT b.state FROM batches b JOIN jobs j ON j.batch_id = b.id "
                          "WHERE j.id = ?1",
    /* Both read an index that holds the sum's terms (008_quotas.sql). */
    [S_FILES_BYTES] = "SELECT coalesce(sum(bytes), 0) FROM files WHERE owner_uid IS ?1",
    [S_UNFINISHED_JOBS] = "SELECT coalesce(sum(c.jobs), 0) FROM batches b JOIN job_counts c "
                          "ON c.batch_id = b.id WHERE b.submitter_uid IS ?1 AND b.state IN "
                          "('validating', 'in_progress', 'cancelling') AND c.state IN "
                          "('queued', 'running')",
    /* What each user spent of their budgets: tokens on day ?1, nano-dollars
     * in the month of days [?2, ?3) (usage_daily's primary key: the month's
     * rows alone). */
    [S_BUDGET_SPENT] = "SELECT uid, coalesce(sum(CASE WHEN day = ?1 THEN tokens END), 0), "
                       "sum(cost_nusd) FROM usage_daily WHERE day >= ?2 AND day < ?3 "
                       "GROUP BY uid",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
};
