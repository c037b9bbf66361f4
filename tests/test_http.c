/*
 * The HTTP face end to end: a real llmqd in front of the mock upstream,
 * called with libcurl over TCP and over the Unix-socket listener.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pwd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"

static char out[1 << 20], err[1 << 16];
/* What request() sends as the caller's Authorization. */
static const char *bearer = "Authorization: Bearer caller-secret-must-not-travel";
/* A header request() adds when set. */
static const char *extra_header;
/* The address request() connects to: loopback (the kernel says who the caller
 * is), or this host's other address (it cannot). */
static char via_host[64] = "127.0.0.1";

#define CHAT(model, extra)                                                                         \
	"{\"model\":\"" model "\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],"       \
	"\"max_tokens\":10" extra "}"

struct reply {
	long status;
	char body[1 << 16];
	size_t len;
	char headers[8192];
	size_t hlen;
	double first_byte_s; /* since the request started */
	double total_s;
	int stop_after; /* abort the transfer after this many body bytes (0: never) */
	struct timespec t0;
};

static double since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t k = size * n, room = sizeof(r->body) - 1 - r->len;

	if (r->len == 0 && k > 0)
		r->first_byte_s = since(&r->t0);
	memcpy(r->body + r->len, p, k < room ? k : room);
	r->len += k < room ? k : room;
	r->body[r->len] = '\0';
	if (r->stop_after && r->len >= (size_t)r->stop_after)
		return 0;
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

/* One request; unix_path non-NULL: over that socket. Returns curl's code. */
static CURLcode request(const struct daemon_proc *d, const char *unix_path, const char *method,
                        const char *path, const char *body, struct reply *r)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char url[256];
	CURLcode rc;

	if (bearer)
		h = curl_slist_append(h, bearer);
	if (extra_header)
		h = curl_slist_append(h, extra_header);
	snprintf(url, sizeof(url), "http://%s:%d%s", via_host, d->http_port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (unix_path)
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	rc = curl_easy_perform(c);
	r->total_s = since(&r->t0);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc;
}

static struct reply *call(const struct daemon_proc *d, const char *method, const char *path,
                          const char *body)
{
	struct reply *r = calloc(1, sizeof(*r));

	cr_assert_eq(request(d, NULL, method, path, body, r), CURLE_OK);
	return r;
}

static const char *error_code_of(const struct reply *r)
{
	static char code[128];
	json_object *o = json_tokener_parse(r->body), *e, *c;

	code[0] = '\0';
	cr_assert_not_null(o, "not JSON: %s", r->body);
	cr_assert(json_object_object_get_ex(o, "error", &e), "no error object: %s", r->body);
	cr_assert(json_object_object_get_ex(e, "message", NULL));
	cr_assert(json_object_object_get_ex(e, "type", NULL));
	cr_assert(json_object_object_get_ex(e, "param", NULL));
	if (json_object_object_get_ex(e, "code", &c) && c)
		snprintf(code, sizeof(code), "%s", json_object_get_string(c));
	json_object_put(o);
	return code;
}

static void start(struct mock_proc *m, struct daemon_proc *d, char *dir, size_t dirlen)
{
	h_tmpdir(dir, dirlen);
	h_mock_start(m, dir, "--latency-ms", "5", NULL);
	h_daemon_start(d, dir, m, H_FAST, NULL);
	cr_assert_gt(d->http_port, 0, "llmqd serves HTTP (see %s)", d->log);
}

Test(http, chat_relayed_with_headers_and_recorded, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];
	struct reply *r;

	start(&m, &d, dir, sizeof(dir));
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert(strstr(r->body, "\"echo: hello\""), "%s", r->body);
	cr_assert(strcasestr(r->headers, "x-request-id: req_mock_1"), "%s", r->headers);
	cr_assert(strcasestr(r->headers, "content-type: application/json"), "%s", r->headers);
	free(r);
	r = call(&d, "POST", "/v1/embeddings",
	         "{\"model\":\"text-embedding-3-small\",\"input\":\"x\"}");
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert(strstr(r->body, "\"embedding\""), "%s", r->body);
	free(r);
	h_daemon_signal(&d, SIGTERM);
	/* Each call is a row, with its lane, class, tokens and request id. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome = 'succeeded' AND "
	                           "lane = 'openai' AND tokens_used > 0 AND request_id LIKE "
	                           "'req_mock_%' AND tokens_charged > 0"),
	             2);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM traffic WHERE class = 'interactive'"), 2);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE request_body IS NOT NULL"), 0,
	             "bodies are kept only when asked for");
	h_mock_stop(&m);
}

Test(http, bad_requests_get_openai_errors_without_an_upstream_call, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], *big;
	json_object *st;
	struct reply *r;
	size_t n = 9u << 20;

	start(&m, &d, dir, sizeof(dir));
	r = call(&d, "POST", "/v1/chat/completions", "{\"model\": ");
	cr_assert_eq(r->status, 400);
	cr_assert_str_eq(error_code_of(r), "invalid_body");
	cr_assert(strstr(r->body, "malformed JSON"), "%s", r->body);
	free(r);
	r = call(&d, "POST", "/v1/chat/completions", "{\"messages\": []}");
	cr_assert_eq(r->status, 400);
	cr_assert(strstr(r->body, "\\\"model\\\" is missing") || strstr(r->body, "model"), "%s",
	          r->body);
	free(r);
	r = call(&d, "POST", "/v1/chat/completions", "[1]");
	cr_assert_eq(r->status, 400);
	free(r);
	r = call(&d, "GET", "/v1/chat/completions", NULL);
	cr_assert_eq(r->status, 405);
	error_code_of(r);
	free(r);
	r = call(&d, "POST", "/v1/fine_tuning/jobs", "{}");
	cr_assert_eq(r->status, 404);
	cr_assert_str_eq(error_code_of(r), "unknown_url");
	free(r);
	/* An upload must be a form. */
	r = call(&d, "POST", "/v1/files", "{}");
	cr_assert_eq(r->status, 400);
	cr_assert(strstr(r->body, "multipart/form-data"), "%s", r->body);
	free(r);
	/* Past the 8 MiB body limit: refused, the daemon unaffected. */
	big = malloc(n + 1);
	memset(big, 'x', n);
	big[n] = '\0';
	r = call(&d, "POST", "/v1/chat/completions", big);
	cr_assert_eq(r->status, 413, "%ld", r->status);
	free(r);
	free(big);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "requests"), 0, "nothing reached the upstream");
	json_object_put(st);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	free(r);
	r = call(&d, "GET", "/healthz", NULL);
	cr_assert_eq(r->status, 200);
	cr_assert(strstr(r->body, "\"ok\""), "%s", r->body);
	free(r);
	r = call(&d, "GET", "/v1/models", NULL);
	cr_assert_eq(r->status, 200);
	cr_assert(strstr(r->body, "\"object\":\"list\""), "%s", r->body);
	free(r);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(http, unix_listener_knows_the_caller, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], sock[128], env[160], q[256];
	struct reply r = {0};

	h_tmpdir(dir, sizeof(dir));
	snprintf(sock, sizeof(sock), "%s/http.sock", dir);
	snprintf(env, sizeof(env), "LLMQ_HTTP_SOCKET=%s", sock);
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, env, "LLMQ_HTTP_ADDR=off", NULL);
	cr_assert_eq(d.http_port, 0, "TCP is off");
	cr_assert_eq(request(&d, sock, "POST", "/v1/chat/completions", CHAT("gpt-4o", ""), &r),
	             CURLE_OK);
	cr_assert_eq(r.status, 200, "%s", r.body);
	h_daemon_signal(&d, SIGTERM);
	snprintf(q, sizeof(q), "SELECT count(*) FROM calls WHERE caller_uid = %d", (int)getuid());
	cr_assert_eq(h_sql_int(&d, q), 1);
	h_mock_stop(&m);
}

Test(http, stream_relayed_as_it_drips_and_usage_reconciled, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];
	struct reply *r;

	h_tmpdir(dir, sizeof(dir));
	/* Four content events a second apart, then usage, then [DONE]. */
	h_mock_start(&m, dir, "--drip-ms", "1000", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	r = call(
	    &d, "POST", "/v1/chat/completions",
	    CHAT("gpt-4o-mini", ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert(strcasestr(r->headers, "content-type: text/event-stream"), "%s", r->headers);
	cr_assert(strstr(r->body, "data: [DONE]"), "%s", r->body);
	cr_assert(strstr(r->body, "\"usage\""), "%s", r->body);
	/* Not buffered: the first event came long before the answer was whole. */
	cr_assert_lt(r->first_byte_s, 0.9, "first chunk after %.3fs", r->first_byte_s);
	cr_assert_gt(r->total_s, 3.5, "whole answer after %.3fs", r->total_s);
	free(r);
	h_daemon_signal(&d, SIGTERM);
	/* prompt "hello" = 2 tokens by the mock's count, completion 10. */
	cr_assert_eq(h_sql_int(&d, "SELECT tokens_used FROM calls WHERE stream = 1"), 12);
	h_mock_stop(&m);
}

/* llmqd's own HTTP/1.1 client (the default for the mock's address) and curl
 * (upstream_client = curl) each carry a call, a stream and a batch. */
Test(http, either_upstream_client_carries_calls_streams_and_batches, .timeout = 60)
{
	static const char *const clients[] = {"LLMQ_UPSTREAM_CLIENT=builtin",
	                                      "LLMQ_UPSTREAM_CLIENT=curl"};
	static const char *const names[] = {"builtin", "curl"};
	char top[64], dir[80], file[128], id[40], want[96];
	const char *at;
	long opened;
	json_object *b;
	struct reply *r;
	size_t i;

	h_tmpdir(top, sizeof(top));
	for (i = 0; i < 2; i++) {
		struct mock_proc m = {0};
		struct daemon_proc d = {0};

		snprintf(dir, sizeof(dir), "%s/%zu", top, i);
		cr_assert_eq(mkdir(dir, 0700), 0);
		h_mock_start(&m, dir, "--drip-ms", "100", NULL);
		h_daemon_start(&d, dir, &m, H_FAST, clients[i], NULL);
		r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
		cr_assert_eq(r->status, 200, "%s: %s", clients[i], r->body);
		cr_assert(strstr(r->body, "\"usage\""), "%s", r->body);
		free(r);
		r = call(&d, "POST", "/v1/chat/completions",
		         CHAT("gpt-4o-mini",
		              ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"));
		cr_assert_eq(r->status, 200, "%s: %s", clients[i], r->body);
		cr_assert(strstr(r->body, "data: [DONE]"), "%s", r->body);
		free(r);
		snprintf(file, sizeof(file), "%s/in.jsonl", dir);
		h_write_batch(file, 20, "gpt-4o-mini", 5);
		h_submit(&d, file, id, sizeof(id));
		b = h_wait_for(&d, id, h_batch_completed, 30);
		cr_assert_eq(h_jint(b, "counts.succeeded"), 20, "%s", clients[i]);
		json_object_put(b);
		/* Which client carried them, and that it kept its connections. */
		r = call(&d, "GET", "/metrics", NULL);
		snprintf(want, sizeof(want), "\nllmq_upstream_connections_total{client=\"%s\"} ",
		         names[i]);
		at = strstr(r->body, want);
		cr_assert(at, "%s", r->body);
		opened = strtol(at + strlen(want), NULL, 10);
		cr_assert(opened >= 1 && opened <= 10, "%s: %ld connections for 22 requests",
		          clients[i], opened);
		snprintf(want, sizeof(want), "\nllmq_upstream_connections_total{client=\"%s\"} 0\n",
		         names[1 - i]);
		cr_assert(strstr(r->body, want), "%s: %s", clients[i], r->body);
		free(r);
		h_daemon_signal(&d, SIGTERM);
		cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE status_code = 200"), 2,
		             "%s", clients[i]);
		h_mock_stop(&m);
	}
}

static int64_t in_flight(const struct daemon_proc *d)
{
	json_object *o;
	int64_t n;

	cr_assert_eq(h_llmq(d, out, sizeof(out), err, sizeof(err), "ping", "--json", NULL), 0);
	o = json_tokener_parse(out);
	n = h_jint(o, "in_flight");
	json_object_put(o);
	return n;
}

Test(http, caller_leaving_mid_stream_cancels_the_transfer, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];
	struct reply *r = calloc(1, sizeof(*r));
	char cmd[400];
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--drip-ms", "2000", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	r->stop_after = 1; /* hang up at the first chunk */
	cr_assert_eq(request(&d, NULL, "POST", "/v1/chat/completions",
	                     CHAT("gpt-4o-mini", ",\"stream\":true"), r),
	             CURLE_WRITE_ERROR);
	for (i = 0; i < 100 && in_flight(&d) > 0; i++)
		usleep(20000);
	cr_assert_eq(in_flight(&d), 0, "the slot came back at once");
	free(r);
	h_daemon_signal(&d, SIGTERM);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome = 'aborted'"), 1);
	h_mock_stop(&m);
	snprintf(cmd, sizeof(cmd), "grep -q ' gone ' %s", m.log);
	cr_assert_eq(system(cmd), 0, "the upstream saw the transfer end early (%s)", m.log);
}

Test(http, gate_that_cannot_serve_in_time_answers_429_at_once, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];
	struct reply *r;
	json_object *st;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	/* 600 tokens/min: each 12-token call puts the lane 1.2 s in debt. */
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=600",
	               "OPENAI_TPM_HEADROOM=0", "LLMQ_INTERACTIVE_MAX_WAIT_SECONDS=2", NULL);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ",\"max_tokens\":100"));
	cr_assert_eq(r->status, 200, "%s", r->body);
	free(r);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ",\"max_tokens\":100"));
	cr_assert_eq(r->status, 429, "%s", r->body);
	cr_assert_str_eq(error_code_of(r), "rate_limit_exceeded");
	cr_assert(strcasestr(r->headers, "retry-after:"), "%s", r->headers);
	cr_assert(strcasestr(r->headers, "retry-after-ms:"), "%s", r->headers);
	cr_assert(strcasestr(r->headers, "x-ratelimit-limit-tokens: 600"), "%s", r->headers);
	cr_assert(strcasestr(r->headers, "x-ratelimit-remaining-tokens: 0"), "%s", r->headers);
	cr_assert_lt(r->total_s, 1.0, "at once, not after waiting");
	free(r);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "requests"), 1, "the refused call never went upstream");
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome = 'refused'"), 1);
	h_mock_stop(&m);
}

Test(http, upstream_errors_retried_within_the_wait_budget, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];
	struct reply *r;
	int i;

	h_tmpdir(dir, sizeof(dir));
	/* Every 2nd arrival fails with 500, every 3rd gets a 429. */
	h_mock_start(&m, dir, "--fail-every", "2", "--429-every", "3", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_RETRY_MAX_ATTEMPTS=10", NULL);
	for (i = 0; i < 6; i++) {
		r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
		cr_assert_eq(r->status, 200, "call %d: %s", i, r->body);
		free(r);
	}
	h_daemon_signal(&d, SIGTERM);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome = 'retry'"), 0);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome = 'rate_limited'"), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(DISTINCT call_id) FROM calls"), 6);
	h_mock_stop(&m);
}

static int started(json_object *b)
{
	return h_jint(b, "counts.succeeded") >= 30;
}

Test(http, interactive_goes_ahead_of_a_busy_batch, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40];
	json_object *b;
	struct reply *r;
	int64_t wait_ms;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "100", NULL);
	/* 3 slots, one launch every 100 ms (600 requests/min). */
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_RPM_LIMIT=600", "OPENAI_TPM_HEADROOM=0", "OPENAI_MAX_CONCURRENCY=3",
	               NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 5000, "gpt-4o-mini", 10);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, started, 60);
	json_object_put(b);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	free(r);
	usleep(300000); /* call records are written within 100 ms */
	wait_ms = h_sql_int(&d, "SELECT gate_wait_ms FROM calls");
	cr_assert_leq(wait_ms, 200,
	              "served within one launch interval (100 ms, and timer slack), waited %lld ms",
	              (long long)wait_ms);
	/* Once a caller was seen the batch leaves the interactive reserve: of its
	 * launches after the call, none found more than 2 of 3 slots taken by it. */
	usleep(500000);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE started_at > "
	                           "(SELECT max(started_at) FROM calls)"),
	             0);
	cr_assert_leq(h_sql_int(&d, "SELECT max(n) FROM (SELECT count(*) AS n FROM attempts a "
	                            "JOIN attempts o ON o.started_at <= a.started_at AND "
	                            "(o.ended_at IS NULL OR o.ended_at > a.started_at) "
	                            "WHERE a.started_at > (SELECT max(started_at) FROM calls) "
	                            "GROUP BY a.id)"),
	              2);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "cancel", id, NULL), 0);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(http, small_batch_is_not_stuck_behind_a_large_one, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], big[128], small[128], idb[40], ids[40];
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=4", NULL);
	snprintf(big, sizeof(big), "%s/big.jsonl", dir);
	snprintf(small, sizeof(small), "%s/small.jsonl", dir);
	h_write_batch(big, 5000, "gpt-4o-mini", 10);
	h_write_batch(small, 20, "gpt-4o-mini", 10);
	h_submit(&d, big, idb, sizeof(idb));
	h_submit(&d, small, ids, sizeof(ids));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "wait", ids, NULL), 0, "%s",
	             err);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", idb, "--json", NULL),
	             0);
	b = json_tokener_parse(out);
	/* Round-robin by batch: the small one took every other launch. */
	cr_assert_gt(h_jint(b, "batch.counts.queued"), 4000, "%s", out);
	json_object_put(b);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "cancel", idb, NULL), 0);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(http, metrics_over_http_and_the_socket, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], path[128], cmd[400];
	struct reply *r;
	FILE *f;

	start(&m, &d, dir, sizeof(dir));
	free(call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", "")));
	r = call(&d, "GET", "/metrics", NULL);
	cr_assert_eq(r->status, 200);
	cr_assert(strcasestr(r->headers, "content-type: text/plain; version=0.0.4"), "%s",
	          r->headers);
	cr_assert(strstr(r->body, "llmq_requests_total{lane=\"openai\",class=\"interactive\","
	                          "outcome=\"succeeded\"} 1\n"),
	          "%s", r->body);
	cr_assert(strstr(r->body, "llmq_gate_wait_seconds_count{lane=\"openai\",class="
	                          "\"interactive\"} 1\n"),
	          "%s", r->body);
	cr_assert(strstr(r->body, "\nllmq_database_locked 0\n") &&
	              strstr(r->body, "\nllmq_socket_refused_total 0\n"),
	          "%s", r->body);
	/* Prometheus's own checker reads the real exposition. */
	snprintf(path, sizeof(path), "%s/metrics.txt", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fwrite(r->body, 1, r->len, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s/promtool.out 2>&1", path, dir);
	cr_assert_eq(system(cmd), 0,
	             "promtool check metrics failed (see %s/promtool.out; "
	             "promtool comes with Debian's prometheus: bash .ci/deps)",
	             dir);
	free(r);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0, "%s", err);
	cr_assert(strstr(out, "# TYPE llmq_requests_total counter"), "%s", out);
	cr_assert(strstr(out, "llmq_batches{state=\"completed\"} 0"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

static int raw_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

Test(http, slow_and_vanishing_clients_do_not_hold_others, .timeout = 60)
{
	static const char partial[] =
	    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
	    "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
	    "{\"model\":";
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];
	struct reply *r;
	int slow[20], i;

	start(&m, &d, dir, sizeof(dir));
	/* Twenty callers stop half-way through their body and stay. */
	for (i = 0; i < 20; i++) {
		slow[i] = raw_connect(d.http_port);
		cr_assert_eq(write(slow[i], partial, sizeof(partial) - 1),
		             (ssize_t)sizeof(partial) - 1);
	}
	/* Others vanish mid-request. */
	for (i = 0; i < 20; i++) {
		int fd = raw_connect(d.http_port);

		cr_assert_eq(write(fd, partial, 40), 40);
		close(fd);
	}
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert_lt(r->total_s, 1.0, "served at once, %.3fs", r->total_s);
	free(r);
	for (i = 0; i < 20; i++)
		close(slow[i]);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "ping", NULL), 0);
	h_daemon_signal(&d, SIGTERM);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls"), 1,
	             "half requests never reach "
	             "the gate");
	h_mock_stop(&m);
}

Test(http, tokens_tell_tcp_callers_apart, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], path[128], env[160], q[128];
	struct passwd *pw = getpwuid(getuid());
	struct reply *r;
	FILE *f;

	h_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/tokens", dir);
	f = fopen(path, "w");
	fprintf(f, "# user token\n%s tok-0123456789abcdef\n", pw->pw_name);
	fclose(f);
	cr_assert_eq(chmod(path, 0640), 0);
	snprintf(env, sizeof(env), "LLMQ_HTTP_TOKENS=%s", path);
	/* From this host's other address: nobody the kernel can name. */
	if (h_host_addr(via_host, sizeof(via_host)) < 0)
		cr_skip_test("this host has no address but loopback");
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, env, "LLMQ_HTTP_ADDR=0.0.0.0:0", NULL);
	bearer = NULL;
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 401, "%s", r->body);
	cr_assert_str_eq(error_code_of(r), "invalid_api_key");
	free(r);
	bearer = "Authorization: Bearer tok-0123456789abcdeX";
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 401, "a near miss is a miss");
	free(r);
	bearer = "Authorization: Bearer tok-0123456789abcdef";
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	free(r);
	h_daemon_signal(&d, SIGTERM);
	snprintf(q, sizeof(q), "SELECT count(*) FROM calls WHERE caller_uid = %d", (int)getuid());
	cr_assert_eq(h_sql_int(&d, q), 1, "the token's user is the caller");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls"), 1,
	             "refused callers never queued");
	h_mock_stop(&m);
}

/* A TCP port free now, for llmqds that must know each other's before they start. */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* An llmqd in dir/name, on 127.0.0.1:port, whose lane's upstream is 127.0.0.1:up_port. */
static void start_at(struct daemon_proc *d, const char *dir, const char *name, int port,
                     int up_port)
{
	char sub[96], addr[64], url[96];

	snprintf(sub, sizeof(sub), "%s/%s", dir, name);
	cr_assert_eq(mkdir(sub, 0700), 0);
	snprintf(addr, sizeof(addr), "LLMQ_HTTP_ADDR=127.0.0.1:%d", port);
	snprintf(url, sizeof(url), "OPENAI_BASE_URL=http://127.0.0.1:%d/v1", up_port);
	h_daemon_start(d, sub, NULL, addr, url, H_FAST, NULL);
	cr_assert_eq(d->http_port, port, "llmqd serves HTTP on %d (see %s)", port, d->log);
}

static int batch_failed_one(json_object *b)
{
	return h_batch_finished(b) && h_jint(b, "counts.failed") == 1;
}

Test(http, two_llmqds_pointing_at_each_other_answer_508_at_once, .timeout = 60)
{
	struct daemon_proc a = {0}, b = {0};
	char dir[64], file[128], id[40];
	int pa = free_port(), pb = free_port();
	json_object *o;
	struct reply *r;

	h_tmpdir(dir, sizeof(dir));
	/* A's upstream is B, B's is A. */
	start_at(&a, dir, "a", pa, pb);
	start_at(&b, dir, "b", pb, pa);
	r = call(&a, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 508, "%s", r->body);
	cr_assert_str_eq(error_code_of(r), "loop_detected");
	cr_assert(strstr(r->body, "base_url"), "says what to change: %s", r->body);
	cr_assert(strcasestr(r->headers, "x-should-retry: false"), "SDKs must not retry: %s",
	          r->headers);
	cr_assert_lt(r->total_s, 1.0, "at once, not after bouncing: %.3fs", r->total_s);
	free(r);
	/* A stream is refused the same way. */
	r = call(&b, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ",\"stream\":true"));
	cr_assert_eq(r->status, 508, "%s", r->body);
	cr_assert_lt(r->total_s, 1.0);
	free(r);
	/* A batch job that loops fails on its first try: a loop never heals. */
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 1, "gpt-4o-mini", 10);
	h_submit(&a, file, id, sizeof(id));
	o = h_wait_for(&a, id, batch_failed_one, 10);
	json_object_put(o);
	h_daemon_signal(&a, SIGTERM);
	h_daemon_signal(&b, SIGTERM);
	cr_assert_eq(h_sql_int(&a, "SELECT count(*) FROM jobs WHERE state = 'failed' AND "
	                           "attempts = 1 AND status_code = 508 AND "
	                           "error_code = 'loop_detected'"),
	             1);
	cr_assert_eq(h_sql_int(&a, "SELECT count(*) FROM attempts"), 1, "tried once");
	/* Each llmqd sent each request on once; the loop was cut where it closed. */
	cr_assert_eq(h_sql_int(&b, "SELECT count(*) FROM calls WHERE status_code = 508 AND "
	                           "outcome = 'failed'"),
	             3, "B sent A's call, its own and A's batch job on once each");
	cr_assert_eq(h_sql_int(&a, "SELECT count(*) FROM calls WHERE status_code = 508 AND "
	                           "outcome = 'failed'"),
	             2, "A sent its own call and B's on once each");
}

Test(http, a_chain_of_llmqds_reaches_the_provider, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc a = {0}, b = {0};
	char dir[64], id1[32], id2[32];
	json_object *st;
	struct reply *r;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	/* A host's llmqd (A) in front of a central one (B), in front of the provider. */
	start_at(&b, dir, "b", free_port(), m.port);
	start_at(&a, dir, "a", free_port(), b.http_port);
	r = call(&a, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert(strstr(r->body, "\"echo: hello\""), "%s", r->body);
	free(r);
	r = call(&a, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ",\"stream\":true"));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert(strstr(r->body, "data: [DONE]"), "%s", r->body);
	free(r);
	/* The provider saw both llmqds' distinct ids, A's first. */
	st = h_mock_stats(&m);
	cr_assert_eq(sscanf(h_jstr(st, "last_via"), "%31[0-9a-f], %31[0-9a-f]", id1, id2), 2, "%s",
	             json_object_to_json_string(st));
	cr_assert_eq(strlen(id1), 16);
	cr_assert_str_neq(id1, id2);
	json_object_put(st);
	/* A request that already passed 6 llmqds passes A and B (8 in all) ... */
	extra_header = "llmq-via: 1, 2, 3, 4, 5, 6";
	r = call(&a, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	free(r);
	/* ... one that passed 7 is taken for a loop by B, the 9th. */
	extra_header = "llmq-via: 1, 2, 3, 4, 5, 6, 7";
	r = call(&a, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	extra_header = NULL;
	cr_assert_eq(r->status, 508, "%s", r->body);
	cr_assert_str_eq(error_code_of(r), "loop_detected");
	cr_assert(strstr(r->body, "passed 8 llmqds"), "%s", r->body);
	free(r);
	h_daemon_signal(&a, SIGTERM);
	h_daemon_signal(&b, SIGTERM);
	h_mock_stop(&m);
}

/* GET /readyz: its status code, and its first lane's object (caller puts). */
static long readyz(const struct daemon_proc *d, json_object **ret_lane)
{
	struct reply *r = call(d, "GET", "/readyz", NULL);
	json_object *o = json_tokener_parse(r->body), *lanes;
	long status = r->status;

	cr_assert_not_null(o, "%ld %s", r->status, r->body);
	cr_assert(json_object_object_get_ex(o, "lanes", &lanes) &&
	              json_object_array_length(lanes) >= 1,
	          "%s", r->body);
	cr_assert_str_eq(h_jstr(o, "status"), status == 200 ? "ready" : "not_ready", "%s", r->body);
	*ret_lane = json_object_get(json_object_array_get_idx(lanes, 0));
	json_object_put(o);
	free(r);
	return status;
}

/* An ISO 8601 UTC time of /readyz, as unix seconds. */
static time_t iso_time(const char *s)
{
	struct tm tm = {0};
	const char *end;

	cr_assert_not_null(s);
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	cr_assert(end && !*end, "not an ISO 8601 time: %s", s);
	return timegm(&tm);
}

Test(readyz, a_lane_that_answers_is_ready, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *l;
	char dir[64];

	start(&m, &d, dir, sizeof(dir));
	cr_assert_eq(readyz(&d, &l), 200);
	cr_assert_str_eq(h_jstr(l, "name"), "openai");
	cr_assert_str_eq(h_jstr(l, "state"), "ok");
	json_object_put(l);
	free(call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", "")));
	cr_assert_eq(readyz(&d, &l), 200);
	json_object_put(l);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(readyz, an_unreachable_upstream_is_not_ready_but_alive, .timeout = 60)
{
	struct daemon_proc d = {0};
	struct reply *r;
	json_object *l;
	char dir[64], url[96];
	time_t now = time(NULL), since;

	h_tmpdir(dir, sizeof(dir));
	/* The only upstream: a port nothing listens on. */
	snprintf(url, sizeof(url), "OPENAI_BASE_URL=http://127.0.0.1:%d/v1", free_port());
	h_daemon_start(&d, dir, NULL, url, H_FAST, NULL);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 502, "%s", r->body);
	free(r);
	cr_assert_eq(readyz(&d, &l), 503);
	cr_assert_str_eq(h_jstr(l, "state"), "unreachable", "%s", json_object_to_json_string(l));
	since = iso_time(h_jstr(l, "unreachable_since"));
	cr_assert(since >= now - 1 && since <= time(NULL), "since the first failed try: %s",
	          h_jstr(l, "unreachable_since"));
	json_object_put(l);
	r = call(&d, "GET", "/healthz", NULL);
	cr_assert_eq(r->status, 200, "liveness is not readiness: %s", r->body);
	free(r);
	h_daemon_signal(&d, SIGTERM);
}

Test(readyz, a_429_pauses_the_lane_until_its_retry_after, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	struct reply *r;
	json_object *l;
	char dir[64];
	time_t until;

	h_tmpdir(dir, sizeof(dir));
	/* The second request is a 429 asking for 60 s. */
	h_mock_start(&m, dir, "--429-every", "2", "--429-retry-after-ms", "60000", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	free(call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", "")));
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 429, "%s", r->body);
	free(r);
	cr_assert_eq(readyz(&d, &l), 503);
	cr_assert_str_eq(h_jstr(l, "state"), "paused", "%s", json_object_to_json_string(l));
	until = iso_time(h_jstr(l, "paused_until"));
	cr_assert(until >= time(NULL) + 50 && until <= time(NULL) + 61, "paused until %s",
	          h_jstr(l, "paused_until"));
	cr_assert(strstr(h_jstr(l, "reason"), "429"), "%s", json_object_to_json_string(l));
	json_object_put(l);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(readyz, a_key_out_of_credit_is_not_ready, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	struct reply *r;
	json_object *l;
	char dir[64];

	start(&m, &d, dir, sizeof(dir));
	r = call(&d, "POST", "/v1/chat/completions", CHAT("quota", ""));
	cr_assert_eq(r->status, 429, "%s", r->body);
	free(r);
	cr_assert_eq(readyz(&d, &l), 503);
	cr_assert_str_eq(h_jstr(l, "state"), "out_of_credit", "%s", json_object_to_json_string(l));
	iso_time(h_jstr(l, "out_of_credit_since"));
	iso_time(h_jstr(l, "paused_until"));
	json_object_put(l);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* GET /v1/models: the ids listed, "id/owned_by" each, sorted, comma-separated. */
static const char *model_ids(const struct daemon_proc *d, double *ret_s)
{
	static char ids[1024];
	struct reply *r = call(d, "GET", "/v1/models", NULL);
	json_object *o = json_tokener_parse(r->body), *data, *e;
	char *each[64];
	size_t i, j, n;

	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert_str_eq(h_jstr(o, "object"), "list", "%s", r->body);
	cr_assert(json_object_object_get_ex(o, "data", &data), "%s", r->body);
	n = json_object_array_length(data);
	cr_assert_lt(n, 64);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(data, i);
		cr_assert_str_eq(h_jstr(e, "object"), "model", "%s", r->body);
		cr_assert_not_null(h_jstr(e, "owned_by"));
		cr_assert_geq(asprintf(&each[i], "%s/%s", h_jstr(e, "id"), h_jstr(e, "owned_by")),
		              0);
	}
	for (i = 1; i < n; i++) /* insertion sort: a few entries */
		for (j = i; j > 0 && strcmp(each[j - 1], each[j]) > 0; j--) {
			char *t = each[j];

			each[j] = each[j - 1];
			each[j - 1] = t;
		}
	ids[0] = '\0';
	for (i = 0; i < n; i++) {
		snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%s", i ? "," : "",
		         each[i]);
		free(each[i]);
	}
	if (ret_s)
		*ret_s = r->total_s;
	json_object_put(o);
	free(r);
	return ids;
}

Test(models, the_default_lane_lists_what_its_upstream_lists, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *st;
	char dir[64];

	h_tmpdir(dir, sizeof(dir));
	/* The mock lists its models only to the lane's key. */
	h_mock_start(&m, dir, "--models-key", "sk-lane-models", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_API_KEY=sk-lane-models", NULL);
	cr_assert_str_eq(model_ids(&d, NULL), "gpt-4o-mini/system,gpt-4o/system,o3-mini/mock-lab,"
	                                      "text-embedding-3-small/system");
	cr_assert_str_eq(model_ids(&d, NULL), "gpt-4o-mini/system,gpt-4o/system,o3-mini/mock-lab,"
	                                      "text-embedding-3-small/system");
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "models_requests"), 1, "asked once, at start, then kept");
	cr_assert_eq(h_jint(st, "requests"), 0, "not a model call");
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* Two lanes on the mock, each with its patterns: "chat" (gpt-4o*) and "emb"
 * (text-embedding-*, the default). */
static void start_two_lanes(struct mock_proc *m, struct daemon_proc *d, char *dir, size_t len,
                            const char *mock_opt)
{
	char path[128], env[160];
	FILE *f;

	h_tmpdir(dir, len);
	h_mock_start(m, dir, mock_opt, NULL);
	snprintf(path, sizeof(path), "%s/llmqd.conf", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f,
	        "[lane chat]\nbase_url = http://127.0.0.1:%d/v1\nmodels = gpt-4o*\n"
	        "stagger_seconds = 0\n"
	        "[lane emb]\nbase_url = http://127.0.0.1:%d/v1\nmodels = text-embedding-*\n"
	        "default = yes\nstagger_seconds = 0\n",
	        m->port, m->port);
	fclose(f);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", path);
	h_daemon_start(d, dir, m, env, NULL);
}

Test(models, a_lane_with_patterns_lists_only_the_models_they_match, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];

	start_two_lanes(&m, &d, dir, sizeof(dir), NULL);
	/* o3-mini: no lane's patterns match it (it would go to emb, the default). */
	cr_assert_str_eq(model_ids(&d, NULL),
	                 "gpt-4o-mini/system,gpt-4o/system,text-embedding-3-small/system");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(models, a_lane_whose_upstream_cannot_list_shows_its_patterns, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];

	start_two_lanes(&m, &d, dir, sizeof(dir), "--models-fail");
	cr_assert_str_eq(model_ids(&d, NULL), "gpt-4o*/llmq:chat,text-embedding-*/llmq:emb");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(models, a_slow_upstream_list_stalls_nothing_else, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	struct reply *r;
	char dir[64];
	double s;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--models-latency-ms", "2000", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	/* The start's fetch is under way for 2 s: the loop serves meanwhile. */
	r = call(&d, "GET", "/healthz", NULL);
	cr_assert_eq(r->status, 200);
	cr_assert_lt(r->total_s, 0.5, "%.3fs", r->total_s);
	free(r);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert_lt(r->total_s, 0.5, "%.3fs", r->total_s);
	free(r);
	/* A caller of /v1/models waits for the first list rather than get none. */
	cr_assert_str_eq(model_ids(&d, &s), "gpt-4o-mini/system,gpt-4o/system,o3-mini/mock-lab,"
	                                    "text-embedding-3-small/system");
	cr_assert_lt(s, 2.5, "%.3fs", s);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(http, a_call_that_can_never_fit_the_lane_is_a_400_at_once, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *st;
	struct reply *r;
	char dir[64];

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	/* 1,000 tokens a minute: a call asking for 5,000 can never run. */
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=1000",
	               "OPENAI_TPM_HEADROOM=0", NULL);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ",\"max_tokens\":5000"));
	cr_assert_eq(r->status, 400, "%s", r->body);
	cr_assert_str_eq(error_code_of(r), "request_too_large");
	cr_assert(strstr(r->body, "1000 tokens/min") && strstr(r->body, "max_tokens"),
	          "says the budget and what to change: %s", r->body);
	cr_assert(!strcasestr(r->headers, "retry-after"), "nothing to wait for: %s", r->headers);
	cr_assert_lt(r->total_s, 1.0);
	free(r);
	/* It cost the lane nothing: a call that fits goes at once. */
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ",\"max_tokens\":100"));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert_lt(r->total_s, 1.0);
	free(r);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "requests"), 1, "the refused call never went upstream");
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome = 'refused' AND "
	                           "error_code = 'request_too_large'"),
	             1);
	h_mock_stop(&m);
}

Test(models, an_llmqd_behind_another_lists_the_providers_models, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc a = {0}, b = {0};
	char dir[64];

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--models-latency-ms", "300", NULL);
	/* Both start at once: B's own list is still on its way when A asks B. */
	start_at(&b, dir, "b", free_port(), m.port);
	start_at(&a, dir, "a", free_port(), b.http_port);
	cr_assert_str_eq(model_ids(&a, NULL), "gpt-4o-mini/system,gpt-4o/system,o3-mini/mock-lab,"
	                                      "text-embedding-3-small/system");
	h_daemon_signal(&a, SIGTERM);
	h_daemon_signal(&b, SIGTERM);
	h_mock_stop(&m);
}

/*
 * An answer that says the request was not processed (a 400) refunds its
 * estimate: the next call does not wait for the budget the refused one held.
 */
Test(http, a_refused_answer_gives_its_estimate_back, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	struct reply *r;
	char dir[64];

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	/* 6,000 tokens a minute, 100 a second: each call holds 5,000 for 50 s. */
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=6000",
	               "OPENAI_TPM_HEADROOM=0", "OPENAI_BURST_SECONDS=60", NULL);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("fail-400", ",\"max_tokens\":5000"));
	cr_assert_eq(r->status, 400, "%s", r->body);
	free(r);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ",\"max_tokens\":5000"));
	cr_assert_eq(r->status, 200, "%s", r->body);
	cr_assert_lt(r->total_s, 2.0, "the refused call's 5,000 tokens came back: %.1f s",
	             r->total_s);
	free(r);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * Over loopback TCP the caller is who the kernel says owns the other end,
 * as on the Unix socket; from elsewhere, without a token, nobody: 401 unless
 * the operator opts into anonymous callers, who never see Files or Batches.
 */
Test(http, tcp_callers_are_known_by_uid_and_strangers_refused, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], q[128];
	struct reply *r;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "LLMQ_HTTP_ADDR=0.0.0.0:0", NULL);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "%s", r->body);
	free(r);
	if (h_host_addr(via_host, sizeof(via_host)) == 0) {
		r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
		cr_assert_eq(r->status, 401, "%s", r->body);
		cr_assert_str_eq(error_code_of(r), "invalid_api_key");
		cr_assert(strstr(r->body, "http_anonymous"), "%s", r->body);
		free(r);
		r = call(&d, "GET", "/v1/files", NULL);
		cr_assert_eq(r->status, 401, "%s", r->body);
		free(r);
		r = call(&d, "GET", "/healthz", NULL);
		cr_assert_eq(r->status, 200, "the probes need nobody: %s", r->body);
		free(r);
	}
	snprintf(via_host, sizeof(via_host), "127.0.0.1");
	h_daemon_signal(&d, SIGTERM);
	snprintf(q, sizeof(q), "SELECT count(*) FROM calls WHERE caller_uid = %d", (int)getuid());
	cr_assert_eq(h_sql_int(&d, q), 1, "the loopback call is its user's");

	/* With http_anonymous = yes strangers may call models, and never see Files. */
	if (h_host_addr(via_host, sizeof(via_host)) == 0) {
		h_daemon_start(&d, dir, &m, H_FAST, "LLMQ_HTTP_ADDR=0.0.0.0:0",
		               "LLMQ_HTTP_ANONYMOUS=yes", NULL);
		r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
		cr_assert_eq(r->status, 200, "%s", r->body);
		free(r);
		r = call(&d, "GET", "/v1/batches", NULL);
		cr_assert_eq(r->status, 401, "%s", r->body);
		free(r);
		h_daemon_signal(&d, SIGTERM);
		snprintf(via_host, sizeof(via_host), "127.0.0.1");
	}
	h_mock_stop(&m);
}

/*
 * A call's model is stored with its record, refused or not: one of 1 MB was
 * stored whole (ten calls with 4 MB names added 54.5 MB to the database).
 * At most 256 bytes, said in the 400, and a control byte is refused too.
 */
Test(http, a_model_name_is_bounded_before_anything_is_stored, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64];
	size_t n = 1 << 20, len;
	char *body = malloc(n + 256);
	struct reply *r;
	int i;

	cr_assert_not_null(body);
	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	len = (size_t)sprintf(body, "{\"model\":\"");
	memset(body + len, 'm', n);
	len += n;
	sprintf(body + len, "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
	for (i = 0; i < 3; i++) {
		r = call(&d, "POST", "/v1/chat/completions", body);
		cr_assert_eq(r->status, 400, "%s", r->body);
		cr_assert_str_eq(error_code_of(r), "invalid_body");
		cr_assert(strstr(r->body, "256"), "says the limit: %s", r->body);
		free(r);
	}
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt\\u001b]0;PWNED\\u0007", ""));
	cr_assert_eq(r->status, 400, "%s", r->body);
	cr_assert(strstr(r->body, "control character"), "%s", r->body);
	free(r);
	r = call(&d, "POST", "/v1/chat/completions", CHAT("gpt-4o-mini", ""));
	cr_assert_eq(r->status, 200, "a model of a sane length still goes: %s", r->body);
	free(r);
	h_daemon_signal(&d, SIGTERM);
	cr_assert_leq(h_sql_int(&d, "SELECT coalesce(max(length(model)), 0) FROM calls"), 256);
	cr_assert_lt(h_sql_int(&d, "SELECT page_count * page_size FROM pragma_page_count(), "
	                           "pragma_page_size()"),
	             1 << 20, "the database did not grow by the names");
	free(body);
	h_mock_stop(&m);
}

/*
 * bytes to the HTTP face over loopback TCP, then (when half_close) this
 * side shut down, as a client that has sent its whole request may do; the
 * whole answer, head included, into buf. Returns the first answer's status.
 */
static int raw_http(const struct daemon_proc *d, const char *bytes, size_t len, int half_close,
                    char *buf, size_t cap)
{
	struct sockaddr_in sa = {0};
	struct timeval tv = {10, 0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
	size_t have = 0, off = 0;
	ssize_t n;

	cr_assert_geq(fd, 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)d->http_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (off < len && (n = send(fd, bytes + off, len - off, MSG_NOSIGNAL)) > 0)
		off += (size_t)n;
	if (half_close)
		shutdown(fd, SHUT_WR);
	while (have + 1 < cap && (n = recv(fd, buf + have, cap - 1 - have, 0)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	close(fd);
	sscanf(buf, "HTTP/1.%*d %d", &status);
	return status;
}

/* HEAD is answered for every GET route: GET's status and headers, no body. */
Test(http, head_is_answered_for_every_get_route, .timeout = 60)
{
	static const char *const paths[] = {"/healthz",   "/readyz",   "/metrics",
	                                    "/v1/models", "/v1/files", "/v1/batches"};
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	static char buf[1 << 16];
	char dir[64], req[256];
	const char *body;
	size_t i;
	int status;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		snprintf(req, sizeof(req),
		         "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", paths[i]);
		status = raw_http(&d, req, strlen(req), 0, buf, sizeof(buf));
		snprintf(req, sizeof(req),
		         "HEAD %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", paths[i]);
		cr_assert_eq(raw_http(&d, req, strlen(req), 0, buf, sizeof(buf)), status, "%s: %s",
		             paths[i], buf);
		body = strstr(buf, "\r\n\r\n");
		cr_assert_not_null(body, "%s", buf);
		cr_assert_str_eq(body + 4, "", "HEAD %s has no body: %s", paths[i], buf);
		cr_assert(strcasestr(buf, "Content-Length:") || strcasestr(buf, "chunked"), "%s",
		          buf);
	}
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * RFC 9112 on a real llmqd: two Transfer-Encoding lines whose last is not
 * chunked, no Host, two Hosts: 400; an absolute-form target is served; a
 * trailer section past 64 KiB is refused (5.5 GB were read); a client that
 * shuts its side down after its request still gets the answer.
 */
Test(http, requests_as_rfc_9112_has_them, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	static char buf[1 << 16], req[1 << 18];
	static const char chat[] = CHAT("gpt-4o-mini", "");
	char dir[64];
	size_t n;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "300", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	n = (size_t)snprintf(req, sizeof(req),
	                     "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
	                     "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"
	                     "Content-Type: application/json\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n",
	                     strlen(chat), chat);
	cr_assert_eq(raw_http(&d, req, n, 0, buf, sizeof(buf)), 400, "%s", buf);
	cr_assert(strstr(buf, "last coding is not chunked"), "%s", buf);
	n = (size_t)snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\n\r\n");
	cr_assert_eq(raw_http(&d, req, n, 0, buf, sizeof(buf)), 400, "%s", buf);
	n = (size_t)snprintf(req, sizeof(req),
	                     "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
	cr_assert_eq(raw_http(&d, req, n, 0, buf, sizeof(buf)), 400, "%s", buf);
	/* The absolute form, as a proxy would send it. */
	n = (size_t)snprintf(req, sizeof(req),
	                     "POST http://127.0.0.1:%d/v1/chat/completions HTTP/1.1\r\nHost: "
	                     "127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
	                     "Content-Length: %zu\r\n\r\n%s",
	                     d.http_port, strlen(chat), chat);
	cr_assert_eq(raw_http(&d, req, n, 0, buf, sizeof(buf)), 200, "%s", buf);
	cr_assert(strstr(buf, "chat.completion"), "%s", buf);
	/* Trailers past the head's bound. */
	n = (size_t)snprintf(req, sizeof(req),
	                     "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
	                     "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
	                     "%zx\r\n%s\r\n0\r\n",
	                     strlen(chat), chat);
	for (i = 0; i < 2000; i++)
		n += (size_t)snprintf(
		    req + n, sizeof(req) - n,
		    "X-T: 0123456789012345678901234567890123456789012345678901234567"
		    "8901234567890123456789\r\n");
	cr_assert_eq(raw_http(&d, req, n, 0, buf, sizeof(buf)), 431, "%s", buf);
	cr_assert(strstr(buf, "trailer section"), "%s", buf);
	/* A half-close after the request: the answer still comes, whole. */
	n = (size_t)snprintf(req, sizeof(req),
	                     "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
	                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	                     strlen(chat), chat);
	cr_assert_eq(raw_http(&d, req, n, 1, buf, sizeof(buf)), 200, "%s", buf);
	cr_assert(strstr(buf, "chat.completion") && strcasestr(buf, "Connection: close"), "%s",
	          buf);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
