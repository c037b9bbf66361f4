/*
 * fleet-conn.c - the connection to the fleet's Redis, on llmqd's loop.
 *
 * hiredis 0.14's async API with its libevent adapter: connecting, AUTH,
 * SELECT and FUNCTION LOAD are all sent without waiting, and a name is
 * looked up with libevent's own resolver (hiredis would call getaddrinfo and
 * block). hiredis 0.14 has no connect timeout: the commands' timer
 * (fleet-cmd.c) keeps the handshake's deadline too. Past it, or when Redis
 * closes, errs or refuses, the connection is dropped: every command in
 * flight is answered with an error at once, and the context is freed on the
 * next loop turn, never inside one of hiredis' own callbacks (hiredis frees a
 * context itself after reporting a failed connect or a disconnect; the
 * callbacks say which). Reconnects back off from FLEET_BACKOFF_FIRST_MS to
 * FLEET_BACKOFF_MAX_MS. Logs each way once: gone (and why), back.
 */
#include "fleet/fleet-private.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <event2/dns.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

static void fleet_schedule_retry(struct fleet *f)
{
	if (f->stopping)
		return;
	fleet_arm_us(f->retry, f->backoff_ms * 1000);
	f->backoff_ms =
	    f->backoff_ms * 2 > FLEET_BACKOFF_MAX_MS ? FLEET_BACKOFF_MAX_MS : f->backoff_ms * 2;
}

/*
 * Drop the connection: what is in flight is answered with why, the context
 * freed on the next turn, a reconnect scheduled. The first drop after being
 * up (or the first ever) is logged as a warning, the rest at debug.
 */

void fleet_drop(struct fleet *f, const char *fmt, ...)
{
	struct fleet_cmd *c;
	char why[sizeof(f->st.error)];
	va_list ap;

	if (f->state == FLEET_DOWN)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (f->ac) {
		f->dead = f->ac;
		f->ac = NULL;
		event_active(f->teardown, 0, 0);
	}
	if (f->lookup) {
		/* Its callback comes with EVUTIL_EAI_CANCEL, and frees it. */
		struct fleet_lookup *q = f->lookup;

		f->lookup = NULL;
		q->f = NULL;
		if (q->q)
			evdns_getaddrinfo_cancel(q->q);
	}
	f->state = FLEET_DOWN;
	f->broken[0] = '\0';
	f->beating = 0;
	evtimer_del(f->timer);
	evtimer_del(f->beat);
	snprintf(f->st.error, sizeof(f->st.error), "%s", why);
	f->st.up = 0;
	if (!f->logged) {
		/* A new spell without Redis (also the first, when it was never up). */
		f->st.fallbacks++;
		f->st.since_wall = time(NULL);
		log_warn("fleet: %s; until it answers, each lane gates alone with its share of the "
		         "limits (1/N, N = the hosts alive at the last heartbeat)",
		         why);
		f->logged = 1;
	} else {
		log_debug("fleet: %s", why);
	}
	fleet_schedule_retry(f);
	/* Told first: the callers' failed commands then find the lanes gating alone. */
	if (f->told != 0 && f->on_state) {
		f->told = 0;
		f->on_state(f->state_ud, 0);
	}
	/* Answered in order; a callback may ask again: it is told -ENOTCONN. */
	while ((c = TAILQ_FIRST(&f->pending))) {
		TAILQ_REMOVE(&f->pending, c, link);
		if (c->cb)
			c->cb(c->ud, NULL, why);
		fleet_cmd_free(c);
	}
}

void fleet_teardown_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	redisAsyncContext *ac = f->dead;

	f->dead = NULL;
	if (ac)
		redisAsyncFree(ac); /* its callbacks find it is not f->ac: they do nothing */
}

/* A handshake's or a call's error reply, in words a user can act on. */
void fleet_explain(struct fleet *f, const char *what, const char *err, char *buf, size_t len)
{
	if (strncmp(err, "WRONGPASS", 9) == 0 || strstr(err, "invalid password") ||
	    strstr(err, "invalid username-password"))
		snprintf(buf, len,
		         "Redis at %s refused the password (%s): check redis_password_file (or "
		         "the password in redis_url)",
		         f->shown, err);
	else if (strncmp(err, "NOAUTH", 6) == 0 || strstr(err, "unauthenticated"))
		snprintf(buf, len,
		         "Redis at %s wants a password (%s): set redis_password_file (or the "
		         "password in redis_url)",
		         f->shown, err);
	else if (strstr(err, "without any password configured"))
		snprintf(buf, len,
		         "Redis at %s has no password, but llmqd was given one (%s): drop "
		         "redis_password_file, or set requirepass in Redis",
		         f->shown, err);
	else if (strstr(err, "unknown command") && strstr(err, "FUNCTION"))
		snprintf(buf, len,
		         "Redis at %s does not know FUNCTION (%s): the fleet needs Redis 7 or "
		         "later",
		         f->shown, err);
	else
		snprintf(buf, len, "Redis at %s answered %s with an error: %s", f->shown, what,
		         err);
}

/* AUTH, SELECT and FUNCTION LOAD: any error drops the connection. */
void fleet_handshake_cb(void *ud, struct redisReply *r, const char *err)
{
	struct fleet *f = ud;
	char why[sizeof(f->st.error)];

	if (!r || r->type != REDIS_REPLY_ERROR)
		return;
	/* A library of the same content (its name is its hash) is there already. */
	if (strstr(r->str, "already exists"))
		return;
	fleet_explain(f, "the connection's set-up", r->str, why, sizeof(why));
	fleet_drop(f, "%s", why);
}

/* The last of the handshake: the library is there, the fleet is up. */
static void fleet_loaded_cb(void *ud, struct redisReply *r, const char *err)
{
	struct fleet *f = ud;
	int was_logged = f->logged;

	if (!r)
		return;
	if (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "already exists")) {
		fleet_handshake_cb(ud, r, err);
		return;
	}
	if (f->state != FLEET_CONNECTING)
		return;
	f->state = FLEET_UP;
	f->backoff_ms = FLEET_BACKOFF_FIRST_MS;
	f->logged = 0;
	f->st.up = 1;
	f->st.since_wall = time(NULL);
	f->st.error[0] = '\0';
	if (!f->was_up)
		log_info("fleet: connected to Redis at %s as host %s: the lanes share their gates",
		         f->shown, f->host_id);
	else if (was_logged)
		log_info("fleet: Redis at %s answers again: the lanes share their gates again",
		         f->shown);
	f->was_up = 1;
	fleet_beat_cb(-1, 0, f);
	if (f->on_state) {
		f->told = 1;
		f->on_state(f->state_ud, 1);
	}
}

static void fleet_on_connect(const redisAsyncContext *ac, int status)
{
	struct fleet *f = ac->data;

	if (ac == f->dead && status != REDIS_OK) {
		f->dead = NULL; /* hiredis frees it after this */
		return;
	}
	if (ac != f->ac || status == REDIS_OK)
		return;
	f->ac = NULL; /* hiredis frees it after this */
	fleet_drop(f,
	           "cannot connect to Redis at %s: %s; check that it runs and that redis_url "
	           "(LLMQ_REDIS_URL) names it",
	           f->shown, ac->errstr ? ac->errstr : "connection failed");
}

static void fleet_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct fleet *f = ac->data;

	if (ac == f->dead) {
		f->dead = NULL; /* being freed by hiredis */
		return;
	}
	if (ac != f->ac)
		return;
	f->ac = NULL;
	fleet_drop(f, "Redis at %s closed the connection%s%s", f->shown,
	           ac->errstr && *ac->errstr ? ": " : "", ac->errstr ? ac->errstr : "");
}

/* Connect to ip (a literal) or the Unix socket, and queue the handshake. */
static void fleet_open(struct fleet *f, const char *ip)
{
	const char *argv[4];
	size_t argvlen[4];
	char db[16];
	redisAsyncContext *ac;
	int n = 0;

	ac = f->addr.is_unix ? redisAsyncConnectUnix(f->addr.path)
	                     : redisAsyncConnect(ip, f->addr.port);
	if (!ac) {
		fleet_drop(f, "cannot connect to Redis at %s: out of memory", f->shown);
		return;
	}
	if (ac->err) {
		char why[256];

		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac); /* never handed to the loop: no callback of its own runs */
		fleet_drop(f,
		           "cannot connect to Redis at %s: %s; check that it runs and that "
		           "redis_url (LLMQ_REDIS_URL) names it",
		           f->shown, why);
		return;
	}
	ac->data = f;
	if (redisLibeventAttach(ac, f->base) != REDIS_OK) {
		redisAsyncFree(ac);
		fleet_drop(f, "cannot connect to Redis at %s: cannot watch its socket", f->shown);
		return;
	}
	redisAsyncSetConnectCallback(ac, fleet_on_connect);
	redisAsyncSetDisconnectCallback(ac, fleet_on_disconnect);
	f->ac = ac;
	f->state = FLEET_CONNECTING;
	/* Sent once connected, in this order; all within one timeout of the start. */
	if (f->password) {
		argv[n++] = "AUTH";
		if (f->addr.user[0])
			argv[n++] = f->addr.user;
		argv[n++] = f->password;
		if (fleet_queue(f, n, argv, NULL, FLEET_FN_NONE, f->connect_deadline_us,
		                fleet_handshake_cb, f) < 0)
			return;
	}
	if (f->addr.db) {
		snprintf(db, sizeof(db), "%d", f->addr.db);
		argv[0] = "SELECT";
		argv[1] = db;
		argvlen[0] = 6;
		argvlen[1] = strlen(db);
		if (fleet_queue(f, 2, argv, argvlen, FLEET_FN_NONE, f->connect_deadline_us,
		                fleet_handshake_cb, f) < 0)
			return;
	}
	fleet_load(f, f->connect_deadline_us, fleet_loaded_cb);
}

static void fleet_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct fleet_lookup *q = arg;
	struct fleet *f = q->f;
	char ip[INET6_ADDRSTRLEN] = "";

	free(q);
	if (!f || result == EVUTIL_EAI_CANCEL) {
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	f->lookup = NULL;
	if (result != 0 || !res) {
		fleet_drop(f, "cannot connect to Redis at %s: cannot look %s up: %s", f->shown,
		           f->addr.host, evutil_gai_strerror(result));
		return;
	}
	if (res->ai_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip,
		          sizeof(ip));
	evutil_freeaddrinfo(res);
	fleet_open(f, ip);
}

void fleet_connect(struct fleet *f)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	unsigned char buf[sizeof(struct in6_addr)];
	struct evdns_getaddrinfo_request *r;
	struct fleet_lookup *q;

	if (f->state != FLEET_DOWN || f->stopping)
		return;
	f->connect_deadline_us = fleet_now_us() + f->timeout_ms * 1000;
	if (f->addr.is_unix || inet_pton(AF_INET, f->addr.host, buf) == 1 ||
	    inet_pton(AF_INET6, f->addr.host, buf) == 1) {
		f->state = FLEET_CONNECTING;
		fleet_open(f, f->addr.host);
		return;
	}
	/* A name: hiredis would look it up with getaddrinfo, which blocks. */
	if (!f->dns) {
		f->dns = evdns_base_new(f->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (!f->dns) {
			f->state = FLEET_RESOLVING;
			fleet_drop(f,
			           "cannot connect to Redis at %s: cannot read /etc/resolv.conf to "
			           "look %s up; name it by its address",
			           f->shown, f->addr.host);
			return;
		}
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		f->state = FLEET_RESOLVING;
		fleet_drop(f, "cannot connect to Redis at %s: out of memory", f->shown);
		return;
	}
	q->f = f;
	f->lookup = q;
	f->state = FLEET_RESOLVING;
	fleet_arm(f);
	/* It may answer at once (a literal, /etc/hosts), freeing q: then NULL. */
	r = evdns_getaddrinfo(f->dns, f->addr.host, NULL, &hints, fleet_resolved, q);
	if (r && f->lookup == q)
		q->q = r;
}

void fleet_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	fleet_connect(arg);
}
