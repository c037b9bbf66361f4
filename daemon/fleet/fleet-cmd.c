/*
 * fleet-cmd.c - the commands to the fleet's Redis. hiredis 0.14 has no
 * command timeout: replies come in the order commands went, so one timer for
 * the oldest command's deadline (the handshake's counts from the connect) is
 * all it takes; past it the connection is dropped. A command goes out at
 * once, not on the loop's next turn; a reply finds its command at the head
 * of the queue; a call Redis answers "function not found" (the library lost)
 * is sent again once, after loading the library. Grants' round trips are
 * measured here. The connection itself is fleet-conn.c's.
 */
#include "fleet/fleet-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>

static int fleet_send(struct fleet *f, struct fleet_cmd *c);
static void fleet_on_reply(redisAsyncContext *ac, void *r, void *privdata);

int64_t fleet_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void fleet_arm_us(struct event *ev, int64_t us)
{
	struct timeval tv;

	if (us < 0)
		us = 0;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	evtimer_add(ev, &tv);
}

/* The timer follows the oldest command's deadline (or the lookup's). */
void fleet_arm(struct fleet *f)
{
	struct fleet_cmd *c = TAILQ_FIRST(&f->pending);

	if (c)
		fleet_arm_us(f->timer, c->deadline_us - fleet_now_us());
	else if (f->state == FLEET_RESOLVING)
		fleet_arm_us(f->timer, f->connect_deadline_us - fleet_now_us());
	else
		evtimer_del(f->timer);
}

void fleet_cmd_free(struct fleet_cmd *c)
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

void fleet_timer_cb(evutil_socket_t fd, short what, void *arg)
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

/* Queue a command made of argv; internal ones come before the fleet is up. */
int fleet_queue(struct fleet *f, int argc, const char **argv, const size_t *argvlen,
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

int fleet_load(struct fleet *f, int64_t deadline_us, fleet_reply_fn *cb)
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
