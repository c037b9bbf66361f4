/*
 * retention.c - the retention timer.
 */
#include "store/retention.h"
#include "log.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RETENTION_STEP 1000      /* rows per step: a few ms of work */
#define RETENTION_BUSY_MS 50     /* between steps while there is more */
#define RETENTION_IDLE_MS 600000 /* between sweeps */

struct retention {
	struct llmqd *d;
	struct event *timer;
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

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct retention *rt = arg;
	int64_t before = time_wall_ms() - rt->d->cfg->retention_ms, rows = 0;
	int r = store_prune(rt->d->store, before, RETENTION_STEP, &rows);

	if (r < 0) {
		/* Busy or full: try again at the next sweep; nothing is half done. */
		log_warn("retention: cannot delete old batches now: %s; trying again later",
		         strerror(-r));
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

int retention_new(struct llmqd *d, struct retention **ret)
{
	struct retention *rt;

	*ret = NULL;
	if (d->cfg->retention_ms <= 0)
		return 0;
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->d = d;
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
	event_free(rt->timer);
	free(rt);
}
