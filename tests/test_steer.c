/*
 * Steering without editing files, end to end: llmq pause and resume of a
 * lane and of a batch (what flies finishes, nothing new goes, said in
 * status, /readyz, the live page's JSON and the metrics, kept across a
 * restart), llmq retry BATCH --failed, and llmq set LANE KEY=VALUE until
 * the next reload. Who may do them is test_access's.
 */
#include <criterion/criterion.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static char out[1 << 20], err[1 << 16], log_text[1 << 20];

static int64_t mock_stat(const struct mock_proc *m, const char *key)
{
	json_object *o = h_mock_stats(m);
	int64_t v = h_jint(o, key);

	json_object_put(o);
	return v;
}

/* Wait up to 10 s for the mock's counter key to reach want. */
static void wait_mock(const struct mock_proc *m, const char *key, int64_t want)
{
	int i;

	for (i = 0; i < 400 && mock_stat(m, key) < want; i++)
		usleep(25000);
	cr_assert_geq(mock_stat(m, key), want, "the mock's %s", key);
}

static json_object *batch_status(const struct daemon_proc *d, const char *id)
{
	json_object *o, *b;

	cr_assert_eq(h_llmq(d, out, sizeof(out), err, sizeof(err), "status", "--json", id, NULL), 0,
	             "%s", err);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	b = json_object_get(json_object_object_get(o, "batch"));
	json_object_put(o);
	return b;
}

/* The first lane of llmq status --json. */
static json_object *lane_status(const struct daemon_proc *d)
{
	json_object *o, *l;

	cr_assert_eq(h_llmq(d, out, sizeof(out), err, sizeof(err), "status", "--json", NULL), 0,
	             "%s", err);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	l = json_object_get(json_object_array_get_idx(json_object_object_get(o, "lanes"), 0));
	json_object_put(o);
	return l;
}

static const char *me(void)
{
	return getpwuid(getuid())->pw_name;
}

/*
 * A paused lane: its requests in flight finish, nothing new is sent - no
 * batch job, no interactive call - and everything says so; the pause
 * outlives a restart, and resume lets the batch finish.
 */
Test(steer, a_paused_lane_sends_nothing_new_until_resumed, .timeout = 90)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40], ret[4096], want[128];
	json_object *b, *l, *w;
	long status;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "600", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 6, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	wait_mock(&m, "requests", 2);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "pause", "openai", NULL), 0,
	             "%s", err);
	cr_assert(strstr(out, "lane openai paused: its 2 requests in flight finish"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "pause", "openai", NULL), 0);
	cr_assert(strstr(out, "was paused already"), "%s", out);
	/* The two in flight finish; then nothing goes for as long as it takes two more. */
	wait_mock(&m, "ok", 2);
	usleep(1500000);
	cr_assert_eq(mock_stat(&m, "requests"), 2, "nothing new was sent");
	b = batch_status(&d, id);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 2);
	cr_assert_eq(h_jint(b, "counts.queued"), 4);
	w = json_object_object_get(b, "waiting");
	cr_assert_str_eq(h_jstr(w, "reason"), "paused", "%s", json_object_to_json_string(b));
	cr_assert(!json_object_get_boolean(json_object_object_get(b, "eta_known")));
	json_object_put(b);
	/* Status, as JSON and as text. */
	l = lane_status(&d);
	cr_assert_str_eq(h_jstr(json_object_object_get(l, "paused_by_operator"), "user"), me());
	json_object_put(l);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", NULL), 0);
	snprintf(want, sizeof(want), "by %s (llmq resume openai)", me());
	cr_assert(strstr(out, want), "%s", out);
	/* /readyz: the one lane cannot send. */
	status = h_http(d.http_port, "GET", "/readyz", NULL, ret);
	cr_assert_eq(status, 503, "%s", ret);
	cr_assert(strstr(ret, "\"state\":\"paused\"") && strstr(ret, "paused by an operator"), "%s",
	          ret);
	/* The live page's JSON: the status op's lanes. */
	cr_assert_eq(h_http(d.http_port, "GET", "/v1/llmq/live", NULL, ret), 200);
	cr_assert(strstr(ret, "\"paused_by_operator\":{"), "%.400s", ret);
	/* The metrics. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0);
	cr_assert(strstr(out, "\nllmq_lane_paused_by_operator{lane=\"openai\"} 1\n") &&
	              strstr(out, "\nllmq_lane_paused{lane=\"openai\"} 1\n"),
	          "%s", out);
	/* A caller is told at once, not kept waiting. */
	status = h_http(d.http_port, "POST", "/v1/chat/completions",
	                "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
	                "\"content\":\"hi\"}]}",
	                ret);
	cr_assert_eq(status, 503, "%s", ret);
	cr_assert(strstr(ret, "lane_paused") && strstr(ret, "llmq resume openai"), "%s", ret);
	cr_assert_eq(mock_stat(&m, "requests"), 2);

	/* A restart keeps the pause. */
	h_daemon_signal(&d, SIGTERM);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2", NULL);
	l = lane_status(&d);
	cr_assert_not_null(json_object_object_get(l, "paused_by_operator"), "still paused");
	json_object_put(l);
	usleep(1000000);
	cr_assert_eq(mock_stat(&m, "requests"), 2, "nothing sent after the restart either");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "resume", "openai", NULL), 0,
	             "%s", err);
	cr_assert(strstr(out, "lane openai resumed"), "%s", out);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	cr_assert_eq(mock_stat(&m, "ok"), 6);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0);
	cr_assert(strstr(out, "\nllmq_lane_paused_by_operator{lane=\"openai\"} 0\n"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log_text, sizeof(log_text));
	snprintf(want, sizeof(want), "lane openai: paused by %s (uid %d)", me(), (int)getuid());
	cr_assert(strstr(log_text, want), "the log says who: %s", log_text);
	snprintf(want, sizeof(want), "lane openai: resumed by %s", me());
	cr_assert(strstr(log_text, want), "%s", log_text);
	cr_assert(strstr(log_text, "paused by an operator (uid"), "said at the start: %s",
	          log_text);
	h_mock_stop(&m);
}

/* A paused batch waits while the others on its lane run; across a restart too. */
Test(steer, a_paused_batch_waits_while_the_others_run, .timeout = 90)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], a[40], bb[40];
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 5);
	/* Both stored before either may start: the lane is held meanwhile. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "pause", "openai", NULL), 0);
	h_submit(&d, file, a, sizeof(a));
	h_submit(&d, file, bb, sizeof(bb));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "pause", a, NULL), 0, "%s",
	             err);
	cr_assert(strstr(out, "batch") && strstr(out, "paused"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "resume", "openai", NULL), 0);
	json_object_put(h_wait_for(&d, bb, h_batch_completed, 30));
	b = batch_status(&d, a);
	cr_assert_eq(h_jint(b, "counts.queued"), 3, "the paused one sent nothing");
	cr_assert_not_null(json_object_object_get(b, "paused_at"));
	cr_assert_str_eq(h_jstr(json_object_object_get(b, "waiting"), "reason"), "paused");
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", a, NULL), 0);
	cr_assert(strstr(out, "waiting    the batch is paused by an operator"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0);
	cr_assert(strstr(out, "\nllmq_batches_paused 1\n"), "%s", out);
	/* Restarted, it is still paused. */
	h_daemon_signal(&d, SIGTERM);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	usleep(500000);
	b = batch_status(&d, a);
	cr_assert_eq(h_jint(b, "counts.queued"), 3);
	json_object_put(b);
	cr_assert_eq(mock_stat(&m, "requests"), 3, "the other batch's three alone");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "resume", a, NULL), 0, "%s",
	             err);
	json_object_put(h_wait_for(&d, a, h_batch_completed, 30));
	/* A finished batch has nothing to pause. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "pause", a, NULL), 64);
	cr_assert(strstr(err, "is completed: only a batch in progress can be paused"), "%s", err);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "pause", "no-such-lane", NULL),
	             65);
	cr_assert(strstr(err, "no lane no-such-lane; the lanes are: openai"), "%s", err);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * retry --failed: a completed batch's failed requests run again as new
 * attempts, the earlier ones kept; the batch is in progress until they end.
 */
Test(steer, retry_failed_runs_the_failures_again, .timeout = 90)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40], want[128];
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	/* The 2nd and 4th requests fail with a 500, and one try is all a job gets. */
	h_mock_start(&m, dir, "--fail-every", "2", "--latency-ms", "300", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_RETRY_MAX_ATTEMPTS=1",
	               "OPENAI_MAX_CONCURRENCY=1", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 4, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.failed"), 2);
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "retry", id, NULL), 64);
	cr_assert(strstr(err, "--failed"), "%s", err);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "retry", id, "--failed", NULL),
	             0, "%s", err);
	snprintf(want, sizeof(want), "%s: 2 failed requests queued again; the batch is in_progress",
	         id);
	cr_assert(strstr(out, want), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "retry", id, "--failed", NULL),
	             64, "not while it runs");
	cr_assert(strstr(err, "is in_progress") && strstr(err, "llmq wait"), "%s", err);
	/* Requests 5 and 6: one succeeds, one fails again. */
	b = h_wait_for(&d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 3);
	cr_assert_eq(h_jint(b, "counts.failed"), 1);
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts"), 6, "every try kept");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE n = 2"), 2,
	             "a second attempt each");
	cr_assert_eq(mock_stat(&m, "requests"), 6);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log_text, sizeof(log_text));
	snprintf(want, sizeof(want), "2 failed requests queued again by %s", me());
	cr_assert(strstr(log_text, want), "%s", log_text);
	h_mock_stop(&m);
}

/*
 * set: a lane's live limits change at once (one request at a time, here),
 * bad ones are refused with the file's reasons, and a reload sets the
 * file's (here: the environment's) again.
 */
Test(steer, set_changes_the_live_limits_until_the_reload, .timeout = 90)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40];
	json_object *l;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "200", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=4", NULL);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "set", "openai",
	                    "max_concurrency=1", "tpm_limit=50000", NULL),
	             0, "%s", err);
	cr_assert(strstr(out, "lane openai: max_concurrency 1, tpm_limit 50000"), "%s", out);
	l = lane_status(&d);
	cr_assert_eq(h_jint(l, "max_concurrency"), 1);
	cr_assert_eq(h_jint(l, "tpm_limit"), 50000);
	json_object_put(l);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 4, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	cr_assert_eq(mock_stat(&m, "max_in_flight"), 1, "one at a time, as set");
	/* Refused with reasons, nothing changed. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "set", "openai",
	                    "max_concurrency=0", NULL),
	             64);
	cr_assert(strstr(err, "lane openai: max_concurrency = \"0\": expected a number from 1"),
	          "%s", err);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "set", "openai", "base_url=x", NULL),
	    64);
	cr_assert(strstr(err, "base_url cannot be set live"), "%s", err);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "set", "openai", "tpm_limit", NULL), 64);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "set", "nope", "tpm_limit=1", NULL), 65);
	/* A reload sets what the configuration says again. */
	h_daemon_signal_only(&d, SIGHUP);
	for (i = 0; i < 400; i++) {
		l = lane_status(&d);
		if (h_jint(l, "max_concurrency") == 4)
			break;
		json_object_put(l);
		l = NULL;
		usleep(25000);
	}
	cr_assert_not_null(l, "the reload set the configuration's limits again");
	cr_assert_eq(h_jint(l, "tpm_limit"), 100000000);
	json_object_put(l);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log_text, sizeof(log_text));
	cr_assert(strstr(log_text, "lane openai: limits set by") &&
	              strstr(log_text, "(were max_concurrency 4"),
	          "%s", log_text);
	h_mock_stop(&m);
}
