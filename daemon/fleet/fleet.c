/*
 * fleet.c - the connection to the fleet's Redis, on llmqd's loop.
 *
 * hiredis 0.14's async API with its libevent adapter: connecting, AUTH,
 * SELECT and FUNCTION LOAD are all sent without waiting, and a name is
 * looked up with libevent's own resolver (hiredis would call getaddrinfo and
 * block). hiredis 0.14 has no connect or command timeout: replies come in the
 * order commands went, so one timer for the oldest command's deadline (the
 * handshake's counts from the connect) is all it takes. Past it, or when
 * Redis closes, errs or refuses, the connection is dropped: every command in
 * flight is answered with an error at once, and the context is freed on the
 * next loop turn, never inside one of hiredis' own callbacks (hiredis frees a
 * context itself after reporting a failed connect or a disconnect; the
 * callbacks say which). Reconnects back off from FLEET_BACKOFF_FIRST_MS to
 * FLEET_BACKOFF_MAX_MS. Logs each way once: gone (and why), back.
 *
 * It knows nothing of lanes: the scheduler calls the library's functions
 * through fleet_call() and falls back when the answer is an error.
 */
#include "fleet/fleet.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

enum fleet_state {
	FLEET_DOWN,       /* no connection; a reconnect is due on f->retry */
	FLEET_RESOLVING,  /* looking the host's name up */
	FLEET_CONNECTING, /* connecting and handshaking (AUTH, SELECT, FUNCTION LOAD) */
	FLEET_UP,
};

struct fleet_cmd {
	char *buf; /* the command as sent, kept to send again once the library is back */
	int len;
	int64_t sent_us, deadline_us;
	enum fleet_fn fn;   /* FLEET_FN_NONE for the handshake's commands */
	int resent;         /* sent again already after "function not found" */
	fleet_reply_fn *cb; /* NULL: nobody waits for it */
	void *ud;
	TAILQ_ENTRY(fleet_cmd) link;
};

/* One name lookup; its callback may come after a drop, even after a new lookup. */
struct fleet_lookup {
	struct fleet *f; /* NULL once given up */
	struct evdns_getaddrinfo_request *q;
};

struct fleet {
	struct event_base *base;
	struct fleet_addr addr;
	char *password;
	int64_t timeout_ms;
	char host_id[65];
	char shown[320]; /* the URL as it may be shown */
	char shares[FLEET_MAX_SHARES][64];
	int n_shares;
	char fn_names[FLEET_FN__COUNT][64];
	enum fleet_state state;
	redisAsyncContext *ac;
	redisAsyncContext *dead; /* dropped, freed by f->teardown on the next turn */
	struct evdns_base *dns;
	struct fleet_lookup *lookup;
	int64_t connect_deadline_us;
	TAILQ_HEAD(, fleet_cmd) pending;
	struct event *timer;    /* the oldest command's deadline, or the lookup's */
	struct event *retry;    /* the next connect */
	struct event *teardown; /* frees f->dead */
	struct event *beat;     /* the heartbeat */
	int beating;            /* a heartbeat is in flight */
	int64_t backoff_ms;
	char broken[1024]; /* a send failed: dropped from the timer, for this */
	int in_reply;      /* inside hiredis' reply callback */
	int hosts[FLEET_MAX_SHARES];
	int was_up; /* ever up */
	int told;   /* the last state told to on_state: -1 none yet, 0 down, 1 up */
	int logged; /* the last drop was logged */
	int stopping;
	fleet_state_fn *on_state;
	void *state_ud;
	struct fleet_stats st;
	int64_t rtt_ring[FLEET_RTT_RING]; /* the last grants' round trips, us */
};

static const char *const fleet_fn_suffix[FLEET_FN__COUNT] = {
    [FLEET_FN_BEAT] = "beat",           [FLEET_FN_GRANT] = "grant", [FLEET_FN_SETTLE] = "settle",
    [FLEET_FN_RECONCILE] = "reconcile", [FLEET_FN_STATE] = "state",
};

const double fleet_rtt_le[FLEET_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
};

static int64_t fleet_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void fleet_arm_us(struct event *ev, int64_t us)
{
	struct timeval tv;

	if (us < 0)
		us = 0;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	evtimer_add(ev, &tv);
}

/* The timer follows the oldest command's deadline (or the lookup's). */
static void fleet_arm(struct fleet *f)
{
	struct fleet_cmd *c = TAILQ_FIRST(&f->pending);

	if (c)
		fleet_arm_us(f->timer, c->deadline_us - fleet_now_us());
	else if (f->state == FLEET_RESOLVING)
		fleet_arm_us(f->timer, f->connect_deadline_us - fleet_now_us());
	else
		evtimer_del(f->timer);
}

static void fleet_cmd_free(struct fleet_cmd *c)
{
	if (!c)
		return;
	if (c->buf) {
		/* It may be the AUTH with the password. */
		explicit_bzero(c->buf, (size_t)c->len);
		redisFreeCommand(c->buf);
	}
	free(c);
}

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
static void fleet_drop(struct fleet *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fleet_drop(struct fleet *f, const char *fmt, ...)
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

static void fleet_teardown_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	redisAsyncContext *ac = f->dead;

	f->dead = NULL;
	if (ac)
		redisAsyncFree(ac); /* its callbacks find it is not f->ac: they do nothing */
}

static void fleet_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	char took[32];

	if (f->broken[0]) {
		fleet_drop(f, "%s", f->broken);
		return;
	}
	snprintf(took, sizeof(took), "%lldms", (long long)f->timeout_ms);
	if (f->state == FLEET_UP)
		fleet_drop(f, "Redis at %s did not answer within %s (redis_timeout)", f->shown,
		           took);
	else
		fleet_drop(f,
		           "cannot connect to Redis at %s: no answer within %s (redis_timeout); "
		           "check that it runs there and answers",
		           f->shown, took);
}

static int fleet_send(struct fleet *f, struct fleet_cmd *c);
static void fleet_beat_cb(evutil_socket_t fd, short what, void *arg);
static void fleet_on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* A handshake's or a call's error reply, in words a user can act on. */
static void fleet_explain(struct fleet *f, const char *what, const char *err, char *buf, size_t len)
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
static void fleet_handshake_cb(void *ud, struct redisReply *r, const char *err)
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

/* Queue a command made of argv; internal ones come before the fleet is up. */
static int fleet_queue(struct fleet *f, int argc, const char **argv, const size_t *argvlen,
                       enum fleet_fn fn, int64_t deadline_us, fleet_reply_fn *cb, void *ud)
{
	struct fleet_cmd *c = calloc(1, sizeof(*c));

	if (!c || (c->len = redisFormatCommandArgv(&c->buf, argc, argv, argvlen)) < 0) {
		free(c);
		/* Never left waiting for an answer that cannot come. */
		snprintf(f->broken, sizeof(f->broken), "out of memory");
		event_active(f->timer, 0, 0);
		return -ENOMEM;
	}
	c->fn = fn;
	c->cb = cb;
	c->ud = ud;
	c->deadline_us = deadline_us;
	if (fleet_send(f, c) < 0) {
		fleet_cmd_free(c);
		return -ENOTCONN;
	}
	return 0;
}

/*
 * Out now rather than on the loop's next turn (a turn may hold a database
 * commit): a grant's round trip is Redis's, not the loop's. Not from inside
 * hiredis' own callbacks, where hiredis writes after them; a write that
 * fails drops the connection from the timer.
 */
static void fleet_write(struct fleet *f)
{
	int done = 0;

	if (f->in_reply || f->state != FLEET_UP || !f->ac)
		return;
	if (redisBufferWrite(&f->ac->c, &done) != REDIS_OK && !f->broken[0]) {
		snprintf(f->broken, sizeof(f->broken), "cannot send to Redis at %s: %s", f->shown,
		         f->ac->c.errstr[0] ? f->ac->c.errstr : "the connection failed");
		event_active(f->timer, 0, 0);
	}
}

/*
 * Send c; on failure it is not queued (the caller frees it) and the
 * connection is dropped from the timer, so that no caller's callback runs
 * inside fleet_call().
 */
static int fleet_send(struct fleet *f, struct fleet_cmd *c)
{
	int first = TAILQ_EMPTY(&f->pending);

	if (!f->ac || f->broken[0] ||
	    redisAsyncFormattedCommand(f->ac, fleet_on_reply, NULL, c->buf, (size_t)c->len) !=
	        REDIS_OK) {
		if (!f->broken[0])
			snprintf(f->broken, sizeof(f->broken), "cannot send to Redis at %s: %s",
			         f->shown,
			         f->ac && f->ac->errstr[0] ? f->ac->errstr
			                                   : "the connection closes");
		event_active(f->timer, 0, 0);
		return -ENOTCONN;
	}
	c->sent_us = fleet_now_us();
	TAILQ_INSERT_TAIL(&f->pending, c, link);
	if (first)
		fleet_arm(f);
	fleet_write(f);
	return 0;
}

static int fleet_load(struct fleet *f, int64_t deadline_us, fleet_reply_fn *cb)
{
	const char *argv[] = {"FUNCTION", "LOAD", fleet_lua};

	return fleet_queue(f, 3, argv, NULL, FLEET_FN_NONE, deadline_us, cb, f);
}

static void fleet_rtt(struct fleet *f, int64_t us)
{
	double s = (double)us / 1e6;
	int i;

	f->rtt_ring[f->st.grants % FLEET_RTT_RING] = us;
	f->st.grants++;
	f->st.rtt_sum += s;
	for (i = 0; i < FLEET_RTT_BUCKETS; i++)
		if (s <= fleet_rtt_le[i]) {
			f->st.rtt_le[i]++;
			break;
		}
}

static int fleet_missing_library(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR &&
	       (strstr(r->str, "Function not found") || strstr(r->str, "NOSCRIPT"));
}

static void fleet_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct fleet *f = ac->data;
	redisReply *r = reply;
	struct fleet_cmd *c;

	/* A context being dropped, or hiredis closing one (its disconnect callback
	 * comes next and drops it). */
	if (ac != f->ac || !r)
		return;
	c = TAILQ_FIRST(&f->pending);
	if (!c)
		return;
	TAILQ_REMOVE(&f->pending, c, link);
	/* Redis lost the library (FUNCTION FLUSH, a restart without persistence
	 * behind a proxy): load it and send the call again, once. */
	if (c->fn != FLEET_FN_NONE && !c->resent && fleet_missing_library(r)) {
		c->resent = 1;
		c->deadline_us = fleet_now_us() + f->timeout_ms * 1000;
		if (fleet_load(f, c->deadline_us, fleet_handshake_cb) == 0 && fleet_send(f, c) == 0)
			return;
		if (c->cb)
			c->cb(c->ud, NULL,
			      "Redis lost llmqd's library and it could not be loaded again");
		fleet_cmd_free(c);
		return;
	}
	if (c->fn == FLEET_FN_GRANT)
		fleet_rtt(f, fleet_now_us() - c->sent_us);
	f->in_reply++;
	if (c->cb)
		c->cb(c->ud, r, NULL);
	f->in_reply--;
	fleet_cmd_free(c);
	if (f->state != FLEET_DOWN)
		fleet_arm(f);
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

static void fleet_connect(struct fleet *f)
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

static void fleet_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	fleet_connect(arg);
}

static void fleet_beat_reply(void *ud, struct redisReply *r, const char *err)
{
	struct fleet *f = ud;
	size_t i;

	f->beating = 0;
	if (!r)
		return;
	if (r->type != REDIS_REPLY_ARRAY) {
		char why[sizeof(f->st.error)];

		fleet_explain(f, "the heartbeat", r->type == REDIS_REPLY_ERROR ? r->str : "?", why,
		              sizeof(why));
		fleet_drop(f, "%s", why);
		return;
	}
	for (i = 0; i < r->elements && i < (size_t)f->n_shares; i++)
		if (r->element[i]->type == REDIS_REPLY_INTEGER)
			f->hosts[i] = r->element[i]->integer > 0 ? (int)r->element[i]->integer : 1;
}

/* Every FLEET_HEARTBEAT_MS: this host is alive; how many share each key. */
static void fleet_beat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fleet *f = arg;
	const char *argv[3 + 1 + FLEET_MAX_SHARES + 4];
	char keys[FLEET_MAX_SHARES + 1][96], nkeys[16], ttl[16], info[128];
	int i, n = 0;

	if (f->state != FLEET_UP)
		return;
	fleet_arm_us(f->beat, FLEET_HEARTBEAT_MS * 1000);
	if (f->beating)
		return;
	snprintf(keys[0], sizeof(keys[0]), "llmq:host:%s", f->host_id);
	for (i = 0; i < f->n_shares; i++)
		snprintf(keys[i + 1], sizeof(keys[i + 1]), "llmq:{%s}:hosts", f->shares[i]);
	snprintf(nkeys, sizeof(nkeys), "%d", f->n_shares + 1);
	snprintf(ttl, sizeof(ttl), "%d", FLEET_HOST_TTL_MS);
	snprintf(info, sizeof(info), "llmqd %s pid %d", LLMQ_VERSION, (int)getpid());
	argv[n++] = nkeys;
	for (i = 0; i <= f->n_shares; i++)
		argv[n++] = keys[i];
	argv[n++] = "";
	argv[n++] = f->host_id;
	argv[n++] = ttl;
	argv[n++] = info;
	if (fleet_call(f, FLEET_FN_BEAT, n, argv, NULL, fleet_beat_reply, f) == 0)
		f->beating = 1;
}

int fleet_call(struct fleet *f, enum fleet_fn fn, int argc, const char **argv,
               const size_t *argvlen, fleet_reply_fn *cb, void *ud)
{
	const char *few[64], **all = few;
	size_t few_lens[64], *lens = few_lens;
	int i, r;

	if (f->state != FLEET_UP)
		return -ENOTCONN;
	if (argc + 2 > 64) {
		all = calloc((size_t)argc + 2, sizeof(*all));
		lens = calloc((size_t)argc + 2, sizeof(*lens));
		if (!all || !lens) {
			r = -ENOMEM;
			goto out;
		}
	}
	all[0] = "FCALL";
	all[1] = f->fn_names[fn];
	lens[0] = 5;
	lens[1] = strlen(all[1]);
	for (i = 0; i < argc; i++) {
		all[i + 2] = argv[i];
		lens[i + 2] = argvlen ? argvlen[i] : strlen(argv[i]);
	}
	r = fleet_queue(f, argc + 2, all, lens, fn, fleet_now_us() + f->timeout_ms * 1000, cb, ud);
out:
	if (all != few)
		free(all);
	if (lens != few_lens)
		free(lens);
	return r;
}

/* HOSTNAME-PID-RANDOM: unique among the live hosts, kept nowhere. */
static void fleet_make_id(char *buf, size_t len)
{
	char host[64] = "host";
	unsigned r = 0;
	FILE *u;

	if (gethostname(host, sizeof(host)) < 0 || !host[0])
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	host[strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")] =
	    '\0';
	u = fopen("/dev/urandom", "re");
	if (!u || fread(&r, sizeof(r), 1, u) != 1)
		r = (unsigned)fleet_now_us();
	if (u)
		fclose(u);
	snprintf(buf, len, "%.40s-%d-%06x", host, (int)getpid(), r & 0xffffff);
}

int fleet_new(struct event_base *base, const struct fleet_config *cfg, const char *const *shares,
              int n_shares, struct fleet **ret, char *err, size_t errlen)
{
	struct fleet *f;
	int i, j, r;

	f = calloc(1, sizeof(*f));
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->base = base;
	f->state = FLEET_DOWN;
	f->told = -1;
	f->timeout_ms =
	    cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : FLEET_DEFAULT_TIMEOUT_MS;
	f->backoff_ms = FLEET_BACKOFF_FIRST_MS;
	TAILQ_INIT(&f->pending);
	r = fleet_url_parse(cfg->redis_url, &f->addr, err, errlen);
	if (r < 0)
		goto fail;
	fleet_url_show(&f->addr, f->shown, sizeof(f->shown));
	snprintf(f->st.url, sizeof(f->st.url), "%s", f->shown);
	r = fleet_read_password(cfg->redis_password_file, &f->password);
	if (r < 0) {
		snprintf(err, errlen,
		         "cannot read the Redis password from redis_password_file %s: %s%s",
		         cfg->redis_password_file,
		         r == -ENOKEY ? "a bare name is a systemd credential, and "
		                        "$CREDENTIALS_DIRECTORY is not set"
		                      : strerror(-r),
		         r == -ENOKEY ? "; give a path, or LoadCredential= it" : "");
		goto fail;
	}
	if (!f->password && f->addr.password[0] && !(f->password = strdup(f->addr.password))) {
		r = -ENOMEM;
		goto fail;
	}
	explicit_bzero(f->addr.password, sizeof(f->addr.password));
	if (cfg->host_id[0])
		snprintf(f->host_id, sizeof(f->host_id), "%s", cfg->host_id);
	else
		fleet_make_id(f->host_id, sizeof(f->host_id));
	snprintf(f->st.host_id, sizeof(f->st.host_id), "%s", f->host_id);
	for (i = 0; i < n_shares; i++) {
		for (j = 0; j < f->n_shares && strcmp(f->shares[j], shares[i]) != 0; j++)
			;
		if (j < f->n_shares)
			continue;
		if (f->n_shares == FLEET_MAX_SHARES) {
			snprintf(err, errlen, "more than %d shares", FLEET_MAX_SHARES);
			r = -E2BIG;
			goto fail;
		}
		snprintf(f->shares[f->n_shares], sizeof(f->shares[0]), "%s", shares[i]);
		f->hosts[f->n_shares++] = 1;
	}
	for (i = 1; i < FLEET_FN__COUNT; i++)
		snprintf(f->fn_names[i], sizeof(f->fn_names[i]), "%s_%s", fleet_lua_lib,
		         fleet_fn_suffix[i]);
	f->timer = evtimer_new(base, fleet_timer_cb, f);
	f->retry = evtimer_new(base, fleet_retry_cb, f);
	f->teardown = event_new(base, -1, 0, fleet_teardown_cb, f);
	f->beat = evtimer_new(base, fleet_beat_cb, f);
	if (!f->timer || !f->retry || !f->teardown || !f->beat) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	*ret = f;
	return 0;
fail:
	fleet_free(f);
	return r;
}

void fleet_start(struct fleet *f, fleet_state_fn *cb, void *ud)
{
	f->on_state = cb;
	f->state_ud = ud;
	fleet_connect(f);
}

void fleet_flush(struct fleet *f)
{
	int done = 0, i;

	/* What is queued goes out now, without waiting for the answers. */
	for (i = 0; f->ac && f->state == FLEET_UP && !done && i < 16; i++)
		if (redisBufferWrite(&f->ac->c, &done) != REDIS_OK)
			break;
}

void fleet_free(struct fleet *f)
{
	struct fleet_cmd *c;

	if (!f)
		return;
	f->stopping = 1;
	f->on_state = NULL;
	while ((c = TAILQ_FIRST(&f->pending))) {
		TAILQ_REMOVE(&f->pending, c, link);
		fleet_cmd_free(c);
	}
	if (f->lookup) {
		f->lookup->f = NULL;
		f->lookup = NULL;
	}
	if (f->dead) {
		redisAsyncContext *ac = f->dead;

		f->dead = NULL;
		redisAsyncFree(ac);
	}
	if (f->ac) {
		redisAsyncContext *ac = f->ac;

		f->ac = NULL;
		redisAsyncFree(ac);
	}
	if (f->dns)
		evdns_base_free(f->dns, 1); /* lookups in flight are answered, and freed */
	if (f->timer)
		event_free(f->timer);
	if (f->retry)
		event_free(f->retry);
	if (f->teardown)
		event_free(f->teardown);
	if (f->beat)
		event_free(f->beat);
	if (f->password) {
		explicit_bzero(f->password, strlen(f->password));
		free(f->password);
	}
	explicit_bzero(&f->addr, sizeof(f->addr));
	free(f);
}

int fleet_up(const struct fleet *f)
{
	return f && f->state == FLEET_UP;
}

int fleet_hosts(const struct fleet *f, const char *share)
{
	int i;

	for (i = 0; f && i < f->n_shares; i++)
		if (strcmp(f->shares[i], share) == 0)
			return f->hosts[i] > 0 ? f->hosts[i] : 1;
	return 1;
}

const char *fleet_host_id(const struct fleet *f)
{
	return f->host_id;
}

static int fleet_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

void fleet_stats(const struct fleet *f, struct fleet_stats *ret)
{
	int64_t v[FLEET_RTT_RING];
	size_t n = f->st.grants < FLEET_RTT_RING ? (size_t)f->st.grants : FLEET_RTT_RING;

	*ret = f->st;
	ret->rtt_p50_us = ret->rtt_p99_us = -1;
	if (n == 0)
		return;
	memcpy(v, f->rtt_ring, n * sizeof(v[0]));
	qsort(v, n, sizeof(v[0]), fleet_cmp_i64);
	ret->rtt_p50_us = v[(n - 1) / 2];
	ret->rtt_p99_us = v[(n * 99 + 99) / 100 - 1];
}
