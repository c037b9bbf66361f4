/*
 * Usage and cost, end to end: a real llmqd with prices, the mock reporting
 * usage (cached tokens too), batch jobs and interactive calls (plain,
 * streamed, embeddings, a model without a price), read back with llmq
 * usage, its CSV, the database and the metrics.
 */
#include <criterion/criterion.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char out[1 << 20], err[1 << 16];

/* The cost of a gpt-4o-mini try at 0.15 / 0.075 / 0.60, rounded once: SQL over row t. */
#define MINI_COST(t)                                                                               \
	"((" t ".prompt_tokens - coalesce(" t ".cached_tokens, 0)) * 150000 + coalesce(" t         \
	".cached_tokens, 0) * 75000 + coalesce(" t ".completion_tokens, 0) * 600000 + 500) / 1000"

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

/* Statements that change the daemon's database (it runs: WAL takes them). */
static void sql_exec(const struct daemon_proc *d, const char *sql)
{
	char *e = NULL;
	sqlite3 *db;

	cr_assert_eq(sqlite3_open(d->db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &e), SQLITE_OK, "%s: %s", sql, e ? e : "");
	sqlite3_close(db);
}

/* Wait up to 10 s for sql's first column to be want (call records are
 * written a moment after the call). */
static void wait_sql(const struct daemon_proc *d, const char *sql, int64_t want)
{
	int i;

	for (i = 0; i < 400 && h_sql_int(d, sql) != want; i++)
		usleep(25000);
	cr_assert_eq(h_sql_int(d, sql), want, "%s", sql);
}

/* An interactive call: model, and what else the body says (",\"stream\":true"). */
static void call(const struct daemon_proc *d, const char *path, const char *model,
                 const char *extra)
{
	char body[512], ret[4096];
	long status;

	if (strstr(path, "embeddings"))
		snprintf(body, sizeof(body), "{\"model\":\"%s\",\"input\":\"embed this text\"%s}",
		         model, extra);
	else
		snprintf(body, sizeof(body),
		         "{\"model\":\"%s\",\"max_tokens\":7,\"messages\":[{\"role\":\"user\","
		         "\"content\":\"hello from a caller\"}]%s}",
		         model, extra);
	status = h_http(d->http_port, "POST", path, body, ret);
	cr_assert_eq(status, 200, "%s: %ld %s", model, status, ret);
}

/* The row of a usage answer whose keys are those given (NULL: any). */
static json_object *usage_row(json_object *reply, const char *model, const char *cls)
{
	json_object *rows = json_object_object_get(reply, "rows"), *r;
	size_t i;

	for (i = 0; rows && i < json_object_array_length(rows); i++) {
		r = json_object_array_get_idx(rows, i);
		if ((!model || !strcmp(h_jstr(r, "model"), model)) &&
		    (!cls || !strcmp(h_jstr(r, "class"), cls)))
			return r;
	}
	cr_assert_fail("no usage row for %s %s in %s", model ? model : "*", cls ? cls : "*",
	               json_object_to_json_string(reply));
	return NULL;
}

/* GET /v1/llmq/live, whole. */
static json_object *live_json(const struct daemon_proc *d)
{
	char cmd[128];
	json_object *o;
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/v1/llmq/live", d->http_port);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%.200s", out);
	return o;
}

static json_object *usage_json(const struct daemon_proc *d, const char *by)
{
	json_object *o;

	cr_assert_eq(
	    h_llmq(d, out, sizeof(out), err, sizeof(err), "usage", "--json", "--by", by, NULL), 0,
	    "%s", err);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	return o;
}

/*
 * Every try's cost is recorded when it ends, from the usage its answer
 * reported (cached input at its own price), batch jobs and interactive
 * calls alike, streamed ones from the stream's usage; llmq usage sums
 * exactly those, says which models had no price, and prints them as a
 * table or CSV.
 */
Test(usage, each_try_is_priced_and_summed, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], prices[128], env[200], id[40], line[256];
	json_object *o, *r;
	int64_t batch_cost, calls_cost, tokens;

	h_tmpdir(dir, sizeof(dir));
	snprintf(prices, sizeof(prices), "%s/prices.conf", dir);
	write_text(prices, "[prices]\ngpt-4o-mini = 0.15 0.075 0.60\n"
	                   "text-embedding-3-small = 0.02 0\n");
	snprintf(env, sizeof(env), "LLMQ_PRICES_FILE=%s", prices);
	h_mock_start(&m, dir, "--cached-tokens", "2", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, env, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	call(&d, "/v1/chat/completions", "gpt-4o-mini", "");
	call(&d, "/v1/chat/completions", "gpt-4o-mini",
	     ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	call(&d, "/v1/embeddings", "text-embedding-3-small", "");
	call(&d, "/v1/chat/completions", "mystery-model", "");
	wait_sql(&d, "SELECT count(*) FROM calls", 4);

	/* Each attempt: the split its answer reported, and its cost from it. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id "
	                           "WHERE a.prompt_tokens = json_extract(j.response, "
	                           "'$.usage.prompt_tokens') AND a.cached_tokens = 2 AND "
	                           "a.completion_tokens = json_extract(j.response, "
	                           "'$.usage.completion_tokens') AND a.cost_nusd = " MINI_COST(
	                               "a") " AND a.cost_nusd > 0"),
	             3);
	/* Each call too, the streamed one from its stream's last event. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls c WHERE model = 'gpt-4o-mini' AND "
	                           "cached_tokens = 2 AND completion_tokens = 7 AND "
	                           "cost_nusd = " MINI_COST("c")),
	             2);
	cr_assert_eq(h_sql_int(&d, "SELECT stream FROM calls WHERE model = 'gpt-4o-mini' AND "
	                           "cost_nusd IS NOT NULL ORDER BY id DESC LIMIT 1"),
	             1);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE model = "
	                           "'text-embedding-3-small' AND prompt_tokens > 0 AND "
	                           "cost_nusd = (prompt_tokens * 20000 + 500) / 1000"),
	             1);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE model = 'mystery-model' AND "
	                           "cost_nusd IS NULL AND tokens_used > 0"),
	             1, "no price: no cost recorded");

	/* llmq usage: the same figures, summed. */
	batch_cost = h_sql_int(&d, "SELECT sum(cost_nusd) FROM attempts");
	calls_cost = h_sql_int(&d, "SELECT sum(cost_nusd) FROM calls WHERE model = 'gpt-4o-mini'");
	o = usage_json(&d, "model,class");
	r = usage_row(o, "gpt-4o-mini", "batch");
	cr_assert_eq(h_jint(r, "requests"), 3);
	cr_assert_eq(h_jint(r, "cost_nusd"), batch_cost);
	cr_assert_eq(h_jint(r, "cached_tokens"), 6);
	cr_assert_eq(h_jint(r, "prompt_tokens") + h_jint(r, "completion_tokens"),
	             h_jint(r, "total_tokens"));
	cr_assert_eq(h_jint(r, "total_tokens"), h_sql_int(&d, "SELECT sum(tokens_used) FROM "
	                                                      "attempts"));
	r = usage_row(o, "gpt-4o-mini", "interactive");
	cr_assert_eq(h_jint(r, "requests"), 2);
	cr_assert_eq(h_jint(r, "cost_nusd"), calls_cost);
	r = usage_row(o, "mystery-model", "interactive");
	tokens = h_jint(r, "total_tokens");
	cr_assert(tokens > 0 && h_jint(r, "cost_nusd") == 0 &&
	          h_jint(r, "unpriced_tokens") == tokens);
	r = json_object_array_get_idx(json_object_object_get(o, "unpriced"), 0);
	cr_assert(r && !strcmp(h_jstr(r, "model"), "mystery-model") &&
	              h_jint(r, "tokens") == tokens,
	          "%s", json_object_to_json_string(o));
	cr_assert_eq(json_object_array_length(json_object_object_get(o, "unpriced")), 1);
	cr_assert_eq(h_jint(json_object_object_get(o, "total"), "cost_nusd"),
	             h_sql_int(&d, "SELECT (SELECT sum(cost_nusd) FROM attempts) + (SELECT "
	                           "sum(cost_nusd) FROM calls)"));
	cr_assert_eq(h_jint(json_object_object_get(o, "total"), "requests"), 7);
	json_object_put(o);

	/* By user: the submitter by name. */
	o = usage_json(&d, "user,class");
	r = usage_row(o, NULL, "batch");
	cr_assert_str_eq(h_jstr(r, "user"), getpwuid(getuid())->pw_name);
	cr_assert_eq(h_jint(r, "uid"), (int64_t)getuid());
	json_object_put(o);

	/* The table, and the models it could not price. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "usage", "--by", "model", NULL),
	             0, "%s", err);
	cr_assert(strstr(out, "MODEL") && strstr(out, "COST") && strstr(out, "TOTAL"), "%s", out);
	cr_assert(strstr(out, "no price for: mystery-model"), "%s", out);
	/* CSV: the cost as an exact decimal. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "usage", "--by", "model,class",
	                    "--csv", NULL),
	             0, "%s", err);
	cr_assert(!strncmp(out,
	                   "model,class,requests,prompt_tokens,cached_tokens,completion_tokens,"
	                   "total_tokens,cost_usd,rate_limited,failed\n",
	                   99),
	          "%s", out);
	snprintf(line, sizeof(line), "\ngpt-4o-mini,batch,3,");
	cr_assert(strstr(out, line), "%s", out);
	snprintf(line, sizeof(line), ",%lld.%09lld", (long long)(batch_cost / 1000000000),
	         (long long)(batch_cost % 1000000000));
	while (line[strlen(line) - 1] == '0')
		line[strlen(line) - 1] = '\0';
	cr_assert(strstr(out, line), "%s in %s", line, out);

	/* The live page's usage of today: the same cost, in dollars. */
	o = live_json(&d);
	r = json_object_array_get_idx(
	    json_object_object_get(json_object_object_get(o, "usage"), "users"), 0);
	cr_assert_not_null(r, "%s", out);
	cr_assert_not_null(json_object_object_get(r, "cost_usd"));
	cr_assert_float_eq(json_object_get_double(json_object_object_get(r, "cost_usd")),
	                   (double)h_sql_int(&d, "SELECT (SELECT sum(cost_nusd) FROM attempts) + "
	                                         "(SELECT sum(cost_nusd) FROM calls)") /
	                       1e9,
	                   1e-12, "%s", json_object_to_json_string(r));
	json_object_put(o);

	/* The metrics: the same cost. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0);
	snprintf(line, sizeof(line),
	         "llmq_usage_cost_usd_total{lane=\"openai\",class=\"batch\",user=\"%s\","
	         "model=\"gpt-4o-mini\"} %lld.%09lld\n",
	         getpwuid(getuid())->pw_name, (long long)(batch_cost / 1000000000),
	         (long long)(batch_cost % 1000000000));
	cr_assert(strstr(out, line), "%s", line);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* Wait until llmqd's log holds what (a reload done), up to 10 s. */
static void wait_log(const struct daemon_proc *d, const char *what, int count)
{
	static char log[1 << 20];
	const char *p;
	int i, n = 0;

	for (i = 0; i < 400; i++) {
		h_read_file(d->log, log, sizeof(log));
		for (n = 0, p = log; (p = strstr(p, what)); p++)
			n++;
		if (n >= count)
			return;
		usleep(25000);
	}
	cr_assert_fail("llmqd's log never said \"%s\" %d times", what, count);
}

/*
 * A reload's prices apply to the tries after it; those before keep the
 * cost they had. A prices file that does not load is refused, and the
 * running prices kept.
 */
Test(usage, a_new_price_applies_from_the_reload_on, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], prices[128], env[200];

	h_tmpdir(dir, sizeof(dir));
	snprintf(prices, sizeof(prices), "%s/prices.conf", dir);
	write_text(prices, "[prices]\ngpt-4o-mini = 1 1\n"); /* 1,000 nano-dollars a token */
	snprintf(env, sizeof(env), "LLMQ_PRICES_FILE=%s", prices);
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, env, NULL);
	call(&d, "/v1/chat/completions", "gpt-4o-mini", "");
	write_text(prices, "[prices]\ngpt-4o-mini = 2 2\n");
	h_daemon_signal_only(&d, SIGHUP);
	wait_log(&d, "reload: 1 prices", 1);
	call(&d, "/v1/chat/completions", "gpt-4o-mini", "");
	write_text(prices, "[prices]\ngpt-4o-mini = 3 three\n");
	h_daemon_signal_only(&d, SIGHUP);
	wait_log(&d, "keeping the running configuration", 1);
	call(&d, "/v1/chat/completions", "gpt-4o-mini", "");
	wait_sql(&d, "SELECT count(*) FROM calls WHERE tokens_used > 0", 3);
	cr_assert_eq(h_sql_int(&d, "SELECT cost_nusd - tokens_used * 1000 FROM calls ORDER BY id "
	                           "LIMIT 1"),
	             0, "the first at the first price, as it was");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE id > (SELECT min(id) FROM "
	                           "calls) AND cost_nusd = tokens_used * 2000"),
	             2, "the others at the reloaded price, the bad file refused");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * Days are the caller's: in a time zone half an hour off UTC's hours
 * (India's), the quarter before its midnight and the one after are two
 * days; in UTC they are one. The tries are written into the database as
 * the triggers count them (usage_try), at those quarters.
 */
Test(usage, days_are_the_callers_local_days, .timeout = 60)
{
	/* 2025-03-10 00:00 in Asia/Kolkata (UTC+05:30) is 2025-03-09 18:30 UTC. */
	const long long midnight = 1741545000000LL;
	struct daemon_proc d = {0};
	char dir[64], sql[512];

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, H_FAST, NULL);
	/* Tries as the triggers count them (usage_try): 3 of 10 tokens in the
	 * quarter before, 5 in the quarter after. */
	snprintf(sql, sizeof(sql),
	         "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 8) "
	         "INSERT INTO usage_try SELECT CASE WHEN i <= 3 THEN %lld ELSE %lld END, %d, "
	         "'batch', 'openai', 'm', 10, 10, 0, 0, 0, 0, 0 FROM n",
	         midnight - 900000 + 1000, midnight + 1000, (int)getuid());
	sql_exec(&d, sql);
	setenv("TZ", "Asia/Kolkata", 1);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "usage", "--since",
	                    "2025-03-09", "--until", "2025-03-11", "--by", "day", "--csv", NULL),
	             0, "%s", err);
	cr_assert(strstr(out, "\n2025-03-09,3,30,") && strstr(out, "\n2025-03-10,5,50,"), "%s",
	          out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "usage", "--since",
	                    "2025-03-09", "--until", "2025-03-10", "--by", "day", "--csv", "--utc",
	                    NULL),
	             0, "%s", err);
	cr_assert(strstr(out, "\n2025-03-09,8,80,") && !strstr(out, "2025-03-10,"), "%s", out);
	/* A span, not by day: the two together; a time that is none is a usage error. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "usage", "--since",
	                    "2025-03-09T23:00", "--until", "2025-03-10T01:00", "--by", "none",
	                    "--csv", NULL),
	             0, "%s", err);
	cr_assert(strstr(out, "\n8,80,"), "%s", out);
	cr_assert_eq(
	    h_llmq(&d, out, sizeof(out), err, sizeof(err), "usage", "--since", "soon", NULL), 64);
	cr_assert(strstr(err, "--since 'soon' is not a time"), "%s", err);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "usage", "--by", "week", NULL),
	             64);
	cr_assert(strstr(err, "'week' is not a key"), "%s", err);
	unsetenv("TZ");
	h_daemon_signal(&d, SIGTERM);
}

/* The value of each series of family in a scrape, its labels into labels[]. */
static int series(const char *scrape, const char *family, char labels[][256], int64_t *values,
                  int max)
{
	const char *p = scrape, *brace, *end;
	size_t flen = strlen(family);
	int n = 0;

	while ((p = strstr(p, family))) {
		if ((p == scrape || p[-1] == '\n') && p[flen] == '{' && n < max) {
			brace = p + flen;
			end = strstr(brace, "} ");
			cr_assert_not_null(end);
			snprintf(labels[n], 256, "%.*s", (int)(end - brace + 1), brace);
			values[n++] = strtoll(end + 2, NULL, 10);
		}
		p += flen;
	}
	return n;
}

/* The distinct values of a label (user="...") among labels[0..n-1]. */
static int distinct(char labels[][256], int n, const char *label)
{
	static char seen[512][128];
	char key[32], v[128];
	const char *p;
	int i, k, count = 0;

	snprintf(key, sizeof(key), "%s=\"", label);
	for (i = 0; i < n; i++) {
		p = strstr(labels[i], key);
		cr_assert_not_null(p);
		p += strlen(key);
		snprintf(v, sizeof(v), "%.*s", (int)strcspn(p, "\""), p);
		for (k = 0; k < count && strcmp(seen[k], v); k++)
			;
		if (k == count && count < 512)
			snprintf(seen[count++], sizeof(seen[0]), "%s", v);
	}
	return count;
}

/*
 * The metrics count what llmq usage counts, by lane, class, user and
 * model, with their labels bounded: the first 50 models keep their names,
 * later ones are "other" (the lane has no patterns); the first 200 users
 * theirs, later ones are "other".
 */
Test(usage, the_metrics_labels_are_bounded, .timeout = 120)
{
	static char labels[1024][256];
	static int64_t values[1024];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], model[32], sql[256];
	int64_t sum = 0;
	int i, n;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	for (i = 0; i < 55; i++) {
		snprintf(model, sizeof(model), "m-%02d", i);
		call(&d, "/v1/chat/completions", model, "");
	}
	wait_sql(&d, "SELECT count(*) FROM calls", 55);
	/* 205 more users, after this one, as the triggers count their tries. */
	sql_exec(&d, "WITH RECURSIVE u(uid) AS (SELECT 70000 UNION ALL SELECT uid + 1 FROM u "
	             "WHERE uid < 70204) INSERT INTO usage_try SELECT 1700000000000, uid, 'batch', "
	             "'openai', 'm-00', 2, 1, 0, 1, NULL, 0, 0 FROM u");
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0, "%s", err);
	n = series(out, "llmq_usage_requests_total", labels, values, 1024);
	for (i = 0; i < n; i++)
		sum += values[i];
	cr_assert_eq(sum, 55 + 205, "every try counted once, under some label");
	cr_assert_eq(distinct(labels, n, "model"), 51, "m-00..m-49 and other");
	cr_assert_eq(distinct(labels, n, "user"), 201, "200 names and other");
	for (i = 0; i < n && !strstr(labels[i], "model=\"other\""); i++)
		;
	cr_assert(i < n && values[i] == 5, "the five models after the 50th are other");
	snprintf(sql, sizeof(sql), "user=\"%s\"", getpwuid(getuid())->pw_name);
	for (i = 0; i < n && !(strstr(labels[i], sql) && strstr(labels[i], "model=\"m-49\"")); i++)
		;
	cr_assert(i < n, "the 50th model keeps its name");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* llmq_batches has every state the schema has: a failed batch shows. */
Test(usage, every_batch_state_is_counted, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], cmd[512], body[256], ret[4096], fid[64];
	json_object *o;
	FILE *p;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/never.jsonl", dir);
	h_write_batch(file, 2, "gpt-4o-mini", 20000000); /* max_tokens no provider takes */
	snprintf(cmd, sizeof(cmd),
	         "curl -s -F purpose=batch -F file=@%s http://127.0.0.1:%d/v1/files", file,
	         d.http_port);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	cr_assert_gt(fread(ret, 1, sizeof(ret) - 1, p), 0);
	pclose(p);
	o = json_tokener_parse(ret);
	cr_assert(o && h_jstr(o, "id"), "%s", ret);
	snprintf(fid, sizeof(fid), "%s", h_jstr(o, "id"));
	json_object_put(o);
	snprintf(body, sizeof(body),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\"}",
	         fid);
	cr_assert_eq(h_http(d.http_port, "POST", "/v1/batches", body, ret), 200, "%s", ret);
	cr_assert(strstr(ret, "\"status\":\"failed\""), "%s", ret);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0);
	cr_assert(strstr(out, "\nllmq_batches{state=\"failed\"} 1\n"), "%s", out);
	cr_assert(strstr(out, "\nllmq_batches{state=\"validating\"} 0\n"), "%s", out);
	cr_assert(strstr(out, "\nllmq_batches{state=\"in_progress\"} 0\n"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
