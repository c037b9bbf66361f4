/*
 * The CLI explains itself: the real llmq against real llmqd processes and
 * the mock upstream. Each command's help lists its options, a bad flag or
 * value is a two-line usage error, list filters in llmqd and names the
 * batches, ping tells the HTTP address, a dry run exits as its submit
 * would, and the status of a batch on a lane that cannot serve it says why
 * and until when instead of a short ETA.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char out[1 << 18], err[1 << 16];

/* No daemon: what needs none (help, usage errors) is never sent anywhere. */
static const struct daemon_proc nobody = {.sock = "/nonexistent/llmq.sock"};

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The line of text that holds what, copied into line (empty when none). */
static const char *line_with(const char *text, const char *what, char *line, size_t len)
{
	const char *p = strstr(text, what), *start, *end;

	line[0] = '\0';
	if (!p)
		return line;
	for (start = p; start > text && start[-1] != '\n'; start--)
		;
	end = strchr(p, '\n');
	snprintf(line, len, "%.*s", (int)(end ? end - start : (long)strlen(start)), start);
	return line;
}

/* What each command's help must list, one line each. */
static const struct {
	const char *cmd;
	const char *options[8];
} helps[] = {
    {"submit", {"--window", "--priority", "--name", "--dry-run", "--retry", "--idempotency-key"}},
    {"status", {NULL}},
    {"list", {"--limit", "--state", "--since", "-q, --quiet"}},
    {"wait", {"--interval"}},
    {"results", {"-o, --output", "--errors"}},
    {"cancel", {NULL}},
    {"ping", {NULL}},
    {"metrics", {NULL}},
};

Test(cli, every_command_help_lists_each_of_its_options_on_a_line, .timeout = 30)
{
	static const char *const common[] = {"--json", "--socket PATH", "-h, --help"};
	char line[512], opt[64], help2[1 << 14];
	const char *p;
	size_t i, k;

	/* llmq --help: a line per command, and where each command's help is. */
	cr_assert_eq(h_llmq(&nobody, out, sizeof(out), err, sizeof(err), "--help", NULL), 0);
	for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		snprintf(opt, sizeof(opt), "\n  %s ", helps[i].cmd);
		cr_assert(strstr(out, opt), "llmq --help lists %s: %s", helps[i].cmd, out);
		cr_assert_gt(strlen(line_with(out, opt + 1, line, sizeof(line))),
		             strlen(helps[i].cmd) + 8, "with what it does: %s", line);
	}
	cr_assert(strstr(out, "llmq COMMAND --help"), "%s", out);
	for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		cr_assert_eq(h_llmq(&nobody, out, sizeof(out), err, sizeof(err), helps[i].cmd,
		                    "--help", NULL),
		             0, "%s", err);
		cr_assert_eq(h_llmq(&nobody, help2, sizeof(help2), err, sizeof(err), "help",
		                    helps[i].cmd, NULL),
		             0, "%s", err);
		cr_assert_str_eq(out, help2, "llmq help %s is llmq %s --help", helps[i].cmd,
		                 helps[i].cmd);
		snprintf(opt, sizeof(opt), "usage: llmq %s", helps[i].cmd);
		cr_assert(strstr(out, opt), "%s", out);
		for (k = 0; k < 8 && helps[i].options[k]; k++) {
			line_with(out, helps[i].options[k], line, sizeof(line));
			/* The option, then its explanation on the same line. */
			cr_assert_gt(strlen(line), strlen(helps[i].options[k]) + 12,
			             "llmq %s --help explains %s on its line: %s", helps[i].cmd,
			             helps[i].options[k], out);
		}
		for (k = 0; k < 3; k++)
			cr_assert(strstr(out, common[k]), "llmq %s --help: %s missing: %s",
			          helps[i].cmd, common[k], out);
		/* Every option the help names is one the command takes. */
		for (p = out; (p = strstr(p, " --")); p += 3) {
			snprintf(opt, sizeof(opt), "%.*s", (int)strcspn(p + 1, " \n"), p + 1);
			h_llmq(&nobody, NULL, 0, err, sizeof(err), helps[i].cmd, opt, NULL);
			cr_assert(!strstr(err, "unknown option") && !strstr(err, "does not apply"),
			          "llmq %s %s: %s", helps[i].cmd, opt, err);
		}
	}
}

/* A usage error: exit 64, nothing on stdout, exactly two lines on stderr. */
static void expect_usage_error(const char *cmd, const char *what, ...)
{
	char *argv[8] = {NULL}, want[128], line[512];
	va_list ap;
	int i = 0, r;

	va_start(ap, what);
	while (i < 7 && (argv[i] = va_arg(ap, char *)))
		i++;
	va_end(ap);
	r = h_llmq(&nobody, out, sizeof(out), err, sizeof(err), argv[0], argv[1], argv[2], argv[3],
	           argv[4], argv[5], argv[6], NULL);
	cr_assert_eq(r, 64, "%s %s: exit %d: %s", argv[0], argv[1] ? argv[1] : "", r, err);
	cr_assert_str_empty(out, "%s", out);
	cr_assert_eq(count_lines(err), 2, "two lines, not the whole help: %s", err);
	cr_assert(strstr(line_with(err, "llmq", line, sizeof(line)), what), "says '%s': %s", what,
	          err);
	if (cmd)
		snprintf(want, sizeof(want), "\nTry 'llmq %s --help'.\n", cmd);
	else
		snprintf(want, sizeof(want), "\nTry 'llmq --help'.\n");
	cr_assert(strstr(err, want), "%s", err);
}

Test(cli, a_bad_flag_or_value_is_two_lines_and_exit_64, .timeout = 30)
{
	expect_usage_error("submit", "--bogus", "submit", "--bogus", "f.jsonl", NULL);
	expect_usage_error("submit", "--window", "submit", "f.jsonl", "--window", "soon", NULL);
	expect_usage_error("submit", "--priority", "submit", "f.jsonl", "--priority", "2000", NULL);
	expect_usage_error("submit", "FILE", "submit", NULL);
	expect_usage_error("list", "--state", "list", "--state", "done", NULL);
	expect_usage_error("list", "needs a value", "list", "--state", NULL);
	expect_usage_error("list", "--since", "list", "--since", "yesterday", NULL);
	expect_usage_error("list", "--limit", "list", "--limit", "0", NULL);
	expect_usage_error("list", "takes no value", "list", "--quiet=yes", NULL);
	expect_usage_error("wait", "--interval", "wait", "b_0000000000000000", "--interval", "abc",
	                   NULL);
	expect_usage_error("wait", "--errors does not apply", "wait", "b_0000000000000000",
	                   "--errors", NULL);
	expect_usage_error("status", "'b'", "status", "a", "b", NULL);
	expect_usage_error(NULL, "unknown command 'bogus'", "bogus", NULL);
	expect_usage_error(NULL, "--state", "--state", "x", NULL);
}

/* The batch waits on a lane with reason why (status --json's "waiting"). */
static const char *waiting_reason(json_object *b)
{
	json_object *w;

	return json_object_object_get_ex(b, "waiting", &w) && w ? h_jstr(w, "reason") : NULL;
}

static int rate_limited(json_object *b)
{
	return waiting_reason(b) && !strcmp(waiting_reason(b), "rate_limited");
}

static int unreachable(json_object *b)
{
	return waiting_reason(b) && !strcmp(waiting_reason(b), "unreachable");
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
	size_t have = strlen(ud), add = s * n;

	if (have + add >= 4096)
		add = 4095 - have;
	memcpy((char *)ud + have, p, add);
	((char *)ud)[have + add] = '\0';
	return s * n;
}

/* A batch made over the Batch API on llmqd's HTTP Unix socket (so: by this
 * uid), with metadata {"description": description}; its id into id. */
static void http_batch(const char *sock, const char *file, const char *description, char *id,
                       size_t idlen)
{
	char buf[4096] = "", body[256];
	CURL *c = curl_easy_init();
	curl_mime *mime;
	curl_mimepart *part;
	json_object *o;

	cr_assert_not_null(c);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)buf);
	curl_easy_setopt(c, CURLOPT_URL, "http://llmq/v1/files");
	mime = curl_mime_init(c);
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "purpose");
	curl_mime_data(part, "batch", CURL_ZERO_TERMINATED);
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "file");
	cr_assert_eq(curl_mime_filedata(part, file), CURLE_OK);
	curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_mime_free(mime);
	o = json_tokener_parse(buf);
	cr_assert(o && h_jstr(o, "id"), "%s", buf);
	snprintf(body, sizeof(body),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\",\"metadata\":{\"description\":\"%s\"}}",
	         h_jstr(o, "id"), description);
	json_object_put(o);
	buf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_MIMEPOST, NULL);
	curl_easy_setopt(c, CURLOPT_URL, "http://llmq/v1/batches");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_cleanup(c);
	o = json_tokener_parse(buf);
	cr_assert(o && h_jstr(o, "id"), "%s", buf);
	snprintf(id, idlen, "%s", h_jstr(o, "id"));
	json_object_put(o);
}

/* Move a batch's submission back in time by days (another program's write). */
static void backdate(const struct daemon_proc *d, const char *id, int days)
{
	char sql[256];
	sqlite3 *db;

	cr_assert_eq(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	snprintf(sql, sizeof(sql),
	         "UPDATE batches SET created_at = created_at - %d * 86400000 WHERE id = '%s'", days,
	         id);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
}

Test(cli, list_filters_by_state_and_age_in_llmqd_and_shows_names, .timeout = 60)
{
	char dir[64], file[128], quota[128], hsock[128], sock_env[160], a[32], b[32], c[32], h[32];
	char want[256], day[16], line[512];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	time_t t;
	int fd, i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	snprintf(hsock, sizeof(hsock), "%s/http.sock", dir);
	snprintf(sock_env, sizeof(sock_env), "LLMQ_HTTP_SOCKET=%s", hsock);
	h_daemon_start(&d, dir, &m, H_FAST, sock_env, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	snprintf(quota, sizeof(quota), "%s/quota.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 10);
	h_write_batch(quota, 2, "quota", 10);

	/* a: completed, named at submit; h: made over HTTP, named by its metadata. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--name",
	                    "nightly eval", NULL),
	             0, "%s", err);
	snprintf(a, sizeof(a), "%.18s", out);
	json_object_put(h_wait_for(&d, a, h_batch_completed, 30));
	http_batch(hsock, file, "weekly report", h, sizeof(h));
	json_object_put(h_wait_for(&d, h, h_batch_completed, 30));
	/* b: in progress behind a lane out of credit; c: cancelled while it waits. */
	h_submit(&d, quota, b, sizeof(b));
	for (i = 0; i < 300 && h_sql_int(&d, "SELECT count(*) FROM attempts WHERE error_code = "
	                                     "'insufficient_quota'") == 0;
	     i++)
		usleep(100000);
	cr_assert_lt(i, 300, "the lane ran out of credit");
	h_submit(&d, file, c, sizeof(c));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "cancel", c, NULL), 0, "%s",
	             err);

	/* The name column: --name, else the metadata's description, else the file. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", NULL), 0, "%s", err);
	cr_assert(strstr(line_with(out, "BATCH", line, sizeof(line)), "NAME"), "%s", out);
	cr_assert(strstr(line_with(out, a, line, sizeof(line)), "nightly eval"), "%s", out);
	cr_assert(strstr(line_with(out, h, line, sizeof(line)), "weekly report"), "%s", out);
	cr_assert(strstr(line_with(out, b, line, sizeof(line)), "quota.jsonl"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "--json", NULL), 0);
	cr_assert(strstr(out, "\"name\": \"weekly report\""), "%s", out);

	/* -q: ids alone, one a line, for scripts. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "-q", "--state",
	                    "in_progress", NULL),
	             0, "%s", err);
	snprintf(want, sizeof(want), "%s\n", b);
	cr_assert_str_eq(out, want);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "-q", "--state",
	                    "completed", "--state", "cancelled", NULL),
	             0, "%s", err);
	cr_assert_eq(count_lines(out), 3, "%s", out);
	cr_assert(strstr(out, a) && strstr(out, c) && strstr(out, h) && !strstr(out, b), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "--quiet", "--state",
	                    "completed,cancelled", NULL),
	             0, "%s", err);
	cr_assert_eq(count_lines(out), 3, "%s", out);
	/* Filtered before the limit, in llmqd: the newest completed one, though
	 * the newest batch of all is cancelled. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "-q", "--state",
	                    "completed", "--limit", "1", NULL),
	             0, "%s", err);
	snprintf(want, sizeof(want), "%s\n", h);
	cr_assert_str_eq(out, want);

	/* --since: a is made 3 days old. */
	backdate(&d, a, 3);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "-q", "--since", "24h", NULL), 0,
	    "%s", err);
	cr_assert_eq(count_lines(out), 3, "%s", out);
	cr_assert(!strstr(out, a), "%s", out);
	t = time(NULL) - 4 * 86400;
	strftime(day, sizeof(day), "%Y-%m-%d", localtime(&t));
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "-q", "--since", day, NULL), 0,
	    "%s", err);
	cr_assert_eq(count_lines(out), 4, "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", "--since", "30m",
	                    "--state", "failed", NULL),
	             0, "%s", err);
	cr_assert(strstr(out, "(no batch matches)"), "%s", out);
	/* b waits for credit: its status says so, and until when. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", b, NULL), 0, "%s",
	             err);
	cr_assert(strstr(out, "waiting    lane openai paused until ") && strstr(out, "no credit"),
	          "%s", out);
	/* llmqd itself refuses what is not a state, whoever asks. */
	fd = h_raw_connect(d.sock);
	h_raw_send(fd, "{\"v\":1,\"op\":\"list\",\"states\":[\"done\"]}\n");
	h_raw_expect(fd, "BAD_REQUEST");
	close(fd);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(cli, ping_shows_the_http_address, .timeout = 30)
{
	char dir[64], want[64];
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, NULL);
	cr_assert_gt(d.http_port, 0);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "ping", NULL), 0, "%s", err);
	snprintf(want, sizeof(want), "http://127.0.0.1:%d/v1", d.http_port);
	cr_assert(strstr(out, want), "%s", out);
	cr_assert(strstr(out, "llmqd ") && strstr(out, "up ") && strstr(out, "queued"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
}

Test(cli, a_dry_run_exits_as_its_submit_would_and_stores_nothing, .timeout = 60)
{
	char dir[64], file[128], id[32];
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	/* No upstream answers: what is queued stays queued. */
	h_daemon_start(&d, dir, NULL, "OPENAI_TPM_LIMIT=1000", "OPENAI_STAGGER_SECONDS=0",
	               "LLMQ_QUEUE_MAX_JOBS=4", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);

	/* A request dearer than the lane's whole budget: never, 65. */
	h_write_batch(file, 2, "gpt-4o-mini", 5000);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 65);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--dry-run", NULL), 65,
	    "%s%s", out, err);
	cr_assert(strstr(out, "would be refused") && strstr(out, "can never run"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--dry-run",
	                    "--json", NULL),
	             65, "%s", out);
	cr_assert(strstr(out, "\"retryable\": false"), "%s", out);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0, "nothing stored");

	/* Accepted: 0, still nothing stored. */
	h_write_batch(file, 3, "gpt-4o-mini", 10);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--dry-run", NULL), 0,
	    "%s%s", out, err);
	cr_assert(strstr(out, "would be accepted"), "%s", out);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0, "nothing stored");

	/* The queue holds 3 of its 4; 3 more is too many for now: 75. */
	h_submit(&d, file, id, sizeof(id));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 75);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, "--dry-run", NULL), 75,
	    "%s%s", out, err);
	cr_assert(strstr(out, "would be refused now") && strstr(out, "queue_max_jobs"), "%s", out);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 1, "only the first stored");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs"), 3);
	h_daemon_signal(&d, SIGTERM);
}

/* The status text's line that starts with word. */
static const char *status_line(const char *text, const char *word, char *line, size_t len)
{
	char key[32];

	snprintf(key, sizeof(key), "\n%s ", word);
	line_with(text, key + 1, line, len);
	return line;
}

Test(cli, status_of_a_batch_on_a_paused_lane_says_why_and_until_when, .timeout = 60)
{
	char dir[64], file[128], id[32], line[512];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *b, *w;
	int64_t now, until, eta;
	int hh, mm, ss;

	h_tmpdir(dir, sizeof(dir));
	/* Every request gets a 429 that says: come back in 40 s. */
	h_mock_start(&m, dir, "--429-every", "1", "--429-retry-after-ms", "40000", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 4, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, rate_limited, 20);
	now = (int64_t)time(NULL) * 1000;
	cr_assert(json_object_object_get_ex(b, "waiting", &w));
	cr_assert_str_eq(h_jstr(w, "lane"), "openai");
	until = h_jint(w, "until");
	cr_assert(until > now + 30000 && until < now + 42000, "until %lld, now %lld",
	          (long long)until, (long long)now);
	eta = h_jint(b, "eta_ms");
	cr_assert_geq(eta, h_jint(w, "in_ms"), "the ETA counts the pause: %lld", (long long)eta);
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0, "%s",
	             err);
	status_line(out, "waiting", line, sizeof(line));
	cr_assert(strstr(line, "lane openai paused by a 429 until "), "%s", out);
	cr_assert_eq(sscanf(strstr(line, "until ") + 6, "%d:%d:%d (in ", &hh, &mm, &ss), 3, "%s",
	             line);
	cr_assert(strstr(line, "(in 3") || strstr(line, "(in 4"), "in 30-40 s: %s", line);
	status_line(out, "eta", line, sizeof(line));
	cr_assert(strstr(line, "eta        3") || strstr(line, "eta        4"),
	          "no ETA shorter than the pause: %s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(cli, status_of_a_batch_on_an_unreachable_lane_shows_no_eta, .timeout = 60)
{
	char dir[64], file[128], id[32], line[512];
	struct daemon_proc d = {0};
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	/* Nothing listens where the lane sends (port 9): its breaker opens. */
	h_daemon_start(&d, dir, NULL, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 4, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, unreachable, 30);
	cr_assert_not(json_object_get_boolean(json_object_object_get(b, "eta_known")),
	              "the ETA is not known while nothing answers");
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0, "%s",
	             err);
	status_line(out, "waiting", line, sizeof(line));
	cr_assert(strstr(line, "lane openai cannot reach its upstream"), "%s", out);
	status_line(out, "eta", line, sizeof(line));
	cr_assert(strstr(line, "unknown"), "no short ETA: %s", out);
	h_daemon_signal(&d, SIGTERM);
}
