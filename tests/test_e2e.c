/*
 * End to end: real llmqd processes on temporary sockets and databases,
 * driven through the real llmq binary, against the mock upstream.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <sys/wait.h>

#include "harness.h"

static char out[1 << 20], err[1 << 16];

/* Settings for a fast lane: no stagger, generous budgets, short backoff. */
static int some_succeeded(json_object *b)
{
	return h_jint(b, "counts.succeeded") >= 20;
}

/* Checks the results file holds each req-1..n exactly once, answered 200. */
static void check_results(const char *path, int n)
{
	FILE *f = fopen(path, "r");
	char line[8192], want[64];
	int *seen = calloc((size_t)n + 1, sizeof(int)), lines = 0, i, k;
	json_object *o, *resp, *body, *choices, *msg, *v;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		o = json_tokener_parse(line);
		cr_assert_not_null(o, "%s", line);
		cr_assert_eq(sscanf(h_jstr(o, "custom_id"), "req-%d", &k), 1);
		cr_assert(k >= 1 && k <= n);
		seen[k]++;
		cr_assert(json_object_object_get_ex(o, "response", &resp));
		cr_assert_eq(h_jint(resp, "status_code"), 200);
		json_object_object_get_ex(resp, "body", &body);
		json_object_object_get_ex(body, "choices", &choices);
		json_object_object_get_ex(json_object_array_get_idx(choices, 0), "message", &msg);
		json_object_object_get_ex(msg, "content", &v);
		snprintf(want, sizeof(want), "echo: question %d", k);
		cr_assert_str_eq(json_object_get_string(v), want, "answer matches its custom_id");
		json_object_put(o);
		lines++;
	}
	fclose(f);
	for (i = 1; i <= n; i++)
		cr_assert_eq(seen[i], 1, "req-%d seen %d times", i, seen[i]);
	cr_assert_eq(lines, n);
	free(seen);
}

static char logtext[1 << 20];

Test(e2e, happy_path_200, .timeout = 60)
{
	char dir[64], file[128], res[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=16", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	snprintf(res, sizeof(res), "%s/out.jsonl", dir);
	h_write_batch(file, 200, "gpt-4o-mini", 20);
	h_submit(&d, file, id, sizeof(id));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "wait", id, NULL), 0, "%s",
	             err);
	cr_assert(strstr(out, "completed"), "%s", out);
	b = h_wait_for(&d, id, h_batch_finished, 5);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 200);
	cr_assert_gt(h_jint(b, "tokens_used"), 0);
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "results", id, "-o", res, NULL), 0);
	check_results(res, 200);
	/* The schema is an interface: people query it with sqlite3. */
	cr_assert_eq(h_sql_int(&d, "SELECT succeeded FROM batch_summary"), 200);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM job_history WHERE outcome = 'succeeded'"),
	             200);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE prompt_tokens > 0 "
	                           "AND request_id LIKE 'req_mock_%'"),
	             200);
	/* Human output and ping. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "status", NULL), 0);
	cr_assert(strstr(out, id) && strstr(out, "completed"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "ping", NULL), 0);
	cr_assert(strstr(out, "llmqd "), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "--json", "list", NULL), 0);
	cr_assert(strstr(out, id), "%s", out);
	/* The log: the default lane said as such, and the batch's end, once. */
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, logtext, sizeof(logtext));
	cr_assert(strstr(logtext, "headroom 0.15 (default lane)"), "%s", logtext);
	snprintf(res, sizeof(res), "batch %s completed: 200 requests, 200 succeeded, 0 failed", id);
	cr_assert(strstr(logtext, res), "%s", logtext);
	cr_assert_null(strstr(strstr(logtext, res) + 1, res), "logged twice");
	h_mock_stop(&m);
}

struct bad_file {
	const char *name;
	int bad_line;
	const char *want;
};

static void write_lines(const char *path, int n, int bad_at, const char *bad)
{
	FILE *f = fopen(path, "w");
	int i;

	for (i = 1; i <= n; i++) {
		if (i == bad_at)
			fputs(bad, f);
		else
			fprintf(
			    f,
			    "{\"custom_id\":\"c%d\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
			    "\"body\":{\"model\":\"text-embedding-3-small\",\"input\":\"x\"}}",
			    i);
		fputc('\n', f);
	}
	fclose(f);
}

Test(e2e, bad_batches_refused_with_line_numbers, .timeout = 60)
{
	char dir[64], file[128], *big;
	struct daemon_proc d = {0};
	size_t n = 9u << 20;

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, NULL);
	snprintf(file, sizeof(file), "%s/bad.jsonl", dir);

	write_lines(file, 10, 7, "{\"custom_id\": \"c7\", \"method\": \"POST\",");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 65);
	cr_assert(strstr(err, "line 7") && strstr(err, "malformed JSON"), "%s", err);

	write_lines(file, 10, 4,
	            "{\"custom_id\":\"c2\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	            "\"body\":{\"model\":\"m\",\"input\":\"x\"}}");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 65);
	cr_assert(strstr(err, "line 4") && strstr(err, "duplicate custom_id \"c2\"") &&
	              strstr(err, "also on line 2"),
	          "%s", err);

	write_lines(file, 10, 3,
	            "{\"custom_id\":\"c3\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	            "\"body\":{\"input\":\"x\"}}");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "--json", "submit", file, NULL),
	             65);
	cr_assert(strstr(out, "INVALID_BATCH") && strstr(out, "\"line\": 3") &&
	              strstr(out, "model"),
	          "%s", out);

	big = malloc(n + 1);
	memset(big, 'x', n);
	memcpy(big, "{\"custom_id\":\"", 14);
	big[n] = '\0';
	write_lines(file, 5, 2, big);
	free(big);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 65);
	cr_assert(strstr(err, "line 2") && strstr(err, "8 MiB"), "%s", err);

	/* Nothing of any of them was stored, and the daemon still answers. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs"), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "ping", NULL), 0);

	/* Usage errors and missing files. */
	cr_assert_eq(h_llmq(&d, NULL, 0, NULL, 0, "submit", NULL), 64);
	cr_assert_eq(h_llmq(&d, NULL, 0, NULL, 0, "frobnicate", NULL), 64);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "status", "b_00000000000000aa", NULL),
	             65);
	cr_assert(strstr(err, "no such batch"), "%s", err);
	h_daemon_signal(&d, SIGTERM);
}

Test(e2e, daemon_unavailable_says_how_to_start_it)
{
	struct daemon_proc d = {0};

	snprintf(d.sock, sizeof(d.sock), "/tmp/llmq-e2e-nonexistent/llmq.sock");
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "ping", NULL), 69);
	cr_assert(strstr(err, "llmqd &"), "%s", err);
}

Test(e2e, cancel_stops_queued_jobs, .timeout = 60)
{
	char dir[64], file[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "1500", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 20, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "cancel", id, NULL), 0, "%s",
	             err);
	b = h_wait_for(&d, id, h_batch_finished, 20);
	cr_assert_str_eq(h_jstr(b, "state"), "cancelled");
	cr_assert_geq(h_jint(b, "counts.cancelled"), 18);
	cr_assert_eq(h_jint(b, "counts.cancelled") + h_jint(b, "counts.succeeded"), 20,
	             "in-flight jobs finish and keep their answers");
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "wait", id, NULL), 65,
	             "wait says the batch did not complete");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "results", id, "--errors", NULL), 0);
	cr_assert(strstr(out, "batch_cancelled"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(e2e, kill9_then_restart_loses_nothing, .timeout = 120)
{
	char dir[64], file[128], res[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "150", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=8", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	snprintf(res, sizeof(res), "%s/out.jsonl", dir);
	h_write_batch(file, 120, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, some_succeeded, 30);
	json_object_put(b);
	h_daemon_signal(&d, SIGKILL);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'queued'"), 0);

	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=8", NULL);
	b = h_wait_for(&d, id, h_batch_finished, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 120);
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "results", id, "-o", res, NULL), 0);
	check_results(res, 120);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE ended_at IS NULL"), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded' "
	                           "AND response IS NOT NULL"),
	             120);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(e2e, survives_garbage_and_vanishing_clients, .timeout = 60)
{
	char dir[64];
	struct daemon_proc d = {0};
	char *big;
	int fd;

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, NULL);

	fd = h_raw_connect(d.sock);
	h_raw_send(fd, "hello there\n");
	h_raw_expect(fd, "BAD_REQUEST");
	h_raw_send(fd, "{\"v\":1,\"op\":\"explode\"}\n");
	h_raw_expect(fd, "UNKNOWN_OP");
	h_raw_send(fd, "{\"v\":99,\"op\":\"ping\"}\n");
	h_raw_expect(fd, "PROTOCOL_VERSION");
	h_raw_send(fd, "{\"v\":1,\"op\":\"ping\"}\n");
	h_raw_expect(fd, "\"ok\":true");
	close(fd);

	/* A client that promises 1000 lines, sends 3, and vanishes. */
	fd = h_raw_connect(d.sock);
	h_raw_send(fd, "{\"v\":1,\"op\":\"submit\",\"lines\":1000}\n");
	h_raw_send(fd, "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	               "\"body\":{\"model\":\"m\",\"input\":\"x\"}}\n{\"custom_id\":\"b\",\n{\n");
	close(fd);

	/* A request line past the limit. */
	fd = h_raw_connect(d.sock);
	big = malloc(9u << 20);
	memset(big, 'x', 9u << 20);
	big[(9u << 20) - 1] = '\0';
	(void)!write(fd, big, (9u << 20) - 1);
	free(big);
	h_raw_expect(fd, "LINE_TOO_LONG");
	close(fd);

	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "ping", NULL), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0, "nothing half-stored");
	h_daemon_signal(&d, SIGTERM);
}

Test(e2e, faults_retried_none_lost_none_twice, .timeout = 120)
{
	char dir[64], file[128], res[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b, *st;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "10", "--fail-every", "5", "--drop-every", "7",
	             "--429-every", "11", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=8",
	               "OPENAI_RETRY_MAX_ATTEMPTS=10", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	snprintf(res, sizeof(res), "%s/out.jsonl", dir);
	h_write_batch(file, 100, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_finished, 90);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 100, "%s", json_object_to_json_string(b));
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "results", id, "-o", res, NULL), 0);
	check_results(res, 100);
	st = h_mock_stats(&m);
	cr_assert_gt(h_jint(st, "r500"), 0);
	cr_assert_gt(h_jint(st, "drops"), 0);
	cr_assert_gt(h_jint(st, "r429"), 0);
	cr_assert_eq(h_jint(st, "ok"), 100, "each job answered once");
	/* Every request that reached the upstream is a row, libcurl's silent
	 * resends after a dropped reused connection included. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts"), h_jint(st, "requests"),
	             "attempts %lld, upstream arrivals %lld",
	             (long long)h_sql_int(&d, "SELECT count(*) FROM attempts"),
	             (long long)h_jint(st, "requests"));
	json_object_put(st);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE outcome = 'rate_limited' "
	                           "AND retry_after_ms = 200"),
	             0);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(e2e, client_errors_fail_at_once, .timeout = 60)
{
	char dir[64], file[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;
	FILE *f;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=1", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	f = fopen(file, "w");
	cr_assert_not_null(f);
	fputs("{\"custom_id\":\"bad\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	      "\"body\":{\"model\":\"fail-400\",\"messages\":[]}}\n"
	      "{\"custom_id\":\"noretry\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	      "\"body\":{\"model\":\"retry-false\",\"messages\":[]}}\n",
	      f);
	fclose(f);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_finished, 20);
	cr_assert_eq(h_jint(b, "counts.failed"), 2);
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT max(attempts) FROM jobs"), 1, "no blind retries");
	cr_assert_eq(h_sql_int(&d, "SELECT status_code FROM jobs WHERE custom_id = 'bad'"), 400);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "results", id, "--errors", NULL), 0);
	cr_assert(strstr(out, "model_not_found") && strstr(out, "\"status_code\":400"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* Arrivals at the mock, from its log: time (ms) and in-flight count. */
static int read_arrivals(const char *log, long long *t, long long *inflight, int max)
{
	char line[256], what[16];
	long long ts, n, a, b;
	FILE *f = fopen(log, "r");
	int k = 0;

	cr_assert_not_null(f);
	while (k < max && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lld %15s %lld %lld %lld", &ts, what, &n, &a, &b) == 5 &&
		    !strcmp(what, "arrive")) {
			t[k] = ts;
			inflight[k++] = a;
		}
	fclose(f);
	return k;
}

Test(gate_e2e, in_flight_never_above_cap_and_launches_staggered, .timeout = 60)
{
	char dir[64], file[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	long long t[64], inflight[64];
	json_object *b;
	int n, i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "700", NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0.15", "OPENAI_MAX_CONCURRENCY=3",
	               "OPENAI_TPM_LIMIT=0", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 15, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_finished, 40);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 15);
	json_object_put(b);
	n = read_arrivals(m.log, t, inflight, 64);
	cr_assert_eq(n, 15);
	for (i = 0; i < n; i++)
		cr_assert_leq(inflight[i], 3, "arrival %d saw %lld in flight", i, inflight[i]);
	/* The stagger, on the gate's own launch times (the mock's arrivals add
	 * the transit's jitter of a loaded machine): never closer than 150 ms,
	 * less the millisecond the wall clock's stamp may round away. */
	cr_assert_geq(h_sql_int(&d, "SELECT min(b.started_at - a.started_at) FROM attempts a "
	                            "JOIN attempts b ON b.id = a.id + 1"),
	              149);
	/* Every attempt records what the gate charged and made it wait. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE tokens_charged > 0 "
	                           "AND gate_wait_ms >= 0 AND tokens_used > 0"),
	             15);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(gate_e2e, zero_429s_when_estimates_are_right, .timeout = 90)
{
	char dir[64], file[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b, *st;

	h_tmpdir(dir, sizeof(dir));
	/* The provider: 30000 TPM, 300 RPM, counted per minute; our lane: the same
	 * limits with 5% headroom. ~103 tokens a request: both budgets bind. */
	h_mock_start(&m, dir, "--latency-ms", "100", "--tpm", "30000", "--rpm", "300", NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_MAX_CONCURRENCY=8",
	               "OPENAI_TPM_LIMIT=30000", "OPENAI_RPM_LIMIT=300", "OPENAI_TPM_HEADROOM=0.05",
	               NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 40, "gpt-4o-mini", 100);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_finished, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 40);
	json_object_put(b);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "r429"), 0, "%s", json_object_to_json_string(st));
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(gate_e2e, every_job_completes_through_429s_storms, .timeout = 120)
{
	char dir[64], file[128], res[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b, *st;

	h_tmpdir(dir, sizeof(dir));
	/* The lane believes it has 10x the budget the provider grants: the
	 * provider's headers must hold it back; on top, every 4th request gets
	 * a 429 and every 9th a 500. */
	h_mock_start(&m, dir, "--latency-ms", "50", "--tpm", "6000", "--rpm", "600", "--window-ms",
	             "5000", "--fail-every", "9", "--429-every", "4", NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_MAX_CONCURRENCY=8",
	               "OPENAI_TPM_LIMIT=60000", "OPENAI_TPM_HEADROOM=0",
	               "OPENAI_RETRY_MAX_ATTEMPTS=30", "OPENAI_BACKOFF_BASE_SECONDS=0.1",
	               "OPENAI_BACKOFF_CAP_SECONDS=1", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	snprintf(res, sizeof(res), "%s/out.jsonl", dir);
	/* 40 requests of ~30 tokens: ~1,200 tokens, some 12 s of the provider's budget. */
	h_write_batch(file, 40, "gpt-4o-mini", 20);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_finished, 100);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 40, "%s", json_object_to_json_string(b));
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "results", id, "-o", res, NULL), 0);
	check_results(res, 40);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "ok"), 40, "none stored twice");
	cr_assert_gt(h_jint(st, "r429"), 10);
	cr_assert_gt(h_jint(st, "r500"), 0);
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(gate_e2e, admission_refuses_what_cannot_be_served, .timeout = 60)
{
	char dir[64], file[128], id[32];
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, "OPENAI_TPM_LIMIT=1000", "OPENAI_STAGGER_SECONDS=0", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);

	/* A request dearer than the whole budget can never run: the line is named. */
	h_write_batch(file, 3, "gpt-4o-mini", 5000);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 65,
	             "never, not later: the input's fault");
	cr_assert(strstr(err, "line 1") && strstr(err, "can never run"), "%s", err);

	/* 30 x ~103 tokens at 850 tokens/min: ~3.6 min, past a 1 minute window. */
	h_write_batch(file, 30, "gpt-4o-mini", 100);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "--json", "submit", file,
	                    "--window", "1m", NULL),
	             65, "alone it cannot fit the window either");
	cr_assert(strstr(out, "BATCH_RATE_LIMITED") && strstr(out, "retry_after") &&
	              strstr(out, "completion window"),
	          "%s", out);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0, "nothing stored");

	/* --dry-run tells the same without submitting, and ends the same way. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--window",
	                    "1m", "--dry-run", NULL),
	             65, "%s", err);
	cr_assert(strstr(out, "30 requests") && strstr(out, "would be refused"), "%s", out);
	cr_assert(strstr(out, "lane openai: 30 requests") && strstr(out, "gpt-4o-mini"),
	          "the routing is shown: %s", out);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0, "dry run stores nothing");

	/* With the default 24 h window it is accepted, with an ETA. */
	h_submit(&d, file, id, sizeof(id));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "status", id, "--json", NULL), 0);
	{
		json_object *o = json_tokener_parse(out);

		cr_assert_gt(h_jint(o, "batch.eta_ms"), 60000, "%s", out);
		json_object_put(o);
	}
	h_daemon_signal(&d, SIGTERM);
}

Test(gate_e2e, submit_retry_waits_for_the_queue_to_drain, .timeout = 60)
{
	char dir[64], file[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "300", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2", "LLMQ_QUEUE_MAX_JOBS=6",
	               NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 6, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	h_write_batch(file, 4, "gpt-4o-mini", 10);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 75);
	cr_assert(strstr(err, "queue_max_jobs"), "%s", err);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--retry", NULL), 0,
	    "%s", err);
	cr_assert(strstr(err, "trying again"), "%s", err);
	cr_assert(strncmp(out, "b_", 2) == 0, "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* Wait until llmqd's log says what. */
static void wait_log(const struct daemon_proc *d, const char *what, int timeout_s)
{
	static char log[1 << 16];
	int i;

	for (i = 0; i < timeout_s * 10; i++) {
		if (strstr(h_read_file(d->log, log, sizeof(log)), what))
			return;
		usleep(100000);
	}
	cr_assert_fail("llmqd never logged \"%s\"", what);
}

/* n requests with ~800-character prompts, so that answers take room. */
static void write_padded(const char *path, int n)
{
	char pad[801];
	FILE *f = fopen(path, "w");
	int i;

	memset(pad, 'x', 800);
	pad[800] = '\0';
	for (i = 1; i <= n; i++)
		fprintf(f,
		        "{\"custom_id\":\"req-%d\",\"method\":\"POST\",\"url\":\"/v1/chat/"
		        "completions\","
		        "\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
		        "\"%s %d\"}],\"max_tokens\":5}}\n",
		        i, pad, i);
	fclose(f);
}

Test(e2e, full_disk_refuses_cleanly_and_loses_nothing, .timeout = 90)
{
	char dir[64], file[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;
	size_t n;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "5", NULL);
	/* LLMQ_DB_MAX_MB caps the database: past it, writes fail as on a full disk. */
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=4", "LLMQ_DB_MAX_MB=0.3", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);

	/* A batch that does not fit is refused whole: nothing stored, exit 75. */
	write_padded(file, 1000);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 75);
	cr_assert(strstr(err, "full") && strstr(err, "nothing was changed"), "%s", err);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs"), 0);

	/* One that fits, whose answers do not: they are kept, and the jobs stay running. */
	write_padded(file, 100);
	h_submit(&d, file, id, sizeof(id));
	wait_log(&d, "keeping them in memory", 30);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'running'"), 0);

	/* Room again (a restart without the cap): every job ends succeeded once. */
	h_daemon_signal(&d, SIGTERM);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=4", NULL);
	b = h_wait_for(&d, id, h_batch_finished, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 100);
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT count(DISTINCT custom_id) FROM jobs "
	                           "WHERE state = 'succeeded' AND status_code = 200"),
	             100);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "results", id, NULL), 0);
	for (n = 0, b = NULL; strchr(out, '\n'); n++)
		memmove(out, strchr(out, '\n') + 1, strlen(strchr(out, '\n') + 1) + 1);
	cr_assert_eq(n, 100, "one result line per job");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(gate_e2e, a_waiting_lane_never_holds_back_another, .timeout = 60)
{
	char dir[64], file[128], conf[128], confarg[160], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	FILE *f;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	/* Lane "slow" staggers its launches 30 s apart; lane "fast" does not. */
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	f = fopen(conf, "w");
	fprintf(f,
	        "[lane slow]\nbase_url = http://127.0.0.1:%d/v1\nmodels = slow-*\n"
	        "stagger_seconds = 30\ntpm_limit = 0\n\n"
	        "[lane fast]\nbase_url = http://127.0.0.1:%d/v1\nmodels = fast-*\ndefault = yes\n"
	        "stagger_seconds = 0\ntpm_limit = 0\nmax_concurrency = 4\n",
	        m.port, m.port);
	fclose(f);
	snprintf(confarg, sizeof(confarg), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, &m, confarg, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	f = fopen(file, "w");
	/* The slow lane's jobs come first in the file and in the queue. */
	for (i = 1; i <= 20; i++)
		fprintf(
		    f,
		    "{\"custom_id\":\"c%d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
		    "\"body\":{\"model\":\"%s\",\"messages\":[],\"max_tokens\":5}}\n",
		    i, i <= 5 ? "slow-1" : "fast-1");
	fclose(f);
	h_submit(&d, file, id, sizeof(id));
	for (i = 0; i < 100; i++) {
		if (h_sql_int(&d, "SELECT count(*) FROM jobs WHERE lane = 'fast' "
		                  "AND state = 'succeeded'") == 15)
			break;
		usleep(100000);
	}
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE lane = 'fast' AND state = "
	                           "'succeeded'"),
	             15, "the fast lane finished while the slow one waits");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE lane = 'slow' AND state = "
	                           "'succeeded'"),
	             1, "the slow lane launched once, then waits out its stagger");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "status", NULL), 0);
	cr_assert(strstr(out, "slow") && strstr(out, "fast"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

static void write_lane_file(const char *path, const struct mock_proc *m, int conc)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fprintf(f,
	        "[lane main]\nbase_url = http://127.0.0.1:%d/v1\n"
	        "default = yes\nmax_concurrency = %d\nstagger_seconds = 0\ntpm_limit = 0\n"
	        "interactive_reserve = 0\n",
	        m->port, conc);
	fclose(f);
}

Test(e2e, sighup_applies_new_limits_to_the_running_lanes, .timeout = 120)
{
	char dir[64], file[128], conf[128], env[160], id[32], log[1 << 16];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b, *st;
	FILE *f;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "100", NULL);
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	write_lane_file(conf, &m, 1);
	h_daemon_start(&d, dir, &m, env, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 120, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, some_succeeded, 30);
	json_object_put(b);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "max_in_flight"), 1);
	json_object_put(st);
	/* A bad file is refused and the running configuration kept. */
	f = fopen(conf, "w");
	fputs("[lane main]\nmax_concurrency = lots\n", f);
	fclose(f);
	h_daemon_signal_only(&d, SIGHUP);
	usleep(300000);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "ping", NULL), 0, "alive");
	/* A good one: four at a time from now on, nothing dropped. */
	write_lane_file(conf, &m, 4);
	h_daemon_signal_only(&d, SIGHUP);
	b = h_wait_for(&d, id, h_batch_finished, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 120, "%s", json_object_to_json_string(b));
	json_object_put(b);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "max_in_flight"), 4);
	cr_assert_eq(h_jint(st, "ok"), 120, "each job answered once");
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log, sizeof(log));
	cr_assert(strstr(log, "keeping the running configuration"), "%s", log);
	cr_assert(strstr(log, "reload: lane main: concurrency 4"), "%s", log);
	h_mock_stop(&m);
}

Test(e2e, cli_refuses_bad_flags_and_keeps_files, .timeout = 60)
{
	char dir[64], file[128], res[160], id[32], cmd[1200];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;
	FILE *f;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	/* 400 answers: more than a pipe holds, so "| head -1" really cuts it. */
	h_write_batch(file, 400, "gpt-4o-mini", 10);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--window",
	                    "bogus", NULL),
	             64, "%s", err);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "wait", "b_0000000000000000",
	                    "--interval", "abc", NULL),
	             64, "%s", err);
	/* Each command takes its own options, and says them. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "wait", "b_0000000000000000",
	                    "--errors", NULL),
	             64);
	cr_assert(strstr(err, "--errors does not apply"), "%s", err);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", "--help", NULL), 0);
	cr_assert(strstr(out, "usage: llmq submit") && strstr(out, "--priority"), "%s", out);
	/* An unknown batch leaves the output file as it was. */
	snprintf(res, sizeof(res), "%s/keep.jsonl", dir);
	f = fopen(res, "w");
	fputs("precious\n", f);
	fclose(f);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "results", "b_0000000000000000",
	                    "-o", res, NULL),
	             65);
	f = fopen(res, "r");
	cr_assert_not_null(fgets(out, sizeof(out), f));
	fclose(f);
	cr_assert_str_eq(out, "precious\n");
	/* --name is kept, and a reader that stops early is no error. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--name",
	                    "nightly-eval", "--json", NULL),
	             0, "%s", err);
	b = json_tokener_parse(out);
	snprintf(id, sizeof(id), "%s", h_jstr(b, "id"));
	json_object_put(b);
	json_object_put(h_wait_for(&d, id, h_batch_finished, 30));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id, "--json", NULL),
	             0);
	cr_assert(strstr(out, "nightly-eval"), "%s", out);
	/* set -o pipefail: llmq's own exit status, with head gone after one line. */
	snprintf(cmd, sizeof(cmd),
	         "bash -c 'set -o pipefail; %s --socket %s results %s | head -1' "
	         ">/dev/null",
	         LLMQ_BIN, d.sock, id);
	cr_assert_eq(system(cmd), 0, "llmq results | head exits 0");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(e2e, journal_stream_of_another_file_is_not_the_journal, .timeout = 30)
{
	char dir[64], log[4096];
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	/* Inherited from a parent whose stderr was the journal: ours is a file. */
	h_daemon_start(&d, dir, NULL, "JOURNAL_STREAM=8:12345", NULL);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log, sizeof(log));
	cr_assert(strstr(log, "llmqd[info]: "), "%s", log);
	cr_assert_null(strstr(log, "<6>"), "%s", log);
}

Test(e2e, finished_batches_are_forgotten_after_the_retention, .timeout = 60)
{
	char dir[64], file[128], id[32], id2[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "300", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2", "LLMQ_RETENTION=2s", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 30, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_finished, 30));
	/* A batch still running is kept however old it is. */
	h_write_batch(file, 200, "gpt-4o-mini", 10);
	h_submit(&d, file, id2, sizeof(id2));
	for (i = 0; i < 100 && h_sql_int(&d, "SELECT count(*) FROM batches") > 1; i++)
		usleep(100000);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 1, "the finished one is gone");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 65);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id2, NULL), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE batch_id <> (SELECT id FROM "
	                           "batches)"),
	             0, "its jobs went with it");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts a LEFT JOIN jobs j ON j.id = "
	                           "a.job_id WHERE j.id IS NULL"),
	             0, "and their attempts");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", NULL), 0);
	cr_assert(strstr(out, "database: "), "%s", out);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "cancel", id2, NULL), 0);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(e2e, the_last_try_of_a_job_given_up_says_failed, .timeout = 60)
{
	char dir[64], file[128], id[32];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--fail-every", "1", NULL); /* every answer a 500 */
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_RETRY_MAX_ATTEMPTS=3", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 4, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_finished, 30);
	cr_assert_eq(h_jint(b, "counts.failed"), 4);
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM job_history WHERE attempt = 3 AND "
	                           "outcome = 'failed'"),
	             4, "the given-up try is recorded as what it was");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM job_history WHERE outcome = 'retry'"), 8);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(e2e, wait_rides_out_a_daemon_restart, .timeout = 90)
{
	char dir[64], file[128], id[32], cmd[600], line[256];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	FILE *p;
	int status;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "200", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 30, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	snprintf(cmd, sizeof(cmd), "%s --socket %s wait %s 2>%s/wait.err", LLMQ_BIN, d.sock, id,
	         dir);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	usleep(800000);
	h_daemon_signal(&d, SIGKILL);
	usleep(1500000);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2", NULL);
	cr_assert_not_null(fgets(line, sizeof(line), p));
	status = pclose(p);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wait exited 0x%x", status);
	cr_assert(strstr(line, "completed"), "%s", line);
	snprintf(cmd, sizeof(cmd), "grep -q 'llmqd is back' %s/wait.err", dir);
	cr_assert_eq(system(cmd), 0, "wait said it waited for llmqd");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(e2e, a_byte_order_mark_is_not_malformed_json, .timeout = 30)
{
	char dir[64], file[128], bom[160], id[32], cmd[600];
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	snprintf(bom, sizeof(bom), "%s/bom.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 10);
	snprintf(cmd, sizeof(cmd), "printf '\\357\\273\\277' > %s && cat %s >> %s", bom, file, bom);
	cr_assert_eq(system(cmd), 0);
	h_submit(&d, bom, id, sizeof(id));
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE custom_id = 'req-1'"), 1);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "cancel", id, NULL), 0);
	h_daemon_signal(&d, SIGTERM);
}
