/*
 * Budgets and fair shares with real users: a root llmqd whose socket
 * belongs to a users' group, users made by tests/users.sh acting through
 * the real llmq and curl (their uid told by the kernel), the mock upstream.
 * Users take turns on a lane; one user's runaway batch starves nobody; a
 * spent budget answers a call 429 budget_exceeded with its reset, and holds
 * a batch back until it resets (a midnight brought near by a time zone of
 * the test's, not a day's sleep); and no path a try can take - an answer,
 * an error, a timeout, a cancel, a caller gone, a call never launched,
 * kill -9 - leaves anything held: a user at their budget less one call
 * makes that call. Creating users needs root; CI runs as root.
 */
#include <criterion/criterion.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "users.h"

static char out[1 << 16], err[1 << 16];

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	users_run_start("test_budget_e2e");
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	users_run_end("test_budget_e2e");
}

static int64_t uid_of(const char *role)
{
	struct passwd *pw = getpwnam(user(role));

	cr_assert_not_null(pw, "no user %s", user(role));
	return pw->pw_uid;
}

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* In a forked child: become user for good. */
static void become(const char *name)
{
	struct passwd *pw = getpwnam(name);

	if (!pw || initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		_exit(99);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
		_exit(99);
}

/* curl as name, with args (NULL-terminated): its exit status; what it printed into buf. */
static int curl_as(const char *name, char *buf, size_t len, ...)
{
	char *argv[32] = {"curl", "-s", "-i"};
	int po[2], status, i = 3;
	size_t have = 0;
	ssize_t n;
	va_list ap;
	pid_t pid;

	va_start(ap, len);
	while (i < 31 && (argv[i] = va_arg(ap, char *)))
		i++;
	va_end(ap);
	argv[i] = NULL;
	cr_assert_eq(pipe(po), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(po[1], 1);
		close(po[0]);
		become(name);
		execvp("curl", argv);
		_exit(127);
	}
	close(po[1]);
	while (have + 1 < len && (n = read(po[0], buf + have, len - 1 - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	close(po[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A chat call of model as name, max_tokens max (its cost: 1 + max), streamed
 * when model ends in "+stream"; the HTTP status, the whole answer (head and
 * body) into buf. */
static int call_as(const char *name, const struct daemon_proc *d, const char *model, int max,
                   const char *timeout, char *buf, size_t len)
{
	const char *plus = strchr(model, '+');
	char url[128], body[256];
	int code = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", d->http_port);
	snprintf(body, sizeof(body),
	         "{\"model\":\"%.*s\",\"max_tokens\":%d,%s\"messages\":[{\"role\":\"user\","
	         "\"content\":\"hi\"}]}",
	         plus ? (int)(plus - model) : (int)strlen(model), model, max,
	         plus ? "\"stream\":true,\"stream_options\":{\"include_usage\":true}," : "");
	curl_as(name, buf, len, "-m", timeout, "-H", "Content-Type: application/json", "-d", body,
	        url, NULL);
	sscanf(buf, "HTTP/1.1 %d", &code);
	return code;
}

/*
 * A time zone whose midnight is in_s seconds from now (POSIX "std offset",
 * offset west of UTC, with seconds), into tz; the midnight's wall ms.
 */
static int64_t tz_midnight_in(int64_t in_s, char *tz, size_t len)
{
	int64_t mid = (int64_t)time(NULL) + in_s, off = mid % 86400;

	snprintf(tz, len, "TZ=LQT%02lld:%02lld:%02lld", (long long)(off / 3600),
	         (long long)(off / 60 % 60), (long long)(off % 60));
	return mid * 1000;
}

/* Config for llmqd: the lanes (openai at m, slow at slow) and extra lines. */
static void write_conf(const char *path, const struct mock_proc *m, const struct mock_proc *slow,
                       int concurrency, const char *extra)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fprintf(f,
	        "[daemon]\nsocket_group = %s\n\n"
	        "[lane openai]\nbase_url = http://127.0.0.1:%d/v1\nstagger_seconds = 0\n"
	        "tpm_limit = 0\nmax_concurrency = %d\nbackoff_base_seconds = 0.05\n"
	        "backoff_cap_seconds = 0.2\n\n",
	        user("users"), m->port, concurrency);
	if (slow)
		fprintf(f,
		        "[lane slow]\nbase_url = http://127.0.0.1:%d/v1\nmodels = slow-*\n"
		        "stagger_seconds = 0\ntpm_limit = 0\nmax_concurrency = 1\n"
		        "request_timeout_seconds = 2\nretry_max_attempts = 1\n"
		        "interactive_max_wait_seconds = 1\n\n",
		        slow->port);
	fputs(extra, f);
	fclose(f);
}

/* A test's directory the users reach (not its database), and a batch file they read. */
static void batch_file(const char *dir, const char *name, int n, const char *model, char *path,
                       size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	h_write_batch(path, n, model, 10); /* each line: 3 prompt tokens + 10: costs 13 */
	cr_assert_eq(chmod(path, 0644), 0);
}

static void submit_as(const char *role, const struct daemon_proc *d, const char *file, char *id,
                      size_t len, ...)
{
	va_list ap;
	char *more[4] = {NULL};
	int i = 0;

	va_start(ap, len);
	while (i < 3 && (more[i] = va_arg(ap, char *)))
		i++;
	va_end(ap);
	cr_assert_eq(h_llmq_as(user(role), d, out, sizeof(out), err, sizeof(err), "submit", file,
	                       more[0], more[1], more[2], NULL),
	             0, "%s", err);
	snprintf(id, len, "%.*s", (int)strcspn(out, "\n"), out);
}

/* "llmq status --json" as root. */
static json_object *status(const struct daemon_proc *d, const char *batch)
{
	json_object *o;

	cr_assert_eq(h_llmq(d, out, sizeof(out), err, sizeof(err), "status", "--json", batch, NULL),
	             0, "%s", err);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	return o;
}

/* uid's entry of status's budgets (a new reference), or NULL. */
static json_object *budget_of(const struct daemon_proc *d, int64_t uid)
{
	json_object *o = status(d, NULL), *arr, *b, *ret = NULL;
	size_t i;

	cr_assert(json_object_object_get_ex(o, "budgets", &arr), "%s", out);
	for (i = 0; i < json_object_array_length(arr); i++) {
		b = json_object_array_get_idx(arr, i);
		if (h_jint(b, "uid") == uid)
			ret = json_object_get(b);
	}
	json_object_put(o);
	return ret;
}

/*
 * Nothing held, and spent what the database says the user spent today
 * (the last try's record reaches it a moment after the try): held 0 and
 * used == usage_daily, within 5 s.
 */
static void settled(const struct daemon_proc *d, int64_t uid, const char *after)
{
	char sql[256];
	int64_t held = -1, used = -1, db = -2;
	json_object *b;
	int i;

	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(sum(tokens), 0) FROM usage_daily WHERE uid = %lld AND day = "
	         "(SELECT max(day) FROM usage_daily)",
	         (long long)uid);
	for (i = 0; i < 100; i++) {
		b = budget_of(d, uid);
		cr_assert_not_null(b, "no budget for uid %lld in status: %s", (long long)uid, out);
		held = h_jint(b, "daily_tokens.held");
		used = h_jint(b, "daily_tokens.used");
		json_object_put(b);
		db = h_sql_int(d, sql);
		if (held == 0 && used == db)
			return;
		msleep(50);
	}
	cr_assert_fail("after %s: held %lld, used %lld, the database says %lld", after,
	               (long long)held, (long long)used, (long long)db);
}

/* sql's answer becomes want within 5 s (records reach the database a moment after). */
static void wait_sql(const struct daemon_proc *d, const char *sql, int64_t want, const char *what)
{
	int64_t got = -1;
	int i;

	for (i = 0; i < 100 && (got = h_sql_int(d, sql)) != want; i++)
		msleep(50);
	cr_assert_eq(got, want, "%s: %lld, not %lld", what, (long long)got, (long long)want);
}

static int batch_done(json_object *b)
{
	return h_batch_finished(b);
}

/* The uids of a lane's launches, in order: "a" for alice's, "b" for bob's. */
static void launch_order(const struct daemon_proc *d, char *buf, size_t len)
{
	char sql[512];
	int64_t n, i, bob = uid_of("bob");

	n = h_sql_int(d, "SELECT count(*) FROM attempts");
	cr_assert_lt(n, (int64_t)len);
	for (i = 0; i < n; i++) {
		snprintf(sql, sizeof(sql),
		         "SELECT b.submitter_uid FROM attempts a JOIN jobs j ON j.id = a.job_id "
		         "JOIN batches b ON b.id = j.batch_id ORDER BY a.id LIMIT 1 OFFSET %lld",
		         (long long)i);
		buf[i] = h_sql_int(d, sql) == bob ? 'b' : 'a';
	}
	buf[n] = '\0';
}

/*
 * Two users' batches on one lane take turns: alice's three batches (one at
 * priority 1000) get one launch in two, as bob's one batch does, however
 * many batches she has and whatever their priority.
 */
static void two_users_take_turns(int concurrency)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], conf[128], env[160], file[128], order[128], ids[4][40], sql[512];
	int i;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	write_conf(conf, &m, NULL, concurrency, "");
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, NULL, env, NULL);
	/* Paused while everyone submits, so that the order is the scheduler's alone. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "pause", "openai", NULL), 0,
	             "%s", err);
	batch_file(dir, "four.jsonl", 4, "gpt-4o-mini", file, sizeof(file));
	submit_as("alice", &d, file, ids[0], sizeof(ids[0]), NULL);
	submit_as("alice", &d, file, ids[1], sizeof(ids[1]), "--priority", "1000", NULL);
	submit_as("alice", &d, file, ids[2], sizeof(ids[2]), NULL);
	submit_as("bob", &d, file, ids[3], sizeof(ids[3]), NULL);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "resume", "openai", NULL), 0,
	             "%s", err);
	for (i = 0; i < 4; i++)
		json_object_put(h_wait_for(&d, ids[i], h_batch_completed, 30));
	launch_order(&d, order, sizeof(order));
	cr_assert_eq(strlen(order), 16, "%s", order);
	/* Bob's four went in the first eight, one in two. */
	cr_assert(strncmp(order, "abababab", 8) == 0 || strncmp(order, "babababa", 8) == 0,
	          "launches by user: %s", order);
	cr_assert_str_eq(order + 8, "aaaaaaaa", "%s", order);
	/* Within alice's turns, her priority 1000 batch first. */
	snprintf(sql, sizeof(sql),
	         "SELECT sum(x) FROM (SELECT j.batch_id = '%s' AS x FROM attempts a JOIN jobs j "
	         "ON j.id = a.job_id JOIN batches b ON b.id = j.batch_id WHERE b.submitter_uid = "
	         "%lld ORDER BY a.id LIMIT 4)",
	         ids[1], (long long)uid_of("alice"));
	cr_assert_eq(h_sql_int(&d, sql), 4, "her first four launches were her priority's");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(budget_e2e, two_users_batches_take_turns, .timeout = 120)
{
	two_users_take_turns(1);
}

/* Several launches a pump (recorded together by the writer thread): the
 * turns move on with each pick, not with each send. */
Test(budget_e2e, two_users_take_turns_within_one_pump, .timeout = 120)
{
	two_users_take_turns(4);
}

/*
 * One user's runaway batch (300 requests, at priority 1000) does not
 * starve another's: bob's 10, submitted while it runs, go one launch in two
 * from then on.
 */
Test(budget_e2e, a_runaway_batch_does_not_starve_another_user, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], conf[128], env[160], file[128], file2[128], runaway[40], small[40], sql[512];
	int64_t before, bob_last, alice_between;
	json_object *b;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	write_conf(conf, &m, NULL, 2, "");
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, NULL, env, NULL);
	batch_file(dir, "runaway.jsonl", 300, "gpt-4o-mini", file, sizeof(file));
	batch_file(dir, "small.jsonl", 10, "gpt-4o-mini", file2, sizeof(file2));
	submit_as("alice", &d, file, runaway, sizeof(runaway), "--priority", "1000", NULL);
	while (h_sql_int(&d, "SELECT count(*) FROM attempts") < 20)
		msleep(20);
	submit_as("bob", &d, file2, small, sizeof(small), NULL);
	json_object_put(h_wait_for(&d, small, h_batch_completed, 30));
	snprintf(sql, sizeof(sql),
	         "SELECT min(a.id) FROM attempts a JOIN jobs j ON j.id = a.job_id "
	         "WHERE j.batch_id = '%s'",
	         small);
	before = h_sql_int(&d, sql);
	snprintf(sql, sizeof(sql),
	         "SELECT max(a.id) FROM attempts a JOIN jobs j ON j.id = a.job_id "
	         "WHERE j.batch_id = '%s'",
	         small);
	bob_last = h_sql_int(&d, sql);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id "
	         "WHERE j.batch_id = '%s' AND a.id BETWEEN %lld AND %lld",
	         runaway, (long long)before, (long long)bob_last);
	alice_between = h_sql_int(&d, sql);
	/* One launch in two, and the one of alice's in flight when bob came. */
	cr_assert_leq(alice_between, 11, "alice launched %lld while bob's 10 went",
	              (long long)alice_between);
	b = status(&d, runaway);
	cr_assert_geq(h_jint(b, "batch.counts.queued"), 200, "the runaway is still running: %s",
	              out);
	json_object_put(b);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* The value of header name (lower case, as llmqd sends it) in an answer's head; -1 when absent. */
static int64_t header_int(const char *answer, const char *name)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "\n%s: ", name);
	p = strstr(answer, key);
	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/*
 * A spent budget answers a call 429, code budget_exceeded, with its reset
 * in retry-after and the figures in the message; a call larger than the
 * whole budget is a 400 at once; the monthly budget counts dollars, and
 * resets on the month's first. Someone without a budget is not touched.
 */
Test(budget_e2e, a_call_over_budget_gets_429_budget_exceeded, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], conf[128], env[160], tz[64], extra[512], ans[8192];
	int64_t midnight, in_s, month_end;
	struct tm tm;
	time_t t;
	int i;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, NULL);
	midnight = tz_midnight_in(3 * 3600, tz, sizeof(tz));
	/* Calls of "hi" with max_tokens 9 cost 10 tokens; at $100 per 1M, $0.001. */
	snprintf(extra, sizeof(extra),
	         "[prices]\ngpt-4o-mini = 100 100 100\n\n[user %s]\ndaily_tokens = 25\n"
	         "monthly_usd = 1000\n\n"
	         "[group %s]\nmonthly_usd = 0.0025\n\n[user %s]\nmonthly_usd = 1000\n",
	         user("bob"), user("users"), user("alice"));
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	write_conf(conf, &m, NULL, 4, extra);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, NULL, env, tz, NULL);

	/* Bob: two calls fit his 25 tokens a day, the third does not. */
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 200, "%s",
	             ans);
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 200, "%s",
	             ans);
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 429, "%s",
	             ans);
	cr_assert(strstr(ans, "\"code\":\"budget_exceeded\""), "%s", ans);
	cr_assert(strstr(ans, "daily_tokens budget: 20 of 25 tokens used today"), "%s", ans);
	cr_assert(strstr(ans, "may use 10 tokens"), "%s", ans);
	in_s = (midnight - (int64_t)time(NULL) * 1000) / 1000;
	cr_assert(header_int(ans, "retry-after") >= in_s - 2 &&
	              header_int(ans, "retry-after") <= in_s + 2,
	          "retry-after %lld, midnight in %lld s: %s",
	          (long long)header_int(ans, "retry-after"), (long long)in_s, ans);
	/* Larger than the whole budget: waiting cannot help. */
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 100, "20", ans, sizeof(ans)), 400,
	             "%s", ans);
	cr_assert(strstr(ans, "budget_exceeded") && strstr(ans, "can never run"), "%s", ans);

	/* Carol: her group's monthly dollars, two calls' worth and a half. */
	for (i = 0; i < 2; i++)
		cr_assert_eq(call_as(user("carol"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)),
		             200, "%s", ans);
	cr_assert_eq(call_as(user("carol"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 429,
	             "%s", ans);
	cr_assert(strstr(ans, "monthly_usd budget: $0.002 of $0.0025 used this month"), "%s", ans);
	/* It resets on the first of the next month, llmqd's local time. */
	cr_assert_eq(setenv("TZ", tz + 3, 1), 0);
	tzset();
	t = time(NULL);
	localtime_r(&t, &tm);
	tm.tm_mday = 1;
	tm.tm_mon++;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	month_end = (int64_t)mktime(&tm);
	in_s = month_end - (int64_t)time(NULL);
	cr_assert(header_int(ans, "retry-after") >= in_s - 2 &&
	              header_int(ans, "retry-after") <= in_s + 2,
	          "retry-after %lld, the month ends in %lld s",
	          (long long)header_int(ans, "retry-after"), (long long)in_s);

	/* Alice's own section wins over her group's: she goes on. */
	for (i = 0; i < 3; i++)
		cr_assert_eq(call_as(user("alice"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)),
		             200, "%s", ans);
	h_daemon_signal(&d, SIGTERM);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE error_code = "
	                           "'budget_exceeded' AND outcome = 'refused'"),
	             3, "each refusal is recorded");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome != 'refused'"), 7,
	             "nothing refused went upstream");
	h_mock_stop(&m);
}

/* The batch's waiting reason. */
static int waits_for_budget(json_object *b)
{
	json_object *w;

	return h_jint(b, "counts.succeeded") == 3 && json_object_object_get_ex(b, "waiting", &w) &&
	       w && h_jstr(w, "reason") && strcmp(h_jstr(w, "reason"), "budget") == 0;
}

/*
 * A batch whose owner's budget is spent waits, its jobs queued (never
 * failed), and status and the live page say why and until when; at
 * midnight (llmqd's local time) it goes on and completes.
 */
Test(budget_e2e, a_batch_waits_for_the_budget_and_resumes_at_midnight, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], conf[128], env[160], tz[64], extra[256], file[128], id[40], url[128];
	int64_t midnight;
	json_object *b, *w, *live, *arr;
	size_t i;
	int seen = 0;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, NULL);
	midnight = tz_midnight_in(10, tz, sizeof(tz));
	snprintf(extra, sizeof(extra), "[user %s]\ndaily_tokens = 39\n", user("bob"));
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	write_conf(conf, &m, NULL, 1, extra);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, NULL, env, tz, NULL);
	batch_file(dir, "six.jsonl", 6, "gpt-4o-mini", file, sizeof(file));
	submit_as("bob", &d, file, id, sizeof(id), NULL);

	/* Three of 13 tokens fit 39: the other three wait, queued. */
	b = h_wait_for(&d, id, waits_for_budget, 8);
	cr_assert_lt(time(NULL) * 1000, midnight - 1000, "the test was too slow to see it wait");
	cr_assert_eq(h_jint(b, "counts.queued"), 3);
	cr_assert_eq(h_jint(b, "counts.failed"), 0);
	cr_assert(json_object_object_get_ex(b, "waiting", &w));
	cr_assert_eq(h_jint(w, "until"), midnight, "until %lld, midnight %lld",
	             (long long)h_jint(w, "until"), (long long)midnight);
	cr_assert(strstr(h_jstr(w, "message"), "daily_tokens budget: 39 of 39 tokens used today"),
	          "%s", h_jstr(w, "message"));
	cr_assert(h_jint(b, "eta_ms") >= midnight - time(NULL) * 1000 - 1000, "the ETA counts it");
	json_object_put(b);
	/* llmq status says so for people too. */
	cr_assert_eq(
	    h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0,
	    "%s", err);
	cr_assert(strstr(out, "waiting    ") && strstr(out, "daily_tokens budget"), "%s", out);
	/* And the live page's figures, as bob sees them. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/llmq/live", d.http_port);
	cr_assert_eq(curl_as(user("bob"), out, sizeof(out), url, NULL), 0);
	live = json_tokener_parse(strstr(out, "\r\n\r\n") + 4);
	cr_assert_not_null(live, "%s", out);
	cr_assert(json_object_object_get_ex(live, "batches", &arr));
	for (i = 0; i < json_object_array_length(arr); i++) {
		b = json_object_array_get_idx(arr, i);
		if (strcmp(h_jstr(b, "id"), id) == 0 &&
		    json_object_object_get_ex(b, "waiting", &w) && w &&
		    strcmp(h_jstr(w, "reason"), "budget") == 0)
			seen = 1;
	}
	cr_assert(seen, "the live page's batch waits for the budget: %s", out);
	cr_assert(json_object_object_get_ex(live, "budgets", &arr));
	cr_assert_eq(json_object_array_length(arr), 1, "bob sees his own budget alone");
	cr_assert_eq(h_jint(json_object_array_get_idx(arr, 0), "daily_tokens.used"), 39);
	json_object_put(live);

	/* Midnight: a new day's budget, and the batch completes. */
	b = h_wait_for(&d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 6);
	cr_assert_eq(h_jint(b, "counts.failed"), 0);
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT count(DISTINCT day) FROM usage_daily"), 2,
	             "three tries on each day");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* No path a try takes leaves a hold: after each, bob holds nothing and spent
 * what the database says. */
Test(budget_e2e, no_path_leaves_a_hold, .timeout = 180)
{
	struct mock_proc m = {0}, slow = {0};
	struct daemon_proc d = {0};
	char dir[64], conf[128], env[160], tz[64], extra[256], file[128], id[40], ans[8192];
	int64_t bob = uid_of("bob"), used;
	json_object *b;
	pid_t pid;
	int status_, i;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	/* Streams drip their five events a second apart: a call stays in flight 5 s. */
	h_mock_start(&m, dir, "--drip-ms", "1000", NULL);
	h_mock_start(&slow, dir, "--latency-ms", "4000", NULL);
	tz_midnight_in(12 * 3600, tz, sizeof(tz)); /* noon: the day does not end meanwhile */
	snprintf(extra, sizeof(extra), "[user %s]\ndaily_tokens = 100000\n", user("bob"));
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	write_conf(conf, &m, &slow, 2, extra);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, NULL, env, tz, NULL);

	/* An answer: a batch's, a call's. */
	batch_file(dir, "two.jsonl", 2, "gpt-4o-mini", file, sizeof(file));
	submit_as("bob", &d, file, id, sizeof(id), NULL);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	settled(&d, bob, "a batch's answers");
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 200, "%s",
	             ans);
	settled(&d, bob, "a call's answer");
	/* Errors: a 400, a 500 that is not retried. */
	cr_assert_eq(call_as(user("bob"), &d, "fail-400", 9, "20", ans, sizeof(ans)), 400, "%s",
	             ans);
	settled(&d, bob, "a call answered 400");
	batch_file(dir, "fail.jsonl", 2, "retry-false", file, sizeof(file));
	submit_as("bob", &d, file, id, sizeof(id), NULL);
	json_object_put(h_wait_for(&d, id, batch_done, 30));
	settled(&d, bob, "batch jobs answered 500");
	/* A timeout: the slow lane's upstream answers after 4 s, its timeout is 2 s. */
	batch_file(dir, "slow.jsonl", 1, "slow-model", file, sizeof(file));
	submit_as("bob", &d, file, id, sizeof(id), NULL);
	b = h_wait_for(&d, id, batch_done, 30);
	cr_assert_eq(h_jint(b, "counts.failed"), 1, "it timed out");
	json_object_put(b);
	settled(&d, bob, "a timeout");
	/* A cancel: one in flight, three queued. */
	batch_file(dir, "slow4.jsonl", 4, "slow-model", file, sizeof(file));
	submit_as("bob", &d, file, id, sizeof(id), NULL);
	while (h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'running'") < 1)
		msleep(20);
	cr_assert_eq(
	    h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "cancel", id, NULL), 0,
	    "%s", err);
	json_object_put(h_wait_for(&d, id, batch_done, 30));
	settled(&d, bob, "a cancel");
	/* A caller gone while its answer streams (it leaves after 1.5 s of 5). */
	call_as(user("bob"), &d, "gpt-4o-mini+stream", 9, "1.5", ans, sizeof(ans));
	settled(&d, bob, "a caller gone in flight");
	wait_sql(&d,
	         "SELECT count(*) FROM calls WHERE outcome = 'aborted' AND error_code = "
	         "'caller_gone' AND tokens_charged = 10",
	         1, "the caller left in flight");
	/* A streamed answer that reports its usage at the end. */
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini+stream", 9, "20", ans, sizeof(ans)), 200,
	             "%s", ans);
	settled(&d, bob, "a streamed answer");
	/* Calls never launched: the slow lane's slot is taken, they wait 1 s at
	 * most, one of them leaving first. */
	batch_file(dir, "slow1.jsonl", 1, "slow-model", file, sizeof(file));
	submit_as("alice", &d, file, id, sizeof(id), NULL);
	while (h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'running'") < 1)
		msleep(20);
	cr_assert_eq(call_as(user("bob"), &d, "slow-model", 9, "20", ans, sizeof(ans)), 429, "%s",
	             ans);
	cr_assert(strstr(ans, "rate_limit_exceeded"), "the gate's 429: %s", ans);
	call_as(user("bob"), &d, "slow-model", 9, "0.3", ans, sizeof(ans));
	settled(&d, bob, "calls that never launched");
	json_object_put(h_wait_for(&d, id, batch_done, 30));

	/* kill -9 with a call of bob's in flight, then a restart. */
	b = budget_of(&d, bob);
	used = h_jint(b, "daily_tokens.used");
	json_object_put(b);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		call_as(user("bob"), &d, "gpt-4o-mini+stream", 9, "10", ans, sizeof(ans));
		_exit(0);
	}
	for (i = 0; i < 200; i++) {
		b = budget_of(&d, bob);
		status_ = (int)h_jint(b, "daily_tokens.held");
		json_object_put(b);
		if (status_ == 10)
			break;
		msleep(20);
	}
	cr_assert_eq(status_, 10, "bob's streamed call holds its 10 tokens");
	h_daemon_signal(&d, SIGKILL);
	cr_assert_eq(waitpid(pid, &status_, 0), pid);
	/* His budget is now exactly what he spent and one call more. */
	snprintf(extra, sizeof(extra), "[user %s]\ndaily_tokens = %lld\n", user("bob"),
	         (long long)(used + 10));
	write_conf(conf, &m, &slow, 2, extra);
	h_daemon_start(&d, dir, NULL, env, tz, NULL);
	settled(&d, bob, "kill -9 and a restart");
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 200,
	             "the call that fits after the restart: %s", ans);
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 429,
	             "and not one more: %s", ans);
	settled(&d, bob, "the last call");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&slow);
	h_mock_stop(&m);
}

/* name's budget holds held tokens within 4 s (its streamed call is in flight). */
static void wait_held(const struct daemon_proc *d, const char *role, int64_t held)
{
	int64_t got = -1;
	json_object *b;
	int i;

	for (i = 0; i < 200 && got != held; i++) {
		b = budget_of(d, uid_of(role));
		got = b ? h_jint(b, "daily_tokens.held") : -1;
		json_object_put(b);
		if (got != held)
			msleep(20);
	}
	cr_assert_eq(got, held, "%s holds %lld", user(role), (long long)got);
}

/* A streamed call of role's in the background, until it ends; its pid. */
static pid_t stream_in_background(const struct daemon_proc *d, const char *role)
{
	static char ans[8192];
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(call_as(user(role), d, "gpt-4o-mini+stream", 9, "20", ans, sizeof(ans)) == 200
		          ? 0
		          : 1);
	return pid;
}

/*
 * A call that would fit once the user's own calls in flight give back what
 * they did not use waits for them, then goes; one that still does not fit
 * then is answered 429 budget_exceeded from its wait.
 */
Test(budget_e2e, a_call_waits_for_its_users_calls_in_flight, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], conf[128], env[160], extra[256], ans[8192];
	struct timespec t0, t1;
	int64_t waited;
	pid_t pid;
	int status_;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	/* Calls estimated at 10 tokens use 6 (1 + 9 x 0.5); streams take 1.5 s. */
	h_mock_start(&m, dir, "--completion-ratio", "0.5", "--drip-ms", "300", NULL);
	snprintf(extra, sizeof(extra),
	         "[user %s]\ndaily_tokens = 16\n\n[user %s]\ndaily_tokens = 15\n", user("bob"),
	         user("carol"));
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	write_conf(conf, &m, NULL, 4, extra);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	h_daemon_start(&d, dir, NULL, env, NULL);

	/* Bob: 10 held, 10 more would pass 16; once the first used 6, 6 + 10 fit. */
	pid = stream_in_background(&d, "bob");
	wait_held(&d, "bob", 10);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 200, "%s",
	             ans);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_eq(waitpid(pid, &status_, 0), pid);
	cr_assert(WIFEXITED(status_) && WEXITSTATUS(status_) == 0, "bob's stream");
	cr_assert_geq(waited, 700, "it waited for the stream (%lld ms)", (long long)waited);
	settled(&d, uid_of("bob"), "a call that waited for another");
	cr_assert_eq(call_as(user("bob"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 429,
	             "12 spent, 10 more pass 16: %s", ans);

	/* Carol: 6 + 10 pass her 15: the waiting call is refused when hers ends. */
	pid = stream_in_background(&d, "carol");
	wait_held(&d, "carol", 10);
	cr_assert_eq(call_as(user("carol"), &d, "gpt-4o-mini", 9, "20", ans, sizeof(ans)), 429,
	             "%s", ans);
	cr_assert(strstr(ans, "budget_exceeded") && strstr(ans, "6 of 15 tokens used today"), "%s",
	          ans);
	cr_assert_eq(waitpid(pid, &status_, 0), pid);
	settled(&d, uid_of("carol"), "a waiting call refused");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
