/*
 * The upstream transfers (daemon/upstream/upstream*.c) against scripted
 * upstreams on real sockets: each test's server is a thread that speaks
 * the bytes it is given, and each behaviour is asked of both clients,
 * llmqd's own HTTP/1.1 client and curl, which must agree. Also the answer
 * reader (h1resp.c) on its own.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream/h1resp.h"
#include "upstream/upstream.h"
#include "timeutil.h"

/* ---- the answer reader alone ---- */

struct seen {
	char head[4096];
	char body[4096];
	size_t hlen, blen;
	int pause_every; /* body() asks to stop after each piece */
};

static void seen_header(void *ud, const char *l, size_t n)
{
	struct seen *s = ud;

	cr_assert_lt(s->hlen + n + 1, sizeof(s->head));
	memcpy(s->head + s->hlen, l, n);
	s->hlen += n;
	s->head[s->hlen++] = '|';
}

static int seen_body(void *ud, const char *d, size_t n)
{
	struct seen *s = ud;

	cr_assert_lt(s->blen + n, sizeof(s->body));
	memcpy(s->body + s->blen, d, n);
	s->blen += n;
	return s->pause_every;
}

static const struct h1resp_cb seen_cb = {.header = seen_header, .body = seen_body};

/* All of text, a byte at a time when bytewise, as the client feeds it. */
static enum h1_state read_all(const char *text, int bytewise, struct h1resp *p, struct seen *s)
{
	size_t n = strlen(text), len = 0, at = 0;
	char in[8192];
	ssize_t k;

	h1resp_init(p);
	while (p->state != H1_DONE && p->state != H1_ERROR) {
		if (at < n) {
			size_t piece = bytewise ? 1 : n - at;

			memcpy(in + len, text + at, piece);
			len += piece;
			at += piece;
		}
		k = h1resp_feed(p, in, len, &seen_cb, s);
		if (k < 0)
			break;
		memmove(in, in + k, len - (size_t)k);
		len -= (size_t)k;
		if (at == n && k == 0) {
			h1resp_eof(p);
			break;
		}
	}
	return p->state;
}

struct read_case {
	const char *text;
	enum h1_state end;
	int status, keep_alive;
	const char *body;
	const char *error; /* a word of the error */
};

static const struct read_case read_cases[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: a\r\n\r\nhello", H1_DONE, 200, 1,
     "hello", NULL},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n"
     "t: 1\r\n\r\n",
     H1_DONE, 200, 1, "hello world", NULL},
    {"HTTP/1.1 100 Continue\r\nA: b\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
     H1_DONE, 201, 1, "", NULL},
    {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", H1_DONE, 204, 1, "", NULL},
    {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", H1_DONE, 200, 0, "ok", NULL},
    {"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 2\r\n\r\nok", H1_DONE,
     200, 0, "ok", NULL},
    {"HTTP/1.1 200 OK\r\n\r\nto the end", H1_DONE, 200, 0, "to the end", NULL},
    {"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", H1_DONE, 200, 1, "ok", NULL},
    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
     "\r\n",
     H1_DONE, 200, 0, "ok", NULL},
    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", H1_ERROR, 200, 1, "",
     "one way"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", H1_DONE, 200, 1, "ok", NULL},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", H1_ERROR, 200, 1, "",
     "one way"},
    {"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", H1_ERROR, 200, 1, "", "one way"},
    {"HTTP/1.1 200 OK\r\nBad Name: b\r\n\r\n", H1_ERROR, 200, 1, "", "one way"},
    {"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", H1_ERROR, 200, 1, "", "CR or NUL"},
    {"HTTP/2 200\r\n\r\n", H1_ERROR, 0, 0, "", "status line"},
    {"HTTP/1.1 101 Switching Protocols\r\n\r\n", H1_ERROR, 0, 0, "", "switched"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", H1_ERROR, 200, 1, "",
     "chunk size"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokk\r\n", H1_ERROR, 200, 1, "ok",
     "longer"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", H1_ERROR, 200, 1,
     "", "chunk size"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", H1_ERROR, 200, 1, "hel", "middle"},
    {"", H1_ERROR, 0, 0, "", "without an answer"},
};

Test(h1resp, reads_each_answer_the_same_whole_or_byte_by_byte)
{
	size_t i;
	int bytewise, pause;

	for (i = 0; i < sizeof(read_cases) / sizeof(read_cases[0]); i++) {
		const struct read_case *c = &read_cases[i];

		for (bytewise = 0; bytewise < 2; bytewise++) {
			for (pause = 0; pause < 2; pause++) {
				struct seen s = {.pause_every = pause};
				struct h1resp p;

				cr_assert_eq(read_all(c->text, bytewise, &p, &s), c->end,
				             "case %zu (%s): ended %d, not %d (%s)", i, c->text,
				             p.state, c->end, p.error ? p.error : "");
				cr_assert_eq(s.blen, strlen(c->body), "case %zu: %zu body bytes", i,
				             s.blen);
				cr_assert(memcmp(s.body, c->body, s.blen) == 0, "case %zu body", i);
				if (c->end == H1_DONE) {
					cr_assert_eq(p.status, c->status, "case %zu status", i);
					cr_assert_eq(p.keep_alive, c->keep_alive,
					             "case %zu keep-alive", i);
				} else {
					cr_assert(p.error && strstr(p.error, c->error),
					          "case %zu: error \"%s\", wanted \"%s\"", i,
					          p.error ? p.error : "", c->error);
				}
			}
		}
	}
}

Test(h1resp, passes_the_final_heads_lines_and_not_an_interim_ones)
{
	struct seen s = {0};
	struct h1resp p;

	read_all("HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 200 OK\r\nX-B: 2\r\n"
	         "Content-Length: 0\r\n\r\n",
	         1, &p, &s);
	s.head[s.hlen] = '\0';
	cr_assert_str_eq(s.head, "HTTP/1.1 200 OK|X-B: 2|Content-Length: 0|");
}

Test(h1resp, refuses_a_head_over_its_limit_before_it_ends)
{
	struct seen s = {0};
	struct h1resp p;
	char *big = malloc(H1_HEAD_MAX + 64);
	ssize_t k;

	cr_assert_not_null(big);
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(big + 20, 'a', H1_HEAD_MAX + 40);
	h1resp_init(&p);
	k = h1resp_feed(&p, big, H1_HEAD_MAX + 60, &seen_cb, &s); /* no line end yet */
	cr_assert_eq(k, -1);
	cr_assert(strstr(p.error, "300 KiB"), "%s", p.error);
	free(big);
}

/* ---- transfers against scripted upstreams ---- */

struct server {
	int lfd, port;
	pthread_t th;
	void (*script)(struct server *);
	int accepts;
	char request[1 << 16]; /* the last request's head and body */
	size_t request_len;
	const char *answer;
	int stop; /* a silent server waits for it */
	int64_t closed_after_ms;
};

static int srv_accept(struct server *s)
{
	int fd = accept(s->lfd, NULL, NULL);

	cr_assert_geq(fd, 0, "accept: %s", strerror(errno));
	s->accepts++;
	return fd;
}

/* One request, its head and Content-Length's body: 1, or 0 at the end. */
static int srv_read(struct server *s, int fd)
{
	size_t len = 0, want = 0;
	char *end, *cl;
	ssize_t n;

	for (;;) {
		s->request[len] = '\0';
		end = strstr(s->request, "\r\n\r\n");
		if (end && !want) {
			cl = strcasestr(s->request, "content-length:");
			want = (size_t)(end + 4 - s->request) +
			       (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
		}
		if (want && len >= want) {
			s->request_len = len;
			return 1;
		}
		n = read(fd, s->request + len, sizeof(s->request) - 1 - len);
		if (n <= 0)
			return 0;
		len += (size_t)n;
	}
}

static void srv_send(int fd, const char *text, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = send(fd, text, n, MSG_NOSIGNAL);
		if (w <= 0)
			return; /* the client left: its test says what that means */
		text += w;
		n -= (size_t)w;
	}
}

/* One request read, text sent for it: 1, or 0 when none came. */
static int srv_answer(struct server *s, int fd, const char *text)
{
	if (!srv_read(s, fd))
		return 0;
	srv_send(fd, text, strlen(text));
	return 1;
}

static void *srv_main(void *arg)
{
	struct server *s = arg;

	s->script(s);
	return NULL;
}

static void srv_start(struct server *s, void (*script)(struct server *), const char *answer)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	s->script = script;
	s->answer = answer;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s->lfd, 0);
	cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s->lfd, 16), 0);
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
	s->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(struct server *s)
{
	__atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(s->th, NULL);
	close(s->lfd);
}

struct result {
	struct event_base *base;
	int done;
	int status, error, sends, too_big;
	char *body;
	size_t body_len;
	char request_id[UP_HDR_LEN];
	char message[256];
	int64_t took;
	/* a relay */
	struct upstream *up;
	struct up_transfer *t;
	char relayed[1 << 16];
	size_t relayed_len;
	int pauses;
	struct event *resume;
	int abort_in_data;
};

static void on_done(void *ud, const struct up_response *r)
{
	struct result *res = ud;

	res->done = 1;
	res->status = r->status;
	res->error = r->transport_error;
	res->sends = r->sends;
	res->too_big = r->too_big;
	res->took = r->latency_ms;
	res->body = malloc(r->body_len + 1);
	cr_assert_not_null(res->body);
	memcpy(res->body, r->body, r->body_len);
	res->body[r->body_len] = '\0';
	res->body_len = r->body_len;
	snprintf(res->request_id, sizeof(res->request_id), "%s", r->hdr.request_id);
	snprintf(res->message, sizeof(res->message), "%s", r->error ? r->error : "");
	event_base_loopbreak(res->base);
}

static int relay_head(void *ud, int status, const struct up_headers *h)
{
	return status == 200;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct result *res = arg;

	upstream_resume(res->up, res->t);
}

static int relay_data(void *ud, const char *d, size_t n)
{
	struct result *res = ud;
	struct timeval now = {0, 0};

	if (res->abort_in_data) {
		upstream_abort(res->up, res->t);
		res->done = 1;
		event_base_loopbreak(res->base);
		return -1;
	}
	cr_assert_lt(res->relayed_len + n, sizeof(res->relayed));
	memcpy(res->relayed + res->relayed_len, d, n);
	res->relayed_len += n;
	res->pauses++;
	evtimer_add(res->resume, &now);
	return UP_PAUSE;
}

static const struct up_stream relay = {.head = relay_head, .data = relay_data};

/* One call through upstream up (made for builtin or curl) to port's path. */
static void call_path(struct upstream *up, struct event_base *base, int port, const char *path,
                      const char *body, long timeout_ms, const struct up_stream *stream,
                      struct result *res)
{
	struct timeval limit = {20, 0};
	struct up_request req;
	char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	res->base = base;
	res->up = up;
	res->resume = evtimer_new(base, resume_cb, res);
	req = (struct up_request){
	    .url = url,
	    .api_key = "sk-test",
	    .body = body,
	    .body_len = strlen(body),
	    .connect_timeout_ms = 2000,
	    .timeout_ms = timeout_ms,
	    .done = on_done,
	    .stream = stream,
	    .userdata = res,
	};
	cr_assert_eq(upstream_start(up, &req, &res->t), 0);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	cr_assert(res->done, "the transfer did not end in 20 s");
	event_free(res->resume);
}

static void call_on(struct upstream *up, struct event_base *base, int port, const char *body,
                    long timeout_ms, const struct up_stream *stream, struct result *res)
{
	call_path(up, base, port, "/v1/chat/completions", body, timeout_ms, stream, res);
}

struct client {
	struct event_base *base;
	struct upstream *up;
};

static void client_new(struct client *c, int builtin)
{
	c->base = event_base_new();
	cr_assert_not_null(c->base);
	cr_assert_eq(upstream_new(c->base, "0123456789abcdef", &c->up), 0);
	upstream_use_builtin(c->up, builtin);
}

static void client_free(struct client *c)
{
	upstream_free(c->up);
	event_base_free(c->base);
}

/* A scripted server and a client (builtin or curl) to call it. */
static void rig_up(struct server *s, struct client *c, int builtin, void (*script)(struct server *),
                   const char *answer)
{
	srv_start(s, script, answer);
	client_new(c, builtin);
}

/* The client first: the server's script ends once its connections close. */
static void rig_down(struct server *s, struct client *c)
{
	client_free(c);
	srv_stop(s);
}

/* A port on 127.0.0.1 nobody listens on. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Lets the loop run for ms: idle connections are watched meanwhile. */
static void client_idle(struct client *c, int ms)
{
	struct timeval tv;

	time_to_timeval(ms, &tv); /* {0, ms * 1000} is no timeval from 1,000 ms on */
	event_base_loopexit(c->base, &tv);
	event_base_dispatch(c->base);
}

/* A scripted server called twice, idle_ms apart, by a client (builtin or curl). */
static void two_calls(struct server *s, int builtin, void (*script)(struct server *),
                      const char *answer, const char *body, int idle_ms, struct result *a,
                      struct result *b)
{
	struct client c;

	rig_up(s, &c, builtin, script, answer);
	call_on(c.up, c.base, s->port, body, 5000, NULL, a);
	if (idle_ms > 0)
		client_idle(&c, idle_ms);
	call_on(c.up, c.base, s->port, body, 5000, NULL, b);
	rig_down(s, &c);
}

static const char *mode_name(int builtin)
{
	return builtin ? "llmqd's client" : "curl";
}

#define ANSWER                                                                                     \
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: r1\r\n"                \
	"Content-Length: 11\r\n\r\n{\"ok\":true}"

static void two_answers_one_connection(struct server *s)
{
	static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	                              "4\r\n{\"ok\r\n7\r\n\":true}\r\n0\r\n\r\n";
	int fd = srv_accept(s);

	srv_answer(s, fd, ANSWER);
	if (srv_read(s, fd)) {
		srv_send(fd, chunked, 40);
		usleep(20000);
		srv_send(fd, chunked + 40, strlen(chunked) - 40);
	}
	while (srv_read(s, fd))
		;
	close(fd);
}

Test(upstream, answers_by_length_and_by_chunks_come_on_one_kept_connection)
{
	int builtin;

	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0}, b = {0};

		two_calls(&s, builtin, two_answers_one_connection, NULL, "{\"model\":\"m\"}", 0, &a,
		          &b);
		cr_assert_eq(a.status, 200, "%s: %d %s", mode_name(builtin), a.status, a.message);
		cr_assert_str_eq(a.body, "{\"ok\":true}");
		cr_assert_str_eq(a.request_id, "r1");
		cr_assert_eq(b.status, 200, "%s: %s", mode_name(builtin), b.message);
		cr_assert_str_eq(b.body, "{\"ok\":true}");
		cr_assert_eq(a.sends + b.sends, 2);
		cr_assert_eq(s.accepts, 1, "%s opened %d connections", mode_name(builtin),
		             s.accepts);
		free(a.body);
		free(b.body);
	}
}

static void capture(struct server *s)
{
	int fd = srv_accept(s);

	srv_answer(s, fd, ANSWER);
	close(fd);
}

Test(upstream, a_request_carries_what_curl_sends)
{
	char want[256];
	int builtin;

	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0};
		struct client c;

		rig_up(&s, &c, builtin, capture, NULL);
		call_on(c.up, c.base, s.port, "{\"model\":\"m\"}", 5000, NULL, &a);
		rig_down(&s, &c);
		s.request[s.request_len] = '\0';
		cr_assert(strncmp(s.request, "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0,
		          "%s", s.request);
		snprintf(want, sizeof(want), "\r\nHost: 127.0.0.1:%d\r\n", s.port);
		cr_assert(strstr(s.request, want), "%s: %s", mode_name(builtin), s.request);
		cr_assert(strstr(s.request, "\r\nAuthorization: Bearer sk-test\r\n"));
		cr_assert(strstr(s.request, "\r\nContent-Type: application/json\r\n"));
		cr_assert(strstr(s.request, "\r\nllmq-via: 0123456789abcdef\r\n"), "%s", s.request);
		cr_assert(strstr(s.request, "\r\nContent-Length: 13\r\n"));
		cr_assert(strstr(s.request, "\r\nUser-Agent: llmqd/"));
		cr_assert(!strcasestr(s.request, "Expect:"));
		cr_assert(strcmp(s.request + s.request_len - 13, "{\"model\":\"m\"}") == 0);
		free(a.body);
	}
}

static void close_while_idle(struct server *s)
{
	int fd = srv_accept(s);

	srv_answer(s, fd, ANSWER);
	close(fd);
	fd = srv_accept(s);
	srv_answer(s, fd, ANSWER);
	close(fd);
}

/* Two calls 100 ms apart, the first connection spoilt by script meanwhile:
 * the second call goes on a new one, sent once. */
static void second_call_on_a_new_connection(int builtin, void (*script)(struct server *))
{
	struct server s = {0};
	struct result a = {0}, b = {0};

	two_calls(&s, builtin, script, NULL, "{}", 100, &a, &b);
	cr_assert_eq(b.status, 200, "%s: %s", mode_name(builtin), b.message);
	cr_assert_eq(b.sends, 1, "%s sent %d times", mode_name(builtin), b.sends);
	cr_assert_eq(s.accepts, 2);
	free(a.body);
	free(b.body);
}

Test(upstream, a_connection_the_server_closed_while_idle_is_not_used)
{
	second_call_on_a_new_connection(0, close_while_idle);
	second_call_on_a_new_connection(1, close_while_idle);
}

/* One answer, then how long (ms) until the client closes its connection. */
static void answer_then_time_the_close(struct server *s)
{
	int fd = srv_accept(s);
	int64_t t0;
	char b;

	srv_answer(s, fd, ANSWER);
	t0 = time_mono_ms();
	while (read(fd, &b, 1) > 0)
		;
	__atomic_store_n(&s->closed_after_ms, time_mono_ms() - t0, __ATOMIC_SEQ_CST);
	close(fd);
}

Test(upstream, an_idle_connection_is_closed_at_its_limit_with_no_call_to_come, .timeout = 30)
{
	struct server s = {0};
	struct result a = {0};
	struct client c;

	rig_up(&s, &c, 1, answer_then_time_the_close, NULL);
	upstream_set_idle_limit(c.up, 300);
	call_on(c.up, c.base, s.port, "{}", 5000, NULL, &a);
	cr_assert_eq(a.status, 200, "%s", a.message);
	client_idle(&c, 2000);
	/* Closed by the sweep while the loop ran, not by the pool's end. */
	cr_assert(__atomic_load_n(&s.closed_after_ms, __ATOMIC_SEQ_CST) > 0,
	          "the idle connection was still open 2 s after its 300 ms limit");
	cr_assert_geq(s.closed_after_ms, 250, "closed after %lld ms, before its limit",
	              (long long)s.closed_after_ms);
	rig_down(&s, &c);
	free(a.body);
}

static void die_unanswered_on_reuse(struct server *s)
{
	int fd = srv_accept(s);

	srv_answer(s, fd, ANSWER);
	srv_read(s, fd);
	close(fd); /* the second request, read and not answered */
	fd = srv_accept(s);
	srv_answer(s, fd, ANSWER);
	close(fd);
}

Test(upstream, a_reused_connection_that_dies_unanswered_is_sent_again_once)
{
	int builtin;

	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0}, b = {0};

		two_calls(&s, builtin, die_unanswered_on_reuse, NULL, "{}", 0, &a, &b);
		cr_assert_eq(b.status, 200, "%s: %s", mode_name(builtin), b.message);
		cr_assert_eq(b.sends, 2, "%s sent %d times", mode_name(builtin), b.sends);
		free(a.body);
		free(b.body);
	}
}

static void close_unanswered(struct server *s)
{
	int fd = srv_accept(s);

	srv_read(s, fd);
	close(fd);
}

Test(upstream, a_new_connection_closed_unanswered_fails_the_transfer)
{
	int builtin;

	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0};
		struct client c;

		rig_up(&s, &c, builtin, close_unanswered, NULL);
		call_on(c.up, c.base, s.port, "{}", 5000, NULL, &a);
		rig_down(&s, &c);
		cr_assert_eq(a.status, 0, "%s", mode_name(builtin));
		cr_assert_neq(a.error, 0);
		cr_assert_eq(a.sends, 1);
		cr_assert(strstr(a.message, "Empty reply from server"), "%s: %s",
		          mode_name(builtin), a.message);
		free(a.body);
	}
}

Test(upstream, a_refused_connect_fails_with_nothing_sent)
{
	int builtin, port = free_port();

	for (builtin = 0; builtin < 2; builtin++) {
		struct result r = {0};
		struct client c;

		client_new(&c, builtin);
		call_on(c.up, c.base, port, "{}", 5000, NULL, &r);
		client_free(&c);
		cr_assert_eq(r.status, 0);
		cr_assert_eq(r.sends, 0, "%s", mode_name(builtin));
		cr_assert(strstr(r.message, "Failed to connect to 127.0.0.1 port"), "%s: %s",
		          mode_name(builtin), r.message);
		free(r.body);
	}
}

static void silent(struct server *s)
{
	int fd = srv_accept(s);

	srv_read(s, fd);
	while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST))
		usleep(10000);
	close(fd);
}

Test(upstream, a_silent_upstream_times_out_at_the_lanes_limit)
{
	int builtin;

	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0};
		struct client c;

		rig_up(&s, &c, builtin, silent, NULL);
		call_on(c.up, c.base, s.port, "{}", 300, NULL, &a);
		rig_down(&s, &c);
		cr_assert_eq(a.status, 0);
		cr_assert_eq(a.error, 28, "%s: %d %s", mode_name(builtin), a.error, a.message);
		cr_assert(a.took >= 290 && a.took < 3000, "%s took %lld ms", mode_name(builtin),
		          (long long)a.took);
		free(a.body);
	}
}

static void many_chunks(struct server *s)
{
	char chunk[64];
	int fd = srv_accept(s), i, n;

	if (srv_read(s, fd)) {
		static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

		srv_send(fd, head, strlen(head));
		for (i = 0; i < 300; i++) {
			n = snprintf(chunk, sizeof(chunk), "%x\r\ndata: %04d\n\n\r\n", 12, i);
			srv_send(fd, chunk, (size_t)n);
			if (i % 50 == 0)
				usleep(5000);
		}
		srv_send(fd, "0\r\n\r\n", 5);
	}
	while (srv_read(s, fd))
		;
	close(fd);
}

Test(upstream, a_relay_paused_after_each_piece_gets_every_byte_in_order)
{
	char want[300 * 12 + 1], *w = want;
	int builtin, i;

	for (i = 0; i < 300; i++)
		w += sprintf(w, "data: %04d\n\n", i);
	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0};
		struct client c;

		rig_up(&s, &c, builtin, many_chunks, NULL);
		call_on(c.up, c.base, s.port, "{}", 10000, &relay, &a);
		rig_down(&s, &c);
		cr_assert_eq(a.status, 200, "%s: %s", mode_name(builtin), a.message);
		cr_assert_eq(a.relayed_len, strlen(want), "%s relayed %zu bytes",
		             mode_name(builtin), a.relayed_len);
		cr_assert(memcmp(a.relayed, want, a.relayed_len) == 0, "%s", mode_name(builtin));
		cr_assert_gt(a.pauses, 1);
		free(a.body);
	}
}

Test(upstream, an_abort_from_inside_a_relay_frees_the_transfer_and_its_connection)
{
	struct server s = {0};
	struct result a = {.abort_in_data = 1};
	struct client c;

	rig_up(&s, &c, 1, many_chunks, NULL);
	call_on(c.up, c.base, s.port, "{}", 10000, &relay, &a);
	cr_assert_eq(upstream_in_flight(c.up), 0);
	client_idle(&c, 10); /* the connection is freed at the next turn */
	rig_down(&s, &c);
	cr_assert_null(a.body, "done() was called for an aborted transfer");
}

static void answer_given(struct server *s)
{
	int fd = srv_accept(s);

	srv_answer(s, fd, s->answer);
	close(fd);
}

Test(upstream, an_answer_framed_two_ways_fails_the_transfer)
{
	struct server s = {0};
	struct result a = {0};
	struct client c;

	rig_up(&s, &c, 1, answer_given,
	       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!");
	call_on(c.up, c.base, s.port, "{}", 5000, NULL, &a);
	rig_down(&s, &c);
	cr_assert_eq(a.status, 0);
	cr_assert(strstr(a.message, "one way"), "%s", a.message);
	free(a.body);
}

static void big_both_ways(struct server *s)
{
	static char head[128];
	int fd = srv_accept(s), n;
	size_t size = 5u << 20, i;
	char *body = malloc(size);

	cr_assert_not_null(body);
	for (i = 0; i < size; i++)
		body[i] = (char)('a' + i % 26);
	if (srv_read(s, fd)) {
		n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
		             size);
		srv_send(fd, head, (size_t)n);
		srv_send(fd, body, size);
	}
	free(body);
	close(fd);
}

Test(upstream, a_large_request_and_a_large_answer_pass_whole)
{
	size_t i, size = 40000; /* the request; the server's buffer holds 64 KiB */
	char *req = malloc(size + 1);
	int builtin;

	cr_assert_not_null(req);
	memset(req, 'x', size);
	req[size] = '\0';
	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0};
		struct client c;

		rig_up(&s, &c, builtin, big_both_ways, NULL);
		call_on(c.up, c.base, s.port, req, 10000, NULL, &a);
		rig_down(&s, &c);
		cr_assert_eq(a.status, 200, "%s: %s", mode_name(builtin), a.message);
		cr_assert_eq(a.body_len, 5u << 20);
		for (i = 0; i < a.body_len; i++)
			if (a.body[i] != (char)('a' + i % 26))
				cr_assert_fail("%s: byte %zu", mode_name(builtin), i);
		cr_assert_eq(s.request_len > size, 1);
		free(a.body);
	}
	free(req);
}

/* ---- the contract at its edges ---- */

/* A transfer started with the given key and connect limit; not yet run. */
static void start_with(struct upstream *up, struct event_base *base, int port, const char *body,
                       long connect_ms, long timeout_ms, const char *key, const char *via,
                       const struct up_stream *stream, struct result *res, int *rc)
{
	struct up_request req;
	char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", port);
	res->base = base;
	res->up = up;
	req = (struct up_request){
	    .url = url,
	    .api_key = key,
	    .via = via,
	    .body = body,
	    .body_len = strlen(body),
	    .connect_timeout_ms = connect_ms,
	    .timeout_ms = timeout_ms,
	    .done = on_done,
	    .stream = stream,
	    .userdata = res,
	};
	*rc = upstream_start(up, &req, &res->t);
}

static void run_until_done(struct client *c, struct result *res, int secs)
{
	struct timeval limit = {secs, 0};

	event_base_loopexit(c->base, &limit);
	event_base_dispatch(c->base);
	cr_assert(res->done, "the transfer did not end in %d s", secs);
}

/* The whole answer in one write: its pieces reach the reader in one read. */
static void chunks_at_once(struct server *s)
{
	char all[4096];
	int fd = srv_accept(s), i, n;

	n = snprintf(all, sizeof(all), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (i = 0; i < 20; i++)
		n += snprintf(all + n, sizeof(all) - (size_t)n, "c\r\ndata: %04d\n\n\r\n", i);
	n += snprintf(all + n, sizeof(all) - (size_t)n, "0\r\n\r\n");
	if (srv_read(s, fd))
		srv_send(fd, all, (size_t)n);
	while (srv_read(s, fd))
		;
	close(fd);
}

struct aborter {
	struct result res; /* first: the callbacks' userdata */
	int in_head;       /* abort from head() (returning 1), else from data() (returning 0) */
	int heads, datas;
};

static int abort_head(void *ud, int status, const struct up_headers *h)
{
	struct aborter *a = ud;

	a->heads++;
	if (a->in_head) {
		upstream_abort(a->res.up, a->res.t);
		a->res.done = 1;
		event_base_loopbreak(a->res.base);
	}
	return 1;
}

static int abort_data(void *ud, const char *d, size_t n)
{
	struct aborter *a = ud;

	a->datas++;
	if (!a->in_head && a->datas == 1) {
		upstream_abort(a->res.up, a->res.t);
		a->res.done = 1;
		event_base_loopbreak(a->res.base);
	}
	return 0; /* a caller that left may still say "go on" */
}

static const struct up_stream abort_relay = {.head = abort_head, .data = abort_data};

Test(upstream, no_callback_is_called_after_an_abort_from_inside_one)
{
	int in_head, rc;

	for (in_head = 0; in_head < 2; in_head++) {
		struct server s = {0};
		struct aborter a = {.in_head = in_head};
		struct client c;

		rig_up(&s, &c, 1, chunks_at_once, NULL);
		start_with(c.up, c.base, s.port, "{}", 2000, 5000, "sk-test", NULL, &abort_relay,
		           &a.res, &rc);
		cr_assert_eq(rc, 0);
		run_until_done(&c, &a.res, 10);
		client_idle(&c, 10);
		rig_down(&s, &c);
		cr_assert_eq(a.heads, 1);
		cr_assert_eq(a.datas, in_head ? 0 : 1,
		             "data() called %d times after an abort from %s", a.datas,
		             in_head ? "head()" : "data()");
		cr_assert_null(a.res.body, "done() was called for an aborted transfer");
	}
}

Test(upstream, a_line_break_in_a_key_or_a_hop_is_refused_before_anything_is_sent)
{
	static const char *const keys[] = {"sk-a\r\nX-Evil: 1", "sk-ok", "sk-a\nX-Evil: 1"};
	static const char *const vias[] = {NULL, "abc\r\nX-Evil: 1", NULL};
	int builtin, rc;
	size_t i;

	for (builtin = 0; builtin < 2; builtin++) {
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			struct server s = {0};
			struct result a = {0};
			struct client c;

			rig_up(&s, &c, builtin, capture, NULL);
			start_with(c.up, c.base, s.port, "{}", 2000, 5000, keys[i], vias[i], NULL,
			           &a, &rc);
			if (rc == 0)
				run_until_done(&c, &a, 10);
			client_free(&c);
			/* A refused start opened nothing: a connect ends the server. */
			if (rc != 0) {
				struct sockaddr_in sa = {.sin_family = AF_INET,
				                         .sin_port = htons((uint16_t)s.port),
				                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
				int fd = socket(AF_INET, SOCK_STREAM, 0);

				cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
				close(fd);
			}
			srv_stop(&s);
			s.request[s.request_len] = '\0';
			cr_assert(!strstr(s.request, "X-Evil"), "%s sent a header of a value: %s",
			          mode_name(builtin), s.request);
			cr_assert_neq(rc, 0, "%s started case %zu: %s / %d %d %s",
			              mode_name(builtin), i, s.request, a.status, a.error,
			              a.message);
			free(a.body);
		}
	}
}

/*
 * Answers the first request; holds the second past the lane's connect
 * limit, then closes the connection unanswered with the listener's queue
 * full, so that the new connection's SYN is dropped once and it connects
 * at the SYN's resend (a second later), as a far upstream's would.
 */
static void hold_then_die_with_a_slow_connect(struct server *s)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)s->port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = srv_accept(s), filler, queued;

	srv_answer(s, fd, ANSWER);
	srv_read(s, fd);
	filler = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(filler, (struct sockaddr *)&a, sizeof(a)),
	             0);     /* the queue's one place */
	usleep(1700 * 1000); /* past the connect limit (1.5 s) counted from the start */
	close(fd);
	usleep(100 * 1000);
	queued = srv_accept(s); /* the filler: the queue has room for the SYN's resend */
	close(queued);
	close(filler);
	if (poll(&(struct pollfd){.fd = s->lfd, .events = POLLIN}, 1, 5000) != 1)
		return; /* the client gave up */
	fd = srv_accept(s);
	srv_answer(s, fd, ANSWER);
	close(fd);
}

Test(upstream, a_resend_long_after_the_start_has_the_whole_connect_limit, .timeout = 30)
{
	int builtin, rc;

	for (builtin = 0; builtin < 2; builtin++) {
		struct server s = {0};
		struct result a = {0}, b = {0};
		struct client c;

		srv_start(&s, hold_then_die_with_a_slow_connect, NULL);
		cr_assert_eq(listen(s.lfd, 0), 0);
		client_new(&c, builtin);
		start_with(c.up, c.base, s.port, "{}", 1000, 10000, "sk-test", NULL, NULL, &a, &rc);
		cr_assert_eq(rc, 0);
		run_until_done(&c, &a, 10);
		/* A connect limit of 1.5 s: the SYN's resend comes 1 s into the connect. */
		start_with(c.up, c.base, s.port, "{}", 1500, 10000, "sk-test", NULL, NULL, &b, &rc);
		cr_assert_eq(rc, 0);
		run_until_done(&c, &b, 15);
		rig_down(&s, &c);
		cr_assert_eq(b.status, 200, "%s: %d %s after %lld ms", mode_name(builtin), b.error,
		             b.message, (long long)b.took);
		cr_assert_eq(b.sends, 2, "%s", mode_name(builtin));
		free(a.body);
		free(b.body);
	}
}

/* An answer of 64 MiB and a byte, by length or in one huge chunk. */
static void over_the_cap(struct server *s)
{
	size_t size = (64u << 20) + 1, piece = 1u << 20, n;
	char *buf = malloc(piece), head[160];
	int fd = srv_accept(s), k;

	cr_assert_not_null(buf);
	memset(buf, 'z', piece);
	if (srv_read(s, fd)) {
		k = s->answer ? snprintf(head, sizeof(head), "%s", s->answer)
		              : snprintf(head, sizeof(head),
		                         "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", size);
		srv_send(fd, head, (size_t)k);
		for (n = 0; n < size; n += piece)
			srv_send(fd, buf, size - n < piece ? size - n : piece);
		if (s->answer)
			srv_send(fd, "\r\n0\r\n\r\n", 7);
	}
	free(buf);
	close(fd);
}

Test(upstream, an_answer_over_64_mib_is_too_big_on_both_clients, .timeout = 60)
{
	static const char *const heads[] = {
	    NULL, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffff\r\n"};
	int builtin;
	size_t i;

	for (i = 0; i < 2; i++) {
		for (builtin = 0; builtin < 2; builtin++) {
			struct server s = {0};
			struct result a = {0};
			struct client c;

			rig_up(&s, &c, builtin, over_the_cap, heads[i]);
			call_on(c.up, c.base, s.port, "{}", 20000, NULL, &a);
			rig_down(&s, &c);
			cr_assert_eq(a.too_big, 1, "%s, case %zu: %d %s", mode_name(builtin), i,
			             a.error, a.message);
			cr_assert_eq(a.status, 0);
			cr_assert_neq(a.error, 0);
			cr_assert_eq(a.sends, 1);
			free(a.body);
		}
	}
}

static void talk_while_idle(struct server *s)
{
	int fd = srv_accept(s);

	if (srv_read(s, fd)) {
		srv_send(fd, ANSWER, strlen(ANSWER));
		usleep(20000);
		srv_send(fd, "HTTP/1.1 200 OK\r\n", 17); /* out of turn */
	}
	while (srv_read(s, fd))
		;
	close(fd);
	if (poll(&(struct pollfd){.fd = s->lfd, .events = POLLIN}, 1, 3000) != 1)
		return; /* the client asked nothing more */
	fd = srv_accept(s);
	srv_answer(s, fd, ANSWER);
	close(fd);
}

/* curl 7.88 reuses such a connection and reads the stray bytes as its
 * answer's start (then times out): asked of llmqd's client alone. */
Test(upstream, a_connection_the_server_talked_on_while_idle_is_not_used)
{
	second_call_on_a_new_connection(1, talk_while_idle);
}

/* Two requests, each answered with s->answer on the connections it takes. */
static void answer_twice(struct server *s)
{
	int fd = srv_accept(s), n = 0;

	while (n < 2) {
		if (!srv_read(s, fd)) {
			close(fd);
			fd = srv_accept(s);
			continue;
		}
		srv_send(fd, s->answer, strlen(s->answer));
		n++;
	}
	while (srv_read(s, fd))
		;
	close(fd);
}

Test(upstream, each_framing_keeps_or_closes_the_connection_as_curl_does)
{
	static const struct {
		const char *answer;
		int status, accepts;
		const char *body;
	} cases[] = {
	    {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, 2, "ok"},
	    {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, 2, "ok"},
	    {"HTTP/1.1 204 No Content\r\n\r\n", 204, 1, ""},
	    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\n"
	     "HTTP/1.1 429 Too Many\r\nContent-Length: 1\r\nx-request-id: r9\r\n\r\n!",
	     429, 1, "!"},
	    {"HTTP/1.1 304 Not Modified\r\n\r\n", 304, 1, ""},
	};
	int builtin;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (builtin = 0; builtin < 2; builtin++) {
			struct server s = {0};
			struct result a = {0}, b = {0};

			two_calls(&s, builtin, answer_twice, cases[i].answer, "{}", 0, &a, &b);
			cr_assert_eq(b.status, cases[i].status, "%s, case %zu: %d %s",
			             mode_name(builtin), i, b.error, b.message);
			cr_assert_str_eq(b.body, cases[i].body);
			cr_assert_eq(s.accepts, cases[i].accepts, "%s, case %zu: %d connections",
			             mode_name(builtin), i, s.accepts);
			cr_assert_eq(a.sends + b.sends, 2, "%s, case %zu", mode_name(builtin), i);
			free(a.body);
			free(b.body);
		}
	}
}

/* One answer kept alive, then a silent second connection, read and held. */
static void answer_then_hold(struct server *s)
{
	int fd = srv_accept(s), fd2 = -1;

	srv_answer(s, fd, ANSWER);
	while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) {
		if (fd2 < 0 && poll(&(struct pollfd){.fd = s->lfd, .events = POLLIN}, 1, 10) == 1)
			fd2 = srv_accept(s); /* read nothing: a large body fills the socket */
		usleep(10000);
	}
	close(fd);
	if (fd2 >= 0)
		close(fd2);
}

static int pause_head(void *ud, int status, const struct up_headers *h)
{
	return 1;
}

static int pause_data(void *ud, const char *d, size_t n)
{
	struct result *res = ud;

	res->pauses++;
	res->done = 1; /* for run_until_done(): not done, paused */
	event_base_loopbreak(res->base);
	return UP_PAUSE;
}

static const struct up_stream pause_relay = {.head = pause_head, .data = pause_data};

/* Aborted connecting, sending, waiting and paused; freed with an idle
 * connection: nothing left behind (the sanitizer build's leak check). */
Test(upstream, a_transfer_aborted_in_each_state_and_a_pool_freed_leave_nothing)
{
	size_t size = 8u << 20;
	char *big = malloc(size + 1);
	int builtin, state, rc;

	cr_assert_not_null(big);
	memset(big, 'x', size);
	big[size] = '\0';
	for (builtin = 0; builtin < 2; builtin++) {
		for (state = 0; state < 4; state++) {
			struct server s = {0};
			struct result a = {0}, b = {0};
			struct client c;

			rig_up(&s, &c, builtin, state == 3 ? many_chunks : answer_then_hold, NULL);
			if (state != 3)
				call_on(c.up, c.base, s.port, "{}", 5000, NULL, &a); /* one idle */
			start_with(c.up, c.base, s.port, state == 1 ? big : "{}", 2000, 5000,
			           "sk-test", NULL, state == 3 ? &pause_relay : NULL, &b, &rc);
			cr_assert_eq(rc, 0);
			if (state == 3) {
				run_until_done(&c, &b, 5); /* until the pause */
				b.done = 0;
			} else if (state > 0) {
				client_idle(&c, 100); /* sending its body, or waiting */
			}
			cr_assert_eq(b.done, 0, "%s, state %d", mode_name(builtin), state);
			if (state == 3)
				cr_assert_eq(b.pauses, 1);
			upstream_abort(c.up, b.t);
			cr_assert_eq(upstream_in_flight(c.up), 0);
			client_free(&c); /* at once: what the abort closed is freed here */
			srv_stop(&s);
			free(a.body);
		}
	}
	free(big);
}

/* Reads a request of any size (its head, then Content-Length bytes): 1, or 0. */
static int srv_drain(int fd)
{
	char buf[65536], *end, *cl;
	size_t len = 0, body = 0, want = 0;
	ssize_t n;
	int in_head = 1;

	while (in_head || body < want) {
		n = read(fd, in_head ? buf + len : buf,
		         in_head ? sizeof(buf) - 1 - len : sizeof(buf));
		if (n <= 0)
			return 0;
		if (!in_head) {
			body += (size_t)n;
			continue;
		}
		len += (size_t)n;
		buf[len] = '\0';
		if ((end = strstr(buf, "\r\n\r\n"))) {
			cl = strcasestr(buf, "content-length:");
			want = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
			body = len - (size_t)(end + 4 - buf);
			in_head = 0;
		}
	}
	return 1;
}

/* The second request's first bytes read, then the connection reset. */
static void reset_while_sent(struct server *s)
{
	struct linger lg = {1, 0};
	char some[4096];
	int fd = srv_accept(s);

	srv_answer(s, fd, ANSWER);
	if (read(fd, some, sizeof(some)) > 0) {
		cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	}
	close(fd);
	if (poll(&(struct pollfd){.fd = s->lfd, .events = POLLIN}, 1, 3000) != 1)
		return; /* not sent again */
	fd = srv_accept(s);
	if (srv_drain(fd))
		srv_send(fd, ANSWER, strlen(ANSWER));
	close(fd);
}

/* curl 7.88 fails such a transfer (a send failure) once bytes of it went
 * out: asked of llmqd's client alone, which keeps the resend rule. */
Test(upstream, a_reused_connection_reset_while_the_request_goes_out_is_sent_again_once)
{
	size_t size = 4u << 20;
	char *big = malloc(size + 1);
	struct server s = {0};
	struct result a = {0}, b = {0};
	struct client c;

	cr_assert_not_null(big);
	memset(big, 'x', size);
	big[size] = '\0';
	rig_up(&s, &c, 1, reset_while_sent, NULL);
	call_on(c.up, c.base, s.port, "{}", 5000, NULL, &a);
	call_on(c.up, c.base, s.port, big, 10000, NULL, &b);
	rig_down(&s, &c);
	cr_assert_eq(b.status, 200, "%d %s", b.error, b.message);
	cr_assert_eq(b.sends, 2, "sent %d times", b.sends);
	cr_assert_eq(s.accepts, 2);
	free(a.body);
	free(b.body);
	free(big);
}

/* A target the request line cannot carry as it is goes by curl, which refuses it. */
Test(upstream, a_path_with_a_space_is_never_sent_as_it_is)
{
	struct result r = {0};
	struct client c;
	int port = free_port(); /* llmqd's client would fail to connect */

	client_new(&c, 1);
	call_path(c.up, c.base, port, "/v1/a b", "{}", 5000, NULL, &r);
	client_free(&c);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.sends, 0);
	cr_assert_eq(r.error, 3, "curl's URL error, not a connect: %d %s", r.error, r.message);
	free(r.body);
}
