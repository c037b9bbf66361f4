/*
 * store.c - the SQLite store. One connection, WAL, foreign keys, and every
 * statement prepared once. Owns the schema migrations (embedded from sql/).
 * Builds no SQL from data: everything is bound.
 *
 * The store runs on the event loop, so it never waits long for a lock that
 * another program (a person's sqlite3) holds: it waits STORE_BUSY_WAIT_MS,
 * then fails the statement with -EBUSY and counts the database as contended;
 * while contended, a lock is not waited for at all. The callers keep their
 * writes and try again from a timer; the first write that gets through ends
 * the contention. In WAL mode reads are never blocked by a writer.
 */
#include "store/store.h"
#include "store/migrations.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <sqlite3.h>

enum stmt_id {
	S_RECOVER_ATTEMPTS,
	S_RECOVER_JOBS,
	S_BATCH_INSERT,
	S_BATCH_BY_KEY,
	S_LANE_WINDOW_GET,
	S_EXPIRE_MARK,
	S_EXPIRE_JOBS,
	S_EXPIRE_FINISH,
	S_LANE_WINDOW_SET,
	S_JOB_INSERT,
	S_NEXT_USER,
	S_NEXT_PRIORITY,
	S_NEXT_READY,
	S_CALL_INSERT,
	S_BATCH_STATES,
	S_PRUNE_JOBS,
	S_PRUNE_BATCHES,
	S_PRUNE_CALLS,
	S_NEXT_WAKEUP,
	S_JOB_START,
	S_ATTEMPT_INSERT,
	S_ATTEMPT_END,
	S_ATTEMPT_LOST,
	S_JOB_FINISH,
	S_JOB_REQUEUE,
	S_BATCH_REFRESH,
	S_BATCH_GET,
	S_BATCH_BRIEF,
	S_BATCH_LIST,
	S_BATCH_PAGE,
	S_FILE_INSERT,
	S_RECOVER_LOADING,
	S_RECOVER_HELD,
	S_BATCH_RELEASE_JOBS,
	S_BATCH_RELEASE,
	S_BATCH_DELETE,
	S_FILE_GET,
	S_FILE_LIST,
	S_FILE_DELETE,
	S_BATCH_CANCEL_JOBS,
	S_BATCH_CANCEL,
	S_RESULTS_OK,
	S_RESULTS_ERR,
	S_BACKLOG,
	S_BACKLOG_ALL,
	S_BACKLOG_UPTO,
	S_BATCH_LANES,
	S_BATCH_LANE_COUNTS,
	S_USAGE_DAY,
	S_USAGE_REPORT,
	S_USAGE_UNPRICED,
	S_USAGE_TOTALS,
	S_LANE_PAUSED_GET,
	S_LANE_PAUSED_SET,
	S_LANE_PAUSED_DEL,
	S_BATCH_PAUSE,
	S_BATCHES_PAUSED,
	S_RETRY_JOBS,
	S_RETRY_BATCH,
	S_RECENT_ERRORS,
	S_JOB_BATCH_STATE,
	S_FILES_BYTES,
	S_UNFINISHED_JOBS,
	S_BUDGET_SPENT,
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S__COUNT
};

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

static const char *const stmt_sql[S__COUNT] = {
    [S_RECOVER_ATTEMPTS] = "UPDATE attempts SET ended_at = ?1, outcome = 'interrupted', "
                           "error_code = 'interrupted', "
                           "error_message = 'llmqd stopped while the request was in flight' "
                           "WHERE ended_at IS NULL",
    [S_RECOVER_JOBS] = "UPDATE jobs SET state = 'queued', updated_at = ?1 "
                       "WHERE state = 'running'",
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
    [S_RECOVER_LOADING] = "DELETE FROM batches WHERE state = 'validating'",
    [S_RECOVER_HELD] = "UPDATE jobs SET lane = substr(lane, 2) WHERE lane GLOB '~*'",
    [S_BATCH_RELEASE_JOBS] = "UPDATE jobs SET lane = substr(lane, 2) WHERE id BETWEEN ?2 AND ?3 "
                             "AND batch_id = ?1 AND lane GLOB '~*'",
    [S_BATCH_RELEASE] = "UPDATE batches SET state = 'in_progress' WHERE id = ?1 "
                        "AND state = 'validating'",
    [S_BATCH_DELETE] = "DELETE FROM batches WHERE id = ?1",
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
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
};

#define STORE_BUSY_WAIT_MS 10    /* on the loop: a lock someone holds for a moment */
#define STORE_OPEN_WAIT_MS 10000 /* at start-up, before the loop serves anyone */

/* A batch whose results are being read: retention leaves it alone. */
struct store_held {
	char id[24];
	int n;
};

struct store {
	sqlite3 *db;
	struct store_held *held;
	int n_held, cap_held;
	char *reading; /* the held ids as a JSON array; NULL: none */
	sqlite3_stmt *stmt[S__COUNT];
	int in_tx;
	int exclusive;          /* opened with locking_mode EXCLUSIVE: the disk had no room */
	int patient;            /* start-up: wait STORE_OPEN_WAIT_MS for locks */
	int (*sibling)(void *); /* store_on_sibling()'s */
	void *sibling_ud;
	int64_t contended_since; /* wall ms of the first write refused by a lock; 0: none */
	struct stat st;          /* the file opened, to notice it being replaced */
	char *path;
};

static int64_t now_ms(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* SQLite's busy handler: count is how often it was called for this lock. */
static int on_busy(void *userdata, int count)
{
	struct store *s = userdata;
	struct timespec ms = {0, 1000000};
	int limit = s->patient ? STORE_OPEN_WAIT_MS : STORE_BUSY_WAIT_MS;

	if (s->sibling && s->sibling(s->sibling_ud))
		return 1; /* our own writer held it, and has let go: no other program's */
	if (!s->contended_since && count < limit) {
		nanosleep(&ms, NULL);
		return 1;
	}
	if (!s->contended_since)
		s->contended_since = now_ms(CLOCK_REALTIME);
	return 0;
}

static void uncontended(struct store *s)
{
	s->contended_since = 0;
}

int64_t store_contended_since(const struct store *s)
{
	return s->contended_since;
}

void store_serving(struct store *s)
{
	s->patient = 0;
}

int store_check_file(struct store *s)
{
	struct stat st;

	if (stat(s->path, &st) < 0)
		return errno == ENOENT ? -ENOENT : 0; /* other errors: cannot tell */
	if (st.st_dev != s->st.st_dev || st.st_ino != s->st.st_ino)
		return -ESTALE;
	return 0;
}

/* The one adapter from SQLite result codes to -errno. */
static int sql_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	default:
		return -EIO;
	}
}

const char *store_errmsg(struct store *s)
{
	return s && s->db ? sqlite3_errmsg(s->db) : "no database";
}

static int prep(struct store *s, enum stmt_id id, sqlite3_stmt **ret)
{
	int rc;

	if (!s->stmt[id]) {
		rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		                        &s->stmt[id], NULL);
		if (rc != SQLITE_OK)
			return sql_errno(rc);
	}
	sqlite3_reset(s->stmt[id]);
	sqlite3_clear_bindings(s->stmt[id]);
	*ret = s->stmt[id];
	return 0;
}

/* Run a statement that returns no rows; *ret_changes may be NULL. */
static int run(struct store *s, sqlite3_stmt *st, int64_t *ret_changes)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sql_errno(rc);
	if (!s->in_tx && !sqlite3_stmt_readonly(st))
		uncontended(s);
	if (ret_changes)
		*ret_changes = sqlite3_changes64(s->db);
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static void bind_opt_int(sqlite3_stmt *st, int i, int64_t v)
{
	if (v >= 0)
		sqlite3_bind_int64(st, i, v);
	else
		sqlite3_bind_null(st, i);
}

static int exec(struct store *s, const char *sql)
{
	return sql_errno(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

int store_schema_version(struct store *s)
{
	sqlite3_stmt *st = NULL;
	int v = -1;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

int store_limit_size(struct store *s, int64_t max_bytes)
{
	sqlite3_stmt *st = NULL;
	int64_t page = 4096;
	char sql[64];

	if (max_bytes <= 0)
		return 0;
	if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		page = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
	         (long long)(max_bytes / page > 0 ? max_bytes / page : 1));
	return exec(s, sql);
}

static int migrate(struct store *s)
{
	char pragma[64];
	int cur, r = 0;
	size_t i;

	cur = store_schema_version(s);
	if (cur < 0)
		return -EIO;
	if (migrations_count > 0 && cur > migrations[migrations_count - 1].version)
		return -EPROTO; /* a newer llmqd wrote this database */
	for (i = 0; i < migrations_count; i++) {
		if (migrations[i].version <= cur)
			continue;
		r = exec(s, "BEGIN IMMEDIATE");
		if (r < 0)
			return r;
		r = exec(s, migrations[i].sql);
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", migrations[i].version);
		if (r == 0)
			r = exec(s, pragma);
		if (r == 0)
			r = exec(s, "COMMIT");
		if (r < 0) {
			exec(s, "ROLLBACK");
			return r;
		}
	}
	return 0;
}

/*
 * Whether rc says the disk had no room for what opening needs: the WAL's
 * shared-memory index (SQLite writes a byte into each of its pages so that
 * a full tmpfs fails the write rather than raising SIGBUS on the mapping),
 * or a page.
 */
static int store_no_room(sqlite3 *db, int rc)
{
	int ext = sqlite3_extended_errcode(db);

	return (rc & 0xff) == SQLITE_FULL || ext == SQLITE_IOERR_SHMSIZE ||
	       ext == SQLITE_IOERR_SHMOPEN || ext == SQLITE_IOERR_SHMMAP ||
	       ext == SQLITE_IOERR_WRITE || ext == SQLITE_IOERR_TRUNCATE;
}

static int store_connect(struct store *s, int exclusive)
{
	int persist = 1, rc;

	if (s->db) {
		sqlite3_close(s->db);
		s->db = NULL;
	}
	rc =
	    sqlite3_open_v2(s->path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return sql_errno(rc);
	sqlite3_busy_handler(s->db, on_busy, s);
	sqlite3_extended_result_codes(s->db, 1);
	/*
	 * Keep the WAL and its shared-memory index when closing: a restart on a
	 * full disk then finds them made, instead of needing room for them.
	 */
	sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	/* Before the first read: then SQLite keeps the WAL's index in memory. */
	if (exclusive)
		rc = sqlite3_exec(s->db, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL);
	/*
	 * Only takes on a new file, before its tables: then retention gives
	 * space back. Setting it writes the header even when it is set already,
	 * so on a file with tables it is not set again: opening writes nothing.
	 */
	if (rc == SQLITE_OK && store_schema_version(s) == 0)
		rc = sqlite3_exec(s->db, "PRAGMA auto_vacuum = INCREMENTAL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return 0;
	return store_no_room(s->db, rc) ? -ENOSPC : sql_errno(rc);
}

int store_open(const char *path, struct store **ret)
{
	struct store *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->patient = 1;
	s->path = strdup(path);
	if (!s->path) {
		r = -ENOMEM;
		goto out;
	}
	r = store_connect(s, 0);
	if (r == -ENOSPC) {
		/* No room for the index's file: keep it in memory, others locked out. */
		r = store_connect(s, 1);
		if (r == 0)
			s->exclusive = 1;
	}
	if (r == 0)
		r = exec(s, "PRAGMA synchronous = NORMAL");
	/* Off while migrating: a migration may rebuild a table others refer to. */
	if (r == 0)
		r = migrate(s);
	if (r == 0)
		r = exec(s, "PRAGMA foreign_keys = ON");
	if (r == 0 && stat(path, &s->st) < 0)
		r = -errno;
out:
	if (r < 0) {
		store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

int store_exclusive(const struct store *s)
{
	return s->exclusive;
}

void store_free(struct store *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; i < S__COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	free(s->held);
	free(s->reading);
	free(s->path);
	free(s);
}

static int simple(struct store *s, enum stmt_id id)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, id, &st);

	return r < 0 ? r : run(s, st, NULL);
}

int store_tx_begin(struct store *s)
{
	int r = simple(s, S_BEGIN);

	if (r == 0)
		s->in_tx = 1;
	return r;
}

int store_tx_commit(struct store *s)
{
	int r = simple(s, S_COMMIT);

	if (r == 0) {
		s->in_tx = 0;
		uncontended(s);
	}
	return r;
}

int store_tx_rollback(struct store *s)
{
	int r = 0;

	if (!sqlite3_get_autocommit(s->db))
		r = simple(s, S_ROLLBACK);
	s->in_tx = 0;
	return r;
}

int store_recover(struct store *s, int64_t now, int64_t *ret_requeued)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0;
	int r;

	r = store_tx_begin(s);
	if (r < 0)
		return r;
	r = prep(s, S_RECOVER_ATTEMPTS, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, now);
		r = run(s, st, NULL);
	}
	if (r == 0)
		r = prep(s, S_RECOVER_JOBS, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, now);
		r = run(s, st, &n);
	}
	/* Batches a crash caught while they were being stored: never started. */
	if (r == 0)
		r = prep(s, S_RECOVER_LOADING, &st);
	if (r == 0)
		r = run(s, st, NULL);
	/* ... and the jobs of a stored batch that were still to be let go. */
	if (r == 0)
		r = prep(s, S_RECOVER_HELD, &st);
	if (r == 0)
		r = run(s, st, NULL);
	if (r == 0)
		r = store_tx_commit(s);
	if (r < 0) {
		store_tx_rollback(s);
		return r;
	}
	if (ret_requeued)
		*ret_requeued = n;
	return 0;
}

int store_batch_insert(struct store *s, const struct store_batch *b)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_BATCH_INSERT, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, b->id);
	sqlite3_bind_int64(st, 2, b->created_at);
	bind_opt_int(st, 3, b->uid);
	bind_text(st, 4, b->input_name);
	sqlite3_bind_int64(st, 5, b->window_ms);
	sqlite3_bind_int64(st, 6, b->total);
	sqlite3_bind_int64(st, 7, b->est_tokens);
	sqlite3_bind_int64(st, 8, b->priority);
	bind_text(st, 9, b->idempotency_key);
	bind_text(st, 10, b->state);
	bind_text(st, 11, b->endpoint);
	bind_text(st, 12, b->input_file_id);
	bind_text(st, 13, b->metadata);
	bind_text(st, 14, b->errors);
	if (b->finished_at > 0)
		sqlite3_bind_int64(st, 15, b->finished_at);
	else
		sqlite3_bind_null(st, 15);
	return run(s, st, NULL);
}

int store_lane_window_get(struct store *s, const char *lane, const char *base_url, char *window,
                          size_t len, int64_t *ret_at, int64_t *ret_phase)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *v;
	int r = prep(s, S_LANE_WINDOW_GET, &st), rc;

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	bind_text(st, 2, base_url);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		v = sqlite3_column_text(st, 0);
		snprintf(window, len, "%s", v ? (const char *)v : "");
		*ret_at = sqlite3_column_int64(st, 1);
		*ret_phase =
		    sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
		r = 1;
	} else {
		r = sql_errno(rc);
	}
	sqlite3_reset(st);
	return r;
}

int store_lane_window_set(struct store *s, const char *lane, const char *base_url,
                          const char *window, int64_t at, int64_t phase)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_LANE_WINDOW_SET, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	bind_text(st, 2, base_url);
	bind_text(st, 3, window);
	sqlite3_bind_int64(st, 4, at);
	bind_opt_int(st, 5, phase);
	return run(s, st, NULL);
}

int store_batch_by_key(struct store *s, int64_t uid, const char *key, char id[static 19],
                       int64_t *ret_total)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *v;
	int r = prep(s, S_BATCH_BY_KEY, &st), rc;

	if (r < 0)
		return r;
	bind_opt_int(st, 1, uid);
	bind_text(st, 2, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		v = sqlite3_column_text(st, 0);
		snprintf(id, 19, "%s", v ? (const char *)v : "");
		*ret_total = sqlite3_column_int64(st, 1);
		r = 1;
	} else {
		r = sql_errno(rc);
	}
	sqlite3_reset(st);
	return r;
}

int store_job_insert(struct store *s, const struct store_job_new *j, int64_t now)
{
	sqlite3_stmt *st = NULL;
	char held[80];
	int r = prep(s, S_JOB_INSERT, &st);

	if (r < 0)
		return r;
	snprintf(held, sizeof(held), "~%s", j->lane);
	bind_text(st, 1, j->batch_id);
	sqlite3_bind_int64(st, 2, j->line);
	bind_text(st, 3, j->custom_id);
	bind_text(st, 4, j->url);
	bind_text(st, 5, j->model);
	bind_text(st, 6, j->held ? held : j->lane);
	sqlite3_bind_text64(st, 7, j->body, j->body_len, SQLITE_STATIC, SQLITE_UTF8);
	sqlite3_bind_int64(st, 8, j->est_tokens);
	sqlite3_bind_int64(st, 9, now);
	sqlite3_bind_int64(st, 10, j->priority);
	return run(s, st, NULL);
}

int store_batch_states(struct store *s, const char *const *states, int n, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int i, r, rc;

	for (i = 0; i < n; i++) {
		r = prep(s, S_BATCH_STATES, &st);
		if (r < 0)
			return r;
		bind_text(st, 1, states[i]);
		rc = sqlite3_step(st);
		ret[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_reset(st);
		if (rc != SQLITE_ROW)
			return sql_errno(rc) ? sql_errno(rc) : -EIO;
	}
	return 0;
}

static int prune_step(struct store *s, enum stmt_id id, int64_t before, int limit, int64_t *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, id, &st);

	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, before);
	if (id != S_PRUNE_BATCHES)
		sqlite3_bind_int(st, 2, limit);
	if (id != S_PRUNE_CALLS)
		sqlite3_bind_text(st, 3, s->reading ? s->reading : "[]", -1, SQLITE_STATIC);
	return run(s, st, ret_n);
}

/* The held batches as a JSON array, for the prune statements. */
static int store_reading_text(struct store *s)
{
	json_object *a = json_object_new_array();
	char *text = NULL;
	int i;

	if (!a)
		return -ENOMEM;
	for (i = 0; i < s->n_held; i++)
		json_object_array_add(a, json_object_new_string(s->held[i].id));
	text = strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
	json_object_put(a);
	if (!text)
		return -ENOMEM;
	free(s->reading);
	s->reading = text;
	return 0;
}

int store_batch_hold(struct store *s, const char *id)
{
	struct store_held *h;
	int i;

	for (i = 0; i < s->n_held; i++)
		if (strcmp(s->held[i].id, id) == 0) {
			s->held[i].n++;
			return 0;
		}
	if (s->n_held == s->cap_held) {
		int cap = s->cap_held ? s->cap_held * 2 : 8;

		h = realloc(s->held, (size_t)cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		s->held = h;
		s->cap_held = cap;
	}
	h = &s->held[s->n_held++];
	snprintf(h->id, sizeof(h->id), "%s", id);
	h->n = 1;
	return store_reading_text(s);
}

void store_batch_unhold(struct store *s, const char *id)
{
	int i;

	for (i = 0; i < s->n_held; i++) {
		if (strcmp(s->held[i].id, id) != 0)
			continue;
		if (--s->held[i].n == 0) {
			s->held[i] = s->held[--s->n_held];
			if (store_reading_text(s) < 0) {
				free(s->reading); /* "[]" then: the next hold builds it again */
				s->reading = NULL;
			}
		}
		return;
	}
}

int store_prune(struct store *s, int64_t before, int limit, int64_t *ret_rows)
{
	int64_t jobs = 0, calls = 0, batches = 0;
	char sql[64];
	int r;

	r = store_tx_begin(s);
	if (r < 0)
		return r;
	r = prune_step(s, S_PRUNE_JOBS, before, limit, &jobs);
	if (r == 0)
		r = prune_step(s, S_PRUNE_CALLS, before, limit, &calls);
	if (r == 0 && jobs < limit)
		r = prune_step(s, S_PRUNE_BATCHES, before, limit, &batches);
	if (r == 0)
		r = store_tx_commit(s);
	if (r < 0) {
		store_tx_rollback(s);
		return r;
	}
	/* Give the freed pages back to the file system, a bounded step at a time. */
	snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%d)", limit);
	if (jobs + calls + batches > 0)
		exec(s, sql);
	*ret_rows = jobs + calls + batches;
	return 0;
}

int store_db_bytes(struct store *s, int64_t *ret)
{
	sqlite3_stmt *st;
	int64_t pages = -1, size = -1;

	if (sqlite3_prepare_v2(s->db, "PRAGMA page_count", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		pages = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		size = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (pages < 0 || size < 0)
		return -EIO;
	*ret = pages * size;
	return 0;
}

int store_call_insert(struct store *s, const struct store_call *c)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_CALL_INSERT, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, c->call_id);
	sqlite3_bind_int(st, 2, c->try_no);
	bind_text(st, 3, c->lane);
	bind_text(st, 4, c->endpoint);
	bind_text(st, 5, c->model);
	sqlite3_bind_int(st, 6, c->stream);
	bind_opt_int(st, 7, c->uid);
	sqlite3_bind_int64(st, 8, c->started_at);
	sqlite3_bind_int64(st, 9, c->ended_at);
	bind_text(st, 10, c->outcome);
	bind_opt_int(st, 11, c->status_code > 0 ? c->status_code : -1);
	bind_text(st, 12, c->error_code);
	bind_opt_int(st, 13, c->retry_after_ms);
	sqlite3_bind_int64(st, 14, c->tokens_charged);
	bind_opt_int(st, 15, c->tokens_used);
	bind_opt_int(st, 16, c->gate_wait_ms);
	bind_opt_int(st, 17, c->latency_ms);
	bind_text(st, 18, c->request_id);
	bind_text(st, 19, c->request_body);
	bind_text(st, 20, c->response_body);
	bind_opt_int(st, 21, c->prompt_tokens);
	bind_opt_int(st, 22, c->cached_tokens);
	bind_opt_int(st, 23, c->completion_tokens);
	bind_opt_int(st, 24, c->cost_nusd);
	return run(s, st, NULL);
}

static char *col_dup(sqlite3_stmt *st, int i, size_t *ret_len)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	int n = sqlite3_column_bytes(st, i);
	char *p;

	if (!t)
		return NULL;
	p = malloc((size_t)n + 1);
	if (!p)
		return NULL;
	memcpy(p, t, (size_t)n);
	p[n] = '\0';
	if (ret_len)
		*ret_len = (size_t)n;
	return p;
}

void store_job_clear(struct store_job *j)
{
	if (!j)
		return;
	free(j->batch_id);
	free(j->custom_id);
	free(j->url);
	free(j->body);
	free(j->model);
	memset(j, 0, sizeof(*j));
}

/* Step st (bound by the caller) for one job row; 1 and *ret filled, 0 when
 * none. *ret_paused: its batch is paused. */
static int job_row(sqlite3_stmt *st, struct store_job *ret, int *ret_paused)
{
	struct store_job j = {0};
	int r, rc;

	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		r = sql_errno(rc);
		sqlite3_reset(st);
		return r;
	}
	j.id = sqlite3_column_int64(st, 0);
	j.batch_id = col_dup(st, 1, NULL);
	j.custom_id = col_dup(st, 2, NULL);
	j.url = col_dup(st, 3, NULL);
	j.body = col_dup(st, 4, &j.body_len);
	j.est_tokens = sqlite3_column_int64(st, 5);
	j.attempts = sqlite3_column_int(st, 6);
	j.queued_since = sqlite3_column_int64(st, 7);
	j.free_tries = sqlite3_column_int(st, 8);
	j.lane_wait_ms = sqlite3_column_int64(st, 9);
	j.model = col_dup(st, 10, NULL);
	*ret_paused = sqlite3_column_int(st, 11);
	j.uid = sqlite3_column_int64(st, 12);
	sqlite3_reset(st);
	if (!j.batch_id || !j.custom_id || !j.url || !j.body || !j.model) {
		store_job_clear(&j);
		return -ENOMEM;
	}
	*ret = j;
	return 1;
}

static int ready_after(struct store *s, const char *lane, int64_t now, int64_t uid, int64_t prio,
                       const char *after, struct store_job *ret, int *ret_paused)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_NEXT_READY, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, prio);
	bind_text(st, 4, after);
	sqlite3_bind_int64(st, 5, uid);
	return job_row(st, ret, ret_paused);
}

/* One number from a statement bound by the caller: 1 and *ret, 0 when no row. */
static int step_int(sqlite3_stmt *st, int64_t *ret)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sql_errno(rc);
}

/* The highest priority below below of uid's ready jobs on lane: 1, or 0 when none. */
static int ready_priority(struct store *s, const char *lane, int64_t now, int64_t uid,
                          int64_t below, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_NEXT_PRIORITY, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, below);
	sqlite3_bind_int64(st, 4, uid);
	return step_int(st, ret);
}

/* The first user after after with a ready job on lane: 1, or 0 when none. */
static int ready_user(struct store *s, const char *lane, int64_t now, int64_t after, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_NEXT_USER, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, after);
	return step_int(st, ret);
}

/* Past this many paused batches and users passed over in one look, a lane
 * waits for its next pump. */
#define STORE_READY_MAX_SKIPS 10000

/*
 * uid's next ready job on lane: of their highest priority, from their first
 * batch after after_batch, then from their first again; a paused batch is
 * stepped over by its id (*skips counts them). 1, or 0 when none.
 */
static int ready_of_user(struct store *s, const char *lane, int64_t now, int64_t uid,
                         const char *after_batch, struct store_job *ret, int *skips)
{
	char after[STORE_ID_LEN + 8];
	int64_t below = INT64_MAX, prio = 0;
	int r, paused = 0, wrapped;

	while ((r = ready_priority(s, lane, now, uid, below, &prio)) == 1) {
		snprintf(after, sizeof(after), "%s",
		         below == INT64_MAX && after_batch ? after_batch : "");
		wrapped = !after[0];
		while (*skips < STORE_READY_MAX_SKIPS) {
			r = ready_after(s, lane, now, uid, prio, after, ret, &paused);
			if (r < 0)
				return r;
			if (r == 0 && wrapped)
				break;
			if (r == 0) {
				after[0] = '\0';
				wrapped = 1;
				continue;
			}
			if (!paused)
				return 1;
			snprintf(after, sizeof(after), "%s", ret->batch_id);
			store_job_clear(ret);
			(*skips)++;
		}
		if (*skips >= STORE_READY_MAX_SKIPS)
			return 0;
		below = prio; /* every batch of this priority is paused: the next one down */
	}
	return r;
}

int store_next_ready_pick(struct store *s, const char *lane, int64_t now,
                          const struct store_pick *p, struct store_job *ret)
{
	struct store_job job, later = {0};
	int64_t from = p->after_uid, uid = 0;
	int r, have_later = 0, wrapped = p->after_uid == STORE_UID_FIRST, skips = 0;
	enum store_pick_verdict v;

	/* The users after the one served last, then from the first up to it. */
	while (skips < STORE_READY_MAX_SKIPS) {
		r = ready_user(s, lane, now, from, &uid);
		if (r < 0)
			goto out;
		if (r == 0 || (wrapped && p->after_uid != STORE_UID_FIRST && uid > p->after_uid)) {
			if (wrapped)
				break;
			wrapped = 1;
			from = STORE_UID_FIRST;
			continue;
		}
		from = uid;
		r = ready_of_user(s, lane, now, uid,
		                  p->last_batch ? p->last_batch(p->ud, uid) : NULL, &job, &skips);
		if (r < 0)
			goto out;
		if (r == 0)
			continue;
		v = p->judge ? p->judge(p->ud, &job) : STORE_PICK_GO;
		if (v == STORE_PICK_GO) {
			store_job_clear(&later);
			*ret = job;
			return 1;
		}
		if (v == STORE_PICK_LATER && !have_later) {
			later = job;
			have_later = 1;
		} else {
			store_job_clear(&job);
		}
		skips++;
	}
	/* Nobody else may go: a user over their share goes (work-conserving). */
	if (have_later) {
		*ret = later;
		return 1;
	}
	return 0;
out:
	store_job_clear(&later);
	return r;
}

/* The single-user form: batches in turn after after_batch, for every user alike. */
static const char *store_same_batch(void *ud, int64_t uid)
{
	(void)uid;
	return ud;
}

int store_next_ready(struct store *s, const char *lane, int64_t now, const char *after_batch,
                     struct store_job *ret)
{
	struct store_pick p = {
	    .after_uid = STORE_UID_FIRST,
	    .last_batch = store_same_batch,
	    .ud = (void *)after_batch,
	};

	return store_next_ready_pick(s, lane, now, &p, ret);
}

int store_next_wakeup(struct store *s, const char *lane, int64_t now, int64_t *ret_ms)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_NEXT_WAKEUP, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	r = step_int(st, ret_ms);
	if (r == 0)
		*ret_ms = INT64_MAX;
	return r < 0 ? r : 0;
}

/*
 * An operation of several statements is atomic: its own transaction, or,
 * inside a caller's transaction (a group of them in one commit), a savepoint
 * that is rolled back alone when the operation fails.
 */
#define TX_BEGIN(s, own)                                                                           \
	do {                                                                                       \
		(own) = !(s)->in_tx;                                                               \
		r = (own) ? store_tx_begin(s) : simple((s), S_SAVEPOINT);                          \
		if (r < 0)                                                                         \
			return r;                                                                  \
	} while (0)

static int tx_end(struct store *s, int own, int r)
{
	if (!own) {
		if (r < 0)
			simple(s, S_ROLLBACK_TO);
		simple(s, S_RELEASE);
		return r;
	}
	if (r == 0)
		r = store_tx_commit(s);
	if (r < 0)
		store_tx_rollback(s);
	return r;
}

int store_batch_release(struct store *s, const char *id, int64_t first, int64_t last, int start)
{
	sqlite3_stmt *st = NULL;
	int r, own;

	TX_BEGIN(s, own);
	r = start ? prep(s, S_BATCH_RELEASE, &st) : 0;
	if (r == 0 && start) {
		bind_text(st, 1, id);
		r = run(s, st, NULL);
	}
	if (r == 0)
		r = prep(s, S_BATCH_RELEASE_JOBS, &st);
	if (r == 0) {
		bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, first);
		sqlite3_bind_int64(st, 3, last);
		r = run(s, st, NULL);
	}
	return tx_end(s, own, r);
}

int64_t store_last_insert_id(struct store *s)
{
	return sqlite3_last_insert_rowid(s->db);
}

int store_batch_delete(struct store *s, const char *id)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_BATCH_DELETE, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, id);
	return run(s, st, NULL);
}

int store_job_start(struct store *s, const struct store_job *j, const char *lane, int64_t now,
                    int64_t tokens_charged, int64_t gate_wait_ms, int64_t *ret_attempt_id)
{
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	int r, own;

	TX_BEGIN(s, own);
	r = prep(s, S_JOB_START, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, j->id);
		sqlite3_bind_int64(st, 2, now);
		r = run(s, st, &changed);
	}
	if (r == 0 && changed != 1)
		r = -ESTALE; /* no longer queued: cancelled meanwhile */
	if (r == 0)
		r = prep(s, S_ATTEMPT_INSERT, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, j->id);
		bind_text(st, 2, lane);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int64(st, 4, tokens_charged);
		sqlite3_bind_int64(st, 5, gate_wait_ms);
		r = run(s, st, NULL);
	}
	r = tx_end(s, own, r);
	if (r == 0)
		*ret_attempt_id = sqlite3_last_insert_rowid(s->db);
	return r;
}

/* running -> a final state, and the batch completed when it was its last job
 * (its id into ret_ended then, when not NULL). */
static int finish(struct store *s, int64_t job_id, const struct store_outcome *o, int64_t now,
                  char *ret_ended)
{
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	int r, rc;

	r = prep(s, S_JOB_FINISH, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, job_id);
	bind_text(st, 2, o->job_state);
	bind_opt_int(st, 3, o->status_code > 0 ? o->status_code : -1);
	bind_text(st, 4, o->request_id);
	if (o->response)
		sqlite3_bind_text64(st, 5, o->response, o->response_len, SQLITE_STATIC,
		                    SQLITE_UTF8);
	bind_text(st, 6, o->error_code);
	bind_text(st, 7, o->error_message);
	bind_opt_int(st, 8, o->prompt_tokens);
	bind_opt_int(st, 9, o->completion_tokens);
	bind_opt_int(st, 10, o->total_tokens);
	sqlite3_bind_int64(st, 11, now);
	sqlite3_bind_int(st, 12, o->response && o->response_json);
	r = run(s, st, &changed);
	if (r == 0 && changed != 1)
		r = -ESTALE;
	if (r == 0)
		r = prep(s, S_BATCH_REFRESH, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, job_id);
		sqlite3_bind_int64(st, 2, now);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && ret_ended)
			snprintf(ret_ended, STORE_ID_LEN, "%s",
			         (const char *)sqlite3_column_text(st, 0));
		sqlite3_reset(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			r = sql_errno(rc);
	}
	return r;
}

/* 1 when the job's batch is being cancelled, 0 when not, or -errno. */
static int batch_cancelling(struct store *s, int64_t job_id)
{
	sqlite3_stmt *st = NULL;
	int r, rc;

	r = prep(s, S_JOB_BATCH_STATE, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, job_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		r = strcmp((const char *)sqlite3_column_text(st, 0), "cancelling") == 0;
	else
		r = rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	sqlite3_reset(st);
	return r;
}

static int requeue(struct store *s, int64_t job_id, const struct store_outcome *o, int64_t now,
                   char *ret_ended)
{
	struct store_outcome c;
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	int r;

	r = batch_cancelling(s, job_id);
	if (r < 0)
		return r;
	if (r == 1) {
		c = *o;
		c.job_state = "cancelled";
		c.error_code = "batch_cancelled";
		c.error_message = "the batch was cancelled before this request could be retried";
		return finish(s, job_id, &c, now, ret_ended);
	}
	r = prep(s, S_JOB_REQUEUE, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, job_id);
	sqlite3_bind_int64(st, 2, o->not_before);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int(st, 4, o->free_try);
	sqlite3_bind_int64(st, 5, o->lane_wait_ms);
	r = run(s, st, &changed);
	if (r == 0 && changed != 1)
		r = -ESTALE;
	return r;
}

int store_job_complete(struct store *s, int64_t job_id, int64_t attempt_id,
                       const struct store_outcome *o, int64_t now, char *ret_ended)
{
	sqlite3_stmt *st = NULL;
	int r, own, i;

	TX_BEGIN(s, own);
	/* Sends the upstream saw but no answer came back for: one row each. */
	for (i = 0, r = 0; r == 0 && i < o->lost_sends; i++) {
		r = prep(s, S_ATTEMPT_LOST, &st);
		if (r == 0) {
			sqlite3_bind_int64(st, 1, attempt_id);
			sqlite3_bind_int64(st, 2, now);
			r = run(s, st, NULL);
		}
	}
	if (r == 0)
		r = prep(s, S_ATTEMPT_END, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, attempt_id);
		sqlite3_bind_int64(st, 2, now);
		bind_text(st, 3, o->attempt_outcome);
		bind_opt_int(st, 4, o->status_code > 0 ? o->status_code : -1);
		bind_text(st, 5, o->error_code);
		bind_text(st, 6, o->error_message);
		bind_opt_int(st, 7, o->retry_after_ms);
		bind_opt_int(st, 8, o->total_tokens);
		bind_opt_int(st, 9, o->latency_ms);
		bind_text(st, 10, o->request_id);
		bind_opt_int(st, 11, o->remaining_tokens);
		bind_opt_int(st, 12, o->remaining_requests);
		bind_opt_int(st, 13, o->prompt_tokens);
		bind_opt_int(st, 14, o->cached_tokens);
		bind_opt_int(st, 15, o->completion_tokens);
		bind_opt_int(st, 16, o->cost_nusd);
		r = run(s, st, NULL);
	}
	if (r == 0)
		r = o->job_state ? finish(s, job_id, o, now, ret_ended)
		                 : requeue(s, job_id, o, now, ret_ended);
	return tx_end(s, own, r);
}

static void put_int_or_null(json_object *o, const char *key, sqlite3_stmt *st, int i)
{
	json_object_object_add(o, key,
	                       sqlite3_column_type(st, i) == SQLITE_NULL
	                           ? NULL
	                           : json_object_new_int64(sqlite3_column_int64(st, i)));
}

static void put_text_or_null(json_object *o, const char *key, sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);

	json_object_object_add(o, key, t ? json_object_new_string(t) : NULL);
}

/* A column holding JSON written by llmqd, as the value it holds. */
static void put_json_or_null(json_object *o, const char *key, sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);

	json_object_object_add(o, key, t ? json_tokener_parse(t) : NULL);
}

static json_object *batch_row(sqlite3_stmt *st)
{
	static const char *const counts[] = {"queued", "running", "succeeded", "failed",
	                                     "cancelled"};
	json_object *o = json_object_new_object(), *c = json_object_new_object();
	const char *t;
	int i;

	if (!o || !c) {
		json_object_put(o);
		json_object_put(c);
		return NULL;
	}
	json_object_object_add(o, "id",
	                       json_object_new_string((const char *)sqlite3_column_text(st, 0)));
	json_object_object_add(o, "state",
	                       json_object_new_string((const char *)sqlite3_column_text(st, 1)));
	json_object_object_add(o, "created_at", json_object_new_int64(sqlite3_column_int64(st, 2)));
	put_int_or_null(o, "uid", st, 3);
	t = (const char *)sqlite3_column_text(st, 4);
	json_object_object_add(o, "input_name", t ? json_object_new_string(t) : NULL);
	json_object_object_add(o, "window_ms", json_object_new_int64(sqlite3_column_int64(st, 5)));
	json_object_object_add(o, "total", json_object_new_int64(sqlite3_column_int64(st, 6)));
	json_object_object_add(o, "est_tokens", json_object_new_int64(sqlite3_column_int64(st, 7)));
	put_int_or_null(o, "finished_at", st, 8);
	for (i = 0; i < 5; i++)
		json_object_object_add(c, counts[i],
		                       json_object_new_int64(sqlite3_column_int64(st, 9 + i)));
	json_object_object_add(o, "counts", c);
	put_int_or_null(o, "tokens_used", st, 14);
	put_int_or_null(o, "tokens_pending", st, 15);
	put_int_or_null(o, "expired_at", st, 16);
	put_text_or_null(o, "endpoint", st, 17);
	put_text_or_null(o, "input_file_id", st, 18);
	put_json_or_null(o, "metadata", st, 19);
	put_json_or_null(o, "errors", st, 20);
	put_int_or_null(o, "cancelling_at", st, 21);
	put_text_or_null(o, "name", st, 22);
	put_int_or_null(o, "paused_at", st, 23);
	put_int_or_null(o, "paused_by", st, 24);
	put_int_or_null(o, "retried_at", st, 25);
	return o;
}

int store_expire(struct store *s, int64_t now, int64_t *ret_jobs)
{
	static const enum stmt_id steps[] = {S_EXPIRE_MARK, S_EXPIRE_JOBS, S_EXPIRE_FINISH};
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	size_t i;
	int r, own;

	*ret_jobs = 0;
	TX_BEGIN(s, own);
	for (i = 0, r = 0; r == 0 && i < sizeof(steps) / sizeof(steps[0]); i++) {
		r = prep(s, steps[i], &st);
		if (r == 0) {
			sqlite3_bind_int64(st, 1, now);
			r = run(s, st, &changed);
		}
		if (r == 0 && steps[i] == S_EXPIRE_JOBS)
			*ret_jobs = changed;
	}
	return tx_end(s, own, r);
}

static int batch_get(struct store *s, enum stmt_id which, const char *id, json_object **ret)
{
	sqlite3_stmt *st = NULL;
	json_object *o;
	int r, rc;

	r = prep(s, which, &st);
	if (r < 0)
		return r;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		r = -ENOENT;
	else if (rc != SQLITE_ROW)
		r = sql_errno(rc);
	else if (!(o = batch_row(st)))
		r = -ENOMEM;
	else
		*ret = o;
	sqlite3_reset(st);
	return r;
}

int store_batch_get(struct store *s, const char *id, json_object **ret)
{
	return batch_get(s, S_BATCH_GET, id, ret);
}

int store_batch_brief(struct store *s, const char *id, json_object **ret)
{
	return batch_get(s, S_BATCH_BRIEF, id, ret);
}

/* The rows of a bound batch query, as an array. */
static int batch_rows(sqlite3_stmt *st, json_object **ret)
{
	json_object *arr = json_object_new_array(), *o;
	int rc;

	if (!arr) {
		sqlite3_reset(st);
		return -ENOMEM;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		o = batch_row(st);
		if (!o) {
			rc = SQLITE_NOMEM;
			break;
		}
		json_object_array_add(arr, o);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		json_object_put(arr);
		return sql_errno(rc);
	}
	*ret = arr;
	return 0;
}

int store_batch_page(struct store *s, int64_t uid, const char *after, int limit, json_object **ret)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_BATCH_PAGE, &st);

	if (r < 0)
		return r;
	bind_opt_int(st, 1, uid);
	bind_text(st, 2, after);
	sqlite3_bind_int(st, 3, limit);
	return batch_rows(st, ret);
}

static void file_row(sqlite3_stmt *st, struct store_file *f)
{
	const char *t;

	memset(f, 0, sizeof(*f));
	snprintf(f->id, sizeof(f->id), "%s", (const char *)sqlite3_column_text(st, 0));
	f->uid = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
	f->created_at = sqlite3_column_int64(st, 2);
	t = (const char *)sqlite3_column_text(st, 3);
	snprintf(f->filename, sizeof(f->filename), "%s", t ? t : "");
	t = (const char *)sqlite3_column_text(st, 4);
	snprintf(f->purpose, sizeof(f->purpose), "%s", t ? t : "");
	f->bytes = sqlite3_column_int64(st, 5);
	f->lines = sqlite3_column_int64(st, 6);
}

int store_file_insert(struct store *s, const struct store_file *f)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_FILE_INSERT, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, f->id);
	bind_opt_int(st, 2, f->uid);
	sqlite3_bind_int64(st, 3, f->created_at);
	bind_text(st, 4, f->filename);
	bind_text(st, 5, f->purpose);
	sqlite3_bind_int64(st, 6, f->bytes);
	sqlite3_bind_int64(st, 7, f->lines);
	return run(s, st, NULL);
}

int store_file_get(struct store *s, const char *id, struct store_file *ret)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_FILE_GET, &st), rc;

	if (r < 0)
		return r;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		file_row(st, ret);
	r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	sqlite3_reset(st);
	return r;
}

int store_file_list(struct store *s, int64_t uid, const char *after, int limit,
                    struct store_file *ret, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_FILE_LIST, &st), rc, n = 0;

	if (r < 0)
		return r;
	bind_opt_int(st, 1, uid);
	bind_text(st, 2, after);
	sqlite3_bind_int(st, 3, limit);
	while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
		file_row(st, &ret[n++]);
	if (n == limit)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_errno(rc);
	*ret_n = n;
	return 0;
}

int store_file_delete(struct store *s, const char *id)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0;
	int r = prep(s, S_FILE_DELETE, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, id);
	r = run(s, st, &n);
	return r < 0 ? r : n == 0 ? -ENOENT : 0;
}

static int store_sum_of(struct store *s, enum stmt_id id, int64_t uid, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, id, &st), rc;

	if (r < 0)
		return r;
	bind_opt_int(st, 1, uid);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sql_errno(rc == SQLITE_DONE ? SQLITE_ERROR : rc);
}

int store_files_bytes(struct store *s, int64_t uid, int64_t *ret)
{
	return store_sum_of(s, S_FILES_BYTES, uid, ret);
}

int store_unfinished_jobs(struct store *s, int64_t uid, int64_t *ret)
{
	return store_sum_of(s, S_UNFINISHED_JOBS, uid, ret);
}

int store_batch_list(struct store *s, const struct store_batch_filter *f, json_object **ret)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_BATCH_LIST, &st);

	if (r < 0)
		return r;
	sqlite3_bind_int(st, 1, f->limit);
	sqlite3_bind_int64(st, 2, f->uid);
	bind_text(st, 3, f->states_json);
	sqlite3_bind_int64(st, 4, f->since);
	return batch_rows(st, ret);
}

int store_batch_cancel(struct store *s, const char *id, int64_t now, int64_t *ret_cancelled)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0, changed = 0;
	json_object *b = NULL;
	int r, own;

	r = store_batch_get(s, id, &b);
	json_object_put(b);
	if (r < 0)
		return r;
	TX_BEGIN(s, own);
	r = prep(s, S_BATCH_CANCEL_JOBS, &st);
	if (r == 0) {
		bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = run(s, st, &n);
	}
	if (r == 0)
		r = prep(s, S_BATCH_CANCEL, &st);
	if (r == 0) {
		bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = run(s, st, &changed);
	}
	r = tx_end(s, own, r);
	if (r == 0 && ret_cancelled)
		*ret_cancelled = n;
	return r;
}

/* A job's stored answer, handed to cb in chunks as read from its row. */
static int stream_response(struct store *s, int64_t job_id, store_line_cb cb, void *userdata)
{
	char chunk[64 * 1024];
	sqlite3_blob *blob = NULL;
	int total, off, n, r;

	r = sql_errno(sqlite3_blob_open(s->db, "main", "jobs", "response", job_id, 0, &blob));
	if (r < 0)
		return r;
	total = sqlite3_blob_bytes(blob);
	for (off = 0; off < total && r == 0; off += n) {
		n = total - off < (int)sizeof(chunk) ? total - off : (int)sizeof(chunk);
		r = sql_errno(sqlite3_blob_read(blob, chunk, n, off));
		if (r == 0)
			r = cb(userdata, chunk, (size_t)n, 0);
	}
	sqlite3_blob_close(blob);
	return r;
}

int store_results(struct store *s, const char *id, int64_t after, int limit, int errors,
                  store_line_cb cb, void *userdata, int64_t *ret_last, int *ret_count,
                  int *ret_more)
{
	sqlite3_stmt *st = NULL;
	int64_t last = after;
	int r, rc, count = 0;

	r = prep(s, errors ? S_RESULTS_ERR : S_RESULTS_OK, &st);
	if (r < 0)
		return r;
	bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, after);
	sqlite3_bind_int(st, 3, limit);
	*ret_more = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		last = sqlite3_column_int64(st, 0);
		r = cb(userdata, (const char *)sqlite3_column_text(st, 1),
		       (size_t)sqlite3_column_bytes(st, 1), 0);
		if (r == 0 && sqlite3_column_type(st, 2) == SQLITE_NULL)
			r = stream_response(s, last, cb, userdata);
		else if (r == 0)
			r = cb(userdata, (const char *)sqlite3_column_text(st, 2),
			       (size_t)sqlite3_column_bytes(st, 2), 0);
		if (r == 0)
			r = cb(userdata, (const char *)sqlite3_column_text(st, 3),
			       (size_t)sqlite3_column_bytes(st, 3), 1);
		if (r < 0)
			break;
		count++;
		if (r > 0) {
			*ret_more = 1; /* the caller has enough: the rest on the next page */
			r = 0;
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	if (r == 0 && rc != SQLITE_DONE)
		r = sql_errno(rc);
	if (r == 0) {
		*ret_last = last;
		*ret_count = count;
		if (count == limit)
			*ret_more = 1;
	}
	return r;
}

static int backlog(struct store *s, enum stmt_id id, const char *lane, const char *batch,
                   int64_t *ret_jobs, int64_t *ret_tokens)
{
	sqlite3_stmt *st = NULL;
	int r, rc;

	r = prep(s, id, &st);
	if (r < 0)
		return r;
	if (lane)
		bind_text(st, 1, lane);
	if (batch)
		bind_text(st, 2, batch);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret_jobs = sqlite3_column_int64(st, 0);
		*ret_tokens = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sql_errno(rc);
}

int store_backlog(struct store *s, const char *lane, int64_t *ret_jobs, int64_t *ret_tokens)
{
	return backlog(s, lane ? S_BACKLOG : S_BACKLOG_ALL, lane, NULL, ret_jobs, ret_tokens);
}

int store_backlog_upto(struct store *s, const char *lane, const char *batch_id, int64_t *ret_jobs,
                       int64_t *ret_tokens)
{
	return backlog(s, S_BACKLOG_UPTO, lane, batch_id, ret_jobs, ret_tokens);
}

int store_batch_lanes(struct store *s, const char *batch_id, struct store_batch_lane *ret, int max,
                      int *ret_n)
{
	sqlite3_stmt *st = NULL;
	const char *lane;
	int r = prep(s, S_BATCH_LANES, &st), rc, n = 0;

	if (r < 0)
		return r;
	bind_text(st, 1, batch_id);
	sqlite3_bind_int(st, 2, max);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		lane = (const char *)sqlite3_column_text(st, 0);
		snprintf(ret[n].lane, sizeof(ret[n].lane), "%s", lane ? lane : "");
		ret[n].jobs = sqlite3_column_int64(st, 1);
		ret[n].first_not_before = sqlite3_column_int64(st, 2);
		ret[n].last_not_before = sqlite3_column_int64(st, 3);
		n++;
	}
	if (n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_errno(rc);
	*ret_n = n;
	return 0;
}

int store_batch_lane_counts(struct store *s, const char *batch_id, struct store_batch_lane *ret,
                            int max, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	const char *lane;
	int r = prep(s, S_BATCH_LANE_COUNTS, &st), rc, n = 0;

	if (r < 0)
		return r;
	bind_text(st, 1, batch_id);
	sqlite3_bind_int(st, 2, max);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		lane = (const char *)sqlite3_column_text(st, 0);
		memset(&ret[n], 0, sizeof(ret[n]));
		snprintf(ret[n].lane, sizeof(ret[n].lane), "%s", lane ? lane : "");
		ret[n].jobs = sqlite3_column_int64(st, 1);
		n++;
	}
	if (n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_errno(rc);
	*ret_n = n;
	return 0;
}

int store_usage_day(struct store *s, const char *day, struct store_usage *ret, int max, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_USAGE_DAY, &st), rc, n = 0;

	if (r < 0)
		return r;
	bind_text(st, 1, day);
	sqlite3_bind_int(st, 2, max);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret[n] = (struct store_usage){
		    .uid = sqlite3_column_int64(st, 0),
		    .requests = sqlite3_column_int64(st, 1),
		    .tokens = sqlite3_column_int64(st, 2),
		    .failed = sqlite3_column_int64(st, 3),
		    .rate_limited = sqlite3_column_int64(st, 4),
		    .cost_nusd = sqlite3_column_int64(st, 5),
		    .unpriced_tokens = sqlite3_column_int64(st, 6),
		};
		n++;
	}
	if (n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_errno(rc);
	*ret_n = n;
	return 0;
}

static void column_copy(sqlite3_stmt *st, int i, char *buf, size_t len)
{
	const char *v = (const char *)sqlite3_column_text(st, i);

	snprintf(buf, len, "%s", v ? v : "");
}

static void usage_bind(sqlite3_stmt *st, const struct store_usage_query *q)
{
	bind_text(st, 1, q->pieces_json);
	sqlite3_bind_int(st, 2, q->by_period);
	sqlite3_bind_int(st, 3, q->by_user);
	sqlite3_bind_int(st, 4, q->by_model);
	sqlite3_bind_int(st, 5, q->by_lane);
	sqlite3_bind_int(st, 6, q->by_class);
	sqlite3_bind_int(st, 7, q->all);
	sqlite3_bind_int64(st, 8, q->uid);
}

/* Step st, each row into row by fill, to cb; 0, or the first error. */
static int usage_rows(sqlite3_stmt *st, void (*fill)(sqlite3_stmt *, struct store_usage_row *),
                      store_usage_cb cb, void *userdata)
{
	struct store_usage_row row;
	int r = 0, rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&row, 0, sizeof(row));
		fill(st, &row);
		r = cb(userdata, &row);
		if (r < 0)
			break;
	}
	sqlite3_reset(st);
	if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		r = sql_errno(rc);
	return r;
}

/* Columns from first on: requests .. rate_limited. */
static void usage_figures(sqlite3_stmt *st, int first, struct store_usage_row *r)
{
	int64_t *f[] = {&r->requests,          &r->prompt_tokens, &r->cached_tokens,
	                &r->completion_tokens, &r->tokens,        &r->cost_nusd,
	                &r->unpriced_tokens,   &r->failed,        &r->rate_limited};
	size_t i;

	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		*f[i] = sqlite3_column_int64(st, first + (int)i);
}

static void usage_report_row(sqlite3_stmt *st, struct store_usage_row *r)
{
	r->period = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
	r->uid = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
	column_copy(st, 2, r->model, sizeof(r->model));
	column_copy(st, 3, r->lane, sizeof(r->lane));
	column_copy(st, 4, r->class_name, sizeof(r->class_name));
	usage_figures(st, 5, r);
}

int store_usage_report(struct store *s, const struct store_usage_query *q, store_usage_cb cb,
                       void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_USAGE_REPORT, &st);

	if (r < 0)
		return r;
	usage_bind(st, q);
	return usage_rows(st, usage_report_row, cb, userdata);
}

static void usage_unpriced_row(sqlite3_stmt *st, struct store_usage_row *r)
{
	r->period = r->uid = -1;
	column_copy(st, 0, r->model, sizeof(r->model));
	r->unpriced_tokens = sqlite3_column_int64(st, 1);
}

int store_usage_unpriced(struct store *s, const struct store_usage_query *q, store_usage_cb cb,
                         void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_USAGE_UNPRICED, &st);

	if (r < 0)
		return r;
	usage_bind(st, q);
	return usage_rows(st, usage_unpriced_row, cb, userdata);
}

static void usage_total_row(sqlite3_stmt *st, struct store_usage_row *r)
{
	r->period = -1;
	r->uid = sqlite3_column_int64(st, 0);
	column_copy(st, 1, r->class_name, sizeof(r->class_name));
	column_copy(st, 2, r->lane, sizeof(r->lane));
	column_copy(st, 3, r->model, sizeof(r->model));
	usage_figures(st, 4, r);
}

int store_usage_totals(struct store *s, store_usage_cb cb, void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_USAGE_TOTALS, &st);

	return r < 0 ? r : usage_rows(st, usage_total_row, cb, userdata);
}

int store_budget_spent(struct store *s, const char *day, const char *month_first,
                       const char *month_next, store_spent_cb cb, void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_BUDGET_SPENT, &st), rc;

	if (r < 0)
		return r;
	bind_text(st, 1, day);
	bind_text(st, 2, month_first);
	bind_text(st, 3, month_next);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = cb(userdata, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
		       sqlite3_column_int64(st, 2));
		if (r < 0) {
			sqlite3_reset(st);
			return r;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sql_errno(rc);
}

int64_t store_vm_steps(struct store *s)
{
	int64_t n = 0;
	int i;

	for (i = 0; i < S__COUNT; i++)
		if (s->stmt[i])
			n += sqlite3_stmt_status(s->stmt[i], SQLITE_STMTSTATUS_VM_STEP, 0);
	return n;
}

int store_lane_paused_get(struct store *s, const char *lane, int64_t *ret_at, int64_t *ret_by)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_LANE_PAUSED_GET, &st), rc;

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret_at = sqlite3_column_int64(st, 0);
		*ret_by =
		    sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sql_errno(rc);
}

int store_lane_paused_set(struct store *s, const char *lane, int64_t at, int64_t by)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, at > 0 ? S_LANE_PAUSED_SET : S_LANE_PAUSED_DEL, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, lane);
	if (at > 0) {
		sqlite3_bind_int64(st, 2, at);
		bind_opt_int(st, 3, by);
	}
	return run(s, st, NULL);
}

int store_batch_pause(struct store *s, const char *id, int64_t at, int64_t by, int64_t *ret_changed)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_BATCH_PAUSE, &st);

	if (r < 0)
		return r;
	bind_text(st, 1, id);
	if (at > 0) {
		sqlite3_bind_int64(st, 2, at);
		bind_opt_int(st, 3, by);
	}
	return run(s, st, ret_changed);
}

int store_batches_paused(struct store *s, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_BATCHES_PAUSED, &st), rc;

	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sql_errno(rc) ? sql_errno(rc) : -EIO;
}

int store_batch_retry_failed(struct store *s, const char *id, int64_t now, int64_t *ret_jobs)
{
	sqlite3_stmt *st = NULL;
	int64_t jobs = 0, changed = 0;
	int r, own;

	TX_BEGIN(s, own);
	r = prep(s, S_RETRY_BATCH, &st);
	if (r == 0) {
		bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = run(s, st, &changed);
	}
	if (r == 0 && changed != 1)
		r = -EBUSY; /* not completed: still running, cancelled, or failed as a whole */
	if (r == 0)
		r = prep(s, S_RETRY_JOBS, &st);
	if (r == 0) {
		bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = run(s, st, &jobs);
	}
	/* Nothing failed: the batch stays as it was. */
	if (r == 0 && jobs == 0)
		r = -ENODATA;
	r = tx_end(s, own, r);
	if (r == -ENODATA) {
		*ret_jobs = 0;
		return 0;
	}
	if (r == 0)
		*ret_jobs = jobs;
	return r;
}

int store_recent_errors(struct store *s, int64_t uid, int64_t since, int scan,
                        struct store_error *ret, int max, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = prep(s, S_RECENT_ERRORS, &st), rc, n = 0;

	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int(st, 2, max);
	sqlite3_bind_int(st, 3, scan);
	sqlite3_bind_int64(st, 4, since);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_error *e = &ret[n++];

		column_copy(st, 0, e->class_name, sizeof(e->class_name));
		column_copy(st, 1, e->lane, sizeof(e->lane));
		e->at = sqlite3_column_int64(st, 2);
		e->status_code = sqlite3_column_int(st, 3);
		column_copy(st, 4, e->code, sizeof(e->code));
		column_copy(st, 5, e->message, sizeof(e->message));
		column_copy(st, 6, e->batch_id, sizeof(e->batch_id));
		column_copy(st, 7, e->custom_id, sizeof(e->custom_id));
		e->uid =
		    sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 8);
		column_copy(st, 9, e->model, sizeof(e->model));
	}
	if (n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sql_errno(rc);
	*ret_n = n;
	return 0;
}

int store_new_batch_id(char buf[static 19])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[8];
	int i;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -errno;
	buf[0] = 'b';
	buf[1] = '_';
	for (i = 0; i < 8; i++) {
		buf[2 + 2 * i] = hex[rnd[i] >> 4];
		buf[3 + 2 * i] = hex[rnd[i] & 15];
	}
	buf[18] = '\0';
	return 0;
}

int store_open_writer(struct store *s, struct store **ret)
{
	struct store *w = NULL;
	sqlite3_stmt *st = NULL;
	int64_t pages = 0;
	char sql[64];
	int r;

	if (s->exclusive || !sqlite3_threadsafe())
		return -ENOTSUP;
	if (sqlite3_prepare_v2(s->db, "PRAGMA max_page_count", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		pages = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	r = store_open(s->path, &w);
	if (r < 0)
		return r;
	if (w->exclusive) {
		r = -ENOTSUP;
		goto out;
	}
	w->patient = 0;
	r = sql_errno(sqlite3_busy_timeout(w->db, STORE_WRITER_WAIT_MS));
	if (r == 0 && pages > 0) {
		snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)pages);
		r = exec(w, sql);
	}
out:
	if (r < 0) {
		store_free(w);
		return r;
	}
	*ret = w;
	return 0;
}

int store_checkpoint(struct store *s)
{
	return sql_errno(
	    sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL));
}

int store_autocheckpoint(struct store *s, int pages)
{
	return sql_errno(sqlite3_wal_autocheckpoint(s->db, pages));
}

void store_note_contended(struct store *s, int64_t since)
{
	if (!since)
		s->contended_since = 0;
	else if (!s->contended_since)
		s->contended_since = since;
}

void store_on_sibling(struct store *s, int (*wait)(void *), void *userdata)
{
	s->sibling = wait;
	s->sibling_ud = userdata;
}
