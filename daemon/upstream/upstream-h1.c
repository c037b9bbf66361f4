/*
 * upstream-h1.c - llmqd's own HTTP/1.1 client, for the upstreams a host's
 * calls mostly go to when they are near: plain http to an address (a model
 * server on the host or the LAN, another llmqd): a transfer's request,
 * sent on an idle connection of its address at once, from upstream_start(),
 * or on a new one once connected; its answer, read by h1resp.c; its clock;
 * one resend when a reused connection dies unanswered. The addresses and
 * their idle connections, each watched while idle so that one the server
 * closed is never picked, are upstream-h1-conn.c's. https, names to
 * resolve and proxies stay with curl (upstream.c): this file knows no TLS,
 * no DNS and no proxy.
 *
 * Ownership: a transfer holds its connection (t->conn, c->t) from its start
 * to its end; then the connection goes back to its address's idle list or
 * is closed. A closed connection is freed at the next loop turn, never in
 * its own callback. done() is never called from upstream_start().
 */
#include "upstream/upstream-private.h"
#include "timeutil.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define H1_CONNECT_MS 300000 /* a connect's limit when the lane sets none */
#define H1_READ (16u << 10)  /* room for a read, at the least */
#define H1_KEY_MAX 1000      /* an API key's length, as curl's path allows */

static int attach(struct up_transfer *t, int fresh);
static void on_read(evutil_socket_t fd, short what, void *arg);

/* What curl sends, in its order, with the Expect header left out. */
static int build_head(struct up_transfer *t, const struct up_request *req, const char *hop,
                      const struct h1_target *tg, const char *path)
{
	const char *key = req->api_key && *req->api_key ? req->api_key : NULL;
	size_t cap, len;
	int n;

	if (key && strlen(key) > H1_KEY_MAX)
		return -E2BIG;
	cap = strlen(path) + strlen(hop) + (key ? strlen(key) : 0) + sizeof(tg->authority) + 256;
	t->head = malloc(cap);
	if (!t->head)
		return -ENOMEM;
	n = snprintf(t->head, cap,
	             "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: llmqd/" LLMQ_VERSION
	             "\r\nAccept: */*\r\nContent-Type: application/json\r\n" HOP_HEADER
	             ": %s\r\n%s%s%s",
	             req->get ? "GET" : "POST", path, tg->authority, hop,
	             key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return -E2BIG;
	len = (size_t)n;
	n = req->get
	        ? snprintf(t->head + len, cap - len, "\r\n")
	        : snprintf(t->head + len, cap - len, "Content-Length: %zu\r\n\r\n", req->body_len);
	if (n < 0 || (size_t)n >= cap - len)
		return -E2BIG;
	t->head_len = len + (size_t)n;
	return 0;
}

/* The transfer ends: its connection closed, done() told. */
__attribute__((format(printf, 3, 4))) static void fail(struct up_transfer *t, int code,
                                                       const char *fmt, ...)
{
	va_list ap;

	if (t->conn)
		h1_conn_close(t->conn);
	t->conn = NULL;
	va_start(ap, fmt);
	vsnprintf(t->errbuf, sizeof(t->errbuf), fmt, ap);
	va_end(ap);
	upstream_finish(t, code, t->errbuf);
}

static void arm_clock(struct up_transfer *t)
{
	int64_t now = time_mono_ms(), left = INT64_MAX, l;
	struct timeval tv;

	if (t->conn && t->conn->connecting)
		left = t->conn->opened + t->connect_ms - now; /* a resend's connect too */
	if (t->timeout_ms > 0) {
		l = t->started + t->timeout_ms - now;
		left = l < left ? l : left;
	}
	if (left == INT64_MAX) {
		evtimer_del(t->clock);
		return;
	}
	time_to_timeval(left > 0 ? left : 0, &tv);
	evtimer_add(t->clock, &tv);
}

static void clock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct up_transfer *t = arg;
	int64_t now = time_mono_ms(), took = now - t->started;

	if (t->conn && t->conn->connecting && now - t->conn->opened >= t->connect_ms)
		fail(t, CURLE_OPERATION_TIMEDOUT, "Connection timed out after %lld milliseconds",
		     (long long)(now - t->conn->opened));
	else if (t->timeout_ms > 0 && took >= t->timeout_ms)
		fail(t, CURLE_OPERATION_TIMEDOUT,
		     "Operation timed out after %lld milliseconds with %zu bytes received",
		     (long long)took, t->got);
	else
		arm_clock(t);
}

/* As much of the request as the socket takes: 0 all of it, 1 the rest
 * waits for the socket, or -errno. */
static int send_some(struct h1_conn *c)
{
	struct up_transfer *t = c->t;
	struct iovec iov[2];
	struct msghdr msg;
	ssize_t w;
	size_t n;

	while (t->sent < t->head_len + t->out_len) {
		n = 0;
		if (t->sent < t->head_len) {
			iov[n].iov_base = t->head + t->sent;
			iov[n++].iov_len = t->head_len - t->sent;
			if (t->out_len) {
				iov[n].iov_base = (void *)t->out;
				iov[n++].iov_len = t->out_len;
			}
		} else {
			iov[n].iov_base = (void *)(t->out + (t->sent - t->head_len));
			iov[n++].iov_len = t->out_len - (t->sent - t->head_len);
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = n;
		w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return event_add(c->wr, NULL) < 0 ? -ENOMEM : 1;
		if (w < 0)
			return -errno;
		if (t->sent == 0)
			t->sends++; /* the request went out (again) */
		t->sent += (size_t)w;
	}
	return 0;
}

/*
 * Nothing came back on a connection that had carried answers before: the
 * server closed it as the request went out. Sent again once on a new
 * connection, as curl does; a new connection's failure is the answer.
 */
static int resend(struct up_transfer *t)
{
	struct h1_conn *c = t->conn;

	if (!c || c->uses == 0 || t->got > 0)
		return -1;
	h1_conn_close(c);
	t->conn = NULL;
	return attach(t, 1);
}

static void on_send_error(struct up_transfer *t, int err)
{
	if (resend(t) == 0)
		return;
	fail(t, CURLE_SEND_ERROR, "Send failure: %s", strerror(err));
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	struct h1_conn *c = arg;
	struct up_transfer *t = c->t;
	socklen_t len = sizeof(int);
	int err, r;

	if (!t)
		return;
	if (c->connecting) {
		err = c->connect_err;
		if (!err && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			fail(t, CURLE_COULDNT_CONNECT,
			     "Failed to connect to %s port %d after %lld ms: %s", c->tg->name,
			     c->tg->port, (long long)(time_mono_ms() - t->started), strerror(err));
			return;
		}
		c->connecting = 0;
		if (event_add(c->rd, NULL) < 0) {
			fail(t, CURLE_OUT_OF_MEMORY, "could not watch the upstream's connection");
			return;
		}
		arm_clock(t);
	}
	r = send_some(c);
	if (r < 0)
		on_send_error(t, -r);
}

static int conn_open(struct upstream *up, struct h1_target *tg, struct h1_conn **ret)
{
	struct h1_conn *c;
	int one = 1, idle = 60;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->up = up;
	c->tg = tg;
	c->fd = socket(tg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		free(c);
		return -errno;
	}
	c->rd = event_new(up->base, c->fd, EV_READ | EV_PERSIST, on_read, c);
	c->wr = event_new(up->base, c->fd, EV_WRITE, on_write, c);
	if (!c->rd || !c->wr) {
		h1_conn_close(c);
		return -ENOMEM;
	}
	/* As curl sets them: no Nagle delay on a request's last bytes, and a
	 * probe after a minute's silence on a long answer. A socket that
	 * refuses these still works. */
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
	c->connecting = 1;
	c->opened = time_mono_ms();
	up->connects[1]++;
	if (connect(c->fd, (struct sockaddr *)&tg->addr, tg->addr_len) < 0 && errno != EINPROGRESS)
		c->connect_err = errno; /* told from on_write, never from upstream_start() */
	/* Even a connect done at once goes through on_write: a new connection's
	 * first send never fails inside upstream_start(). */
	if (c->connect_err)
		event_active(c->wr, EV_WRITE, 1);
	else if (event_add(c->wr, NULL) < 0) {
		h1_conn_close(c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

/* t and c, each the other's, for a send from its first byte. */
static void pair(struct up_transfer *t, struct h1_conn *c)
{
	c->t = t;
	t->conn = c;
	t->sent = 0;
	t->got = 0;
	h1resp_init(&c->rp);
}

/* t onto an idle connection of its address (sent at once) or a new one. */
static int attach(struct up_transfer *t, int fresh)
{
	struct h1_conn *c = fresh ? NULL : h1_idle_take(t->target);
	int r;

	while (c) {
		pair(t, c);
		r = send_some(c);
		if (r >= 0 && event_add(c->rd, NULL) == 0)
			return 0;
		/* It died while idle: the next one, or a new one. */
		h1_conn_close(c);
		t->conn = NULL;
		c = h1_idle_take(t->target);
	}
	r = conn_open(t->up, t->target, &c);
	if (r < 0)
		return r;
	pair(t, c);
	arm_clock(t);
	return 0;
}

static void on_header(void *ud, const char *line, size_t n)
{
	struct h1_conn *c = ud;

	c->t->status = c->rp.status;
	upstream_header_line(&c->t->hdr, line, n);
}

static int on_body(void *ud, const char *data, size_t n)
{
	struct h1_conn *c = ud;
	struct up_transfer *t = c->t;
	int r;

	if (t->aborted)
		return -1; /* aborted from a callback: nothing more is told */
	if (t->stream && t->relaying < 0)
		t->relaying = t->stream->head(t->userdata, t->status, &t->hdr) == 1;
	if (t->aborted)
		return -1;
	if (t->relaying != 1)
		return upstream_keep(t, data, n) < 0 ? -1 : 0;
	r = t->stream->data(t->userdata, data, n);
	if (r < 0)
		return -1;
	if (r == UP_PAUSE) {
		c->paused = 1;
		return 1;
	}
	return 0;
}

static const struct h1resp_cb answer_cb = {
    .header = on_header,
    .body = on_body,
};

static void complete(struct h1_conn *c)
{
	struct up_transfer *t = c->t;
	int reuse = c->rp.keep_alive && c->in_len == 0 && t->sent == t->head_len + t->out_len;

	c->t = NULL;
	t->conn = NULL;
	c->uses++;
	c->paused = 0; /* a pause asked with the last bytes: nothing is left to hold */
	if (reuse)
		h1_idle_put(c);
	else
		h1_conn_close(c);
	upstream_finish(t, 0, NULL);
}

/* What was read, and what the socket said after it (eof, err). */
static void consume(struct h1_conn *c, int eof, int err)
{
	struct up_transfer *t = c->t;
	ssize_t k;

	t->in_cb = 1;
	k = h1resp_feed(&c->rp, c->in, c->in_len, &answer_cb, c);
	t->in_cb = 0;
	if (t->aborted) {
		h1_conn_close(c);
		upstream_transfer_free(t);
		return;
	}
	if (k < 0) {
		if (t->too_big || t->relaying == 1)
			fail(t, CURLE_WRITE_ERROR, "the answer could not be taken");
		else
			fail(t, CURLE_WEIRD_SERVER_REPLY, "%s", c->rp.error);
		return;
	}
	memmove(c->in, c->in + k, c->in_len - (size_t)k);
	c->in_len -= (size_t)k;
	if (c->rp.state == H1_DONE) {
		complete(c);
		return;
	}
	if (c->paused) {
		event_del(c->rd);
		return;
	}
	if (eof && h1resp_eof(&c->rp) == 0) {
		complete(c);
		return;
	}
	if ((eof || err) && resend(t) == 0)
		return;
	if (eof && t->got == 0)
		fail(t, CURLE_GOT_NOTHING, "Empty reply from server");
	else if (eof)
		fail(t, CURLE_PARTIAL_FILE, "%s", c->rp.error);
	else if (err)
		fail(t, CURLE_RECV_ERROR, "Recv failure: %s", strerror(err));
}

/* An idle connection is readable: the server closed it (or talks out of
 * turn). Either way it carries no more requests. */
static void idle_event(struct h1_conn *c)
{
	char b;

	if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	h1_idle_drop(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct h1_conn *c = arg;
	ssize_t n;
	size_t cap;
	char *p;

	if (!c->t) {
		idle_event(c);
		return;
	}
	if (c->paused)
		return;
	if (c->in_cap - c->in_len < H1_READ / 4) {
		cap = c->in_cap ? c->in_cap * 2 : H1_READ;
		p = realloc(c->in, cap);
		if (!p) {
			fail(c->t, CURLE_OUT_OF_MEMORY, "no memory for the upstream's answer");
			return;
		}
		c->in = p;
		c->in_cap = cap;
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		if (c->in_len > 0)
			consume(c, 0, 0); /* what a pause held */
		return;
	}
	if (n > 0) {
		c->in_len += (size_t)n;
		c->t->got += (size_t)n;
	}
	consume(c, n == 0, n < 0 ? errno : 0);
}

int h1_start(struct upstream *up, struct up_transfer *t, const struct up_request *req,
             const char *hop, struct h1_target *tg, const char *path)
{
	int r;

	r = build_head(t, req, hop, tg, path);
	if (r < 0)
		return r;
	t->target = tg;
	t->out = req->get ? NULL : req->body;
	t->out_len = req->get ? 0 : req->body_len;
	t->connect_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms : H1_CONNECT_MS;
	t->timeout_ms = req->timeout_ms;
	t->clock = evtimer_new(up->base, clock_cb, t);
	if (!t->clock)
		return -ENOMEM;
	r = attach(t, 0);
	if (r < 0)
		return r;
	arm_clock(t);
	return 0;
}

void h1_abort(struct up_transfer *t)
{
	if (t->in_cb) {
		t->aborted = 1; /* freed by consume() once the callback returns */
		return;
	}
	if (t->conn)
		h1_conn_close(t->conn);
	t->conn = NULL;
	upstream_transfer_free(t);
}

void h1_resume(struct up_transfer *t)
{
	struct h1_conn *c = t->conn;

	if (!c || !c->paused)
		return;
	c->paused = 0;
	if (event_add(c->rd, NULL) < 0) {
		fail(t, CURLE_OUT_OF_MEMORY, "could not watch the upstream's connection");
		return;
	}
	/* What the pause held is read at the next loop turn, not from here. */
	event_active(c->rd, EV_READ, 1);
}
