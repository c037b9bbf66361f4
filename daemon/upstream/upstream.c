/*
 * upstream.c - a transfer's start and end, whoever sends it, and the curl
 * glue, shaped like curl's multi-event example: a socket callback that maps
 * curl's interest onto libevent events, a timer callback, an event callback
 * that drives curl_multi_socket_action(), and check_multi_info() that finds
 * each finished transfer through CURLINFO_PRIVATE. A curl failure fails the
 * transfer, never the daemon. Plain http to an address goes by
 * upstream-h1.c instead, which ends its transfers through
 * upstream_finish() here as well.
 */
#include "upstream/upstream-private.h"
#include "timeutil.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define UP_SPARE 64 /* easy handles kept for the next transfers */

struct sock_ctx {
	struct event *ev;
	short kind; /* what ev waits for */
};

static void check_multi_info(struct upstream *up);

static int curl_errno(CURLMcode mc)
{
	return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

static void event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *up = arg;
	int running, action = (what & EV_READ ? CURL_CSELECT_IN : 0) |
	                      (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(up->multi, fd, action, &running);
	check_multi_info(up);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *up = arg;
	int running;

	curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(up);
}

/*
 * curl's interest in a socket, kept as one event a socket: it is changed
 * only when the interest changes (curl says the same again after most
 * transfers), so a kept-alive connection costs no epoll_ctl a request.
 */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct upstream *up = userp;
	struct sock_ctx *ctx = socketp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (ctx) {
			event_free(ctx->ev);
			free(ctx);
			curl_multi_assign(up->multi, s, NULL);
		}
		return 0;
	}
	kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0) |
	               EV_PERSIST);
	if (!ctx) {
		ctx = calloc(1, sizeof(*ctx));
		if (!ctx)
			return -1;
		ctx->ev = event_new(up->base, s, kind, event_cb, up);
		if (!ctx->ev) {
			free(ctx);
			return -1;
		}
		curl_multi_assign(up->multi, s, ctx);
	} else if (ctx->kind == kind) {
		return 0;
	} else if (event_del(ctx->ev) < 0 ||
	           event_assign(ctx->ev, up->base, s, kind, event_cb, up) < 0) {
		return -1;
	}
	ctx->kind = kind;
	return event_add(ctx->ev, NULL) < 0 ? -1 : 0;
}

static int timerfunc_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct upstream *up = userp;
	struct timeval tv;

	if (timeout_ms < 0)
		return evtimer_del(up->timer);
	time_to_timeval(timeout_ms, &tv);
	return evtimer_add(up->timer, &tv);
}

int upstream_keep(struct up_transfer *t, const char *data, size_t n)
{
	size_t cap;
	char *p;

	if (t->len + n + 1 > UP_MAX_BODY) {
		t->too_big = 1;
		return -1;
	}
	if (t->len + n + 1 > t->cap) {
		cap = t->cap ? t->cap : 4096;
		while (cap < t->len + n + 1)
			cap *= 2;
		p = realloc(t->body, cap);
		if (!p)
			return -1;
		t->body = p;
		t->cap = cap;
	}
	memcpy(t->body + t->len, data, n);
	t->len += n;
	t->body[t->len] = '\0';
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct up_transfer *t = userp;
	size_t n = size * nmemb;
	long status = 0;
	int r;

	if (t->stream && t->relaying < 0) {
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
		t->relaying = t->stream->head(t->userdata, (int)status, &t->hdr) == 1;
	}
	if (t->relaying == 1) {
		if (t->want_pause) {
			t->paused = 1;
			return CURL_WRITEFUNC_PAUSE; /* curl hands this chunk again on resume */
		}
		r = t->stream->data(t->userdata, data, n);
		if (r < 0)
			return 0;
		t->want_pause = r == UP_PAUSE;
		return n;
	}
	return upstream_keep(t, data, n) < 0 ? 0 : n;
}

/* Called each time the request is about to go out, a resend included. */
static int prereq_cb(void *userp, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
	struct up_transfer *t = userp;

	t->sends++;
	return CURL_PREREQFUNC_OK;
}

/*
 * A header's value, trimmed. One that does not fit, or holds a control byte
 * (a NUL), is not kept: cut, or read up to its NUL, it would be another
 * value than the upstream sent.
 */
static void keep(char dst[UP_HDR_LEN], const char *v, size_t n)
{
	size_t i;

	dst[0] = '\0';
	while (n > 0 && isspace((unsigned char)v[n - 1]))
		n--;
	while (n > 0 && isspace((unsigned char)*v)) {
		v++;
		n--;
	}
	if (n >= UP_HDR_LEN)
		return;
	for (i = 0; i < n; i++)
		if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
			return;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

void upstream_header_line(struct up_headers *h, const char *line, size_t n)
{
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
	    {"x-request-id", offsetof(struct up_headers, request_id)},
	    {"content-type", offsetof(struct up_headers, content_type)},
	    {"openai-processing-ms", offsetof(struct up_headers, processing_ms)},
	    {"retry-after", offsetof(struct up_headers, retry_after)},
	    {"retry-after-ms", offsetof(struct up_headers, retry_after_ms)},
	    {"x-should-retry", offsetof(struct up_headers, should_retry)},
	    {"x-ratelimit-limit-tokens", offsetof(struct up_headers, limit_tokens)},
	    {"x-ratelimit-remaining-tokens", offsetof(struct up_headers, remaining_tokens)},
	    {"x-ratelimit-reset-tokens", offsetof(struct up_headers, reset_tokens)},
	    {"x-ratelimit-limit-requests", offsetof(struct up_headers, limit_requests)},
	    {"x-ratelimit-remaining-requests", offsetof(struct up_headers, remaining_requests)},
	    {"x-ratelimit-reset-requests", offsetof(struct up_headers, reset_requests)},
	};
	size_t i, klen;
	const char *colon;

	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* A new header block (after a 100 Continue or a redirect). */
		memset(h, 0, sizeof(*h));
		return;
	}
	colon = memchr(line, ':', n);
	if (!colon)
		return;
	klen = (size_t)(colon - line);
	for (i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		if (strlen(wanted[i].name) == klen && strncasecmp(line, wanted[i].name, klen) == 0)
			keep((char *)h + wanted[i].off, colon + 1, n - klen - 1);
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *userp)
{
	struct up_transfer *t = userp;

	upstream_header_line(&t->hdr, line, size * nitems);
	return size * nitems;
}

/*
 * A finished transfer's handle is reset (every option back to its default,
 * the request's headers and key no longer referred to) and kept: a new one
 * per transfer cost its allocations and their freeing each time.
 */
void upstream_transfer_free(struct up_transfer *t)
{
	struct upstream *up;

	if (!t)
		return;
	up = t->up;
	if (t->easy && up->n_spare < UP_SPARE) {
		curl_easy_reset(t->easy);
		up->spare[up->n_spare++] = t->easy;
	} else if (t->easy) {
		curl_easy_cleanup(t->easy);
	}
	curl_slist_free_all(t->headers);
	if (t->head) {
		explicit_bzero(t->head, t->head_len);
		free(t->head);
	}
	if (t->clock)
		event_free(t->clock);
	free(t->body);
	free(t);
}

void upstream_finish(struct up_transfer *t, int code, const char *error)
{
	struct up_response resp;

	t->up->in_flight--;
	memset(&resp, 0, sizeof(resp));
	if (code != 0) {
		resp.transport_error = code;
		resp.too_big = t->too_big;
		resp.error = t->too_big ? "the answer was larger than 64 MiB: the upstream "
		                          "sent it (and bills it) but llmqd cannot keep it; "
		                          "lower max_tokens or split the request"
		                        : error;
	} else {
		resp.status = t->status;
	}
	resp.body = t->body ? t->body : "";
	resp.body_len = t->len;
	resp.body_owner = t->body ? &t->body : NULL;
	resp.hdr = t->hdr;
	resp.latency_ms = time_mono_ms() - t->started;
	resp.sends = t->sends;
	t->done(t->userdata, &resp);
	upstream_transfer_free(t);
}

static void check_multi_info(struct upstream *up)
{
	struct up_transfer *t;
	CURLMsg *msg;
	CURLcode rc;
	int left;
	long status, connects;

	while ((msg = curl_multi_info_read(up->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		rc = msg->data.result;
		curl_multi_remove_handle(up->multi, t->easy);
		status = 0;
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
		t->status = (int)status;
		connects = 0;
		if (curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK &&
		    connects > 0)
			up->connects[0] += (uint64_t)connects;
		upstream_finish(t, (int)rc, t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
	}
}

int upstream_new(struct event_base *base, const char *id, struct upstream **ret)
{
	struct upstream *up;
	int r;

	up = calloc(1, sizeof(*up));
	if (!up)
		return -ENOMEM;
	up->base = base;
	snprintf(up->id, sizeof(up->id), "%s", id);
	up->multi = curl_multi_init();
	up->timer = evtimer_new(base, timer_cb, up);
	if (!up->multi || !up->timer) {
		upstream_free(up);
		return -ENOMEM;
	}
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, timerfunc_cb);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
	/* Keep enough idle connections for the widest lane to reuse them. */
	curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, 1024L);
	r = h1_init(up);
	if (r < 0) {
		upstream_free(up);
		return r;
	}
	*ret = up;
	return 0;
}

void upstream_free(struct upstream *up)
{
	if (!up)
		return;
	h1_free_all(up);
	while (up->n_spare > 0)
		curl_easy_cleanup(up->spare[--up->n_spare]);
	if (up->multi)
		curl_multi_cleanup(up->multi);
	if (up->timer)
		event_free(up->timer);
	free(up);
}

static int curl_start(struct upstream *up, struct up_transfer *t, const struct up_request *req,
                      const char *hop)
{
	struct curl_slist *h;
	char auth[1024], via[HOP_BUF_LEN + sizeof(HOP_HEADER) + 2];
	CURLMcode mc;

	t->easy = up->n_spare > 0 ? up->spare[--up->n_spare] : curl_easy_init();
	if (!t->easy)
		return -ENOMEM;
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (!h)
		return -ENOMEM;
	t->headers = h;
	/* No "Expect: 100-continue" round trip before large bodies. */
	h = curl_slist_append(t->headers, "Expect:");
	if (!h)
		return -ENOMEM;
	t->headers = h;
	/* The way back to a loop between llmqds is marked (hop.h). */
	snprintf(via, sizeof(via), HOP_HEADER ": %s", hop);
	h = curl_slist_append(t->headers, via);
	if (!h)
		return -ENOMEM;
	t->headers = h;
	if (req->api_key && *req->api_key) {
		if ((size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
		                     req->api_key) >= sizeof(auth))
			return -E2BIG;
		h = curl_slist_append(t->headers, auth);
		explicit_bzero(auth, sizeof(auth));
		if (!h)
			return -ENOMEM;
		t->headers = h;
	}
	curl_easy_setopt(t->easy, CURLOPT_URL, req->url);
	curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
	if (req->get) {
		curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	}
	curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	curl_easy_setopt(t->easy, CURLOPT_PREREQFUNCTION, prereq_cb);
	curl_easy_setopt(t->easy, CURLOPT_PREREQDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
	curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "llmqd/" LLMQ_VERSION);
	curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	mc = curl_multi_add_handle(up->multi, t->easy);
	return mc == CURLM_OK ? 0 : curl_errno(mc);
}

/* A byte that would end or split a header line (curl sends them as they are). */
static int header_text_bad(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

int upstream_start(struct upstream *up, const struct up_request *req, struct up_transfer **ret)
{
	struct up_transfer *t;
	struct h1_target *tg = NULL;
	const char *path = NULL;
	char hop[HOP_BUF_LEN];
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->up = up;
	t->userdata = req->userdata;
	t->done = req->done;
	t->stream = req->stream;
	t->relaying = -1;
	t->started = time_mono_ms();
	/* The way back to a loop between llmqds is marked (hop.h). */
	r = hop_append(req->via, up->id, hop, sizeof(hop));
	if (r < 0)
		goto fail;
	/* A key or a hop with a line break would add headers of its own. */
	r = header_text_bad(hop) || header_text_bad(req->api_key) ? -EINVAL : 0;
	if (r < 0)
		goto fail;
	r = up->builtin ? h1_target_for(up, req->url, &tg, &path) : 0;
	if (r < 0)
		goto fail;
	r = r ? h1_start(up, t, req, hop, tg, path) : curl_start(up, t, req, hop);
	if (r < 0)
		goto fail;
	up->in_flight++;
	*ret = t;
	return 0;
fail:
	upstream_transfer_free(t);
	return r;
}

void upstream_abort(struct upstream *up, struct up_transfer *t)
{
	if (!t)
		return;
	up->in_flight--;
	if (t->easy) {
		curl_multi_remove_handle(up->multi, t->easy);
		upstream_transfer_free(t);
	} else {
		h1_abort(t);
	}
}

int upstream_in_flight(const struct upstream *up)
{
	return up->in_flight;
}

void upstream_connects(const struct upstream *up, uint64_t *ret_builtin, uint64_t *ret_curl)
{
	*ret_builtin = up->connects[1];
	*ret_curl = up->connects[0];
}

void upstream_resume(struct upstream *up, struct up_transfer *t)
{
	t->want_pause = 0;
	if (!t->easy) {
		h1_resume(t);
		return;
	}
	if (!t->paused)
		return;
	t->paused = 0;
	/* May hand over the held chunk at once, from inside this call; the
	 * rest is driven by the timer curl arms for it. */
	curl_easy_pause(t->easy, CURLPAUSE_CONT);
}
