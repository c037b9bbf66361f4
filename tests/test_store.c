/* The store: migrations, state transitions, recovery, cancel, results. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/migrations.h"
#include "store/store.h"

static char dir[] = "/tmp/llmq-test-store-XXXXXX";
static char path[256];
static struct store *st;

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/llmq.db", dir);
	cr_assert_eq(store_open(path, &st), 0);
}

/*
 * The counts the triggers keep (job_counts) are the jobs' counts, whatever a
 * test did to them: checked after every test of the store.
 */
static void counts_match(void)
{
	static const char *const diff =
	    "SELECT (SELECT count(*) FROM ("
	    "  SELECT batch_id, lane, state, count(*), sum(est_tokens),"
	    "         coalesce(sum(total_tokens), 0) FROM jobs GROUP BY 1, 2, 3"
	    "  EXCEPT SELECT batch_id, lane, state, jobs, est_tokens, total_tokens"
	    "         FROM job_counts WHERE jobs != 0))"
	    "     + (SELECT count(*) FROM ("
	    "  SELECT batch_id, lane, state, jobs, est_tokens, total_tokens"
	    "         FROM job_counts WHERE jobs != 0"
	    "  EXCEPT SELECT batch_id, lane, state, count(*), sum(est_tokens),"
	    "         coalesce(sum(total_tokens), 0) FROM jobs GROUP BY 1, 2, 3))";
	sqlite3 *db;
	sqlite3_stmt *q;

	if (access(path, F_OK) != 0 ||
	    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return;
	cr_expect_eq(sqlite3_prepare_v2(db, diff, -1, &q, NULL), SQLITE_OK, "%s",
	             sqlite3_errmsg(db));
	cr_expect_eq(sqlite3_step(q), SQLITE_ROW);
	cr_expect_eq(sqlite3_column_int64(q, 0), 0, "job_counts differs from the jobs in %lld rows",
	             (long long)sqlite3_column_int64(q, 0));
	sqlite3_finalize(q);
	sqlite3_close(db);
}

static void teardown(void)
{
	char cmd[300];

	counts_match();
	store_free(st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(store, .init = setup, .fini = teardown);

static void add_batch_prio(const char *id, int jobs, int64_t prio);

static void add_batch(const char *id, int jobs)
{
	add_batch_prio(id, jobs, 0);
}

static int64_t count(const char *batch, const char *state)
{
	json_object *b, *c, *v;
	int64_t n;

	cr_assert_eq(store_batch_get(st, batch, &b), 0);
	json_object_object_get_ex(b, "counts", &c);
	json_object_object_get_ex(c, state, &v);
	n = json_object_get_int64(v);
	json_object_put(b);
	return n;
}

/* One count from a statement of the database, with batch as ?1 (may be NULL). */
static int64_t sql_count(const char *sql, const char *batch)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int64_t n = -1;

	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sql);
	if (batch)
		sqlite3_bind_text(q, 1, batch, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

/* Jobs of a batch, whatever their state or lane. */
static int64_t count_jobs(const char *batch)
{
	return sql_count("SELECT count(*) FROM jobs WHERE batch_id = ?1", batch);
}

/* Attempts of a batch's jobs. */
static int64_t count_attempts(const char *batch)
{
	return sql_count("SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id "
	                 "WHERE j.batch_id = ?1",
	                 batch);
}

static const char *batch_state(const char *batch, char *buf, size_t len)
{
	json_object *b, *v;

	cr_assert_eq(store_batch_get(st, batch, &b), 0);
	json_object_object_get_ex(b, "state", &v);
	snprintf(buf, len, "%s", json_object_get_string(v));
	json_object_put(b);
	return buf;
}

static struct store_outcome ok_outcome(void)
{
	struct store_outcome o = {.job_state = "succeeded",
	                          .attempt_outcome = "succeeded",
	                          .status_code = 200,
	                          .request_id = "req_1",
	                          .response = "{\"usage\":{\"total_tokens\":7}}",
	                          .response_len = 29,
	                          .retry_after_ms = -1,
	                          .prompt_tokens = 3,
	                          .completion_tokens = 4,
	                          .total_tokens = 7,
	                          .latency_ms = 12,
	                          .remaining_tokens = 900,
	                          .remaining_requests = -1};
	return o;
}

Test(store, migrations_set_user_version)
{
	cr_assert_eq(store_schema_version(st), migrations[migrations_count - 1].version);
}

Test(store, reopen_existing_file_keeps_data)
{
	add_batch("b_0000000000000001", 3);
	store_free(st);
	cr_assert_eq(store_open(path, &st), 0);
	cr_assert_eq(count("b_0000000000000001", "queued"), 3);
}

/* A database of schema 4 with a running batch: migration 5 rebuilds the
 * batches table, and nothing of the jobs that refer to it may be lost. */
Test(store, rebuilding_batches_keeps_their_jobs)
{
	char other[300], *err = NULL;
	sqlite3 *db;
	size_t i;

	snprintf(other, sizeof(other), "%s/v4.db", dir);
	cr_assert_eq(sqlite3_open(other, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL), SQLITE_OK);
	for (i = 0; i < migrations_count && migrations[i].version <= 4; i++)
		cr_assert_eq(sqlite3_exec(db, migrations[i].sql, NULL, NULL, &err), SQLITE_OK,
		             "%s: %s", migrations[i].name, err ? err : "");
	cr_assert_eq(sqlite3_exec(db,
	                          "PRAGMA user_version = 4;"
	                          "INSERT INTO batches (id, created_at, window_ms, total, "
	                          "est_tokens, idempotency_key, submitter_uid) VALUES "
	                          "('b_0000000000000009', 1, 60000, 2, 20, 'k', 1000);"
	                          "INSERT INTO jobs (batch_id, line, custom_id, url, model, lane, "
	                          "body, est_tokens, updated_at) VALUES "
	                          "('b_0000000000000009', 1, 'a', '/v1/chat/completions', 'm', "
	                          "'default', '{}', 10, 1), ('b_0000000000000009', 2, 'b', "
	                          "'/v1/chat/completions', 'm', 'default', '{}', 10, 1);",
	                          NULL, NULL, &err),
	             SQLITE_OK, "%s", err ? err : "");
	sqlite3_close(db);
	store_free(st);
	cr_assert_eq(store_open(other, &st), 0);
	cr_assert_eq(store_schema_version(st), migrations[migrations_count - 1].version);
	cr_assert_eq(count("b_0000000000000009", "queued"), 2);
	store_free(st);
	st = NULL;
	cr_assert_eq(sqlite3_open(other, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db,
	                          "SELECT 1 FROM batch_summary; SELECT 1 FROM traffic;"
	                          "INSERT INTO batches (id, created_at, window_ms, total, "
	                          "est_tokens, state, errors) VALUES ('b_000000000000000a', 1, "
	                          "1, 0, 0, 'failed', '[]')",
	                          NULL, NULL, &err),
	             SQLITE_OK, "%s", err ? err : "");
	/* The idempotency key is still unique per submitter. */
	cr_assert_neq(sqlite3_exec(db,
	                           "INSERT INTO batches (id, created_at, window_ms, total, "
	                           "est_tokens, idempotency_key, submitter_uid) VALUES "
	                           "('b_000000000000000b', 1, 60000, 0, 0, 'k', 1000)",
	                           NULL, NULL, NULL),
	              SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(store_open(path, &st), 0);
}

Test(store, refuses_newer_schema)
{
	sqlite3 *db;

	store_free(st);
	st = NULL;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(store_open(path, &st), -EPROTO);
	st = NULL;
}

Test(store, lifecycle_to_completed)
{
	struct store_job j;
	struct store_outcome o = ok_outcome();
	int64_t attempt;
	char s[32];

	add_batch("b_0000000000000002", 2);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
		cr_assert_str_eq(j.custom_id, i == 0 ? "c0" : "c1", "FIFO order");
		cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 5, &attempt), 0);
		cr_assert_eq(count("b_0000000000000002", "running"), 1);
		cr_assert_str_eq(batch_state("b_0000000000000002", s, sizeof(s)), "in_progress");
		cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
		/* A second answer for the same job is refused: stored exactly once. */
		cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2200, NULL), -ESTALE);
		store_job_clear(&j);
	}
	cr_assert_eq(store_next_ready(st, "openai", 3000, NULL, &j), 0);
	cr_assert_eq(count("b_0000000000000002", "succeeded"), 2);
	cr_assert_str_eq(batch_state("b_0000000000000002", s, sizeof(s)), "completed");
}

Test(store, requeue_respects_not_before)
{
	struct store_job j;
	struct store_outcome o = {.attempt_outcome = "retry",
	                          .status_code = 500,
	                          .error_code = "server_error",
	                          .retry_after_ms = -1,
	                          .prompt_tokens = -1,
	                          .completion_tokens = -1,
	                          .total_tokens = -1,
	                          .latency_ms = 3,
	                          .remaining_tokens = -1,
	                          .remaining_requests = -1,
	                          .not_before = 5000};
	int64_t attempt, wake;

	add_batch("b_0000000000000003", 1);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
	store_job_clear(&j);
	cr_assert_eq(store_next_ready(st, "openai", 4999, NULL, &j), 0, "not before 5000");
	cr_assert_eq(store_next_wakeup(st, "openai", 4999, &wake), 0);
	cr_assert_eq(wake, 5000);
	cr_assert_eq(store_next_ready(st, "openai", 5000, NULL, &j), 1);
	cr_assert_eq(j.attempts, 1);
	store_job_clear(&j);
	cr_assert_eq(store_next_wakeup(st, "other-lane", 4999, &wake), 0);
	cr_assert_eq(wake, INT64_MAX);
}

Test(store, recover_requeues_running_and_closes_attempts)
{
	struct store_job j;
	int64_t attempt, n = 0;
	sqlite3 *db;
	sqlite3_stmt *q;

	add_batch("b_0000000000000004", 3);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	store_job_clear(&j);
	/* The daemon dies here; a new one opens the file. */
	store_free(st);
	cr_assert_eq(store_open(path, &st), 0);
	cr_assert_eq(store_recover(st, 3000, 3000, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(count("b_0000000000000004", "queued"), 3);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT outcome, ended_at FROM attempts", -1, &q, NULL),
	             SQLITE_OK);
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "interrupted");
	cr_assert_eq(sqlite3_column_int64(q, 1), 3000);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

Test(store, cancel_keeps_running_until_done)
{
	struct store_job j;
	struct store_outcome o = ok_outcome();
	int64_t attempt, n = 0;
	char s[32];

	add_batch("b_0000000000000005", 3);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	cr_assert_eq(store_batch_cancel(st, "b_0000000000000005", 2050, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(batch_state("b_0000000000000005", s, sizeof(s)), "cancelling");
	cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
	store_job_clear(&j);
	cr_assert_str_eq(batch_state("b_0000000000000005", s, sizeof(s)), "cancelled");
	cr_assert_eq(count("b_0000000000000005", "succeeded"), 1);
	cr_assert_eq(count("b_0000000000000005", "cancelled"), 2);
	cr_assert_eq(store_batch_cancel(st, "b_00000000000000ff", 2050, &n), -ENOENT);
}

Test(store, retry_in_cancelling_batch_is_cancelled)
{
	struct store_job j;
	struct store_outcome o = {.attempt_outcome = "retry",
	                          .status_code = 503,
	                          .retry_after_ms = -1,
	                          .prompt_tokens = -1,
	                          .completion_tokens = -1,
	                          .total_tokens = -1,
	                          .not_before = 9000};
	int64_t attempt, n;
	char s[32];

	add_batch("b_0000000000000006", 1);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	cr_assert_eq(store_batch_cancel(st, "b_0000000000000006", 2050, &n), 0);
	cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
	store_job_clear(&j);
	cr_assert_eq(count("b_0000000000000006", "cancelled"), 1);
	cr_assert_str_eq(batch_state("b_0000000000000006", s, sizeof(s)), "cancelled");
}

struct lines {
	int n;
	int stop_after; /* end the page after this many lines (0: never) */
	char first[512];
};

static int collect(void *ud, const char *bytes, size_t len, int end)
{
	struct lines *l = ud;
	size_t have = strlen(l->first);

	if (l->n == 0)
		snprintf(l->first + have, sizeof(l->first) - have, "%.*s", (int)len, bytes);
	if (!end)
		return 0;
	l->n++;
	return l->n == l->stop_after;
}

Test(store, results_in_batch_output_format)
{
	struct store_job j;
	struct store_outcome o = ok_outcome();
	struct lines l = {0};
	int64_t attempt, last;
	int n, more, i;
	json_object *line, *resp, *body, *v;

	add_batch("b_0000000000000007", 3);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
		cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
		cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
		store_job_clear(&j);
	}
	/* The taker ends the page early (its byte bound): the rest comes next. */
	l.stop_after = 1;
	cr_assert_eq(
	    store_results(st, "b_0000000000000007", 0, 10, 0, collect, &l, &last, &n, &more), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(more, 1);
	line = json_tokener_parse(l.first);
	cr_assert_not_null(line, "%s", l.first);
	json_object_object_get_ex(line, "custom_id", &v);
	cr_assert_str_eq(json_object_get_string(v), "c0");
	cr_assert(json_object_object_get_ex(line, "error", &v) && v == NULL);
	json_object_object_get_ex(line, "response", &resp);
	json_object_object_get_ex(resp, "status_code", &v);
	cr_assert_eq(json_object_get_int(v), 200);
	json_object_object_get_ex(resp, "body", &body);
	cr_assert(json_object_is_type(body, json_type_object), "body embedded as JSON");
	json_object_put(line);
	l.n = 0;
	l.stop_after = 0;
	cr_assert_eq(
	    store_results(st, "b_0000000000000007", last, 10, 0, collect, &l, &last, &n, &more), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(more, 0);
	/* Paging: nothing after the last id. */
	l.n = 0;
	cr_assert_eq(
	    store_results(st, "b_0000000000000007", last, 10, 0, collect, &l, &last, &n, &more), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(more, 0);
}

struct whole {
	char *buf;
	size_t len, cap;
	int lines;
};

static int collect_whole(void *ud, const char *bytes, size_t len, int end)
{
	struct whole *w = ud;

	if (w->len + len + 2 > w->cap) {
		w->cap = (w->len + len + 2) * 2;
		w->buf = realloc(w->buf, w->cap);
		cr_assert_not_null(w->buf);
	}
	memcpy(w->buf + w->len, bytes, len);
	w->len += len;
	if (end) {
		w->buf[w->len++] = '\n';
		w->lines++;
	}
	w->buf[w->len] = '\0';
	return 0;
}

Test(store, a_large_answer_is_streamed_into_its_result_line)
{
	struct store_outcome o = ok_outcome();
	struct whole w = {0};
	struct store_job j;
	int64_t attempt, last;
	size_t n = 300000, i;
	char *big = malloc(n + 64);
	int count, more;
	json_object *line, *v;

	/* One line of valid JSON, larger than a chunk: read from the row piecewise. */
	cr_assert_not_null(big);
	i = (size_t)sprintf(big, "{\"choices\":[{\"text\":\"");
	memset(big + i, 'z', n);
	strcpy(big + i + n, "\"}]}");
	add_batch("b_000000000000000b", 2);
	o.response = big;
	o.response_len = strlen(big);
	o.response_json = 1;
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
	store_job_clear(&j);
	/* And a body that is not JSON: quoted as a string. */
	o = ok_outcome();
	o.response = "<html>bad gateway</html>";
	o.response_len = strlen(o.response);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
	store_job_clear(&j);
	cr_assert_eq(store_results(st, "b_000000000000000b", 0, 10, 0, collect_whole, &w, &last,
	                           &count, &more),
	             0);
	cr_assert_eq(count, 2);
	cr_assert_eq(w.lines, 2);
	{
		static const char head[] =
		    "{\"id\":\"batch_req_1\",\"custom_id\":\"c0\",\"response\":"
		    "{\"status_code\":200,\"request_id\":\"req_1\",\"body\":";
		static const char tail[] = "},\"error\":null}\n";

		cr_assert_eq(strncmp(w.buf, head, sizeof(head) - 1), 0, "%.200s", w.buf);
		cr_assert_eq(memcmp(w.buf + sizeof(head) - 1, big, strlen(big)), 0, "as stored");
		cr_assert_eq(
		    strncmp(w.buf + sizeof(head) - 1 + strlen(big), tail, sizeof(tail) - 1), 0,
		    "%.200s", w.buf + sizeof(head) - 1 + strlen(big));
	}
	line = json_tokener_parse(w.buf);
	cr_assert_not_null(line, "the first line is valid JSON");
	cr_assert(json_object_object_get_ex(line, "response", &v) &&
	          json_object_object_get_ex(v, "body", &v) &&
	          json_object_is_type(v, json_type_object));
	json_object_put(line);
	line = json_tokener_parse(strchr(w.buf, '\n') + 1);
	cr_assert_not_null(line);
	cr_assert(json_object_object_get_ex(line, "response", &v) &&
	          json_object_object_get_ex(v, "body", &v));
	cr_assert_str_eq(json_object_get_string(v), "<html>bad gateway</html>");
	json_object_put(line);
	free(w.buf);
	free(big);
}

Test(store, a_learned_window_is_kept_per_lane_and_upstream)
{
	char w[16];
	int64_t at = 0, phase = 0;

	cr_assert_eq(store_lane_window_get(st, "openai", "https://a/v1", w, sizeof(w), &at, &phase),
	             0, "nothing learned yet");
	cr_assert_eq(store_lane_window_set(st, "openai", "https://a/v1", "second", 1000, -1), 0);
	cr_assert_eq(store_lane_window_set(st, "openai", "https://a/v1", "second", 1000, 370), 0);
	cr_assert_eq(store_lane_window_get(st, "openai", "https://a/v1", w, sizeof(w), &at, &phase),
	             1);
	cr_assert_str_eq(w, "second");
	cr_assert_eq(at, 1000);
	cr_assert_eq(phase, 370);
	cr_assert_eq(store_lane_window_get(st, "openai", "https://b/v1", w, sizeof(w), &at, &phase),
	             0, "another upstream of the same lane knows nothing");
}

Test(store, backlog_counts_queued_and_running)
{
	int64_t jobs, tokens;

	add_batch("b_0000000000000008", 4);
	cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 4);
	cr_assert_eq(tokens, 400);
	cr_assert_eq(store_backlog(st, "other", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 0);
}

Test(store, views_exist_for_people)
{
	sqlite3 *db;

	add_batch("b_0000000000000009", 2);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "SELECT * FROM batch_summary; SELECT * FROM job_history;",
	                          NULL, NULL, NULL),
	             SQLITE_OK);
	sqlite3_close(db);
}

Test(store, a_job_in_backoff_never_holds_back_ready_ones)
{
	struct store_outcome o = {.attempt_outcome = "retry",
	                          .status_code = 500,
	                          .retry_after_ms = -1,
	                          .prompt_tokens = -1,
	                          .completion_tokens = -1,
	                          .total_tokens = -1,
	                          .remaining_tokens = -1,
	                          .remaining_requests = -1,
	                          .not_before = 60000};
	struct store_job j;
	int64_t attempt;

	add_batch("b_000000000000000a", 1);
	add_batch("b_000000000000000b", 1);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_str_eq(j.batch_id, "b_000000000000000a");
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
	store_job_clear(&j);
	/* The older batch's job waits until 60000; the newer one's is ready now. */
	cr_assert_eq(store_next_ready(st, "openai", 2200, NULL, &j), 1);
	cr_assert_str_eq(j.batch_id, "b_000000000000000b");
	store_job_clear(&j);
}

Test(store, attempts_keep_the_providers_view)
{
	struct store_job j;
	struct store_outcome o = ok_outcome();
	int64_t attempt;
	sqlite3 *db;
	sqlite3_stmt *q;

	add_batch("b_000000000000000c", 1);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 7, &attempt), 0);
	cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
	store_job_clear(&j);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db,
	                                "SELECT tokens_charged, tokens_used, gate_wait_ms, "
	                                "remaining_tokens, remaining_requests, status_code "
	                                "FROM job_history",
	                                -1, &q, NULL),
	             SQLITE_OK);
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	cr_assert_eq(sqlite3_column_int(q, 0), 100);
	cr_assert_eq(sqlite3_column_int(q, 1), 7);
	cr_assert_eq(sqlite3_column_int(q, 2), 7);
	cr_assert_eq(sqlite3_column_int(q, 3), 900);
	cr_assert_eq(sqlite3_column_type(q, 4), SQLITE_NULL);
	cr_assert_eq(sqlite3_column_int(q, 5), 200);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

/* A batch of jobs; held ones (a batch being stored) report their id range. */
static void add_batch_full(const char *id, int jobs, int64_t prio, const char *state, int held,
                           int64_t *first, int64_t *last)
{
	struct store_batch b = {.id = id,
	                        .created_at = 1000,
	                        .uid = 42,
	                        .input_name = "in.jsonl",
	                        .window_ms = 86400000,
	                        .total = jobs,
	                        .est_tokens = 100 * jobs,
	                        .priority = prio,
	                        .state = state};
	char cid[32];
	int i;

	cr_assert_eq(store_tx_begin(st), 0);
	cr_assert_eq(store_batch_insert(st, &b), 0);
	for (i = 0; i < jobs; i++) {
		snprintf(cid, sizeof(cid), "c%d", i);
		struct store_job_new j = {.batch_id = id,
		                          .line = i + 1,
		                          .custom_id = cid,
		                          .url = "/v1/chat/completions",
		                          .model = "gpt-x",
		                          .lane = "openai",
		                          .body = "{\"model\":\"gpt-x\"}",
		                          .body_len = 17,
		                          .est_tokens = 100,
		                          .priority = prio,
		                          .held = held};
		cr_assert_eq(store_job_insert(st, &j, 1000), 0);
		if (i == 0 && first)
			*first = store_last_insert_id(st);
	}
	if (last)
		*last = store_last_insert_id(st);
	cr_assert_eq(store_tx_commit(st), 0);
}

static void add_batch_prio(const char *id, int jobs, int64_t prio)
{
	add_batch_full(id, jobs, prio, NULL, 0, NULL, NULL);
}

static void next_batch(const char *after, char *ret, size_t len)
{
	struct store_job j;

	cr_assert_eq(store_next_ready(st, "openai", 2000, after, &j), 1);
	snprintf(ret, len, "%s", j.batch_id);
	store_job_clear(&j);
}

Test(store, batches_take_turns_and_priority_goes_first)
{
	char got[32], last[32] = "";
	int i;

	add_batch_prio("b_000000000000000b", 100, 0);
	add_batch_prio("b_000000000000000a", 3, 0);
	/* Round-robin: a, b, a, b, ... whichever batch came last. */
	for (i = 0; i < 4; i++) {
		next_batch(last, got, sizeof(got));
		cr_assert_str_neq(got, last, "turn %d went to the same batch", i);
		snprintf(last, sizeof(last), "%s", got);
	}
	/* A higher priority batch goes before all of them, turn or not. */
	add_batch_prio("b_00000000000000ff", 2, 5);
	next_batch("b_000000000000000a", got, sizeof(got));
	cr_assert_str_eq(got, "b_00000000000000ff");
	next_batch("b_00000000000000ff", got, sizeof(got));
	cr_assert_str_eq(got, "b_00000000000000ff", "alone at its priority");
}

Test(store, calls_are_recorded_and_shown_in_traffic)
{
	struct store_call c = {.call_id = "c_1",
	                       .try_no = 1,
	                       .lane = "openai",
	                       .endpoint = "/v1/chat/completions",
	                       .model = "gpt-x",
	                       .uid = 1000,
	                       .started_at = 5000,
	                       .ended_at = 5100,
	                       .outcome = "succeeded",
	                       .status_code = 200,
	                       .retry_after_ms = -1,
	                       .tokens_charged = 30,
	                       .tokens_used = 25,
	                       .gate_wait_ms = 3,
	                       .latency_ms = 90,
	                       .request_id = "req_9"};
	sqlite3 *db;
	sqlite3_stmt *s;

	cr_assert_eq(store_call_insert(st, &c), 0);
	c.call_id = "c_2";
	c.outcome = "refused";
	c.status_code = 0;
	c.tokens_used = -1;
	c.latency_ms = -1;
	cr_assert_eq(store_call_insert(st, &c), 0);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(
	    sqlite3_prepare_v2(db,
	                       "SELECT count(*), sum(tokens_used), sum(status_code IS NULL) "
	                       "FROM traffic WHERE class = 'interactive' AND uid = 1000",
	                       -1, &s, NULL),
	    SQLITE_OK);
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
	cr_assert_eq(sqlite3_column_int(s, 0), 2);
	cr_assert_eq(sqlite3_column_int(s, 1), 25);
	cr_assert_eq(sqlite3_column_int(s, 2), 1, "a refused call has no upstream status");
	sqlite3_finalize(s);
	sqlite3_close(db);
}

/* A batch stored in slices: held jobs (lane "~openai"). */
static void add_held(const char *id, int jobs, const char *state, int64_t *first, int64_t *last)
{
	add_batch_full(id, jobs, 0, state, 1, first, last);
}

Test(store, held_jobs_never_run_until_released_in_ranges)
{
	struct store_job j;
	int64_t first = 0, last = 0, jobs, wake;
	char buf[32];

	add_held("b_00000000000000h1", 4, "validating", &first, &last);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 0, "held jobs are not ready");
	cr_assert_eq(store_next_wakeup(st, "openai", 0, &wake), 0);
	cr_assert_eq(wake, INT64_MAX, "nor do they wake the lane");
	cr_assert_eq(store_backlog(st, "openai", &jobs, &wake), 0);
	cr_assert_eq(jobs, 0);
	/* The first range makes the batch in_progress and lets its jobs go. */
	cr_assert_eq(store_batch_release(st, "b_00000000000000h1", first, first + 1, 1), 0);
	cr_assert_str_eq(batch_state("b_00000000000000h1", buf, sizeof(buf)), "in_progress");
	cr_assert_eq(store_backlog(st, "openai", &jobs, &wake), 0);
	cr_assert_eq(jobs, 2);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(j.id, first);
	store_job_clear(&j);
	cr_assert_eq(store_batch_release(st, "b_00000000000000h1", first + 2, last, 0), 0);
	cr_assert_eq(store_backlog(st, "openai", &jobs, &wake), 0);
	cr_assert_eq(jobs, 4);
}

Test(store, a_crash_while_storing_deletes_the_part_and_lets_held_jobs_go)
{
	int64_t f1 = 0, l1 = 0, f2 = 0, l2 = 0, requeued;
	json_object *b = NULL;

	add_held("b_00000000000000h2", 3, "validating", &f1, &l1);  /* not wholly stored */
	add_held("b_00000000000000h3", 3, "in_progress", &f2, &l2); /* stored, being let go */
	store_free(st);
	cr_assert_eq(store_open(path, &st), 0);
	cr_assert_eq(store_recover(st, 5000, 5000, &requeued), 0);
	cr_assert_eq(store_batch_get(st, "b_00000000000000h2", &b), -ENOENT);
	cr_assert_eq(count_jobs("b_00000000000000h2"), 0);
	cr_assert_eq(count("b_00000000000000h3", "queued"), 3);
	{
		int64_t jobs, tokens;

		cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
		cr_assert_eq(jobs, 3, "its held jobs were let go");
	}
}

/*
 * A recovery refused at start (another program's lock) runs later, while
 * this run receives batches and launches jobs: it touches what is older
 * than this start alone.
 */
Test(store, a_late_recovery_leaves_this_runs_batches_and_jobs)
{
	int64_t f = 0, l = 0, requeued = -1, attempt;
	struct store_job j;
	json_object *b = NULL;

	add_held("b_00000000000000h4", 3, "validating", &f, &l); /* being received, at 1000 */
	add_batch("b_0000000000000005", 2);
	cr_assert_eq(store_next_ready(st, "openai", 2000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	store_job_clear(&j);
	/* This run started at 1000: all of it is its own. */
	cr_assert_eq(store_recover(st, 3000, 1000, &requeued), 0);
	cr_assert_eq(requeued, 0);
	cr_assert_eq(store_batch_get(st, "b_00000000000000h4", &b), 0, "the batch being received");
	json_object_put(b);
	b = NULL;
	cr_assert_eq(count_jobs("b_00000000000000h4"), 3);
	cr_assert_eq(count("b_0000000000000005", "running"), 1, "the job in the air");
	cr_assert_eq(sql_count("SELECT count(*) FROM attempts WHERE ended_at IS NULL", NULL), 1);
	/* Had it started at 2500, both were a stop's leftovers. */
	cr_assert_eq(store_recover(st, 3000, 2500, &requeued), 0);
	cr_assert_eq(requeued, 1);
	cr_assert_eq(store_batch_get(st, "b_00000000000000h4", &b), -ENOENT);
	cr_assert_eq(count("b_0000000000000005", "queued"), 2);
	cr_assert_eq(sql_count("SELECT count(*) FROM attempts WHERE ended_at IS NULL", NULL), 0);
}

/* A validating batch of uid 42, without its figures yet (as ingest stores a large one). */
static void add_validating(const char *id)
{
	struct store_batch b = {
	    .id = id, .created_at = 1000, .uid = 42, .window_ms = 86400000, .state = "validating"};

	cr_assert_eq(store_batch_insert(st, &b), 0);
}

/* n jobs, lines from line0, in one statement: their first id. */
static int64_t add_slice(const char *id, int64_t line0, size_t n, int held)
{
	struct store_job_row rows[64];
	char cid[64][16];
	struct store_slice sl = {.batch_id = id, .priority = 3, .held = held, .rows = rows, .n = n};
	int64_t first = -1;
	size_t i;

	cr_assert_leq(n, 64);
	for (i = 0; i < n; i++) {
		snprintf(cid[i], sizeof(cid[i]), "c%lld", (long long)(line0 + (int64_t)i));
		rows[i] = (struct store_job_row){.line = line0 + (int64_t)i,
		                                 .custom_id = cid[i],
		                                 .url = "/v1/chat/completions",
		                                 .model = "gpt-x",
		                                 .lane = "openai",
		                                 .body = "{\"model\":\"gpt-x\"}",
		                                 .body_len = 17,
		                                 .est_tokens = 10 + (int64_t)i};
	}
	cr_assert_eq(store_tx_begin(st), 0);
	cr_assert_eq(store_jobs_insert(st, &sl, 2000, &first), 0);
	cr_assert_eq(store_tx_commit(st), 0);
	return first;
}

/* One statement a slice: its rows in line order under consecutive ids, held
 * as a slice is, and counted by job_counts as single inserts are. */
Test(store, a_slice_is_stored_in_one_statement_in_line_order)
{
	int64_t f1, f2, jobs, tokens, n;
	sqlite3 *db;
	sqlite3_stmt *q;

	add_validating("b_00000000000000s1");
	f1 = add_slice("b_00000000000000s1", 1, 40, 1);
	f2 = add_slice("b_00000000000000s1", 41, 7, 1);
	cr_assert_eq(f2, f1 + 40, "the second slice follows the first");
	cr_assert_eq(count_jobs("b_00000000000000s1"), 47);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(
	    sqlite3_prepare_v2(db,
	                       "SELECT count(*) FROM jobs WHERE batch_id = ?1 AND "
	                       "id - ?2 = line - 1 AND custom_id = 'c' || line AND "
	                       "lane = '~openai' AND priority = 3 AND uid = 42 AND "
	                       "updated_at = 2000 AND est_tokens = 9 + line - (line > 40) * 40 "
	                       "AND body = '{\"model\":\"gpt-x\"}'",
	                       -1, &q, NULL),
	    SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_bind_text(q, 1, "b_00000000000000s1", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, f1);
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	n = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	cr_assert_eq(n, 47, "%lld of 47 rows as given, in line order", (long long)n);
	cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 0, "held: no lane sees them");
	/* Not held: a lane's at once. */
	add_validating("b_00000000000000s2");
	add_slice("b_00000000000000s2", 1, 5, 0);
	cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 5);
	cr_assert_eq(tokens, 10 + 11 + 12 + 13 + 14);
}

/* A batch stored in slices gets its figures and its key only once whole:
 * a repeat finds nothing meanwhile, and the second to start with the same
 * key is refused, rolled back whole. */
Test(store, a_key_is_taken_when_the_batch_starts_and_once)
{
	struct store_batch b = {.id = "b_00000000000000k1",
	                        .created_at = 5000,
	                        .uid = 42,
	                        .total = 3,
	                        .est_tokens = 33,
	                        .idempotency_key = "nightly"};
	int64_t f1, f2, total = 0, jobs, tokens;
	char id[STORE_ID_LEN], buf[32];
	json_object *o, *v;

	add_validating("b_00000000000000k1");
	f1 = add_slice("b_00000000000000k1", 1, 3, 1);
	add_validating("b_00000000000000k2");
	f2 = add_slice("b_00000000000000k2", 1, 2, 1);
	cr_assert_eq(store_batch_by_key(st, 42, "nightly", id, &total), 0, "no key yet");
	cr_assert_eq(store_batch_start(st, &b, f1, f1 + 1), 0);
	cr_assert_eq(store_batch_by_key(st, 42, "nightly", id, &total), 1);
	cr_assert_str_eq(id, "b_00000000000000k1");
	cr_assert_eq(total, 3);
	cr_assert_str_eq(batch_state("b_00000000000000k1", buf, sizeof(buf)), "in_progress");
	cr_assert_eq(store_batch_get(st, "b_00000000000000k1", &o), 0);
	cr_assert(json_object_object_get_ex(o, "created_at", &v));
	cr_assert_eq(json_object_get_int64(v), 5000, "created when whole");
	cr_assert(json_object_object_get_ex(o, "est_tokens", &v));
	cr_assert_eq(json_object_get_int64(v), 33);
	json_object_put(o);
	cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 2, "its first range let go, the third job still held");
	/* The same key on the other batch: refused, nothing of it changed. */
	b.id = "b_00000000000000k2";
	cr_assert_eq(store_batch_start(st, &b, f2, f2 + 1), -EEXIST);
	cr_assert_str_eq(batch_state("b_00000000000000k2", buf, sizeof(buf)), "validating");
	cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 2, "none of its jobs let go");
	/* Started once, it is not started again. */
	b.id = "b_00000000000000k1";
	b.idempotency_key = NULL;
	cr_assert_eq(store_batch_start(st, &b, f1, f1 + 2), -ENOENT);
}

/* The counts follow every kind of change: starts, answers, retries, cancels,
 * and a retention that deletes a finished batch a few jobs at a time. */
Test(store, counts_are_kept_through_retention_steps)
{
	struct store_job j;
	struct store_outcome o = ok_outcome();
	int64_t attempt, n, jobs, tokens;
	int i;

	add_batch("b_00000000000000c1", 5);
	add_batch("b_00000000000000c2", 3);
	for (i = 0; i < 5; i++) {
		cr_assert_eq(store_next_ready(st, "openai", 2000, "b_00000000000000c2", &j), 1);
		cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
		cr_assert_eq(store_job_complete(st, j.id, attempt, &o, 2100, NULL), 0);
		store_job_clear(&j);
		counts_match();
	}
	cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 3);
	cr_assert_eq(store_batch_cancel(st, "b_00000000000000c2", 2200, &n), 0);
	counts_match();
	/* Two jobs a step: the batches go a part at a time, the counts with them. */
	do {
		cr_assert_eq(store_prune(st, 10000, 2, &n), 0);
		counts_match();
	} while (n > 0);
	cr_assert_eq(count_jobs("b_00000000000000c1"), 0);
	cr_assert_eq(store_backlog(st, "openai", &jobs, &tokens), 0);
	cr_assert_eq(jobs, 0);
	cr_assert_eq(tokens, 0);
}

/* The local day of wall ms, as usage_daily names it. */
static const char *day_of(int64_t ms, char buf[static 11])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	cr_assert_not_null(localtime_r(&t, &tm));
	cr_assert_eq(strftime(buf, 11, "%Y-%m-%d", &tm), 10);
	return buf;
}

/* The day's figures of uid, or all zero. */
static struct store_usage usage_of(const char *day, int64_t uid)
{
	struct store_usage u[8], none = {.uid = uid};
	int i, n = 0;

	cr_assert_eq(store_usage_day(st, day, u, 8, &n), 0);
	for (i = 0; i < n; i++)
		if (u[i].uid == uid)
			return u[i];
	return none;
}

/*
 * A day's usage is kept as the tries end: one request per try (a retry and
 * a 429 count, a refused call does not), the tokens answers reported, by the
 * day the try started on.
 */
Test(store, usage_of_a_day_is_kept_as_tries_end)
{
	const int64_t t = 1700000000000LL; /* a wall time like llmqd's */
	struct store_outcome ok = ok_outcome(), r429 = {.attempt_outcome = "rate_limited",
	                                                .status_code = 429,
	                                                .error_code = "rate_limit_exceeded",
	                                                .retry_after_ms = 1000,
	                                                .prompt_tokens = -1,
	                                                .completion_tokens = -1,
	                                                .total_tokens = -1,
	                                                .latency_ms = 3,
	                                                .remaining_tokens = -1,
	                                                .remaining_requests = -1,
	                                                .not_before = t + 1000};
	struct store_call c = {.call_id = "c_1",
	                       .try_no = 1,
	                       .lane = "openai",
	                       .endpoint = "/v1/chat/completions",
	                       .model = "gpt-x",
	                       .uid = 42,
	                       .started_at = t,
	                       .ended_at = t + 100,
	                       .outcome = "failed",
	                       .status_code = 500,
	                       .error_code = "server_error",
	                       .retry_after_ms = -1,
	                       .tokens_charged = 30,
	                       .tokens_used = -1,
	                       .latency_ms = 90};
	struct store_usage u;
	struct store_job j;
	int64_t attempt;
	char day[11], next[11];

	add_batch("b_0000000000000031", 1);
	cr_assert_eq(store_next_ready(st, "openai", t, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", t, 100, 0, &attempt), 0);
	u = usage_of(day_of(t, day), 42);
	cr_assert_eq(u.requests, 0, "a try in flight is not counted yet");
	cr_assert_eq(store_job_complete(st, j.id, attempt, &r429, t + 10, NULL), 0);
	store_job_clear(&j);
	cr_assert_eq(store_next_ready(st, "openai", t + 1000, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", t + 1000, 100, 0, &attempt), 0);
	ok.lost_sends = 1; /* libcurl sent it twice: the upstream got two */
	cr_assert_eq(store_job_complete(st, j.id, attempt, &ok, t + 1100, NULL), 0);
	store_job_clear(&j);
	cr_assert_eq(store_call_insert(st, &c), 0);
	c.call_id = "c_2";
	c.outcome = "refused";
	c.status_code = 0;
	cr_assert_eq(store_call_insert(st, &c), 0);
	c.call_id = "c_3";
	c.outcome = "succeeded";
	c.status_code = 200;
	c.error_code = NULL;
	c.tokens_used = 25;
	c.uid = -1;
	cr_assert_eq(store_call_insert(st, &c), 0);
	/* Tomorrow's try is tomorrow's. */
	c.call_id = "c_4";
	c.uid = 42;
	c.started_at = c.ended_at = t + 86400000;
	cr_assert_eq(store_call_insert(st, &c), 0);

	u = usage_of(day, 42);
	cr_assert_eq(u.requests, 4, "the 429, the lost send, the success and the failed call: %lld",
	             (long long)u.requests);
	cr_assert_eq(u.tokens, 7);
	cr_assert_eq(u.failed, 1);
	cr_assert_eq(u.rate_limited, 1);
	u = usage_of(day, -1);
	cr_assert_eq(u.requests, 1, "a caller nobody could tell");
	cr_assert_eq(u.tokens, 25);
	u = usage_of(day_of(t + 86400000, next), 42);
	cr_assert_eq(u.requests, 1);
	cr_assert_eq(u.tokens, 25);
}

/* Crash recovery closes open attempts: those tries were sent, and count. */
Test(store, usage_counts_the_tries_a_crash_interrupted)
{
	const int64_t t = 1700000000000LL;
	struct store_job j;
	int64_t attempt, n;
	char day[11];

	add_batch("b_0000000000000032", 1);
	cr_assert_eq(store_next_ready(st, "openai", t, NULL, &j), 1);
	cr_assert_eq(store_job_start(st, &j, "openai", t, 100, 0, &attempt), 0);
	store_job_clear(&j);
	cr_assert_eq(store_recover(st, t + 50, t + 50, &n), 0);
	cr_assert_eq(usage_of(day_of(t, day), 42).requests, 1);
}

/* A database of version 6 gets its past tries counted when it is upgraded. */
Test(store, usage_of_the_days_before_the_upgrade_is_counted)
{
	char other[300], *err = NULL, day[11];
	sqlite3 *db;
	size_t i;

	snprintf(other, sizeof(other), "%s/v6.db", dir);
	cr_assert_eq(sqlite3_open(other, &db), SQLITE_OK);
	for (i = 0; i < migrations_count && migrations[i].version <= 6; i++)
		cr_assert_eq(sqlite3_exec(db, migrations[i].sql, NULL, NULL, &err), SQLITE_OK,
		             "%s: %s", migrations[i].name, err ? err : "");
	cr_assert_eq(sqlite3_exec(db,
	                          "PRAGMA user_version = 6;"
	                          "INSERT INTO batches (id, created_at, window_ms, total, "
	                          "est_tokens, submitter_uid) VALUES "
	                          "('b_0000000000000033', 1, 60000, 1, 10, 1000);"
	                          "INSERT INTO jobs (batch_id, line, custom_id, url, model, lane, "
	                          "body, est_tokens, updated_at) VALUES "
	                          "('b_0000000000000033', 1, 'a', '/v1/chat/completions', 'm', "
	                          "'default', '{}', 10, 1);"
	                          "INSERT INTO attempts (job_id, n, lane, started_at, ended_at, "
	                          "outcome, status_code, tokens_charged, tokens_used) VALUES "
	                          "(1, 1, 'default', 1700000000000, 1700000000100, 'failed', 500, "
	                          "10, NULL), (1, 2, 'default', 1700000001000, 1700000001100, "
	                          "'succeeded', 200, 10, 9), (1, 3, 'default', 1700000002000, "
	                          "NULL, NULL, NULL, 10, NULL);"
	                          "INSERT INTO calls (call_id, n, lane, endpoint, started_at, "
	                          "ended_at, outcome, tokens_charged, tokens_used) VALUES "
	                          "('c', 1, 'default', '/v1/embeddings', 1700000000000, "
	                          "1700000000100, 'succeeded', 5, 4), ('d', 1, 'default', "
	                          "'/v1/embeddings', 1700000000000, 1700000000100, 'refused', 5, "
	                          "NULL);",
	                          NULL, NULL, &err),
	             SQLITE_OK, "%s", err ? err : "");
	sqlite3_close(db);
	store_free(st);
	cr_assert_eq(store_open(other, &st), 0);
	day_of(1700000000000LL, day);
	cr_assert_eq(usage_of(day, 1000).requests, 2, "the two tries that ended");
	cr_assert_eq(usage_of(day, 1000).tokens, 9);
	cr_assert_eq(usage_of(day, 1000).failed, 1);
	cr_assert_eq(usage_of(day, -1).requests, 1, "the call, not the refusal");
	store_free(st);
	cr_assert_eq(store_open(path, &st), 0);
}

/* The last errors: newest first, of one user or all, within the look's bound. */
Test(store, the_last_errors_newest_first_by_user)
{
	const int64_t t = 1700000000000LL;
	struct store_outcome bad = {.job_state = "failed",
	                            .attempt_outcome = "failed",
	                            .status_code = 400,
	                            .error_code = "invalid_request_error",
	                            .error_message = "bad request",
	                            .retry_after_ms = -1,
	                            .prompt_tokens = -1,
	                            .completion_tokens = -1,
	                            .total_tokens = -1,
	                            .latency_ms = 3,
	                            .remaining_tokens = -1,
	                            .remaining_requests = -1};
	struct store_outcome ok = ok_outcome();
	struct store_call c = {.call_id = "c_1",
	                       .try_no = 1,
	                       .lane = "openai",
	                       .endpoint = "/v1/chat/completions",
	                       .model = "gpt-y",
	                       .uid = 7,
	                       .started_at = t + 500,
	                       .ended_at = t + 600,
	                       .outcome = "failed",
	                       .status_code = 502,
	                       .error_code = "bad_gateway",
	                       .retry_after_ms = -1,
	                       .tokens_charged = 30,
	                       .tokens_used = -1,
	                       .latency_ms = 90};
	struct store_error e[8];
	struct store_job j;
	int64_t attempt;
	int i, n;

	add_batch("b_0000000000000034", 3);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(store_next_ready(st, "openai", t + i, NULL, &j), 1);
		cr_assert_eq(store_job_start(st, &j, "openai", t + i, 100, 0, &attempt), 0);
		cr_assert_eq(store_job_complete(st, j.id, attempt, i == 1 ? &ok : &bad,
		                                t + 100 * (i + 1), NULL),
		             0);
		store_job_clear(&j);
	}
	cr_assert_eq(store_call_insert(st, &c), 0);
	cr_assert_eq(store_recent_errors(st, -1, 0, 100, e, 8, &n), 0);
	cr_assert_eq(n, 3, "two failed jobs and a failed call");
	cr_assert_str_eq(e[0].class_name, "interactive");
	cr_assert_eq(e[0].at, t + 600);
	cr_assert_str_eq(e[0].code, "bad_gateway");
	cr_assert_eq(e[0].uid, 7);
	cr_assert_str_eq(e[1].class_name, "batch");
	cr_assert_eq(e[1].at, t + 300);
	cr_assert_str_eq(e[1].custom_id, "c2");
	cr_assert_str_eq(e[1].batch_id, "b_0000000000000034");
	cr_assert_str_eq(e[1].message, "bad request");
	cr_assert_str_eq(e[1].model, "gpt-x");
	cr_assert_eq(e[1].status_code, 400);
	cr_assert_eq(e[2].at, t + 100);
	/* One user's: the batch's owner (42) sees the two of their batch. */
	cr_assert_eq(store_recent_errors(st, 42, 0, 100, e, 8, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(store_recent_errors(st, 7, 0, 100, e, 8, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(store_recent_errors(st, 9, 0, 100, e, 8, &n), 0);
	cr_assert_eq(n, 0);
	/* Since a time; and only the last tries with an error are looked at. */
	cr_assert_eq(store_recent_errors(st, -1, t + 2, 100, e, 8, &n), 0);
	cr_assert_eq(n, 2, "the call and the third job started after t + 2");
	cr_assert_eq(store_recent_errors(st, 42, 0, 1, e, 8, &n), 0);
	cr_assert_eq(n, 1, "of the batch's, only the last try with an error is looked at");
	cr_assert_str_eq(e[0].custom_id, "c2");
}

/* A quarter hour's start, as usage_quarters keys them. */
#define Q0 1699999200000LL
#define QUARTER 900000LL

struct usage_rows {
	struct store_usage_row r[16];
	int n;
};

static int keep_row(void *userdata, const struct store_usage_row *row)
{
	struct usage_rows *u = userdata;

	cr_assert_lt(u->n, 16);
	u->r[u->n++] = *row;
	return 0;
}

static struct usage_rows report(const char *pieces, int by_period, int by_user, int all,
                                int64_t uid)
{
	struct store_usage_query q = {.pieces_json = pieces,
	                              .by_period = by_period,
	                              .by_user = by_user,
	                              .all = all,
	                              .uid = uid};
	struct usage_rows u = {.n = 0};

	cr_assert_eq(store_usage_report(st, &q, keep_row, &u), 0);
	return u;
}

/*
 * Each try is summed into its quarter hour with its split and its cost as
 * recorded (NULL: its model had no price: its tokens are unpriced); a
 * report reads the quarters of the pieces asked for, by user and period.
 */
Test(store, usage_is_kept_per_quarter_with_its_cost)
{
	struct store_outcome ok = ok_outcome();
	struct store_call c = {.call_id = "c_1",
	                       .try_no = 1,
	                       .lane = "openai",
	                       .endpoint = "/v1/embeddings",
	                       .model = "m-unpriced",
	                       .uid = 7,
	                       .started_at = Q0 + QUARTER + 5,
	                       .ended_at = Q0 + QUARTER + 50,
	                       .outcome = "succeeded",
	                       .status_code = 200,
	                       .retry_after_ms = -1,
	                       .tokens_charged = 30,
	                       .tokens_used = 25,
	                       .latency_ms = 40,
	                       .prompt_tokens = 25,
	                       .cached_tokens = -1,
	                       .completion_tokens = -1,
	                       .cost_nusd = -1};
	struct usage_rows u;
	struct store_job j;
	int64_t attempt;
	char periods[128], day[11];

	add_batch("b_0000000000000041", 1);
	cr_assert_eq(store_next_ready(st, "openai", Q0 + 1000, NULL, &j), 1);
	cr_assert_str_eq(j.model, "gpt-x", "the job's model comes with it, to price its answer");
	cr_assert_eq(store_job_start(st, &j, "openai", Q0 + 1000, 100, 0, &attempt), 0);
	ok.cached_tokens = 1;
	ok.cost_nusd = 123;
	cr_assert_eq(store_job_complete(st, j.id, attempt, &ok, Q0 + 1100, NULL), 0);
	store_job_clear(&j);
	cr_assert_eq(store_call_insert(st, &c), 0);
	c.call_id = "c_2";
	c.outcome = "refused"; /* never went upstream: not counted */
	cr_assert_eq(store_call_insert(st, &c), 0);

	snprintf(periods, sizeof(periods), "[[0,\"q\",%lld,%lld]]", Q0, Q0 + 2 * QUARTER);
	u = report(periods, 0, 1, 1, 0);
	cr_assert_eq(u.n, 2, "one row per user");
	cr_assert_eq(u.r[0].uid, 42, "the dearest first");
	cr_assert_eq(u.r[0].requests, 1);
	cr_assert_eq(u.r[0].prompt_tokens, 3);
	cr_assert_eq(u.r[0].cached_tokens, 1);
	cr_assert_eq(u.r[0].completion_tokens, 4);
	cr_assert_eq(u.r[0].tokens, 7);
	cr_assert_eq(u.r[0].cost_nusd, 123);
	cr_assert_eq(u.r[0].unpriced_tokens, 0);
	cr_assert_eq(u.r[1].uid, 7);
	cr_assert_eq(u.r[1].tokens, 25);
	cr_assert_eq(u.r[1].cost_nusd, 0, "no price: it costs nothing");
	cr_assert_eq(u.r[1].unpriced_tokens, 25, "and says so");

	/* By period: the try in the first quarter, the call in the second. */
	snprintf(periods, sizeof(periods), "[[0,\"q\",%lld,%lld],[1,\"q\",%lld,%lld]]", Q0,
	         Q0 + QUARTER, Q0 + QUARTER, Q0 + 2 * QUARTER);
	u = report(periods, 1, 0, 1, 0);
	cr_assert_eq(u.n, 2);
	cr_assert(u.r[0].period == 0 && u.r[0].tokens == 7, "period %lld",
	          (long long)u.r[0].period);
	cr_assert(u.r[1].period == 1 && u.r[1].tokens == 25);
	cr_assert_eq(u.r[0].uid, -1, "not by user: no uid");

	/* One user's own; and a span with nothing in it. */
	u = report(periods, 0, 1, 0, 7);
	cr_assert(u.n == 1 && u.r[0].uid == 7 && u.r[0].requests == 1);
	snprintf(periods, sizeof(periods), "[[0,\"q\",%lld,%lld]]", Q0 + 2 * QUARTER,
	         Q0 + 3 * QUARTER);
	u = report(periods, 0, 1, 1, 0);
	cr_assert_eq(u.n, 0);

	/* The same from the whole day that holds them (usage_daily): the same figures. */
	snprintf(periods, sizeof(periods), "[[0,\"d\",\"%s\",\"9999-12-31\"]]",
	         day_of(Q0 + 1000, day));
	u = report(periods, 0, 1, 1, 0);
	cr_assert_eq(u.n, 2);
	cr_assert(u.r[0].uid == 42 && u.r[0].tokens == 7 && u.r[0].cost_nusd == 123 &&
	          u.r[0].cached_tokens == 1);
	cr_assert(u.r[1].uid == 7 && u.r[1].tokens == 25 && u.r[1].unpriced_tokens == 25);

	/* The models without a price, and the totals in the order first seen. */
	snprintf(periods, sizeof(periods), "[[0,\"q\",%lld,%lld]]", Q0, Q0 + 2 * QUARTER);
	{
		struct store_usage_query q = {.pieces_json = periods, .all = 1};

		u.n = 0;
		cr_assert_eq(store_usage_unpriced(st, &q, keep_row, &u), 0);
		cr_assert(u.n == 1 && !strcmp(u.r[0].model, "m-unpriced") &&
		          u.r[0].unpriced_tokens == 25);
	}
	u.n = 0;
	cr_assert_eq(store_usage_totals(st, keep_row, &u), 0);
	cr_assert_eq(u.n, 2);
	cr_assert(u.r[0].uid == 42 && !strcmp(u.r[0].class_name, "batch") &&
	          !strcmp(u.r[0].model, "gpt-x") && u.r[0].cost_nusd == 123);
	cr_assert(u.r[1].uid == 7 && !strcmp(u.r[1].class_name, "interactive") &&
	          u.r[1].unpriced_tokens == 25);
}

/* A database of version 8: its days' usage is kept, at each day's local
 * midnight, unpriced (no price was recorded then). */
Test(store, usage_of_the_days_before_version_9_is_kept)
{
	char other[300], *err = NULL;
	struct usage_rows u = {.n = 0};
	char periods[128];
	struct tm tm = {.tm_year = 123, .tm_mon = 10, .tm_mday = 14, .tm_isdst = -1};
	int64_t midnight = (int64_t)mktime(&tm) * 1000;
	sqlite3 *db;
	size_t i;

	snprintf(other, sizeof(other), "%s/v8.db", dir);
	cr_assert_eq(sqlite3_open(other, &db), SQLITE_OK);
	for (i = 0; i < migrations_count && migrations[i].version <= 8; i++)
		cr_assert_eq(sqlite3_exec(db, migrations[i].sql, NULL, NULL, &err), SQLITE_OK,
		             "%s: %s", migrations[i].name, err ? err : "");
	cr_assert_eq(sqlite3_exec(db,
	                          "PRAGMA user_version = 8;"
	                          "INSERT INTO usage_daily VALUES ('2023-11-14', 1000, 'batch', "
	                          "'default', 'm', 2, 9, 1, 0);",
	                          NULL, NULL, &err),
	             SQLITE_OK, "%s", err ? err : "");
	sqlite3_close(db);
	store_free(st);
	cr_assert_eq(store_open(other, &st), 0);
	snprintf(periods, sizeof(periods), "[[0,\"q\",%lld,%lld]]", (long long)midnight,
	         (long long)(midnight + QUARTER));
	u = report(periods, 0, 1, 1, 0);
	cr_assert_eq(u.n, 1, "at the day's local midnight (%lld)", (long long)midnight);
	cr_assert(u.r[0].uid == 1000 && u.r[0].requests == 2 && u.r[0].tokens == 9 &&
	          u.r[0].failed == 1 && u.r[0].unpriced_tokens == 9 && u.r[0].cost_nusd == 0);
	u.n = 0;
	cr_assert_eq(store_usage_totals(st, keep_row, &u), 0);
	cr_assert(u.n == 1 && u.r[0].tokens == 9);
	cr_assert_eq(usage_of("2023-11-14", 1000).unpriced_tokens, 9);
	u = report("[[0,\"d\",\"2023-11-14\",\"2023-11-15\"]]", 0, 1, 1, 0);
	cr_assert(u.n == 1 && u.r[0].tokens == 9, "the day's row itself");
	store_free(st);
	cr_assert_eq(store_open(path, &st), 0);
}

/* The batch a ready job is found in, or "" when none is ready. */
static const char *ready_batch(const char *after, char *ret, size_t len)
{
	struct store_job j;
	int r = store_next_ready(st, "openai", 2000, after, &j);

	cr_assert_geq(r, 0);
	snprintf(ret, len, "%s", r == 1 ? j.batch_id : "");
	if (r == 1)
		store_job_clear(&j);
	return ret;
}

/* A paused batch is passed over, at its own priority and above others'. */
Test(store, a_paused_batch_launches_nothing)
{
	int64_t changed, next;
	char got[32];

	add_batch_prio("b_000000000000005a", 3, 0);
	add_batch_prio("b_000000000000005b", 3, 0);
	add_batch_prio("b_000000000000005c", 2000, 5);
	cr_assert_str_eq(ready_batch(NULL, got, sizeof(got)), "b_000000000000005c");
	cr_assert_eq(store_batch_pause(st, "b_000000000000005c", 1500, 0, &changed), 0);
	cr_assert_eq(changed, 1);
	cr_assert_eq(store_batch_pause(st, "b_000000000000005c", 1600, 0, &changed), 0);
	cr_assert_eq(changed, 0, "paused already");
	cr_assert_str_eq(ready_batch(NULL, got, sizeof(got)), "b_000000000000005a",
	                 "the priority below, whatever the paused one holds");
	cr_assert_eq(store_batch_pause(st, "b_000000000000005a", 1500, 0, &changed), 0);
	cr_assert_str_eq(ready_batch("b_000000000000005b", got, sizeof(got)), "b_000000000000005b",
	                 "round the turn, past the paused one");
	cr_assert_eq(store_batch_pause(st, "b_000000000000005b", 1500, 0, &changed), 0);
	cr_assert_str_eq(ready_batch(NULL, got, sizeof(got)), "", "all paused: nothing");
	cr_assert_eq(store_next_wakeup(st, "openai", 0, &next), 0);
	cr_assert_eq(next, INT64_MAX, "no timer for paused work");
	cr_assert_eq(store_batches_paused(st, &next), 0);
	cr_assert_eq(next, 3);
	/* Resumed: it goes again. */
	cr_assert_eq(store_batch_pause(st, "b_000000000000005a", 0, 0, &changed), 0);
	cr_assert_eq(changed, 1);
	cr_assert_str_eq(ready_batch("b_000000000000005a", got, sizeof(got)), "b_000000000000005a");
	cr_assert_eq(store_next_wakeup(st, "openai", -1, &next), 0);
	cr_assert_eq(next, 0, "its jobs wake the lane again");
	/* It outlives a reopen. */
	store_free(st);
	cr_assert_eq(store_open(path, &st), 0);
	cr_assert_str_eq(ready_batch(NULL, got, sizeof(got)), "b_000000000000005a");
}

/* Run batch's jobs: those in fail (a bit per job, in order) fail, the others succeed. */
static void run_jobs(const char *batch, int n, unsigned fail, int64_t now)
{
	struct store_outcome ok = ok_outcome(), bad = ok_outcome();
	struct store_job j;
	int64_t attempt;
	int i;

	bad.job_state = bad.attempt_outcome = "failed";
	bad.status_code = 500;
	bad.error_code = "server_error";
	bad.error_message = "upstream answered HTTP 500";
	for (i = 0; i < n; i++) {
		cr_assert_eq(store_next_ready(st, "openai", now, NULL, &j), 1, "job %d", i);
		cr_assert_str_eq(j.batch_id, batch);
		cr_assert_eq(store_job_start(st, &j, "openai", now, 100, 0, &attempt), 0);
		cr_assert_eq(store_job_complete(st, j.id, attempt, (fail >> i) & 1 ? &bad : &ok,
		                                now + 10, NULL),
		             0);
		store_job_clear(&j);
	}
}

/*
 * retry --failed: a completed batch's failed jobs are queued again as new
 * attempts (the earlier kept, counting afresh), the batch is in progress
 * again and its window runs from then; nothing else changes.
 */
Test(store, the_failed_jobs_of_a_completed_batch_run_again)
{
	const int64_t t = 200000000; /* well past the batch's window of a day from 1000 */
	int64_t jobs = -1, n;
	struct store_job j;
	char state[32];

	add_batch("b_0000000000000061", 3);
	run_jobs("b_0000000000000061", 3, 0x6, t);
	cr_assert_str_eq(batch_state("b_0000000000000061", state, sizeof(state)), "completed");
	cr_assert_eq(store_batch_retry_failed(st, "b_0000000000000061", t + 100, &jobs), 0);
	cr_assert_eq(jobs, 2);
	cr_assert_str_eq(batch_state("b_0000000000000061", state, sizeof(state)), "in_progress");
	cr_assert_eq(count("b_0000000000000061", "queued"), 2);
	cr_assert_eq(count("b_0000000000000061", "succeeded"), 1);
	cr_assert_eq(store_batch_retry_failed(st, "b_0000000000000061", t + 200, &jobs), -EBUSY,
	             "not while it runs");
	/* The window runs from the retry: not expired at once. */
	cr_assert_eq(store_expire(st, t + 300, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(store_next_ready(st, "openai", t + 300, NULL, &j), 1);
	cr_assert_eq(j.attempts, 1, "its earlier attempt is kept");
	cr_assert_eq(j.free_tries, 1, "and counts no more against retry_max_attempts");
	store_job_clear(&j);
	run_jobs("b_0000000000000061", 2, 0, t + 400);
	cr_assert_str_eq(batch_state("b_0000000000000061", state, sizeof(state)), "completed");
	cr_assert_eq(count("b_0000000000000061", "succeeded"), 3);
	cr_assert_eq(count_attempts("b_0000000000000061"), 5, "every try kept");
	/* Nothing failed: nothing changes. */
	cr_assert_eq(store_batch_retry_failed(st, "b_0000000000000061", t + 500, &jobs), 0);
	cr_assert_eq(jobs, 0);
	cr_assert_str_eq(batch_state("b_0000000000000061", state, sizeof(state)), "completed");
}

/* An operator's lane pause is kept by name until resumed. */
Test(store, a_lanes_pause_is_kept)
{
	int64_t at = 0, by = 0;

	cr_assert_eq(store_lane_paused_get(st, "openai", &at, &by), 0);
	cr_assert_eq(store_lane_paused_set(st, "openai", 5000, 1000), 0);
	cr_assert_eq(store_lane_paused_set(st, "openai", 6000, 1001), 0);
	store_free(st);
	cr_assert_eq(store_open(path, &st), 0);
	cr_assert_eq(store_lane_paused_get(st, "openai", &at, &by), 1);
	cr_assert(at == 5000 && by == 1000, "the first pause's time and who: %lld %lld",
	          (long long)at, (long long)by);
	cr_assert_eq(store_lane_paused_set(st, "openai", 0, 0), 0);
	cr_assert_eq(store_lane_paused_get(st, "openai", &at, &by), 0);
}

/* A batch of uid's, of jobs at priority prio, in one transaction. */
static void add_user_batch(const char *id, int64_t uid, int jobs, int64_t prio)
{
	struct store_batch b = {.id = id,
	                        .created_at = 1000,
	                        .uid = uid,
	                        .input_name = "in.jsonl",
	                        .window_ms = 86400000,
	                        .total = jobs,
	                        .est_tokens = 100 * jobs,
	                        .priority = prio};
	char cid[32];
	int i;

	cr_assert_eq(store_tx_begin(st), 0);
	cr_assert_eq(store_batch_insert(st, &b), 0);
	for (i = 0; i < jobs; i++) {
		snprintf(cid, sizeof(cid), "c%d", i);
		struct store_job_new j = {.batch_id = id,
		                          .line = i + 1,
		                          .custom_id = cid,
		                          .url = "/v1/chat/completions",
		                          .model = "gpt-x",
		                          .lane = "openai",
		                          .body = "{\"model\":\"gpt-x\"}",
		                          .body_len = 17,
		                          .est_tokens = 100,
		                          .priority = prio};
		cr_assert_eq(store_job_insert(st, &j, 1000), 0);
	}
	cr_assert_eq(store_tx_commit(st), 0);
}

/* The scheduler's side of the turns: the user served last and each one's last batch. */
struct turns {
	int64_t last_uid;
	int64_t uids[4];
	char batches[4][32];
	int n;
	int64_t skip, later; /* the judge: a user to skip, one to defer (-2: none) */
};

static const char *turns_last_batch(void *ud, int64_t uid)
{
	struct turns *t = ud;
	int i;

	for (i = 0; i < t->n; i++)
		if (t->uids[i] == uid)
			return t->batches[i];
	return NULL;
}

static enum store_pick_verdict turns_judge(void *ud, const struct store_job *job)
{
	struct turns *t = ud;

	return job->uid == t->skip    ? STORE_PICK_SKIP
	       : job->uid == t->later ? STORE_PICK_LATER
	                              : STORE_PICK_GO;
}

/* The next job as the scheduler takes it: started (no longer ready), the turn moved on.
 * Its batch's id into ret ("" when none). */
static const char *turns_next(struct turns *t, char *ret, size_t len)
{
	struct store_pick p = {.after_uid = t->last_uid,
	                       .last_batch = turns_last_batch,
	                       .judge = turns_judge,
	                       .ud = t};
	struct store_job j;
	int64_t attempt;
	int i, r = store_next_ready_pick(st, "openai", 2000, &p, &j);

	cr_assert_geq(r, 0);
	ret[0] = '\0';
	if (r == 0)
		return ret;
	snprintf(ret, len, "%s", j.batch_id);
	t->last_uid = j.uid;
	for (i = 0; i < t->n && t->uids[i] != j.uid; i++)
		;
	if (i == t->n)
		t->uids[t->n++] = j.uid;
	snprintf(t->batches[i], sizeof(t->batches[i]), "%s", j.batch_id);
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	store_job_clear(&j);
	return ret;
}

/*
 * Users take turns, whatever their batches: alice's three batches get one
 * launch in two, as bob's one does; within a user, her highest priority
 * first, then her batches in turn. Priority orders a user's own work: it
 * never puts one user ahead of another.
 */
Test(store, users_take_turns_then_batches_then_priority)
{
	static const char *const want[] = {
	    "b_00000000000000a3", "b_00000000000000b1", "b_00000000000000a3", "b_00000000000000b1",
	    "b_00000000000000a1", "b_00000000000000b1", "b_00000000000000a2", "b_00000000000000b1",
	    "b_00000000000000a1", "b_00000000000000b1", "b_00000000000000a2", "b_00000000000000b1",
	};
	struct turns t = {.last_uid = STORE_UID_FIRST, .skip = -2, .later = -2};
	char got[32];
	size_t i;

	add_user_batch("b_00000000000000a1", 1001, 10, 0);
	add_user_batch("b_00000000000000a2", 1001, 10, 0);
	add_user_batch("b_00000000000000a3", 1001, 2, 5);
	add_user_batch("b_00000000000000b1", 1002, 10, 0);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_str_eq(turns_next(&t, got, sizeof(got)), want[i], "launch %zu", i);
}

/* A user the judge skips (a budget spent) is passed over; one it defers
 * (over their share) goes when nobody else may. */
Test(store, the_judge_skips_or_defers_a_user)
{
	struct turns t = {.last_uid = STORE_UID_FIRST, .skip = 1001, .later = -2};
	char got[32];
	int i;

	add_user_batch("b_00000000000000a1", 1001, 3, 0);
	add_user_batch("b_00000000000000b1", 1002, 2, 0);
	cr_assert_str_eq(turns_next(&t, got, sizeof(got)), "b_00000000000000b1");
	cr_assert_str_eq(turns_next(&t, got, sizeof(got)), "b_00000000000000b1");
	cr_assert_str_eq(turns_next(&t, got, sizeof(got)), "", "alice's wait; bob has none left");
	add_user_batch("b_00000000000000b2", 1002, 2, 0);
	t.skip = -2;
	t.later = 1001;
	for (i = 0; i < 2; i++)
		cr_assert_str_eq(turns_next(&t, got, sizeof(got)), "b_00000000000000b2",
		                 "bob first while alice is over her share");
	for (i = 0; i < 3; i++)
		cr_assert_str_eq(turns_next(&t, got, sizeof(got)), "b_00000000000000a1",
		                 "then alice, alone: the lane is hers");
}

/* The work of one look at the queue, in SQLite's steps. */
static int64_t one_pick_steps(struct turns *t)
{
	struct store_pick p = {.after_uid = t->last_uid,
	                       .last_batch = turns_last_batch,
	                       .judge = turns_judge,
	                       .ud = t};
	struct store_job j;
	int64_t before = store_vm_steps(st);

	cr_assert_eq(store_next_ready_pick(st, "openai", 2000, &p, &j), 1);
	store_job_clear(&j);
	return store_vm_steps(st) - before;
}

/*
 * The ready query costs what it costs whatever the queue holds: a look
 * that passes one user over (their budget) and finds the next, with 10 or
 * with 20,000 jobs queued for each, runs the same steps.
 */
Test(store, the_ready_query_costs_the_same_at_any_depth, .timeout = 120)
{
	/* The turn is past the last user: round to the first, passed over, then the next. */
	struct turns t = {.last_uid = 1003, .skip = 1001, .later = -2};
	int64_t shallow, deep;

	add_user_batch("b_00000000000000a1", 1001, 10, 0);
	add_user_batch("b_00000000000000b1", 1002, 10, 0);
	add_user_batch("b_00000000000000c1", 1003, 10, 0);
	shallow = one_pick_steps(&t);
	add_user_batch("b_00000000000000a2", 1001, 20000, 0);
	add_user_batch("b_00000000000000b2", 1002, 20000, 0);
	add_user_batch("b_00000000000000c2", 1003, 20000, 0);
	t.last_uid = 1003;
	deep = one_pick_steps(&t);
	cr_assert_gt(shallow, 0);
	cr_assert_eq(deep, shallow, "%lld steps at 10 jobs a user, %lld at 20,000",
	             (long long)shallow, (long long)deep);
}

/* Jobs on their way to being started (their launch's record not written
 * yet): the highest id of each batch's, as the scheduler keeps them. */
struct on_way {
	const char *batch;
	int64_t floor;
};

static int64_t on_way_floor(void *ud, const char *batch_id)
{
	const struct on_way *w = ud;

	return strcmp(batch_id, w->batch) == 0 ? w->floor : 0;
}

/*
 * A pick passes over a batch's jobs on their way (still queued here) by one
 * look within the batch, whatever their number, and goes on to the next
 * batch when all of its ready ones are; a queue whose only ready jobs are
 * on their way is as good as empty, one with a paused batch is not.
 */
Test(store, jobs_on_their_way_are_passed_over_in_one_look)
{
	struct on_way w = {"b_000000000000000a", 0};
	struct store_pick p = {.after_uid = STORE_UID_FIRST, .floor = on_way_floor, .ud = &w};
	int64_t first = 0, last = 0, attempt, steps, before;
	struct store_job j;
	int none = -1;

	p.ret_none = &none;
	add_batch_full("b_000000000000000a", 3000, 0, NULL, 0, &first, &last);
	w.floor = first + 1999;
	before = store_vm_steps(st);
	cr_assert_eq(store_next_ready_pick(st, "openai", 2000, &p, &j), 1);
	steps = store_vm_steps(st) - before;
	cr_assert_eq(j.id, first + 2000, "the first job after those on their way");
	cr_assert_eq(none, 0);
	cr_assert_lt(steps, 500, "%lld steps to pass 2,000 jobs over", (long long)steps);
	store_job_clear(&j);
	/* All of a's on their way: b's next, then nothing but them. */
	add_batch_full("b_000000000000000b", 1, 0, NULL, 0, NULL, NULL);
	w.floor = last;
	cr_assert_eq(store_next_ready_pick(st, "openai", 2000, &p, &j), 1);
	cr_assert_str_eq(j.batch_id, "b_000000000000000b");
	cr_assert_eq(store_job_start(st, &j, "openai", 2000, 100, 0, &attempt), 0);
	store_job_clear(&j);
	cr_assert_eq(store_next_ready_pick(st, "openai", 2000, &p, &j), 0);
	cr_assert_eq(none, 1, "only jobs on their way: nothing ready");
	/* A paused batch is passed over too, but the queue is not empty for it. */
	w.floor = first;
	cr_assert_eq(store_batch_pause(st, "b_000000000000000a", 3000, 0, &before), 0);
	cr_assert_eq(store_next_ready_pick(st, "openai", 4000, &p, &j), 0);
	cr_assert_eq(none, 0, "a paused batch waits in the queue");
}
