/*
 * httpserv.c - see httpserv.h.
 *
 * A connection reads one request at a time: its head, then its body as the
 * route asked for it; then it waits for the answer, reading no further
 * (pipelined requests wait in its input buffer, which is bounded), and
 * starts on the next request once the answer is out. Answers given while
 * the reader is feeding (at the head, at the body's end) are finished when
 * the feed returns, so nothing is freed under the reader.
 */
#include "http/httpserv.h"
#include "http/httpreq.h"
#include "log.h"
#include "timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <json-c/json.h>

#define HSERV_MAX_LISTENERS 4
/* Pipelined bytes kept while a request is being answered; past it, reading pauses. */
#define HSERV_IN_HIGH (64 * 1024)
/* Answers queued for a connection before it reads its next request. */
#define HSERV_OUT_HIGH (1024 * 1024)

struct hconn;

struct hreq {
	struct hconn *c;
	struct httpreq_head head;
	char *path;
	const char *query;
	int64_t uid;
	/* the body */
	int body_mode; /* 0: not asked for, 1: whole, 2: streamed */
	struct evbuffer *body;
	size_t max;
	hreq_body_cb done;
	const struct hreq_sink *sink;
	void *body_ud;
	int body_done;
	/* the answer */
	void (*gone)(void *ud);
	void *gone_ud;
	void (*drain)(void *ud);
	void *drain_ud;
	struct evbuffer *hdrs;
	int started, chunked;
	int answered;
	int head_only; /* HEAD: routed as GET, answered with its headers alone */
};

struct hconn {
	struct hserv *s;
	struct hconn *prev, *next;
	struct bufferevent *bev;
	struct event *timer, *kick;
	int64_t uid;      /* counted against the per-user cap under this uid; -1 none */
	int64_t peer_uid; /* TCP: the owner of the other end (peer()); -1 not known */
	int unidentified; /* counted against max_unidentified */
	int is_unix;
	int in_feed;
	int closing;      /* close once the output is out; read no more */
	int next_request; /* the reader starts on a new request */
	struct httpreq *rd;
	struct hreq *req;
};

struct uid_count {
	int64_t uid;
	int n;
};

struct hserv {
	struct event_base *base;
	struct hserv_limits lim;
	const struct hserv_routes *routes;
	void *ud;
	struct evconnlistener *ls[HSERV_MAX_LISTENERS];
	int n_ls;
	struct event *resume;
	struct hconn *conns;
	int n_conns;
	int n_unidentified;
	struct uid_count *users;
	int n_users, cap_users;
};

static const struct httpreq_cb reader_cb;
static void conn_process(struct hconn *c);
static void conn_free(struct hconn *c);

static const char *reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 508:
		return "Loop Detected";
	default:
		return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

/* ---- per-user counts ---- */

static struct uid_count *user_find(struct hserv *s, int64_t uid)
{
	int i;

	for (i = 0; i < s->n_users; i++)
		if (s->users[i].uid == uid)
			return &s->users[i];
	return NULL;
}

/* Count c under uid: 0, or -EUSERS when uid is at its cap (not counted). */
static int user_add(struct hconn *c, int64_t uid)
{
	struct hserv *s = c->s;
	struct uid_count *u = user_find(s, uid);

	if (u && u->n >= s->lim.max_per_uid)
		return -EUSERS;
	if (!u) {
		if (s->n_users == s->cap_users) {
			int cap = s->cap_users ? s->cap_users * 2 : 16;
			struct uid_count *p = realloc(s->users, (size_t)cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			s->users = p;
			s->cap_users = cap;
		}
		u = &s->users[s->n_users++];
		u->uid = uid;
		u->n = 0;
	}
	u->n++;
	c->uid = uid;
	return 0;
}

static void user_del(struct hconn *c)
{
	struct uid_count *u = c->uid >= 0 ? user_find(c->s, c->uid) : NULL;

	if (u && --u->n == 0)
		*u = c->s->users[--c->s->n_users];
	c->uid = -1;
}

/* ---- answers ---- */

static void arm(struct hconn *c, int64_t ms)
{
	struct timeval tv;

	time_to_timeval(ms, &tv);
	evtimer_add(c->timer, &tv);
}

static void req_free(struct hreq *r)
{
	if (!r)
		return;
	if (r->body)
		evbuffer_free(r->body);
	if (r->hdrs)
		evbuffer_free(r->hdrs);
	free(r->path);
	free(r);
}

/* The answer is complete: the connection goes on to its next request. */
static void finish(struct hreq *r)
{
	struct hconn *c = r->c;

	r->answered = 1;
	if (c->in_feed)
		return; /* conn_process finishes it when the reader returns */
	if (!r->body_done)
		c->closing = 1; /* the rest of its body would be read as a request */
	c->req = NULL;
	c->next_request = 1;
	req_free(r);
	if (c->closing) {
		bufferevent_disable(c->bev, EV_READ);
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			conn_free(c);
		return;
	}
	arm(c, c->s->lim.timeout_ms);
	event_active(c->kick, EV_TIMEOUT, 0);
}

static int keep_alive(const struct hreq *r)
{
	return !r->c->closing && !r->head.close;
}

static void write_head(struct hreq *r, int status, int64_t length)
{
	struct evbuffer *out = bufferevent_get_output(r->c->bev);

	if (!keep_alive(r))
		r->c->closing = 1;
	evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\n", r->head.minor ? 1 : 0, status,
	                    reason(status));
	if (r->hdrs)
		evbuffer_add_buffer(out, r->hdrs);
	if (length >= 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", (long long)length);
	else if (r->head.minor >= 1)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	else
		r->c->closing = 1; /* HTTP/1.0: the end of the connection ends the body */
	if (r->c->closing)
		evbuffer_add_printf(out, "Connection: close\r\n");
	else if (r->head.minor == 0)
		evbuffer_add_printf(out, "Connection: keep-alive\r\n");
	evbuffer_add(out, "\r\n", 2);
}

void hreq_add_header(struct hreq *r, const char *name, const char *value)
{
	if (!r->hdrs)
		r->hdrs = evbuffer_new();
	if (r->hdrs && !strpbrk(value, "\r\n") && !strpbrk(name, "\r\n:"))
		evbuffer_add_printf(r->hdrs, "%s: %s\r\n", name, value);
}

void hreq_reply(struct hreq *r, int status, const void *body, size_t len)
{
	write_head(r, status, (int64_t)len);
	if (len && !r->head_only)
		bufferevent_write(r->c->bev, body, len);
	finish(r);
}

void hreq_reply_buf(struct hreq *r, int status, struct evbuffer *body)
{
	write_head(r, status, (int64_t)evbuffer_get_length(body));
	if (r->head_only)
		evbuffer_drain(body, evbuffer_get_length(body));
	else
		bufferevent_write_buffer(r->c->bev, body);
	finish(r);
}

void hreq_start(struct hreq *r, int status)
{
	r->started = 1;
	r->chunked = r->head.minor >= 1;
	write_head(r, status, -1);
}

size_t hreq_chunk(struct hreq *r, const void *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(r->c->bev);

	if (len && !r->head_only) {
		if (r->chunked)
			evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add(out, data, len);
		if (r->chunked)
			evbuffer_add(out, "\r\n", 2);
	}
	return evbuffer_get_length(out);
}

void hreq_end(struct hreq *r)
{
	if (r->chunked && !r->head_only)
		bufferevent_write(r->c->bev, "0\r\n\r\n", 5);
	finish(r);
}

void hreq_abort(struct hreq *r)
{
	struct linger lg = {1, 0};

	r->c->closing = 1;
	if (!r->chunked) /* the close alone would end the body as if whole: reset */
		setsockopt(bufferevent_getfd(r->c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	finish(r);
}

void hreq_on_gone(struct hreq *r, void (*gone)(void *ud), void *ud)
{
	r->gone = gone;
	r->gone_ud = ud;
}

void hreq_on_drain(struct hreq *r, void (*drain)(void *ud), void *ud)
{
	r->drain = drain;
	r->drain_ud = ud;
}

/* An answer of the server's own, in OpenAI's error shape. */
static void reply_error(struct hreq *r, int status, const char *code, const char *msg)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	const char *s = NULL;
	size_t len = 0;

	if (o && e) {
		json_object_object_add(e, "message", json_object_new_string(msg));
		json_object_object_add(e, "type",
		                       json_object_new_string(status >= 500
		                                                  ? "server_error"
		                                                  : "invalid_request_error"));
		json_object_object_add(e, "param", NULL);
		json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
		json_object_object_add(o, "error", e);
		e = NULL;
		s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	}
	hreq_add_header(r, "Content-Type", "application/json");
	hreq_reply(r, status, s ? s : "", s ? len : 0);
	json_object_put(o);
	json_object_put(e);
}

/* ---- requests ---- */

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
		arm(r->c, r->c->s->lim.timeout_ms);
}

void hreq_read_body(struct hreq *r, size_t max, hreq_body_cb done, void *ud)
{
	r->body_mode = 1;
	r->max = max;
	r->done = done;
	r->body_ud = ud;
	r->body = evbuffer_new();
	if (!r->body) {
		reply_error(r, 503, NULL, "llmqd ran out of memory; try again");
		return;
	}
	if (r->head.length > 0 && (uint64_t)r->head.length > max) {
		char msg[160];

		snprintf(msg, sizeof(msg), "request body of %lld bytes; the limit here is %zu",
		         (long long)r->head.length, max);
		reply_error(r, 413, "request_too_large", msg);
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
		e = user_add(c, r->uid);
		if (e < 0) {
			char msg[200];

			c->closing = 1;
			snprintf(msg, sizeof(msg),
			         "too many connections from uid %lld (at most %d a user); close "
			         "idle ones, or reuse them",
			         (long long)r->uid, s->lim.max_per_uid);
			hreq_add_header(r, "Retry-After", "1");
			reply_error(r, 503, "too_many_connections", msg);
			return 0;
		}
		/* Known now (a token): counted as its user, with a user's deadline. */
		if (c->unidentified) {
			c->unidentified = 0;
			s->n_unidentified--;
			arm(c, s->lim.timeout_ms);
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
			reply_error(r, 413, "request_too_large", msg);
			return -ECANCELED;
		}
		return evbuffer_add(r->body, data, len) < 0 ? -ENOMEM : 0;
	}
	if (r->body_mode == 2) {
		arm(c, c->s->lim.timeout_ms);
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

static const struct httpreq_cb reader_cb = {
    .on_head = on_head,
    .on_body = on_body,
    .on_end = on_end,
};

/*
 * The request the server itself answers on c, closing it: the one being
 * read, or one made for the answer when no head arrived. NULL (c freed)
 * when out of memory.
 */
static struct hreq *server_request(struct hconn *c)
{
	struct hreq *r = c->req;

	c->closing = 1;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r) {
			conn_free(c);
			return NULL;
		}
		r->c = c;
		r->head.minor = 1;
		r->head.method = "";
		c->req = r;
	}
	r->gone = NULL;
	return r;
}

/* A request that could not be read: answer with what was wrong, and close. */
static void reader_failed(struct hconn *c, long e)
{
	char msg[200];
	struct hreq *r;

	c->closing = 1;
	if (c->req && c->req->answered)
		return;
	r = server_request(c);
	if (!r)
		return;
	if (c->rd->status) {
		snprintf(msg, sizeof(msg), "malformed HTTP request: %s", c->rd->err);
		reply_error(r, c->rd->status, "malformed_request", msg);
	} else {
		snprintf(msg, sizeof(msg), "llmqd cannot take this request: %s",
		         strerror(e == -ECANCELED ? EIO : (int)-e));
		reply_error(r, 503, NULL, msg);
	}
}

static void conn_process(struct hconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v;
	long n;

	while (!c->closing) {
		if (c->req && c->req->body_done) {
			/* Being answered: keep what follows, within bounds, and notice a hang-up.
			 */
			if (evbuffer_get_length(in) > HSERV_IN_HIGH)
				bufferevent_disable(c->bev, EV_READ);
			return;
		}
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > HSERV_OUT_HIGH) {
			bufferevent_disable(c->bev, EV_READ); /* resumed once the answers drain */
			return;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		c->in_feed = 1;
		if (!c->rd) {
			/* At the first byte: an idle connection costs no reader. */
			c->rd = malloc(sizeof(*c->rd));
			if (!c->rd) {
				c->in_feed = 0;
				conn_free(c);
				return;
			}
			httpreq_init(c->rd, &reader_cb, c);
		}
		n = httpreq_feed(c->rd, v.iov_base, v.iov_len);
		if (n > 0)
			evbuffer_drain(in, (size_t)n);
		if (n < 0)
			reader_failed(c, n);
		c->in_feed = 0;
		if (c->req && c->req->answered) {
			/* Answered while feeding: finish() was deferred until now. */
			finish(c->req);
			return; /* the kick event (or the close) goes on */
		}
		if (n < 0) {
			conn_free(c); /* nothing could be answered */
			return;
		}
	}
}

/* ---- connections ---- */

static void conn_free(struct hconn *c)
{
	struct hserv *s = c->s;
	struct hreq *r = c->req;

	if (r) {
		c->req = NULL;
		if (!r->answered && r->gone)
			r->gone(r->gone_ud);
		req_free(r);
	}
	user_del(c);
	if (c->unidentified)
		s->n_unidentified--;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->timer)
		event_free(c->timer);
	if (c->kick)
		event_free(c->kick);
	free(c->rd);
	free(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	conn_process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct hconn *c = arg;
	struct evbuffer *out = bufferevent_get_output(bev);

	if (c->closing && !c->req) {
		if (evbuffer_get_length(out) == 0)
			conn_free(c);
		return;
	}
	if (c->req && c->req->started && c->req->drain)
		c->req->drain(c->req->drain_ud);
	else if (!c->req)
		event_active(c->kick, EV_TIMEOUT, 0); /* reading paused for the answers */
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct hconn *c = arg;
	struct hreq *r = c->req;

	if (what & BEV_EVENT_TIMEOUT)
		log_debug("HTTP: an answer did not move for the timeout; dropping the client");
	/*
	 * The caller shut its side down after a whole request (shutdown(SHUT_WR),
	 * as RFC 9112 9.6 allows): it still waits for the answer, which goes out
	 * before the connection closes. A caller that closed outright is seen
	 * when the answer is written. Once an answer streams, the end of the
	 * caller's side is its leaving.
	 */
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && r && r->body_done &&
	    !r->answered && !r->started) {
		c->closing = 1;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	conn_free(c);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *c = arg;

	if (c->req)
		return;
	if (c->next_request)
		if (c->rd)
			httpreq_init(c->rd, &reader_cb, c);
	c->next_request = 0;
	bufferevent_enable(c->bev, EV_READ);
	conn_process(c);
}

/* The deadline of a request (or of an idle keep-alive connection) passed. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *c = arg;
	struct hreq *r = c->req;

	if (!r && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
	    (!c->rd || c->rd->hlen == 0)) {
		conn_free(c); /* an idle connection: closed quietly */
		return;
	}
	if (r && (r->answered || r->body_done))
		return;
	r = server_request(c);
	if (!r)
		return;
	if (r->body_mode == 2 && r->sink)
		r->sink->data(r->body_ud, r, NULL, 0); /* tells the sink it was cut */
	if (!r->answered)
		reply_error(r, 408, "request_timeout",
		            "the request did not arrive in time; nothing was kept");
}

static void refuse(struct hconn *c, const char *code, const char *msg)
{
	struct hreq *r = server_request(c);

	if (!r)
		return;
	r->body_done = 1;
	hreq_add_header(r, "Retry-After", "1");
	reply_error(r, 503, code, msg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct hserv *s = arg;
	struct hconn *c;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct timeval wt;
	char msg[200];

	c = calloc(1, sizeof(*c));
	if (c) {
		c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
		c->timer = evtimer_new(s->base, timer_cb, c);
		c->kick = event_new(s->base, -1, 0, kick_cb, c);
	}
	if (!c || !c->bev || !c->timer || !c->kick) {
		if (c) {
			if (c->bev)
				bufferevent_free(c->bev);
			else
				close(fd);
			if (c->timer)
				event_free(c->timer);
			if (c->kick)
				event_free(c->kick);
			free(c);
		} else {
			close(fd);
		}
		return;
	}
	c->s = s;
	c->uid = -1;
	c->peer_uid = -1;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	time_to_timeval(s->lim.timeout_ms, &wt);
	bufferevent_set_timeouts(c->bev, NULL, &wt);
	bufferevent_setwatermark(c->bev, EV_WRITE, HSERV_OUT_LOW, 0);
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	arm(c, s->lim.timeout_ms);
	if (s->n_conns > s->lim.max_conns) {
		snprintf(msg, sizeof(msg), "llmqd holds %d HTTP connections, its limit; try again",
		         s->lim.max_conns);
		refuse(c, "too_many_connections", msg);
		return;
	}
	if (sa->sa_family == AF_UNIX) {
		c->is_unix = 1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			c->peer_uid = (int64_t)cred.uid;
	} else if (s->routes->peer) {
		c->peer_uid = s->routes->peer(s->ud, fd);
	}
	if (c->peer_uid >= 0) {
		if (user_add(c, c->peer_uid) < 0) {
			snprintf(
			    msg, sizeof(msg),
			    "too many connections from uid %lld (at most %d a user); close idle "
			    "ones, or reuse them",
			    (long long)c->peer_uid, s->lim.max_per_uid);
			refuse(c, "too_many_connections", msg);
		}
		return;
	}
	/* Not known at accept: a cap of its own, and a short deadline for its head. */
	if (s->n_unidentified >= s->lim.max_unidentified) {
		snprintf(msg, sizeof(msg),
		         "llmqd holds %d connections from callers it cannot identify, their limit; "
		         "connect over loopback or the Unix socket, or try again",
		         s->lim.max_unidentified);
		refuse(c, "too_many_connections", msg);
		return;
	}
	c->unidentified = 1;
	s->n_unidentified++;
	arm(c, s->lim.unidentified_timeout_ms);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hserv *s = arg;
	int i;

	for (i = 0; i < s->n_ls; i++)
		evconnlistener_enable(s->ls[i]);
}

/* Out of descriptors: pause accepting for a second instead of spinning. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct hserv *s = arg;
	struct timeval tv = {1, 0};
	int e = EVUTIL_SOCKET_ERROR(), i;

	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM)
		return;
	if (!evtimer_pending(s->resume, NULL))
		log_warn("HTTP: cannot accept a connection: %s; pausing new connections for 1s",
		         strerror(e));
	for (i = 0; i < s->n_ls; i++)
		evconnlistener_disable(s->ls[i]);
	evtimer_add(s->resume, &tv);
}

int hserv_listen(struct hserv *s, int fd)
{
	struct evconnlistener *l;

	if (s->n_ls == HSERV_MAX_LISTENERS || evutil_make_socket_nonblocking(fd) < 0) {
		close(fd);
		return -EINVAL;
	}
	l = evconnlistener_new(s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	                       0, fd);
	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(l, accept_error_cb);
	s->ls[s->n_ls++] = l;
	return 0;
}

int hserv_connections(const struct hserv *s)
{
	return s->n_conns;
}

int hserv_new(struct event_base *base, const struct hserv_limits *lim,
              const struct hserv_routes *routes, void *ud, struct hserv **ret)
{
	struct hserv *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->base = base;
	s->lim = *lim;
	s->routes = routes;
	s->ud = ud;
	s->resume = evtimer_new(base, resume_cb, s);
	if (!s->resume) {
		free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

void hserv_free(struct hserv *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; i < s->n_ls; i++)
		evconnlistener_free(s->ls[i]);
	while (s->conns)
		conn_free(s->conns);
	event_free(s->resume);
	free(s->users);
	free(s);
}
