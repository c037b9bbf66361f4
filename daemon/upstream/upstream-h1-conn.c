/*
 * upstream-h1-conn.c - the addresses and connections of llmqd's own HTTP/1.1
 * client (upstream-h1.c sends on them): which URLs it may take (plain http
 * to an IPv4 or IPv6 address, no user, no proxy set), each address's idle
 * connections (last back first out, at most H1_MAX_IDLE in all, each closed
 * once idle for H1_IDLE_MAX_MS, taken or not), and the closing of a
 * connection, whose memory is freed at the next loop turn since it may be
 * closed from its own callback.
 */
#include "upstream/upstream-private.h"
#include "log.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define H1_MAX_IDLE 1024      /* idle connections kept, all addresses together */
#define H1_MAX_TARGETS 64     /* addresses spoken to; more go by curl */
#define H1_IDLE_MAX_MS 118000 /* an idle connection older than this is closed */

/* A byte a request line's target may not hold as it is (curl's to encode). */
static int bad_target(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return 1;
	return 0;
}

static int parse_port(const char *p, const char *end, int *ret)
{
	long port = 0;

	if (p == end || end - p > 5)
		return -1;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		port = port * 10 + (*p - '0');
	}
	if (port < 1 || port > 65535)
		return -1;
	*ret = (int)port;
	return 0;
}

/* host[:port] with host an IPv4 address or a bracketed IPv6 one. */
static int parse_authority(const char *auth, size_t alen, struct h1_target *tg)
{
	const char *end = auth + alen, *host = auth, *hend, *rest;
	struct sockaddr_in *sin = (struct sockaddr_in *)&tg->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&tg->addr;
	int v6 = auth[0] == '[';

	if (v6) {
		hend = memchr(auth, ']', alen);
		if (!hend)
			return -1;
		host = auth + 1;
		rest = hend + 1;
	} else {
		hend = memchr(auth, ':', alen);
		hend = hend ? hend : end;
		rest = hend;
	}
	if (hend == host || (size_t)(hend - host) >= sizeof(tg->name))
		return -1;
	memcpy(tg->name, host, (size_t)(hend - host));
	tg->name[hend - host] = '\0';
	tg->port = 80;
	if (rest < end && (*rest != ':' || parse_port(rest + 1, end, &tg->port) < 0))
		return -1;
	if (v6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)tg->port);
		tg->addr_len = sizeof(*sin6);
		return inet_pton(AF_INET6, tg->name, &sin6->sin6_addr) == 1 ? 0 : -1;
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)tg->port);
	tg->addr_len = sizeof(*sin);
	return inet_pton(AF_INET, tg->name, &sin->sin_addr) == 1 ? 0 : -1;
}

int h1_target_for(struct upstream *up, const char *url, struct h1_target **ret_target,
                  const char **ret_path)
{
	struct h1_target *tg;
	const char *auth, *end;
	size_t alen;
	int n = 0;

	if (strncasecmp(url, "http://", 7) != 0)
		return 0;
	auth = url + 7;
	end = auth + strcspn(auth, "/?#");
	alen = (size_t)(end - auth);
	if (alen == 0 || alen >= sizeof(tg->authority) || memchr(auth, '@', alen) ||
	    (*end != '/' && *end != '\0') || bad_target(end))
		return 0; /* a user, a query without a path, a byte to refuse: curl's */
	for (tg = up->targets; tg; tg = tg->next, n++) {
		if (strlen(tg->authority) == alen && memcmp(tg->authority, auth, alen) == 0) {
			*ret_target = tg;
			*ret_path = *end ? end : "/";
			return 1;
		}
	}
	if (n >= H1_MAX_TARGETS)
		return 0;
	tg = calloc(1, sizeof(*tg));
	if (!tg)
		return -ENOMEM;
	if (parse_authority(auth, alen, tg) < 0) {
		free(tg); /* a name to resolve, or a zone: curl's */
		return 0;
	}
	memcpy(tg->authority, auth, alen);
	tg->next = up->targets;
	up->targets = tg;
	*ret_target = tg;
	*ret_path = *end ? end : "/";
	return 1;
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *up = arg;
	struct h1_conn *c;

	while ((c = up->dead)) {
		up->dead = c->next;
		if (c->rd)
			event_free(c->rd);
		if (c->wr)
			event_free(c->wr);
		free(c->in);
		free(c);
	}
}

/* Closed now, freed at the next loop turn (this may be its own callback). */
void h1_conn_close(struct h1_conn *c)
{
	if (c->rd)
		event_del(c->rd);
	if (c->wr)
		event_del(c->wr);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->t = NULL;
	c->next = c->up->dead;
	c->up->dead = c;
	event_active(c->up->reap, EV_TIMEOUT, 1);
}

/* *p out of its address's idle list, which p points into. */
static struct h1_conn *idle_unlink(struct h1_conn **p)
{
	struct h1_conn *c = *p;

	*p = c->next;
	c->next = NULL;
	c->tg->n--;
	c->up->n_idle--;
	return c;
}

void h1_idle_drop(struct h1_conn *c)
{
	struct h1_conn **p;

	for (p = &c->tg->idle; *p && *p != c; p = &(*p)->next)
		;
	if (*p)
		idle_unlink(p);
	h1_conn_close(c);
}

/* The sweep's next run in ms from now, unless it is set already. */
static void sweep_arm(struct upstream *up, int64_t ms)
{
	struct timeval tv;

	if (evtimer_pending(up->sweep, NULL))
		return;
	time_to_timeval(ms, &tv);
	if (evtimer_add(up->sweep, &tv) < 0)
		log_warn(
		    "upstream: cannot arm the idle connections' sweep; old ones wait for a call");
}

/*
 * Idle connections past their limit are closed, whether or not a call
 * comes for their address: a server is not left holding them. Each list is
 * newest first, so what is past the limit is its tail.
 */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *up = arg;
	int64_t now = time_mono_ms(), oldest = INT64_MAX;
	struct h1_target *tg;
	struct h1_conn **p;

	for (tg = up->targets; tg; tg = tg->next) {
		for (p = &tg->idle; *p && now - (*p)->idle_since < up->idle_max_ms; p = &(*p)->next)
			oldest = (*p)->idle_since < oldest ? (*p)->idle_since : oldest;
		while (*p)
			h1_conn_close(idle_unlink(p));
	}
	if (oldest != INT64_MAX)
		sweep_arm(up, oldest + up->idle_max_ms - now);
}

void h1_idle_put(struct h1_conn *c)
{
	struct upstream *up = c->up;

	if (up->n_idle >= H1_MAX_IDLE || event_add(c->rd, NULL) < 0) {
		h1_conn_close(c);
		return;
	}
	c->idle_since = time_mono_ms();
	c->next = c->tg->idle;
	c->tg->idle = c;
	c->tg->n++;
	up->n_idle++;
	sweep_arm(up, up->idle_max_ms);
}

struct h1_conn *h1_idle_take(struct h1_target *tg)
{
	int64_t now = time_mono_ms();
	struct h1_conn *c;

	while (tg->idle) {
		c = idle_unlink(&tg->idle);
		if (now - c->idle_since < c->up->idle_max_ms)
			return c;
		h1_conn_close(c);
	}
	return NULL;
}

/* curl's own rules for a proxy before a plain http URL: those go by curl. */
static int proxy_set(void)
{
	static const char *const vars[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
	const char *v;
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if ((v = getenv(vars[i])) && *v)
			return 1;
	return 0;
}

void upstream_use_builtin(struct upstream *up, int on)
{
	up->builtin = on && !proxy_set();
}

void upstream_set_idle_limit(struct upstream *up, int64_t ms)
{
	up->idle_max_ms = ms > 0 ? ms : H1_IDLE_MAX_MS;
}

int h1_init(struct upstream *up)
{
	up->reap = event_new(up->base, -1, 0, reap_cb, up);
	up->sweep = evtimer_new(up->base, sweep_cb, up);
	if (!up->reap || !up->sweep)
		return -ENOMEM;
	up->idle_max_ms = H1_IDLE_MAX_MS;
	up->builtin = !proxy_set();
	return 0;
}

void h1_free_all(struct upstream *up)
{
	struct h1_target *tg;
	struct h1_conn *c;

	while ((tg = up->targets)) {
		up->targets = tg->next;
		while ((c = h1_idle_take(tg)))
			h1_conn_close(c);
		free(tg);
	}
	if (up->sweep)
		event_free(up->sweep);
	if (up->reap) {
		reap_cb(-1, 0, up);
		event_free(up->reap);
	}
}
