/*
 * httpserv.c - see httpserv.h: the listeners, the connections, their bounds
 * (in all, per user, unidentified) and deadlines, and the loop that feeds a
 * connection's bytes to its reader (httpserv-request.c; answers:
 * httpserv-answer.c).
 *
 * A connection reads one request at a time: its head, then its body as the
 * route asked for it; then it waits for the answer, reading no further
 * (pipelined requests wait in its input buffer, which is bounded), and
 * starts on the next request once the answer is out. Answers given while
 * the reader is feeding (at the head, at the body's end) are finished when
 * the feed returns, so nothing is freed under the reader.
 */
#include "http/httpserv-private.h"
#include "log.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

static void conn_process(struct hconn *c);

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
int hserv_user_add(struct hconn *c, int64_t uid)
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

/* ---- deadlines ---- */

void hserv_arm(struct hconn *c, int64_t ms)
{
	struct timeval tv;

	time_to_timeval(ms, &tv);
	evtimer_add(c->timer, &tv);
}

/* ---- reading ---- */

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
			hserv_conn_free(c);
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
		hreq_reply_error(r, c->rd->status, "malformed_request", msg);
	} else {
		snprintf(msg, sizeof(msg), "llmqd cannot take this request: %s",
		         strerror(e == -ECANCELED ? EIO : (int)-e));
		hreq_reply_error(r, 503, NULL, msg);
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
				hserv_conn_free(c);
				return;
			}
			httpreq_init(c->rd, &hreq_reader_cb, c);
		}
		n = httpreq_feed(c->rd, v.iov_base, v.iov_len);
		if (n > 0)
			evbuffer_drain(in, (size_t)n);
		if (n < 0)
			reader_failed(c, n);
		c->in_feed = 0;
		if (c->req && c->req->answered) {
			/* Answered while feeding: hreq_finish() was deferred until now. */
			hreq_finish(c->req);
			return; /* the kick event (or the close) goes on */
		}
		if (n < 0) {
			hserv_conn_free(c); /* nothing could be answered */
			return;
		}
	}
}

/* ---- connections ---- */

void hserv_conn_free(struct hconn *c)
{
	struct hserv *s = c->s;
	struct hreq *r = c->req;

	if (r) {
		c->req = NULL;
		if (!r->answered && r->gone)
			r->gone(r->gone_ud);
		hreq_free(r);
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
			hserv_conn_free(c);
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
	hserv_conn_free(c);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *c = arg;

	if (c->req)
		return;
	if (c->next_request)
		if (c->rd)
			httpreq_init(c->rd, &hreq_reader_cb, c);
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
		hserv_conn_free(c); /* an idle connection: closed quietly */
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
		hreq_reply_error(r, 408, "request_timeout",
		                 "the request did not arrive in time; nothing was kept");
}

static void refuse(struct hconn *c, const char *code, const char *msg)
{
	struct hreq *r = server_request(c);

	if (!r)
		return;
	r->body_done = 1;
	hreq_add_header(r, "Retry-After", "1");
	hreq_reply_error(r, 503, code, msg);
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
	hserv_arm(c, s->lim.timeout_ms);
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
		if (hserv_user_add(c, c->peer_uid) < 0) {
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
	hserv_arm(c, s->lim.unidentified_timeout_ms);
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
	s->scratch = evbuffer_new();
	if (!s->resume || !s->scratch) {
		if (s->resume)
			event_free(s->resume);
		if (s->scratch)
			evbuffer_free(s->scratch);
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
		hserv_conn_free(s->conns);
	event_free(s->resume);
	evbuffer_free(s->scratch);
	free(s->users);
	free(s);
}
