/*
 * mock_upstream.c - an OpenAI-shaped HTTP server for tests and benchmarks:
 * the one component llmq cannot reach for real.
 *
 * It answers POST /v1/chat/completions, /v1/completions, /v1/embeddings and
 * /v1/responses with OpenAI-shaped bodies carrying "usage", after a
 * configurable latency. It enforces tokens/min and requests/min the way the
 * provider does - charging each request's estimate on arrival, settling to
 * the real usage when it answers - over a configurable window, and answers
 * 429 with retry-after, retry-after-ms and the x-ratelimit-* headers (which
 * it sends on every answer). Faults are injected deterministically: every
 * Nth request fails with 500, is dropped, or gets a 429 (whose retry-after
 * --429-retry-after-ms sets, 200 ms by default); models named
 * "fail-400", "quota" or "retry-false" answer 400, insufficient_quota, or a
 * 500 with x-should-retry: false; "huge" answers 200 with a 65 MiB body,
 * "size-N" with one of N MiB. A second client spending part of the same
 * budget can be simulated, as can a key whose credit runs out after N
 * requests (--quota-after; POST /topup adds credit) and a provider that
 * enforces its minute over shorter fixed windows while its headers speak of
 * the minute (--enforce-window-ms). A body with "stream": true is answered as
 * server-sent events, one every --drip-ms (usage last when
 * stream_options.include_usage asks for it). GET /v1/models answers a
 * fixed list of four models (late with --models-latency-ms, 500 with
 * --models-fail, 401 without the key --models-key names). With
 * --cached-tokens N, that many of each prompt's tokens (at most all) are
 * reported as served from the cache (prompt_tokens_details.cached_tokens,
 * or input_tokens_details for responses), streamed or not. Each arrival and
 * answer is logged, and GET /stats returns the counters; --record FILE
 * writes each model request's last text as it arrives (which requests came).
 */
#include "estimate.h"
#include "timeutil.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

struct mock {
	struct event_base *base;
	int latency_ms;
	int drip_ms; /* between the chunks of a streamed answer */
	int fail_every, drop_every, r429_every;
	int64_t r429_retry_ms; /* the retry-after of the 429s --429-every injects */
	int64_t tpm, rpm;
	int64_t window_ms;       /* the limits apply per this window, pro rata */
	int64_t external_tpm;    /* another client spending the same budget */
	double completion_ratio; /* completion tokens = max_tokens x ratio */
	int64_t cached_tokens;   /* of each prompt, reported as cached */
	FILE *log;
	FILE *record; /* --record: each request's last text, as it arrives */
	int64_t t0;
	/* buckets */
	double tok, req;
	int64_t refilled;
	/* counters */
	int64_t n, ok, r429, r500, r400, drops, in_flight, max_in_flight, tokens_used;
	/* The key's credit: requests it still pays for (-1: unlimited); POST /topup. */
	int64_t quota_left;
	/* Fixed windows the limits are enforced over, while the headers speak of
	 * the minute (as a provider may); 0: the minute bucket is what is enforced. */
	int64_t enforce_ms, win_start;
	double win_tok, win_req;
	int64_t first_ok_ms, last_ok_ms;
	char last_via[256]; /* the llmq-via header of the last model request */
	/* GET /v1/models: answered after models_latency_ms, with 500 when
	 * models_fail, with 401 unless the key is models_key (when set). */
	int models_fail, models_latency_ms;
	const char *models_key;
	int64_t models_requests;
};

struct models_pending {
	struct mock *m;
	struct evhttp_request *req;
	struct event *timer;
	int gone;
};

struct pending {
	struct mock *m;
	struct evhttp_request *req;
	struct event *timer;
	int status;
	int64_t charged, used, n;
	char *body;
	char hdr_extra[128];
	int gone;                         /* the client left */
	int stream, include_usage, chunk; /* a streamed answer, and how far it got */
	int64_t prompt, completion, cached;
	char text[512];
};

static double tok_cap(struct mock *m)
{
	return (double)m->tpm * (double)m->window_ms / 60000.0;
}

static double req_cap(struct mock *m)
{
	double c = (double)m->rpm * (double)m->window_ms / 60000.0;

	return c < 1 ? 1 : c;
}

static void refill(struct mock *m, int64_t now)
{
	double dt = (double)(now - m->refilled);

	if (dt <= 0)
		return;
	if (m->tpm)
		m->tok = fmin(tok_cap(m), m->tok + (double)m->tpm / 60000.0 * dt -
		                              (double)m->external_tpm / 60000.0 * dt);
	if (m->rpm)
		m->req = fmin(req_cap(m), m->req + (double)m->rpm / 60000.0 * dt);
	m->refilled = now;
}

static void fmt_reset(char *buf, size_t len, double missing, double per_ms)
{
	int64_t ms = per_ms > 0 && missing > 0 ? (int64_t)ceil(missing / per_ms) : 0;

	if (ms >= 1000)
		snprintf(buf, len, "%llds%lldms", (long long)(ms / 1000), (long long)(ms % 1000));
	else
		snprintf(buf, len, "%lldms", (long long)ms);
}

/* Once per answer: as OpenAI's, they describe the buckets when the request
 * arrived (and was charged), not when the answer leaves. */
static void add_limit_headers(struct mock *m, struct evkeyvalq *h)
{
	char v[64];

	if (evhttp_find_header(h, "x-ratelimit-limit-tokens") ||
	    evhttp_find_header(h, "x-ratelimit-limit-requests"))
		return;
	refill(m, time_mono_ms());
	if (m->tpm) {
		snprintf(v, sizeof(v), "%lld", (long long)m->tpm);
		evhttp_add_header(h, "x-ratelimit-limit-tokens", v);
		snprintf(v, sizeof(v), "%lld", (long long)(m->tok > 0 ? floor(m->tok) : 0));
		evhttp_add_header(h, "x-ratelimit-remaining-tokens", v);
		fmt_reset(v, sizeof(v), tok_cap(m) - m->tok, (double)m->tpm / 60000.0);
		evhttp_add_header(h, "x-ratelimit-reset-tokens", v);
	}
	if (m->rpm) {
		snprintf(v, sizeof(v), "%lld", (long long)m->rpm);
		evhttp_add_header(h, "x-ratelimit-limit-requests", v);
		snprintf(v, sizeof(v), "%lld", (long long)(m->req > 0 ? floor(m->req) : 0));
		evhttp_add_header(h, "x-ratelimit-remaining-requests", v);
		fmt_reset(v, sizeof(v), req_cap(m) - m->req, (double)m->rpm / 60000.0);
		evhttp_add_header(h, "x-ratelimit-reset-requests", v);
	}
}

static void logf_(struct mock *m, const char *what, int64_t n, int64_t a, int64_t b)
{
	if (!m->log)
		return;
	fprintf(m->log, "%lld %s %lld %lld %lld\n", (long long)(time_mono_ms() - m->t0), what,
	        (long long)n, (long long)a, (long long)b);
	fflush(m->log);
}

static void send_json(struct mock *m, struct evhttp_request *req, int status, const char *body,
                      int64_t n, const char *extra_hdr)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();
	char id[64];

	snprintf(id, sizeof(id), "req_mock_%lld", (long long)n);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "x-request-id", id);
	if (extra_hdr && *extra_hdr) {
		char name[64], value[64];

		if (sscanf(extra_hdr, "%63[^:]: %63s", name, value) == 2)
			evhttp_add_header(h, name, value);
	}
	add_limit_headers(m, h);
	evbuffer_add(buf, body, strlen(body));
	evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", buf);
	evbuffer_free(buf);
}

/* A well-formed chat answer of about mib MiB. */
static char *big_body(size_t mib)
{
	static const char head[] = "{\"id\":\"chatcmpl-huge\",\"object\":\"chat.completion\","
	                           "\"choices\":[{\"index\":0,\"message\":{\"role\":"
	                           "\"assistant\",\"content\":\"";
	static const char tail[] = "\"}}]}";
	size_t fill = mib << 20, n = sizeof(head) - 1;
	char *s = malloc(n + fill + sizeof(tail));

	if (!s)
		return NULL;
	memcpy(s, head, n);
	memset(s + n, 'a', fill);
	memcpy(s + n + fill, tail, sizeof(tail));
	return s;
}

static char *error_body(const char *type, const char *code, const char *msg)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	char *s;

	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
	json_object_object_add(o, "error", e);
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static const char *last_text(json_object *body)
{
	json_object *msgs, *last, *content, *input;
	size_t n;

	if (json_object_object_get_ex(body, "messages", &msgs) &&
	    (n = json_object_array_length(msgs)) > 0) {
		last = json_object_array_get_idx(msgs, n - 1);
		if (json_object_object_get_ex(last, "content", &content) &&
		    json_object_is_type(content, json_type_string))
			return json_object_get_string(content);
	}
	if (json_object_object_get_ex(body, "input", &input) &&
	    json_object_is_type(input, json_type_string))
		return json_object_get_string(input);
	if (json_object_object_get_ex(body, "prompt", &input) &&
	    json_object_is_type(input, json_type_string))
		return json_object_get_string(input);
	return "";
}

/* {"cached_tokens": N}: the prompt's tokens the cache served. */
static json_object *cached_details(int64_t cached)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "cached_tokens", json_object_new_int64(cached));
	return d;
}

static char *ok_body(const char *path, json_object *body, int64_t n, int64_t prompt,
                     int64_t completion, int64_t cached)
{
	json_object *o = json_object_new_object(), *u = json_object_new_object(), *arr, *c, *msg;
	json_object *model;
	char text[512], *s;

	json_object_object_get_ex(body, "model", &model);
	snprintf(text, sizeof(text), "echo: %.480s", last_text(body));
	if (strstr(path, "/responses")) {
		json_object_object_add(o, "id", json_object_new_string("resp_mock"));
		json_object_object_add(o, "object", json_object_new_string("response"));
		json_object_object_add(o, "status", json_object_new_string("completed"));
		arr = json_object_new_array();
		c = json_object_new_object();
		json_object_object_add(c, "type", json_object_new_string("message"));
		json_object_object_add(c, "role", json_object_new_string("assistant"));
		msg = json_object_new_array();
		{
			json_object *part = json_object_new_object();

			json_object_object_add(part, "type", json_object_new_string("output_text"));
			json_object_object_add(part, "text", json_object_new_string(text));
			json_object_object_add(part, "annotations", json_object_new_array());
			json_object_array_add(msg, part);
		}
		json_object_object_add(c, "content", msg);
		json_object_array_add(arr, c);
		json_object_object_add(o, "output", arr);
		json_object_object_add(o, "model", model ? json_object_get(model) : NULL);
		json_object_object_add(u, "input_tokens", json_object_new_int64(prompt));
		json_object_object_add(u, "input_tokens_details", cached_details(cached));
		json_object_object_add(u, "output_tokens", json_object_new_int64(completion));
		json_object_object_add(u, "total_tokens",
		                       json_object_new_int64(prompt + completion));
		json_object_object_add(o, "usage", u);
		s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		return s;
	}
	if (strstr(path, "/embeddings")) {
		json_object_object_add(o, "object", json_object_new_string("list"));
		arr = json_object_new_array();
		c = json_object_new_object();
		msg = json_object_new_array();
		json_object_array_add(msg, json_object_new_double(0.25));
		json_object_array_add(msg, json_object_new_double(-0.5));
		json_object_object_add(c, "embedding", msg);
		json_object_object_add(c, "index", json_object_new_int(0));
		json_object_array_add(arr, c);
		json_object_object_add(o, "data", arr);
		completion = 0;
	} else {
		json_object_object_add(o, "id", json_object_new_string("chatcmpl-mock"));
		json_object_object_add(o, "object", json_object_new_string("chat.completion"));
		arr = json_object_new_array();
		c = json_object_new_object();
		msg = json_object_new_object();
		json_object_object_add(msg, "role", json_object_new_string("assistant"));
		json_object_object_add(msg, "content", json_object_new_string(text));
		json_object_object_add(c, "index", json_object_new_int(0));
		json_object_object_add(c, "message", msg);
		json_object_object_add(c, "finish_reason", json_object_new_string("stop"));
		json_object_array_add(arr, c);
		json_object_object_add(o, "choices", arr);
	}
	json_object_object_add(o, "model", model ? json_object_get(model) : NULL);
	json_object_object_add(u, "prompt_tokens", json_object_new_int64(prompt));
	json_object_object_add(u, "completion_tokens", json_object_new_int64(completion));
	json_object_object_add(u, "total_tokens", json_object_new_int64(prompt + completion));
	if (cached > 0)
		json_object_object_add(u, "prompt_tokens_details", cached_details(cached));
	json_object_object_add(o, "usage", u);
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static void pending_free(struct pending *p)
{
	if (p->gone && p->req)
		evhttp_request_free(p->req);
	if (p->timer)
		event_free(p->timer);
	free(p->body);
	free(p);
}

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
	struct pending *p = arg;

	/* The client left before the answer: nothing to send it to. The request
	 * was detached from its connection; it is freed with p. */
	if (p && !p->gone) {
		p->gone = 1;
		p->m->in_flight--;
		logf_(p->m, "gone", p->n, 0, 0);
	}
}

#define STREAM_CHUNKS 4

/* One SSE event of a streamed chat answer, then the next on a timer. */
static void drip_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct mock *m = p->m;
	struct evbuffer *buf;
	struct timeval tv = {m->drip_ms / 1000, (m->drip_ms % 1000) * 1000};
	size_t len = strlen(p->text), a, b;

	if (p->gone) {
		pending_free(p);
		return;
	}
	buf = evbuffer_new();
	if (p->chunk < STREAM_CHUNKS) {
		a = len * (size_t)p->chunk / STREAM_CHUNKS;
		b = len * (size_t)(p->chunk + 1) / STREAM_CHUNKS;
		evbuffer_add_printf(
		    buf,
		    "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
		    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%.*s\"}}]}\n\n",
		    (int)(b - a), p->text + a);
	} else if (p->chunk == STREAM_CHUNKS && p->include_usage) {
		evbuffer_add_printf(
		    buf,
		    "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
		    "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,"
		    "\"completion_tokens\":%lld,\"total_tokens\":%lld,"
		    "\"prompt_tokens_details\":{\"cached_tokens\":%lld}}}\n\n",
		    (long long)p->prompt, (long long)p->completion,
		    (long long)(p->prompt + p->completion), (long long)p->cached);
	} else {
		evbuffer_add_printf(buf, "data: [DONE]\n\n");
		evhttp_send_reply_chunk(p->req, buf);
		evbuffer_free(buf);
		evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
		evhttp_send_reply_end(p->req);
		logf_(m, "done", p->n, 200, p->used);
		m->in_flight--;
		pending_free(p);
		return;
	}
	evhttp_send_reply_chunk(p->req, buf);
	evbuffer_free(buf);
	logf_(m, "chunk", p->n, p->chunk, 0);
	p->chunk++;
	evtimer_add(p->timer, &tv);
}

static void start_stream(struct pending *p)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(p->req);
	char id[64];

	snprintf(id, sizeof(id), "req_mock_%lld", (long long)p->n);
	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "x-request-id", id);
	add_limit_headers(p->m, h);
	evhttp_send_reply_start(p->req, 200, "OK");
	event_free(p->timer);
	p->timer = evtimer_new(p->m->base, drip_cb, p);
	drip_cb(-1, 0, p);
}

static void finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct mock *m = p->m;
	int64_t now = time_mono_ms();

	if (p->gone) {
		pending_free(p);
		return;
	}
	if (p->status == 200 && p->stream) {
		/* Settled like any answer; the connection stays watched until the end. */
		refill(m, now);
		if (m->tpm)
			m->tok = fmin(tok_cap(m), m->tok + (double)(p->charged - p->used));
		m->ok++;
		m->tokens_used += p->used;
		start_stream(p);
		return;
	}
	evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
	m->in_flight--;
	if (p->status == 200) {
		/* Settle the arrival estimate to what the answer really used. */
		refill(m, now);
		if (m->tpm)
			m->tok = fmin(tok_cap(m), m->tok + (double)(p->charged - p->used));
		m->ok++;
		m->tokens_used += p->used;
		if (!m->first_ok_ms)
			m->first_ok_ms = now - m->t0;
		m->last_ok_ms = now - m->t0;
	}
	logf_(m, "done", p->n, p->status, p->used);
	send_json(m, p->req, p->status, p->body, p->n, p->hdr_extra);
	pending_free(p);
}

static void drop(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);

	shutdown(bufferevent_getfd(bev), SHUT_RDWR);
}

static const char models_list[] =
    "{\"object\":\"list\",\"data\":["
    "{\"id\":\"gpt-4o-mini\",\"object\":\"model\",\"created\":1721172741,"
    "\"owned_by\":\"system\"},"
    "{\"id\":\"gpt-4o\",\"object\":\"model\",\"created\":1715367049,"
    "\"owned_by\":\"system\"},"
    "{\"id\":\"text-embedding-3-small\",\"object\":\"model\",\"created\":1705948997,"
    "\"owned_by\":\"system\"},"
    "{\"id\":\"o3-mini\",\"object\":\"model\",\"created\":1737146383,"
    "\"owned_by\":\"mock-lab\"}]}";

static void models_reply(struct mock *m, struct evhttp_request *req)
{
	const char *auth =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	char want[160];

	snprintf(want, sizeof(want), "Bearer %s", m->models_key ? m->models_key : "");
	if (m->models_key && (!auth || strcmp(auth, want) != 0))
		send_json(m, req, 401,
		          "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":"
		          "\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
		          0, NULL);
	else if (m->models_fail)
		send_json(m, req, 500,
		          "{\"error\":{\"message\":\"The server had an error (injected)\","
		          "\"type\":\"server_error\",\"code\":null}}",
		          0, NULL);
	else
		send_json(m, req, 200, models_list, 0, NULL);
}

static void models_gone(struct evhttp_connection *conn, void *arg)
{
	struct models_pending *p = arg;

	p->gone = 1;
}

static void models_later(evutil_socket_t fd, short what, void *arg)
{
	struct models_pending *p = arg;

	if (p->gone) {
		evhttp_request_free(p->req);
	} else {
		evhttp_connection_set_closecb(evhttp_request_get_connection(p->req), NULL, NULL);
		models_reply(p->m, p->req);
	}
	event_free(p->timer);
	free(p);
}

/* GET /v1/models: a fixed list, perhaps late, perhaps failing. */
static void handle_models(struct mock *m, struct evhttp_request *req)
{
	struct timeval tv = {m->models_latency_ms / 1000, (m->models_latency_ms % 1000) * 1000};
	struct models_pending *p;

	m->models_requests++;
	if (m->models_latency_ms <= 0) {
		models_reply(m, req);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	p->m = m;
	p->req = req;
	p->timer = evtimer_new(m->base, models_later, p);
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), models_gone, p);
	evtimer_add(p->timer, &tv);
}

static void handle_stats(struct mock *m, struct evhttp_request *req)
{
	char body[1024];

	snprintf(body, sizeof(body),
	         "{\"requests\":%lld,\"ok\":%lld,\"r429\":%lld,\"r500\":%lld,\"r400\":%lld,"
	         "\"drops\":%lld,\"in_flight\":%lld,\"max_in_flight\":%lld,\"tokens_used\":%lld,"
	         "\"first_ok_ms\":%lld,\"last_ok_ms\":%lld,\"last_via\":\"%s\","
	         "\"models_requests\":%lld}",
	         (long long)m->n, (long long)m->ok, (long long)m->r429, (long long)m->r500,
	         (long long)m->r400, (long long)m->drops, (long long)m->in_flight,
	         (long long)m->max_in_flight, (long long)m->tokens_used, (long long)m->first_ok_ms,
	         (long long)m->last_ok_ms, m->last_via, (long long)m->models_requests);
	send_json(m, req, 200, body, 0, NULL);
}

/* A fixed window's share of the minute's limits: does this request pass it? */
static int over_window(struct mock *m, int64_t now, int64_t est)
{
	double tok_cap = (double)m->tpm * (double)m->enforce_ms / 60000.0;
	double req_cap = (double)m->rpm * (double)m->enforce_ms / 60000.0;

	if (now >= m->win_start + m->enforce_ms) {
		m->win_start = now - (now - m->t0) % m->enforce_ms;
		m->win_tok = m->win_req = 0;
	}
	if ((m->rpm && m->win_req + 1 > req_cap) || (m->tpm && m->win_tok + (double)est > tok_cap))
		return 1;
	m->win_req += 1;
	m->win_tok += (double)est;
	return 0;
}

static void handle(struct evhttp_request *req, void *arg)
{
	struct mock *m = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *path = evhttp_request_get_uri(req);
	json_object *body = NULL, *model, *v;
	struct pending *p;
	int64_t now = time_mono_ms(), est, prompt, max_out = 0, n;
	struct timeval tv;
	size_t len;
	char *raw, msg[256];
	const char *mname = "", *via;

	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET && strcmp(path, "/stats") == 0) {
		handle_stats(m, req);
		return;
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET && strcmp(path, "/v1/models") == 0) {
		handle_models(m, req);
		return;
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST && strcmp(path, "/topup") == 0) {
		m->quota_left = -1;
		send_json(m, req, 200, "{\"ok\":true}", 0, NULL);
		return;
	}
	n = ++m->n;
	via = evhttp_find_header(evhttp_request_get_input_headers(req), "llmq-via");
	/* Kept as JSON string text: hex ids, commas and spaces only. */
	snprintf(m->last_via, sizeof(m->last_via), "%.*s",
	         via ? (int)strspn(via, "0123456789abcdef, ") : 0, via ? via : "");
	len = evbuffer_get_length(in);
	raw = malloc(len + 1);
	if (!raw) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_copyout(in, raw, len);
	raw[len] = '\0';
	body = json_tokener_parse(raw);
	free(raw);
	p = calloc(1, sizeof(*p));
	p->m = m;
	p->req = req;
	p->n = n;
	if (!body || evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		p->status = 400;
		p->body = error_body("invalid_request_error", NULL, "body is not JSON");
		goto answer_now;
	}
	if (m->record) {
		fprintf(m->record, "%s\n", last_text(body));
		fflush(m->record);
	}
	if (json_object_object_get_ex(body, "model", &model))
		mname = json_object_get_string(model);
	est = estimate_tokens(body, path, 16);
	prompt = (estimate_prompt_chars(body) + 3) / 4;
	if (prompt < 0)
		prompt = 0;
	if (json_object_object_get_ex(body, "max_tokens", &v) ||
	    json_object_object_get_ex(body, "max_completion_tokens", &v) ||
	    json_object_object_get_ex(body, "max_output_tokens", &v))
		max_out = json_object_get_int64(v);
	if (max_out <= 0)
		max_out = 16;

	if (m->drop_every && n % m->drop_every == 0) {
		m->drops++;
		logf_(m, "drop", n, 0, 0);
		json_object_put(body);
		free(p);
		drop(req);
		return;
	}
	refill(m, now);
	if (m->r429_every && n % m->r429_every == 0) {
		m->r429++;
		p->status = 429;
		p->body =
		    error_body("requests", "rate_limit_exceeded", "Rate limit reached (injected)");
		snprintf(p->hdr_extra, sizeof(p->hdr_extra), "retry-after-ms: %lld",
		         (long long)m->r429_retry_ms);
		goto answer_now;
	}
	if (m->enforce_ms && over_window(m, now, est)) {
		m->r429++;
		p->status = 429;
		p->body = error_body("tokens", "rate_limit_exceeded",
		                     "Rate limit reached (enforced over a shorter window)");
		snprintf(p->hdr_extra, sizeof(p->hdr_extra), "retry-after-ms: %lld",
		         (long long)(m->win_start + m->enforce_ms - now));
		goto answer_now;
	}
	if (m->quota_left == 0) {
		m->r429++;
		p->status = 429;
		p->body = error_body("insufficient_quota", "insufficient_quota",
		                     "You exceeded your current quota, please check your plan and "
		                     "billing details.");
		goto answer_now;
	}
	if (m->quota_left > 0)
		m->quota_left--;
	if (strcmp(mname, "quota") == 0) {
		m->r429++;
		p->status = 429;
		p->body = error_body("insufficient_quota", "insufficient_quota",
		                     "You exceeded your current quota, please check your plan and "
		                     "billing details.");
		goto answer_now;
	}
	if ((m->rpm && m->req < 1) || (m->tpm && m->tok < fmin((double)est, tok_cap(m)))) {
		double wait;

		m->r429++;
		p->status = 429;
		if (m->rpm && m->req < 1)
			wait = (1 - m->req) / ((double)m->rpm / 60000.0);
		else
			wait = (fmin((double)est, tok_cap(m)) - m->tok) /
			       ((double)(m->tpm - m->external_tpm) / 60000.0);
		snprintf(msg, sizeof(msg),
		         "Rate limit reached for %s: Limit %lld, Requested %lld. Please try again "
		         "in %.0fms.",
		         mname, (long long)m->tpm, (long long)est, wait);
		p->body = error_body("tokens", "rate_limit_exceeded", msg);
		snprintf(p->hdr_extra, sizeof(p->hdr_extra), "retry-after-ms: %lld",
		         (long long)ceil(wait));
		goto answer_now;
	}
	if (m->tpm)
		m->tok -= (double)est;
	if (m->rpm)
		m->req -= 1;
	add_limit_headers(m, evhttp_request_get_output_headers(req));
	if (m->fail_every && n % m->fail_every == 0) {
		m->r500++;
		p->status = 500;
		p->body = error_body("server_error", NULL, "The server had an error (injected)");
	} else if (strcmp(mname, "fail-400") == 0) {
		m->r400++;
		p->status = 400;
		p->body = error_body("invalid_request_error", "model_not_found",
		                     "The model 'fail-400' does not exist");
	} else if (strcmp(mname, "huge") == 0 || strncmp(mname, "size-", 5) == 0) {
		p->status = 200;
		p->body = big_body(mname[0] == 'h' ? 65 : (size_t)atoi(mname + 5));
	} else if (strcmp(mname, "retry-false") == 0) {
		m->r500++;
		p->status = 500;
		p->body = error_body("server_error", NULL, "failed, do not retry");
		snprintf(p->hdr_extra, sizeof(p->hdr_extra), "x-should-retry: false");
	} else {
		int64_t completion = (int64_t)llround((double)max_out * m->completion_ratio);

		p->status = 200;
		p->charged = est;
		p->used = prompt + (strstr(path, "/embeddings") ? 0 : completion);
		int64_t cached = m->cached_tokens < prompt ? m->cached_tokens : prompt;

		p->body = ok_body(path, body, n, prompt, completion, cached);
		if (json_object_object_get_ex(body, "stream", &v) && json_object_get_boolean(v)) {
			json_object *so, *iu;

			p->stream = 1;
			p->prompt = prompt;
			p->completion = completion;
			p->cached = cached;
			snprintf(p->text, sizeof(p->text), "echo: %.400s", last_text(body));
			p->include_usage = json_object_object_get_ex(body, "stream_options", &so) &&
			                   json_object_object_get_ex(so, "include_usage", &iu) &&
			                   json_object_get_boolean(iu);
		}
	}
	json_object_put(body);
	body = NULL;
	m->in_flight++;
	if (m->in_flight > m->max_in_flight)
		m->max_in_flight = m->in_flight;
	logf_(m, "arrive", n, m->in_flight, est);
	p->timer = evtimer_new(m->base, finish_cb, p);
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_conn_close, p);
	tv.tv_sec = m->latency_ms / 1000;
	tv.tv_usec = (m->latency_ms % 1000) * 1000;
	evtimer_add(p->timer, &tv);
	return;
answer_now:
	json_object_put(body);
	logf_(m, "refuse", n, p->status, 0);
	send_json(m, req, p->status, p->body, n, p->hdr_extra);
	pending_free(p);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"latency-ms", required_argument, NULL, 'l'},
	    {"drip-ms", required_argument, NULL, 'i'},
	    {"fail-every", required_argument, NULL, 'f'},
	    {"drop-every", required_argument, NULL, 'd'},
	    {"429-every", required_argument, NULL, 'r'},
	    {"429-retry-after-ms", required_argument, NULL, 'R'},
	    {"tpm", required_argument, NULL, 't'},
	    {"rpm", required_argument, NULL, 'q'},
	    {"window-ms", required_argument, NULL, 'w'},
	    {"external-tpm", required_argument, NULL, 'x'},
	    {"completion-ratio", required_argument, NULL, 'c'},
	    {"log", required_argument, NULL, 'L'},
	    {"quota-after", required_argument, NULL, 'Q'},
	    {"enforce-window-ms", required_argument, NULL, 'E'},
	    {"models-fail", no_argument, NULL, 'F'},
	    {"models-latency-ms", required_argument, NULL, 'M'},
	    {"models-key", required_argument, NULL, 'K'},
	    {"cached-tokens", required_argument, NULL, 'C'},
	    {"record", required_argument, NULL, 'D'},
	    {NULL, 0, NULL, 0},
	};
	struct mock m = {0};
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	struct event *term, *intr;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int c, port = 0;

	m.window_ms = 60000;
	m.quota_left = -1;
	m.drip_ms = 20;
	m.r429_retry_ms = 200;
	m.completion_ratio = 1.0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'l':
			m.latency_ms = atoi(optarg);
			break;
		case 'i':
			m.drip_ms = atoi(optarg);
			break;
		case 'f':
			m.fail_every = atoi(optarg);
			break;
		case 'd':
			m.drop_every = atoi(optarg);
			break;
		case 'r':
			m.r429_every = atoi(optarg);
			break;
		case 'R':
			m.r429_retry_ms = atoll(optarg);
			break;
		case 't':
			m.tpm = atoll(optarg);
			break;
		case 'q':
			m.rpm = atoll(optarg);
			break;
		case 'w':
			m.window_ms = atoll(optarg);
			break;
		case 'x':
			m.external_tpm = atoll(optarg);
			break;
		case 'c':
			m.completion_ratio = atof(optarg);
			break;
		case 'Q':
			m.quota_left = atoll(optarg);
			break;
		case 'E':
			m.enforce_ms = atoll(optarg);
			break;
		case 'F':
			m.models_fail = 1;
			break;
		case 'M':
			m.models_latency_ms = atoi(optarg);
			break;
		case 'K':
			m.models_key = optarg;
			break;
		case 'C':
			m.cached_tokens = atoll(optarg);
			break;
		case 'D':
			m.record = fopen(optarg, "we");
			if (!m.record) {
				perror(optarg);
				return 1;
			}
			break;
		case 'L':
			m.log = fopen(optarg, "we");
			if (!m.log) {
				perror(optarg);
				return 1;
			}
			break;
		default:
			fprintf(stderr, "mock_upstream: bad option\n");
			return 64;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	m.base = event_base_new();
	http = evhttp_new(m.base);
	evhttp_set_gencb(http, handle, &m);
	evhttp_set_max_body_size(http, 64 << 20);
	sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port);
	if (!sock) {
		fprintf(stderr, "mock_upstream: cannot bind 127.0.0.1:%d: %s\n", port,
		        strerror(errno));
		return 1;
	}
	getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl);
	m.t0 = time_mono_ms();
	m.refilled = m.t0;
	m.tok = tok_cap(&m);
	m.req = req_cap(&m);
	printf("%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);
	term = evsignal_new(m.base, SIGTERM, on_term, m.base);
	intr = evsignal_new(m.base, SIGINT, on_term, m.base);
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	event_base_dispatch(m.base);
	fprintf(stderr,
	        "mock_upstream: %lld requests, %lld ok, %lld 429, %lld 500, %lld dropped, "
	        "max in flight %lld\n",
	        (long long)m.n, (long long)m.ok, (long long)m.r429, (long long)m.r500,
	        (long long)m.drops, (long long)m.max_in_flight);
	event_free(term);
	event_free(intr);
	evhttp_free(http);
	event_base_free(m.base);
	if (m.log)
		fclose(m.log);
	return 0;
}
