/*
 * The live page end to end: a real llmqd in front of the mock upstream,
 * asked with libcurl for the page (its files as compiled in, under a policy
 * that lets it load nothing else) and for its figures (/v1/llmq/live)
 * while and after a batch runs; each figure checked against what the
 * database recorded. The browser's side is tests/node/page.test.mjs.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

struct reply {
	long status;
	char *body;
	size_t len;
	char headers[8192];
	size_t hlen;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t k = size * n;
	char *b = realloc(r->body, r->len + k + 1);

	if (!b)
		return 0;
	memcpy(b + r->len, p, k);
	r->body = b;
	r->len += k;
	r->body[r->len] = '\0';
	return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t k = size * n, room = sizeof(r->headers) - 1 - r->hlen;

	memcpy(r->headers + r->hlen, p, k < room ? k : room);
	r->hlen += k < room ? k : room;
	r->headers[r->hlen] = '\0';
	return k;
}

/* method on http://host:port path, with body (may be NULL). */
static struct reply *call(const char *host, const struct daemon_proc *d, const char *method,
                          const char *path, const char *body)
{
	struct reply *r = calloc(1, sizeof(*r));
	struct curl_slist *h = NULL;
	char url[256];
	CURL *c = curl_easy_init();

	cr_assert(r && c);
	snprintf(url, sizeof(url), "http://%s:%d%s", host, d->http_port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK, "%s %s", method, url);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	if (!r->body)
		r->body = calloc(1, 1);
	return r;
}

static void reply_free(struct reply *r)
{
	free(r->body);
	free(r);
}

/* The value of header name (case as llmqd writes it), or "". */
static const char *header(const struct reply *r, const char *name, char *buf, size_t len)
{
	const char *p = strstr(r->headers, name);

	buf[0] = '\0';
	if (p && p[strlen(name)] == ':')
		snprintf(buf, len, "%.*s", (int)strcspn(p + strlen(name) + 2, "\r\n"),
		         p + strlen(name) + 2);
	return buf;
}

/* GET /v1/llmq/live from host: its JSON (asserting a 200). */
static json_object *live(const char *host, const struct daemon_proc *d)
{
	struct reply *r = call(host, d, "GET", "/v1/llmq/live", NULL);
	json_object *o;

	cr_assert_eq(r->status, 200, "%s", r->body);
	o = json_tokener_parse(r->body);
	cr_assert_not_null(o, "%s", r->body);
	reply_free(r);
	return o;
}

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no %s in %s", key,
	          json_object_to_json_string(o));
	return v;
}

static int64_t jint(json_object *o, const char *key)
{
	return json_object_get_int64(get(o, key));
}

/* The last value of a lane history's column. */
static int64_t last_of(json_object *history, const char *col)
{
	json_object *a = get(history, col);
	size_t n = json_object_array_length(a);

	cr_assert_gt(n, 0, "%s is empty", col);
	return json_object_get_int64(json_object_array_get_idx(a, n - 1));
}

static char *read_source(const char *name, size_t *ret_len)
{
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/daemon/http/page/%s", SOURCE_DIR, name);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

/* Every src= and href= of html points at llmqd itself ("/..." or "#..."). */
static void only_own_references(const char *html)
{
	static const char *const attrs[] = {" src=\"", " href=\""};
	const char *p;
	size_t i;

	for (i = 0; i < 2; i++)
		for (p = strstr(html, attrs[i]); p; p = strstr(p + 1, attrs[i])) {
			const char *v = p + strlen(attrs[i]);

			cr_assert((v[0] == '/' && v[1] != '/') || v[0] == '#',
			          "the page refers to %.60s", v);
		}
}

Test(page, served_from_the_binary_under_a_strict_policy, .timeout = 60)
{
	static const struct {
		const char *path, *file, *type;
	} files[] = {
	    {"/", "index.html", "text/html; charset=utf-8"},
	    {"/page.css", "page.css", "text/css; charset=utf-8"},
	    {"/page.js", "page.js", "text/javascript; charset=utf-8"},
	    {"/icon.svg", "icon.svg", "image/svg+xml"},
	};
	struct daemon_proc d = {0};
	char dir[64], buf[512];
	struct reply *r;
	const char *p;
	size_t i, len;
	char *src;

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, NULL);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		r = call("127.0.0.1", &d, "GET", files[i].path, NULL);
		cr_assert_eq(r->status, 200, "%s: %s", files[i].path, r->body);
		cr_assert_str_eq(header(r, "Content-Type", buf, sizeof(buf)), files[i].type);
		cr_assert_str_eq(
		    header(r, "Content-Security-Policy", buf, sizeof(buf)),
		    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
		    "connect-src 'self'; base-uri 'none'; form-action 'none'; "
		    "frame-ancestors 'none'",
		    "%s", files[i].path);
		cr_assert_str_eq(header(r, "X-Content-Type-Options", buf, sizeof(buf)), "nosniff");
		/* What llmqd serves is the file as it is in the tree, byte for byte. */
		src = read_source(files[i].file, &len);
		cr_assert_eq(r->len, len, "%s: %zu bytes served, the file has %zu", files[i].path,
		             r->len, len);
		cr_assert_eq(memcmp(r->body, src, len), 0, "%s differs from its file",
		             files[i].path);
		/* Nothing from elsewhere: no address but the SVG namespace's name. */
		cr_assert_null(strstr(src, "https://"), "%s names an https:// address",
		               files[i].file);
		for (p = strstr(src, "http://"); p; p = strstr(p + 1, "http://"))
			cr_assert(strncmp(p, "http://www.w3.org/2000/svg", 26) == 0 &&
			              (p[26] == '"' || p[26] == '\''),
			          "%s names %.40s", files[i].file, p);
		cr_assert_null(strstr(src, "@import"), "%s", files[i].file);
		free(src);
		reply_free(r);
	}
	/* The page: its references all to llmqd, no inline script or style
	 * (which the policy would refuse to run). */
	r = call("127.0.0.1", &d, "GET", "/", NULL);
	only_own_references(r->body);
	for (p = strstr(r->body, "<script"); p; p = strstr(p + 1, "<script"))
		cr_assert_eq(strncmp(p, "<script src=\"/", 14), 0, "inline script: %.60s", p);
	cr_assert_null(strstr(r->body, "<style"));
	cr_assert_null(strstr(r->body, " style="));
	cr_assert_null(strstr(r->body, " onclick="));
	reply_free(r);

	r = call("127.0.0.1", &d, "POST", "/", "{}");
	cr_assert_eq(r->status, 405, "%s", r->body);
	cr_assert(strstr(r->body, "GET only"), "%s", r->body);
	reply_free(r);
	r = call("127.0.0.1", &d, "GET", "/nothing-here", NULL);
	cr_assert_eq(r->status, 404);
	cr_assert(strstr(r->body, "live page"), "the 404 names the page: %s", r->body);
	reply_free(r);
	h_daemon_signal(&d, SIGTERM);
}

static int completed(json_object *b)
{
	return h_batch_completed(b);
}

/*
 * A batch of 20 through a mock that fails every 4th request, and one
 * interactive call: the lane's hour, the batch, the errors and today's
 * usage each say what the database recorded.
 */
Test(page, figures_follow_a_batch_its_errors_and_a_call, .timeout = 90)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40], q[256];
	json_object *o, *lanes, *lane, *h, *tot, *batches, *b = NULL, *errors, *e, *users, *u, *st;
	int64_t attempts, calls, used, charged, with_error, prev_at = INT64_MAX;
	struct reply *r;
	size_t i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", "--fail-every", "4", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_RETRY_MAX_ATTEMPTS=1",
	               "OPENAI_MAX_CONCURRENCY=2", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 20, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, completed, 60));
	r = call("127.0.0.1", &d, "POST", "/v1/chat/completions",
	         "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
	         "\"max_tokens\":5}");
	reply_free(r);
	/* Call records are written a moment after the answer. */
	for (i = 0; i < 200 && h_sql_int(&d, "SELECT count(*) FROM calls") == 0; i++)
		usleep(10000);
	attempts = h_sql_int(&d, "SELECT count(*) FROM attempts");
	calls = h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome != 'refused'");
	cr_assert_eq(attempts, 20, "one try each");
	cr_assert_geq(calls, 1);
	used = h_sql_int(&d, "SELECT (SELECT coalesce(sum(tokens_used), 0) FROM attempts) + "
	                     "(SELECT coalesce(sum(tokens_used), 0) FROM calls)");
	charged =
	    h_sql_int(&d, "SELECT (SELECT sum(tokens_charged) FROM attempts) + "
	                  "(SELECT sum(tokens_charged) FROM calls WHERE outcome != 'refused')");
	with_error =
	    h_sql_int(&d, "SELECT (SELECT count(*) FROM attempts WHERE error_code IS NOT "
	                  "NULL) + (SELECT count(*) FROM calls WHERE error_code IS NOT NULL)");
	cr_assert_gt(used, 0);

	o = live("127.0.0.1", &d);
	/* The lane: its hour adds up to what was launched and used. */
	lanes = get(o, "lanes");
	cr_assert_eq(json_object_array_length(lanes), 1);
	lane = json_object_array_get_idx(lanes, 0);
	cr_assert_str_eq(json_object_get_string(get(lane, "name")), "openai");
	h = get(lane, "history");
	tot = get(h, "totals");
	cr_assert_eq(jint(tot, "requests"), attempts + calls, "%s", json_object_to_json_string(h));
	cr_assert_eq(jint(tot, "tokens_used"), used, "%s", json_object_to_json_string(h));
	cr_assert_eq(jint(tot, "tokens_launched"), charged, "%s", json_object_to_json_string(h));
	cr_assert(json_object_get_boolean(get(h, "last_provisional")));
	/* All of it within the last minute: the last point's minute holds it all. */
	cr_assert_eq(last_of(h, "requests_per_min"), attempts + calls);
	cr_assert_eq(last_of(h, "used_per_min"), used);
	cr_assert_eq(last_of(h, "tpm_limit"), jint(lane, "effective_tpm"));
	cr_assert_eq(last_of(h, "in_flight"), 0);
	cr_assert_eq(last_of(h, "queued"), 0);
	cr_assert_eq(jint(lane, "queued"), 0);
	cr_assert_eq(json_object_array_length(get(h, "t")),
	             json_object_array_length(get(h, "tokens_per_min")));
	cr_assert_eq(jint(o, "period_ms"), 10000);

	/* The batch, done, with the figures of llmq status. */
	batches = get(o, "batches");
	for (i = 0; i < json_object_array_length(batches); i++)
		if (strcmp(h_jstr(json_object_array_get_idx(batches, i), "id"), id) == 0)
			b = json_object_array_get_idx(batches, i);
	cr_assert_not_null(b, "%s", json_object_to_json_string(batches));
	cr_assert_str_eq(h_jstr(b, "state"), "completed");
	cr_assert_eq(h_jint(b, "counts.succeeded") + h_jint(b, "counts.failed"), 20);
	cr_assert_eq(h_jint(b, "counts.failed"),
	             h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'failed'"));
	cr_assert_eq(jint(b, "eta_ms"), 0);
	cr_assert(json_object_get_boolean(get(b, "eta_known")));
	cr_assert_not_null(get(b, "user"), "the owner by name");

	/* The errors: each try that ended with one, newest first. */
	errors = get(o, "errors");
	cr_assert_eq((int64_t)json_object_array_length(errors), with_error, "%s",
	             json_object_to_json_string(errors));
	cr_assert_gt(with_error, 0);
	for (i = 0; i < json_object_array_length(errors); i++) {
		e = json_object_array_get_idx(errors, i);
		cr_assert_leq(jint(e, "at"), prev_at, "newest first");
		prev_at = jint(e, "at");
		cr_assert_str_eq(h_jstr(e, "code"), "server_error");
		cr_assert_eq(jint(e, "status_code"), 500);
		if (strcmp(h_jstr(e, "class"), "batch") == 0) {
			cr_assert_str_eq(h_jstr(e, "batch"), id);
			cr_assert(strncmp(h_jstr(e, "custom_id"), "req-", 4) == 0);
			snprintf(
			    q, sizeof(q),
			    "SELECT count(*) FROM jobs WHERE custom_id = '%s' AND state = 'failed'",
			    h_jstr(e, "custom_id"));
			cr_assert_eq(h_sql_int(&d, q), 1, "%s failed", h_jstr(e, "custom_id"));
		}
	}

	/* Today's usage: this user's tries, batch and interactive. */
	users = get(get(o, "usage"), "users");
	cr_assert_eq(json_object_array_length(users), 1, "%s", json_object_to_json_string(users));
	u = json_object_array_get_idx(users, 0);
	cr_assert_eq(jint(u, "uid"), (int64_t)getuid());
	cr_assert_eq(jint(u, "requests"), attempts + calls);
	cr_assert_eq(jint(u, "tokens"), used);
	cr_assert_eq(jint(u, "failed"),
	             h_sql_int(&d, "SELECT (SELECT count(*) FROM attempts WHERE outcome = "
	                           "'failed') + (SELECT count(*) FROM calls WHERE outcome = "
	                           "'failed')"));
	cr_assert_lt(jint(get(o, "usage"), "since"), jint(o, "now"));
	cr_assert_gt(jint(get(o, "usage"), "since"), jint(o, "now") - 86400000 - 3600000);
	st = get(o, "viewer");
	cr_assert_str_eq(h_jstr(st, "sees"), "all", "llmqd's own user sees all");
	json_object_put(o);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* A 429 pauses the lane: the page says until when and why, and counts it. */
Test(page, a_paused_lane_says_why_and_until_when, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40];
	json_object *o, *lane, *e;
	int64_t until, now, tries;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--429-every", "2", "--429-retry-after-ms", "30000", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=1", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	for (i = 0; i < 500 && h_sql_int(&d, "SELECT count(*) FROM attempts WHERE status_code = "
	                                     "429") == 0;
	     i++)
		usleep(10000);
	tries = h_sql_int(&d, "SELECT count(*) FROM attempts");
	o = live("127.0.0.1", &d);
	lane = json_object_array_get_idx(get(o, "lanes"), 0);
	now = jint(o, "now");
	until = jint(lane, "paused_until");
	cr_assert(until > now + 25000 && until <= now + 30500, "paused until %lld, now %lld",
	          (long long)until, (long long)now);
	cr_assert(strstr(h_jstr(lane, "pause_reason"), "429"), "%s", h_jstr(lane, "pause_reason"));
	cr_assert_eq(jint(get(get(lane, "history"), "totals"), "r429"), 1);
	cr_assert_eq(last_of(get(lane, "history"), "r429_per_min"), 1);
	cr_assert_eq(jint(get(get(lane, "history"), "totals"), "requests"), tries);
	cr_assert_eq(jint(lane, "queued"), 3 - h_sql_int(&d, "SELECT count(*) FROM jobs WHERE "
	                                                     "state = 'succeeded'"));
	e = json_object_array_get_idx(get(o, "errors"), 0);
	cr_assert_not_null(e, "the 429 is among the errors");
	cr_assert_eq(jint(e, "status_code"), 429);
	/* The batch waits for the lane, and says so. */
	cr_assert_str_eq(h_jstr(json_object_array_get_idx(get(o, "batches"), 0), "id"), id);
	cr_assert_str_eq(
	    h_jstr(get(json_object_array_get_idx(get(o, "batches"), 0), "waiting"), "reason"),
	    "rate_limited");
	json_object_put(o);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* From an address llmqd cannot put a user to: the page and the lanes, nothing of anyone's. */
Test(page, a_caller_nobody_can_tell_sees_the_lanes_alone, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40], host[64];
	json_object *o;
	struct reply *r;

	if (h_host_addr(host, sizeof(host)) < 0)
		cr_skip_test("this host has no address but loopback");
	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--fail-every", "2", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_RETRY_MAX_ATTEMPTS=1",
	               "LLMQ_HTTP_ADDR=0.0.0.0:0", NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 4, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, completed, 30));

	r = call(host, &d, "GET", "/", NULL);
	cr_assert_eq(r->status, 200, "the page itself is for anyone who reaches llmqd");
	reply_free(r);
	o = live(host, &d);
	cr_assert_eq(json_object_array_length(get(o, "lanes")), 1);
	cr_assert_eq(
	    jint(get(get(json_object_array_get_idx(get(o, "lanes"), 0), "history"), "totals"),
	         "requests"),
	    4, "lane figures are not private");
	cr_assert_eq(json_object_array_length(get(o, "batches")), 0);
	cr_assert_eq(json_object_array_length(get(o, "errors")), 0);
	cr_assert_eq(json_object_array_length(get(get(o, "usage"), "users")), 0);
	cr_assert_str_eq(h_jstr(get(o, "viewer"), "sees"), "lanes");
	cr_assert(json_object_is_type(get(get(o, "viewer"), "uid"), json_type_null));
	json_object_put(o);
	/* The same from loopback: this user's batch, errors and usage. */
	o = live("127.0.0.1", &d);
	cr_assert_eq(json_object_array_length(get(o, "batches")), 1);
	cr_assert_eq(json_object_array_length(get(o, "errors")), 2);
	cr_assert_eq(json_object_array_length(get(get(o, "usage"), "users")), 1);
	json_object_put(o);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
