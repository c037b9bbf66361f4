/*
 * ipc.c - the socket server. Every connection is a bufferevent; a request is
 * one line, parsed with json-c and passed up. A connection is never freed
 * inside its own callback: it is marked dead and reaped on the next loop
 * turn. On EMFILE the listener pauses for a second instead of spinning.
 *
 * What one client can hold is bounded: connections per uid (the rest stay
 * for other users), time (a request must be complete within a deadline of
 * the previous answer, a submit's lines within one of its header, however
 * slowly they trickle), and memory (a client that does not read its answers
 * is not read from: its requests wait until its output has drained, and it
 * is dropped when the output makes no progress).
 */
#include "sock/ipc.h"
#include "protocol.h"
#include "timeutil.h"
#include "service/unixsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#define IPC_OUT_HIGH (4u << 20) /* stop reading requests past this much unsent */

struct ipc_client {
	struct ipc *ipc;
	struct bufferevent *bev;
	struct event *reap;
	struct event *deadline;
	uid_t uid;
	pid_t pid;
	int dead;
	int closing;  /* close once output drains */
	int skipping; /* discarding the rest of an oversized line */
	int stalled;  /* not reading: its output is over IPC_OUT_HIGH */
	int64_t lines_left;
	const struct ipc_line_handler *lh;
	void *lh_ud;
	void (*gone)(void *); /* an answer is owed: ipc_await() */
	void *gone_ud;
	TAILQ_ENTRY(ipc_client) link;
};

struct ipc {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *resume;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int owns_path;
	struct ipc_stats st;
	struct ipc_limits lim;
	int n_clients;
	ipc_request_fn on_request;
	void *userdata;
	TAILQ_HEAD(, ipc_client) clients;
};

static void client_free(struct ipc_client *c)
{
	if (!c)
		return;
	if (c->lh && c->lh->abort)
		c->lh->abort(c->lh_ud);
	if (c->gone)
		c->gone(c->gone_ud);
	TAILQ_REMOVE(&c->ipc->clients, c, link);
	c->ipc->n_clients--;
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->reap)
		event_free(c->reap);
	if (c->deadline)
		event_free(c->deadline);
	free(c);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	client_free(arg);
}

static void client_kill(struct ipc_client *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	evtimer_del(c->deadline);
	event_active(c->reap, 0, 0);
}

/* From accept or the last answer to a whole request; from a submit's header
 * to its last line. */
static void arm_deadline(struct ipc_client *c)
{
	struct timeval tv;

	time_to_timeval(c->ipc->lim.deadline_ms, &tv);
	evtimer_add(c->deadline, &tv);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_client *c = arg;
	char msg[160];

	if (c->lh) {
		snprintf(msg, sizeof(msg),
		         "the batch's lines did not all arrive within %llds of its header; "
		         "nothing was stored: send the whole file at once",
		         (long long)(c->ipc->lim.deadline_ms / 1000));
		ipc_reply(c, proto_error(ERR_TIMEOUT, msg));
		c->ipc->st.lines_expired++;
	} else {
		c->ipc->st.idle_expired++;
	}
	/* Whatever was half-sent is dropped with the connection. */
	ipc_close_after_reply(c);
}

void ipc_reply_raw(struct ipc_client *c, const char *data, size_t len)
{
	if (c->dead)
		return;
	if (bufferevent_write(c->bev, data, len) < 0)
		client_kill(c);
}

void ipc_reply_buffer(struct ipc_client *c, struct evbuffer *buf)
{
	if (c->dead) {
		evbuffer_drain(buf, evbuffer_get_length(buf));
		return;
	}
	if (bufferevent_write_buffer(c->bev, buf) < 0)
		client_kill(c);
}

void ipc_reply(struct ipc_client *c, json_object *reply)
{
	const char *s;
	size_t len;

	if (!reply) {
		client_kill(c);
		return;
	}
	s = json_object_to_json_string_length(reply, JSON_C_TO_STRING_PLAIN, &len);
	ipc_reply_raw(c, s, len);
	ipc_reply_raw(c, "\n", 1);
	json_object_put(reply);
}

void ipc_close_after_reply(struct ipc_client *c)
{
	c->closing = 1;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		client_kill(c);
}

uid_t ipc_client_uid(const struct ipc_client *c)
{
	return c->uid;
}

pid_t ipc_client_pid(const struct ipc_client *c)
{
	return c->pid;
}

int ipc_clients(const struct ipc *ipc)
{
	return ipc->n_clients;
}

static int count_uid(const struct ipc *ipc, uid_t uid, int receiving)
{
	const struct ipc_client *c;
	int n = 0;

	TAILQ_FOREACH(c, &ipc->clients, link)
	if (c->uid == uid && !c->dead && (!receiving || c->lh))
		n++;
	return n;
}

void ipc_stats(const struct ipc *ipc, struct ipc_stats *ret)
{
	*ret = ipc->st;
}

int ipc_receiving(const struct ipc *ipc, uid_t uid)
{
	return count_uid(ipc, uid, 1);
}

struct ipc *ipc_of(const struct ipc_client *c)
{
	return c->ipc;
}

void ipc_await(struct ipc_client *c, void (*gone)(void *), void *ud)
{
	c->gone = gone;
	c->gone_ud = ud;
	evtimer_del(c->deadline);
}

void ipc_await_end(struct ipc_client *c)
{
	c->gone = NULL;
	c->gone_ud = NULL;
	if (c->dead)
		return;
	arm_deadline(c);
	/* Requests that came meanwhile: after this answer, on a later turn. */
	bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void ipc_expect_lines(struct ipc_client *c, int64_t n, const struct ipc_line_handler *h, void *ud)
{
	c->lines_left = n;
	c->lh = h;
	c->lh_ud = ud;
	arm_deadline(c);
	if (n == 0) {
		c->lh = NULL;
		h->end(ud);
	}
}

static void handle_request(struct ipc_client *c, const char *line, size_t len)
{
	struct json_tokener *tok;
	json_object *req;

	tok = json_tokener_new();
	if (!tok) {
		ipc_reply(c, proto_error(ERR_INTERNAL, "out of memory"));
		return;
	}
	req = json_tokener_parse_ex(tok, line, (int)len);
	if (!req || json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(req);
		json_tokener_free(tok);
		ipc_reply(c, proto_error(ERR_BAD_REQUEST,
		                         "request is not valid JSON; each request is one JSON "
		                         "object on one line"));
		return;
	}
	json_tokener_free(tok);
	arm_deadline(c);
	c->ipc->on_request(c, req, c->ipc->userdata);
	json_object_put(req);
}

static void handle_input_line(struct ipc_client *c, const char *line, size_t len, int too_long)
{
	const struct ipc_line_handler *h = c->lh;

	c->lines_left--;
	if (h->line(c->lh_ud, line, len, too_long) < 0) {
		c->lh = NULL;
		client_kill(c);
		h->abort(c->lh_ud);
		return;
	}
	if (c->lines_left == 0) {
		c->lh = NULL;
		arm_deadline(c);
		h->end(c->lh_ud);
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct ipc_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr eol;
	size_t len, avail;
	char *line;

	/* While an answer is owed, requests wait in the input (EOF is still seen). */
	while (!c->dead && !c->closing && !c->gone) {
		avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		/* Answers nobody reads: read no more requests until they drain. */
		if (!c->lh && evbuffer_get_length(bufferevent_get_output(bev)) > IPC_OUT_HIGH) {
			c->stalled = 1;
			c->ipc->st.stalls++;
			bufferevent_disable(bev, EV_READ);
			break;
		}
		eol = evbuffer_search_eol(in, NULL, &len, EVBUFFER_EOL_LF);
		if (eol.pos < 0) {
			if (avail <= LLMQ_MAX_LINE)
				break;
			/* A line past the limit: never buffer it whole. */
			if (!c->lh) {
				ipc_reply(c, proto_error(ERR_LINE_TOO_LONG,
				                         "request line longer than 8 MiB; "
				                         "closing the connection"));
				ipc_close_after_reply(c);
				break;
			}
			evbuffer_drain(in, avail);
			if (!c->skipping) {
				c->skipping = 1;
				handle_input_line(c, NULL, 0, 1);
			}
			continue;
		}
		if (c->skipping) {
			evbuffer_drain(in, (size_t)eol.pos + 1);
			c->skipping = 0;
			continue;
		}
		if ((size_t)eol.pos > LLMQ_MAX_LINE) {
			evbuffer_drain(in, (size_t)eol.pos + 1);
			if (c->lh) {
				handle_input_line(c, NULL, 0, 1);
			} else {
				ipc_reply(c, proto_error(ERR_LINE_TOO_LONG,
				                         "request line longer than 8 MiB"));
			}
			continue;
		}
		line = (char *)evbuffer_pullup(in, eol.pos + 1);
		if (!line) {
			client_kill(c);
			break;
		}
		if (c->lh)
			handle_input_line(c, line, (size_t)eol.pos, 0);
		else
			handle_request(c, line, (size_t)eol.pos);
		evbuffer_drain(in, (size_t)eol.pos + 1);
	}
}

/* The output has drained completely. */
static void write_cb(struct bufferevent *bev, void *arg)
{
	struct ipc_client *c = arg;

	if (c->closing) {
		client_kill(c);
		return;
	}
	if (c->stalled) {
		c->stalled = 0;
		bufferevent_enable(bev, EV_READ);
		read_cb(bev, c); /* what waited in the input */
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	/* EOF, error or timeout: the client is gone (or silent too long). */
	client_kill(arg);
}

/* Best effort: a refused client is told why before the close. */
static void refuse(int fd, const char *msg)
{
	json_object *o = proto_error(ERR_BUSY, msg);
	const char *s = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : NULL;

	if (s && write(fd, s, strlen(s)) >= 0 && write(fd, "\n", 1) >= 0) {
		/* The client learns from the closed connection otherwise. */
	}
	json_object_put(o);
	close(fd);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct ipc *ipc = arg;
	struct ipc_client *c;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct timeval wtv;
	uid_t uid = (uid_t)-1;
	pid_t pid = -1;
	char msg[256];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
		uid = cred.uid;
		pid = cred.pid;
	}
	if (ipc->n_clients >= ipc->lim.max_clients) {
		refuse(fd, "too many clients connected to llmqd; try again shortly");
		ipc->st.refused++;
		return;
	}
	/* One user may not take the places of all the others. */
	if (count_uid(ipc, uid, 0) >= ipc->lim.max_per_uid) {
		snprintf(msg, sizeof(msg),
		         "uid %u already has %d connections to llmqd, the most one user may "
		         "hold; close some and try again",
		         (unsigned)uid, ipc->lim.max_per_uid);
		refuse(fd, msg);
		ipc->st.refused++;
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ipc = ipc;
	c->uid = uid;
	c->pid = pid;
	c->bev = bufferevent_socket_new(ipc->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->reap = event_new(ipc->base, -1, 0, reap_cb, c);
	c->deadline = evtimer_new(ipc->base, deadline_cb, c);
	TAILQ_INSERT_TAIL(&ipc->clients, c, link);
	ipc->n_clients++;
	if (!c->bev || !c->reap || !c->deadline) {
		if (!c->bev)
			close(fd);
		client_free(c);
		return;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	time_to_timeval(ipc->lim.deadline_ms, &wtv);
	bufferevent_setwatermark(c->bev, EV_READ, 0, LLMQ_MAX_LINE + 65536);
	bufferevent_set_timeouts(c->bev, NULL, &wtv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	arm_deadline(c);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ipc *ipc = arg;

	evconnlistener_enable(ipc->listener);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct ipc *ipc = arg;
	struct timeval tv = {1, 0};
	int e = EVUTIL_SOCKET_ERROR();

	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		evconnlistener_disable(l);
		evtimer_add(ipc->resume, &tv);
	}
}

int ipc_new(struct event_base *base, int fd, const char *path, gid_t group,
            const struct ipc_limits *lim, ipc_request_fn on_request, void *userdata,
            struct ipc **ret)
{
	struct ipc *ipc;
	int r;

	ipc = calloc(1, sizeof(*ipc));
	if (!ipc)
		return -ENOMEM;
	TAILQ_INIT(&ipc->clients);
	ipc->base = base;
	ipc->lim = *lim;
	if (ipc->lim.max_per_uid < 1 || ipc->lim.max_per_uid > ipc->lim.max_clients)
		ipc->lim.max_per_uid = ipc->lim.max_clients;
	if (ipc->lim.deadline_ms <= 0)
		ipc->lim.deadline_ms = 60000;
	ipc->on_request = on_request;
	ipc->userdata = userdata;
	if (fd < 0) {
		/* Only the daemon's user, or that and one group: never everyone. */
		r = unixsock_listen(path, group == (gid_t)-1 ? 0600 : 0660, group, &fd);
		if (r < 0)
			goto fail;
		snprintf(ipc->path, sizeof(ipc->path), "%s", path);
		ipc->owns_path = 1;
	}
	evutil_make_socket_nonblocking(fd);
	ipc->listener = evconnlistener_new(base, accept_cb, ipc,
	                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	ipc->resume = evtimer_new(base, resume_cb, ipc);
	if (!ipc->listener || !ipc->resume) {
		if (!ipc->listener)
			close(fd);
		r = -ENOMEM;
		goto fail;
	}
	evconnlistener_set_error_cb(ipc->listener, accept_error_cb);
	*ret = ipc;
	return 0;
fail:
	ipc_free(ipc);
	return r;
}

void ipc_free(struct ipc *ipc)
{
	struct ipc_client *c;

	if (!ipc)
		return;
	while ((c = TAILQ_FIRST(&ipc->clients)))
		client_free(c);
	if (ipc->listener)
		evconnlistener_free(ipc->listener);
	if (ipc->resume)
		event_free(ipc->resume);
	if (ipc->owns_path)
		unlink(ipc->path);
	free(ipc);
}
