/*
 * A lane's state is not its jobs' fault, against a real llmqd and the mock:
 * a key out of credit, an upstream that refuses connections, a 429 storm, a
 * batch's window ending, and a provider that enforces its minute over
 * one-second windows (learned, shown, remembered across a restart).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "gate/lane.h"

static char out[1 << 20], err[1 << 16];

/* The lane's status line, as llmq status prints it (the table). */
static const char *status(const struct daemon_proc *d)
{
	cr_assert_eq(h_llmq(d, out, sizeof(out), err, sizeof(err), "status", NULL), 0, "%s", err);
	return out;
}

/* Wait until the query's count reaches want, or timeout_s. */
static int64_t wait_sql(const struct daemon_proc *d, const char *sql, int64_t want, int timeout_s)
{
	int64_t v = -1;
	int i;

	for (i = 0; i < timeout_s * 10 && (v = h_sql_int(d, sql)) < want; i++)
		usleep(100 * 1000);
	return v;
}

Test(lane, a_key_out_of_credit_pauses_the_lane_and_a_topup_finishes_the_batch, .timeout = 90)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--quota-after", "20", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=2",
	               "LLMQ_QUOTA_PAUSE_SECONDS=1", NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 50, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	cr_assert_eq(wait_sql(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", 20, 30),
	             20);
	sleep(3); /* a few probes, one per pause */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'failed'"), 0,
	             "no job fails because the key ran out");
	cr_assert(strstr(status(&d), "insufficient_quota: probing"), "%s", out);
	cr_assert_leq(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE error_code = "
	                            "'insufficient_quota'"),
	              8, "one probe per pause, not a storm");
	h_mock_topup(&m);
	b = h_wait_for(&d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 50);
	cr_assert_eq(h_jint(b, "counts.failed"), 0);
	json_object_put(b);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(lane, a_batch_whose_window_ends_expires_its_queued_jobs, .timeout = 60)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--quota-after", "2", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=1",
	               "LLMQ_QUOTA_PAUSE_SECONDS=1", NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 10, "gpt-4o-mini", 5);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", "--window", "3s", file, NULL),
	    0, "%s", err);
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(out, "\n"), out);
	b = h_wait_for(&d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 2);
	cr_assert_eq(h_jint(b, "counts.failed"), 8);
	cr_assert_gt(h_jint(b, "expired_at"), 0, "the batch says it expired");
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE error_code = 'batch_expired'"),
	             8);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "results", id, "--errors", NULL), 0);
	cr_assert(strstr(out, "\"code\":\"batch_expired\""), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(lane, an_unreachable_upstream_pauses_the_lane_and_no_job_fails, .timeout = 90)
{
	char dir[64], file[128], id[40], port[16];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	snprintf(port, sizeof(port), "%d", m.port);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=4",
	               "OPENAI_RETRY_MAX_ATTEMPTS=2", NULL);
	h_mock_stop(&m); /* connections refused from now on */
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 40, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	sleep(5);
	cr_assert(strstr(status(&d), "upstream unreachable; probing"), "%s", out);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'failed'"), 0);
	cr_assert_leq(h_sql_int(&d, "SELECT count(*) FROM attempts"), 12,
	              "the breaker probes with one request, not every job");
	h_mock_start(&m, dir, "--port", port, NULL);
	b = h_wait_for(&d, id, h_batch_completed, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 40);
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT max(attempts - free_tries) FROM jobs"), 1,
	             "the refused tries spent no attempt");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(lane, a_429_storm_spends_no_attempt, .timeout = 90)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--429-every", "2", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=4",
	               "OPENAI_RETRY_MAX_ATTEMPTS=1", NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 30, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 30, "one attempt each, and still all through");
	json_object_put(b);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE outcome = 'rate_limited'"),
	             0);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(lane, a_provider_enforcing_one_second_windows_is_learned_and_remembered, .timeout = 120)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t r429;
	json_object *b, *s;

	h_tmpdir(dir, sizeof(dir));
	/* 600 requests/min, enforced as 10 per fixed second; its headers speak of the minute. */
	h_mock_start(&m, dir, "--rpm", "600", "--enforce-window-ms", "1000", "--latency-ms", "50",
	             NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_RPM_LIMIT=600", "OPENAI_TPM_HEADROOM=0.1",
	               "OPENAI_MAX_CONCURRENCY=20", NULL);
	cr_assert(strstr(status(&d), "window: minute"), "%s", out);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 60, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 60);
	json_object_put(b);
	cr_assert(strstr(status(&d), "window: ~1s (learned at"), "%s", out);
	s = h_mock_stats(&m);
	r429 = h_jint(s, "r429");
	json_object_put(s);
	cr_assert_gt(r429, 0, "the burst the minute allowed met the one-second window");

	/* After a restart it is known from the start: no 429 at all. */
	h_daemon_signal(&d, SIGTERM);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_RPM_LIMIT=600", "OPENAI_TPM_HEADROOM=0.1",
	               "OPENAI_MAX_CONCURRENCY=20", NULL);
	cr_assert(strstr(status(&d), "window: ~1s (learned at"), "%s", out);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 60);
	json_object_put(b);
	s = h_mock_stats(&m);
	cr_assert_eq(h_jint(s, "r429"), r429, "no new 429 after the restart");
	json_object_put(s);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * A learned window not confirmed by a 429 for window_probation_seconds is
 * tried as a minute again (an overload's 429 teaches it as well as a short
 * window does); a 429 that shows the short window brings it back.
 */
Test(lane, a_learned_window_goes_on_probation_after_a_quiet_spell, .timeout = 120)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--rpm", "600", "--enforce-window-ms", "1000", "--latency-ms", "50",
	             NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_RPM_LIMIT=600", "OPENAI_TPM_HEADROOM=0.1",
	               "OPENAI_MAX_CONCURRENCY=20", "LLMQ_WINDOW_PROBATION_SECONDS=3", NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 60, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 60);
	json_object_put(b);
	cr_assert(strstr(status(&d), "window: ~1s (learned at"), "%s", out);
	/* Quiet for the probation's 3 s: the minute is tried again, and remembered so. */
	for (i = 0; i < 100 && !strstr(status(&d), "window: minute (on probation since"); i++)
		usleep(100 * 1000);
	cr_assert(strstr(out, "window: minute (on probation since"), "%s", out);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM lane_state WHERE window = 'minute'"), 1);
	/* The provider still enforces its second: the next burst shows it, and it is back. */
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 60);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 60);
	json_object_put(b);
	cr_assert(strstr(status(&d), "window: ~1s (learned at"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, out, sizeof(out));
	cr_assert(strstr(out, "tries its minute again") && strstr(out, "probation ended"), "%s",
	          out);
	h_mock_stop(&m);
}

/* A job's url joined to base_url, as libcurl's URL API joins them. */
Test(lane_url, joined_with_one_v1)
{
	static const struct {
		const char *base, *path, *want;
	} rows[] = {
	    {"https://api.openai.com/v1", "/v1/chat/completions",
	     "https://api.openai.com/v1/chat/completions"},
	    {"https://api.openai.com/v1/", "/v1/embeddings",
	     "https://api.openai.com/v1/embeddings"},
	    {"http://127.0.0.1:8080", "/v1/chat/completions",
	     "http://127.0.0.1:8080/v1/chat/completions"},
	    {"http://[::1]:8080/openai/v1", "/v1/responses",
	     "http://[::1]:8080/openai/v1/responses"},
	    {"https://x.example/proxy", "/v1/completions",
	     "https://x.example/proxy/v1/completions"},
	    {"https://u:p@x.example/v1", "/v1/completions", "https://u:p@x.example/v1/completions"},
	};
	struct lane_config l = {0};
	char buf[256];
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(l.base_url, sizeof(l.base_url), "%s", rows[i].base);
		cr_assert_eq(lane_url(&l, rows[i].path, buf, sizeof(buf)), 0, "%s", rows[i].base);
		cr_assert_str_eq(buf, rows[i].want);
	}
	cr_assert_eq(lane_url(&l, "/v1/chat/completions", buf, 16), -ENAMETOOLONG);
	snprintf(l.base_url, sizeof(l.base_url), "not a url");
	cr_assert_eq(lane_url(&l, "/v1/chat/completions", buf, sizeof(buf)), -EINVAL);
}

/* Credentials in a base_url are never shown; what is not a URL is not shown either. */
Test(lane_url, redacted_for_status_and_the_log)
{
	static const struct {
		const char *url, *want;
	} rows[] = {
	    {"https://api.openai.com/v1", "https://api.openai.com/v1"},
	    {"https://user:pass@host.example/v1", "https://***@host.example/v1"},
	    {"https://user@host.example/v1", "https://***@host.example/v1"},
	    {"https://:secret@host.example/v1", "https://***@host.example/v1"},
	    {"http://a%40b:c@host.example:8080/v1?x=1", "http://***@host.example:8080/v1?x=1"},
	    {"http://a@b:c@host.example/v1", "(a base_url that is not a URL)"},
	    {"secret-looking but no URL", "(a base_url that is not a URL)"},
	};
	char buf[128];
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_assert_str_eq(lane_redact_url(rows[i].url, buf, sizeof(buf)), rows[i].want);
}
