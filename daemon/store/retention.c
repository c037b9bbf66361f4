/*
 * retention.c - the retention timer, and its steps: each one a transaction
 * of the writer thread's (store/writer.h) when there is one, so the loop
 * neither deletes nor gives pages back itself; on the loop otherwise. A
 * step is handed over with the batches whose results are being read then
 * (store_held_copy); one started while it is on its way is as one started
 * between two steps: retention may already have deleted part of it.
 */
#include "store/retention.h"
#include "log.h"
#include "store/store.h"
#include "store/writer.h"
#include "timeutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RETENTION_STEP 1000      /* rows per step: a few ms of work */
#define RETENTION_BUSY_MS 50     /* between steps while there is more */
#define RETENTION_IDLE_MS 600000 /* between sweeps */

/* One step, the writer's from writer_submit() until its done(). */
struct retention_step {
	struct writer_item item; /* first: the item is the step */
	struct retention *rt;    /* NULL once retention was freed meanwhile */
	int64_t before;
	char *held; /* the batches being read, a JSON array */
	int64_t rows;
	char *why; /* what the writer's connection said of a refusal */
};

struct retention {
	struct llmqd *d;
	struct writer *writer; /* NULL: steps on the loop */
	struct event *timer;
	struct retention_step *flying;
	int64_t swept; /* rows deleted in the sweep under way */
};

static void arm(struct retention *rt, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(rt->timer, &tv);
}

static int64_t idle_ms(const struct retention *rt)
{
	/* A short retention (tests) is swept often; a month, every ten minutes. */
	int64_t half = rt->d->cfg->retention_ms / 2;

	return half < RETENTION_IDLE_MS ? (half > 100 ? half : 100) : RETENTION_IDLE_MS;
}

/* How a step ended: the next one then. */
static void stepped(struct retention *rt, int r, int64_t rows, const char *why)
{
	if (r < 0) {
		/* Busy or full: try again at the next sweep; nothing is half done. */
		log_warn("retention: cannot delete old batches now: %s (%s); trying again later",
		         strerror(-r), why);
		arm(rt, idle_ms(rt));
		return;
	}
	rt->swept += rows;
	if (rows > 0) {
		arm(rt, RETENTION_BUSY_MS);
		return;
	}
	if (rt->swept > 0)
		log_info("retention: deleted %lld rows of batches and calls older than %llds",
		         (long long)rt->swept, (long long)(rt->d->cfg->retention_ms / 1000));
	rt->swept = 0;
	arm(rt, idle_ms(rt));
}

/* On the writer thread, with its connection. */
static int step_run(struct store *st, struct writer_item *it)
{
	struct retention_step *p = (struct retention_step *)it;
	int r = store_tx_begin(st);

	if (r < 0)
		goto out;
	writer_holds_lock(it, 1);
	r = store_prune_held(st, p->before, RETENTION_STEP, p->held, &p->rows);
	if (r == 0)
		r = store_tx_commit(st);
	if (r < 0)
		store_tx_rollback(st);
	/* Refused (a full disk), the pages are given back at a later step. */
	if (r == 0 && p->rows > 0)
		(void)store_vacuum_step(st, RETENTION_STEP);
	writer_holds_lock(it, 0);
out:
	if (r < 0)
		p->why = strdup(store_errmsg(st));
	return r;
}

/* On the loop, the step written or refused. */
static void step_done(struct writer_item *it, int r)
{
	struct retention_step *p = (struct retention_step *)it;

	if (p->rt) {
		p->rt->flying = NULL;
		stepped(p->rt, r, p->rows, p->why ? p->why : strerror(-r));
	}
	free(p->held);
	free(p->why);
	free(p);
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct retention *rt = arg;
	int64_t before = time_wall_ms() - rt->d->cfg->retention_ms, rows = 0;
	struct retention_step *p;
	int r;

	if (rt->writer) {
		p = calloc(1, sizeof(*p));
		if (p && !(p->held = store_held_copy(rt->d->store))) {
			free(p);
			p = NULL;
		}
		if (!p) {
			stepped(rt, -ENOMEM, 0, "no memory for the step");
			return;
		}
		p->item.run = step_run;
		p->item.done = step_done;
		p->rt = rt;
		p->before = before;
		rt->flying = p;
		writer_submit(rt->writer, &p->item);
		return;
	}
	r = store_prune(rt->d->store, before, RETENTION_STEP, &rows);
	stepped(rt, r, rows, store_errmsg(rt->d->store));
}

int retention_new(struct llmqd *d, struct writer *writer, struct retention **ret)
{
	struct retention *rt;

	*ret = NULL;
	if (d->cfg->retention_ms <= 0)
		return 0;
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->d = d;
	rt->writer = writer;
	rt->timer = evtimer_new(d->base, step_cb, rt);
	if (!rt->timer) {
		free(rt);
		return -ENOMEM;
	}
	arm(rt, 1000); /* a first sweep soon after start */
	*ret = rt;
	return 0;
}

void retention_free(struct retention *rt)
{
	if (!rt)
		return;
	/* A step on its way ends without us: the writer's drain frees it. */
	if (rt->flying)
		rt->flying->rt = NULL;
	event_free(rt->timer);
	free(rt);
}
