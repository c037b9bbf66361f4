/*
 * httpserv-request.c - the request as a route sees it: its method, path,
 * query, headers and caller; its body asked for whole (up to the route's
 * limit) or streamed; and the reader's callbacks that make it from what
 * httpreq reads (the head identified, counted against its user's cap, and
 * routed). Answers are httpserv-answer.c's; connections are httpserv.c's.
 */
#include "http/httpserv-private.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

const char *hreq_method(const struct hreq *r)
{
	return r->head_only ? "GET" : r->head.method;
}

const char *hreq_path(const struct hreq *r)
{
	return r->path;
}

const char *hreq_query(const struct hreq *r)
{
	return r->query;
}

const char *hreq_header(const struct hreq *r, const char *name)
{
	return httpreq_header(&r->head, name);
}

int64_t hreq_uid(const struct hreq *r)
{
	return r->uid;
}

int64_t hreq_content_length(const struct hreq *r)
{
	return r->head.length;
}

int hreq_on_unix(const struct hreq *r)
{
	return r->c->is_unix;
}

int64_t hreq_peer_uid(const struct hreq *r)
{
	return r->c->is_unix ? r->c->uid : r->c->peer_uid;
}

static int hexval(int ch)
{
	return isdigit(ch) ? ch - '0' : isxdigit(ch) ? (tolower(ch) - 'a' + 10) : -1;
}

int hreq_param(const struct hreq *r, const char *name, char *buf, size_t len)
{
	const char *p = r->query, *v, *end;
	size_t n = strlen(name), o = 0;

	while (p && *p) {
		end = strchr(p, '&');
		if (!end)
			end = p + strlen(p);
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			for (v = p + n + 1; v < end && o + 1 < len; v++) {
				if (*v == '%' && end - v >= 3 && hexval((unsigned char)v[1]) >= 0 &&
				    hexval((unsigned char)v[2]) >= 0) {
					buf[o++] = (char)(hexval((unsigned char)v[1]) * 16 +
					                  hexval((unsigned char)v[2]));
					v += 2;
				} else {
					buf[o++] = *v == '+' ? ' ' : *v;
				}
			}
			buf[o] = '\0';
			return (int)o;
		}
		p = *end ? end + 1 : end;
	}
	return -ENOENT;
}

static void ask_body(struct hreq *r)
{
	if (r->head.expect_continue && r->head.minor >= 1 && !r->body_done)
		bufferevent_write(r->c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	/* A streamed body may take long; it must keep coming. */
	if (r->body_mode == 2)
		hserv_arm(r->c, r->c->s->lim.timeout_ms);
}

void hreq_read_body(struct hreq *r, size_t max, hreq_body_cb done, void *ud)
{
	r->body_mode = 1;
	r->max = max;
	r->done = done;
	r->body_ud = ud;
	r->body = evbuffer_new();
	if (!r->body) {
		hreq_reply_error(r, 503, NULL, "llmqd ran out of memory; try again");
		return;
	}
	if (r->head.length > 0 && (uint64_t)r->head.length > max) {
		char msg[160];

		snprintf(msg, sizeof(msg), "request body of %lld bytes; the limit here is %zu",
		         (long long)r->head.length, max);
		hreq_reply_error(r, 413, "request_too_large", msg);
		return;
	}
	ask_body(r);
}

void hreq_stream_body(struct hreq *r, const struct hreq_sink *sink, void *ud)
{
	r->body_mode = 2;
	r->sink = sink;
	r->body_ud = ud;
	ask_body(r);
}

static int on_head(void *ud, const struct httpreq_head *head)
{
	struct hconn *c = ud;
	struct hserv *s = c->s;
	struct hreq *r;
	char *q;
	int e;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->c = c;
	r->head = *head;
	/* RFC 9110 9.3.2: HEAD is GET without the body, for every GET route. */
	r->head_only = strcmp(head->method, "HEAD") == 0;
	r->path = strdup(head->target);
	if (!r->path) {
		free(r);
		return -ENOMEM;
	}
	q = strchr(r->path, '?');
	if (q)
		*q++ = '\0';
	r->query = q ? q : "";
	c->req = r;
	r->uid = c->is_unix ? c->uid : s->routes->identify(s->ud, r);
	if (!c->is_unix && c->uid < 0 && r->uid >= 0) {
		e = hserv_user_add(c, r->uid);
		if (e < 0) {
			char msg[200];

			c->closing = 1;
			snprintf(msg, sizeof(msg),
			         "too many connections from uid %lld (at most %d a user); close "
			         "idle ones, or reuse them",
			         (long long)r->uid, s->lim.max_per_uid);
			hreq_add_header(r, "Retry-After", "1");
			hreq_reply_error(r, 503, "too_many_connections", msg);
			return 0;
		}
		/* Known now (a token): counted as its user, with a user's deadline. */
		if (c->unidentified) {
			c->unidentified = 0;
			s->n_unidentified--;
			hserv_arm(c, s->lim.timeout_ms);
		}
	}
	s->routes->request(s->ud, r);
	if (r->answered && (head->length > 0 || head->chunked))
		return -ECANCELED; /* answered without its body: stop here, close */
	return 0;
}

static int on_body(void *ud, const char *data, size_t len)
{
	struct hconn *c = ud;
	struct hreq *r = c->req;

	if (r->answered)
		return -ECANCELED;
	if (r->body_mode == 1) {
		if (evbuffer_get_length(r->body) + len > r->max) {
			char msg[160];

			snprintf(msg, sizeof(msg), "request body over the %zu bytes allowed here",
			         r->max);
			hreq_reply_error(r, 413, "request_too_large", msg);
			return -ECANCELED;
		}
		return evbuffer_add(r->body, data, len) < 0 ? -ENOMEM : 0;
	}
	if (r->body_mode == 2) {
		hserv_arm(c, c->s->lim.timeout_ms);
		return r->sink->data(r->body_ud, r, data, len) < 0 ? -ECANCELED : 0;
	}
	return -ECANCELED;
}

static int on_end(void *ud)
{
	struct hconn *c = ud;
	struct hreq *r = c->req;

	r->body_done = 1;
	if (r->answered)
		return 0;
	evtimer_del(c->timer); /* the answer takes what it takes; the route bounds it */
	if (r->body_mode == 1)
		r->done(r->body_ud, r, r->body);
	else if (r->body_mode == 2)
		r->sink->end(r->body_ud, r);
	return 0;
}

const struct httpreq_cb hreq_reader_cb = {
    .on_head = on_head,
    .on_body = on_body,
    .on_end = on_end,
};
