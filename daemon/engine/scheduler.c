/*
 * scheduler.c - the scheduler's object and what ties its parts: its making,
 * stopping and freeing, the pump (callers first, then the batch, lane by
 * lane) and the timers that run it, the once-a-second tick (expired
 * batches, windows due for probation, the fleet's look), and what readers
 * get of it (lane snapshots, the upstream, the ledger).
 *
 * The parts, over scheduler-private.h: a lane's queue, gate, setup and
 * pause in sched-lanes.c; batch jobs in flight in sched-flights.c;
 * interactive calls at the gate in sched-tickets.c; what an answer says in
 * sched-answers.c; a lane whose gate is the fleet's (LLMQ_REDIS_URL) in
 * sched-fleet.c and sched-fleet-mirror.c. The scheduler owns flights from
 * launch until the upstream's done callback (or sched_stop) frees them, and
 * tickets from enqueue until sched_call_done, sched_call_cancel or a
 * refusal frees them.
 */
#include "engine/scheduler-private.h"
#include "service/config.h"
#include "upstream/hop.h"
#include "gate/lane.h"
#include "log.h"
#include "store/store.h"
#include "timeutil.h"
#include "store/writeback.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

double sched_rand01(struct scheduler *s)
{
	/* xorshift64*: jitter only, not security. */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double)((s->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

void sched_arm(struct lane *l, int64_t at, int64_t now)
{
	int64_t d = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};

	evtimer_add(l->timer, &tv);
}

/*
 * Interactive calls go first, unless they have had more than their share
 * lately and a batch job is ready; a batch job never overtakes a call that
 * is preferred but must wait.
 */
static void pump_lane(struct lane *l)
{
	enum launch_result r;

	if (l->paused_at)
		return; /* by an operator: what flies finishes, nothing new goes */
	/* The fleet's shared gate is asked, not consulted: sched-fleet.c. */
	if (l->mode != LANE_ALONE && l->mode != LANE_FALLBACK) {
		sched_fleet_pump(l);
		return;
	}
	while (!l->s->stopping) {
		if (l->n_waiting > 0 &&
		    gate_first_class(&l->gate, time_mono_ms()) == GATE_INTERACTIVE) {
			r = sched_ticket_launch(l);
			if (r == LAUNCHED)
				continue;
			if (r != NOTHING)
				return;
			/* No caller may go now (their budgets hold them): the batch's turn. */
		}
		r = sched_flight_launch(l);
		if (r == LAUNCHED)
			continue;
		/* Callers may still use what a batch may not: the reserved slots. */
		if ((r == NOTHING || r == SLOTS_FULL) && sched_ticket_launch(l) == LAUNCHED)
			continue;
		return;
	}
}

void sched_pump(struct scheduler *s, struct lane *only)
{
	int i, owner = sched_launches_begin(s);

	for (i = 0; i < s->n_lanes; i++)
		if (!only || only == &s->lanes[i])
			pump_lane(&s->lanes[i]);
	sched_launches_end(s, owner);
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_pump(arg, NULL);
}

static void lane_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;

	sched_pump(l->s, l);
}

void sched_pump_soon(struct scheduler *s)
{
	if (!s->stopping)
		event_active(s->pump, 0, 0);
}

void sched_queues_changed(struct scheduler *s)
{
	int i;

	for (i = 0; i < s->n_lanes; i++)
		s->lanes[i].queued = 1;
}

/* From outside the scheduler (a batch stored, retried or resumed, jobs
 * requeued at start, a lane resumed, a reload): the queues may have new
 * jobs, whoever asks, so nothing that adds jobs can leave them unseen. */
void sched_kick(struct scheduler *s)
{
	sched_queues_changed(s);
	sched_pump_soon(s);
}

void sched_after_turn(struct scheduler *s)
{
	sched_fleet_after_turn(s);
	writeback_after_turn(s->wb);
}

/* Outcomes reached the database: retried jobs may be ready. */
static void on_written(void *userdata)
{
	sched_queues_changed(userdata);
	sched_pump_soon(userdata);
}

/*
 * Jobs still queued when their batch's window ends fail as batch_expired,
 * and the held jobs of running batches that their ingest could not let go
 * (a release refused for good) are let go: a write transaction every
 * second, even when nothing expires, so it is the writer thread's when
 * there is one (the loop never waits for it), one at a time.
 */
int sched_release_later(struct scheduler *s, const char *batch_id, int64_t first, int64_t last)
{
	struct sched_stray *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	snprintf(st->batch_id, sizeof(st->batch_id), "%s", batch_id);
	st->first = first;
	st->last = last;
	st->next = s->strays;
	s->strays = st;
	return 0;
}

static int expire_all(struct store *st, int64_t now, int64_t *jobs, struct sched_stray *strays)
{
	int r = store_expire(st, now, jobs);

	for (; strays; strays = strays->next)
		strays->done =
		    store_batch_release(st, strays->batch_id, strays->first, strays->last, 0) == 0;
	return r;
}

/* The strays an item tried: those let go are freed, the others kept. */
static void strays_back(struct scheduler *s, struct sched_stray *strays)
{
	struct sched_stray *st;
	int let_go = 0;

	while ((st = strays)) {
		strays = st->next;
		if (!st->done) {
			st->next = s->strays;
			s->strays = st;
			continue;
		}
		log_info("batch %s: its held jobs are let go", st->batch_id);
		let_go = 1;
		free(st);
	}
	if (let_go)
		sched_kick(s); /* their lanes have new work, and nothing else wakes them */
}

static void expired(int64_t n)
{
	if (n > 0)
		log_warn("%lld queued requests expired: their batch's completion window ended "
		         "(they are in the batch's errors as batch_expired)",
		         (long long)n);
}

static int expire_run(struct store *st, struct writer_item *it)
{
	struct sched_expiry *e = (struct sched_expiry *)it;
	int r;

	writer_holds_lock(it, 1);
	r = expire_all(st, e->now, &e->jobs, e->strays);
	writer_holds_lock(it, 0);
	return r;
}

static void expire_done(struct writer_item *it, int r)
{
	struct sched_expiry *e = (struct sched_expiry *)it;

	e->busy = 0;
	strays_back(e->s, e->strays);
	e->strays = NULL;
	/* Refused by another program's lock: health.c asks the loop's connection
	 * (a write of the writer's is what notices one on an idle llmqd). */
	if (r == -EBUSY)
		store_note_contended(e->s->d->store, time_wall_ms());
	if (r == 0) {
		store_note_contended(e->s->d->store, 0);
		expired(e->jobs);
	} /* else: tried again in a second */
}

static void expire(struct scheduler *s)
{
	struct sched_expiry *e = &s->expire;
	struct sched_stray *strays = s->strays;
	int64_t n = 0;

	if (!s->writer) {
		s->strays = NULL;
		if (expire_all(s->d->store, time_wall_ms(), &n, strays) == 0)
			expired(n);
		strays_back(s, strays);
		return;
	}
	if (e->busy)
		return;
	e->item.run = expire_run;
	e->item.done = expire_done;
	e->s = s;
	e->now = time_wall_ms();
	e->jobs = 0;
	e->strays = s->strays;
	s->strays = NULL;
	e->busy = 1;
	writer_submit(s->writer, &e->item);
}

/* Once a second: batches whose window ended; learned windows due for probation. */
static void expiry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;
	int64_t now = time_mono_ms();
	int i;

	for (i = 0; i < s->n_lanes; i++)
		if (s->lanes[i].mode == LANE_ALONE || s->lanes[i].mode == LANE_FALLBACK)
			sched_probation(&s->lanes[i], now);
	sched_fleet_tick(s);
	/* Budgets that were waiting for the store to say what was spent. */
	if (ledger_tick(s->ledger, time_wall_ms()) == 1)
		sched_pump_soon(s);
	expire(s);
}

int sched_new(struct llmqd *d, struct scheduler **ret)
{
	static const struct timeval expiry_every = {1, 0};

	struct scheduler *s;
	int64_t now = time_mono_ms();
	int i, k, r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->d = d;
	if (getrandom(&s->rng, sizeof(s->rng), 0) != (ssize_t)sizeof(s->rng) || !s->rng)
		s->rng = (uint64_t)time_wall_ms() | 1;
	r = hop_new_id(s->id);
	if (r == 0)
		r = upstream_new(d->base, s->id, &s->up);
	if (r < 0)
		goto fail;
	upstream_use_builtin(s->up, !d->cfg->upstream_curl);
	s->pump = event_new(d->base, -1, 0, pump_cb, s);
	s->expiry = event_new(d->base, -1, EV_PERSIST, expiry_cb, s);
	if (!s->pump || !s->expiry || evtimer_add(s->expiry, &expiry_every) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	r = writeback_new(d->base, d->store, on_written, s, &s->wb);
	if (r == 0)
		s->writer = writeback_writer(s->wb);
	if (r == 0)
		r = ledger_new(d->store, d->cfg, d->cfg->n_lanes, time_wall_ms(), &s->ledger);
	if (r < 0)
		goto fail;
	for (i = 0; i < d->cfg->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		l->s = s;
		l->cfg = &d->cfg->lanes[i];
		l->last_uid = STORE_UID_FIRST;
		l->last_call_uid = INT64_MIN;
		l->queued = 1;
		for (k = 0; k < SCHED_TURNS; k++)
			l->turns[k].uid = -2;
		LIST_INIT(&l->flights);
		TAILQ_INIT(&l->waiting);
		LIST_INIT(&l->flying);
		l->mode = d->cfg->fleet.redis_url[0] ? LANE_STARTING : LANE_ALONE;
		sched_lane_limits(l->cfg, &l->lim);
		gate_init(&l->gate, &l->lim, now);
		sched_lane_start_window(l, now);
		sched_restore_pause(l);
		r = lane_load_key(l->cfg, &l->key);
		if (r < 0)
			goto fail;
		l->timer = evtimer_new(d->base, lane_timer_cb, l);
		if (!l->timer) {
			r = -ENOMEM;
			goto fail;
		}
		s->n_lanes++;
	}
	r = sched_fleet_new(s);
	if (r < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	sched_free(s);
	return r;
}

void sched_stop(struct scheduler *s)
{
	struct store_outcome o = {0};
	struct sched_ticket *t;
	struct flight *f;
	int i;

	s->stopping = 1;
	o.attempt_outcome = "interrupted";
	o.error_code = "interrupted";
	o.error_message = "llmqd stopped while the request was in flight";
	o.retry_after_ms = -1;
	o.prompt_tokens = o.completion_tokens = o.total_tokens = o.cached_tokens = -1;
	o.cost_nusd = -1;
	o.latency_ms = -1;
	o.remaining_tokens = o.remaining_requests = -1;
	/* Launches being recorded come back with the writer's drain below
	 * (writeback_flush): their done() sends nothing now. */
	sched_launches_stop(s);
	for (i = 0; i < s->n_lanes; i++) {
		while ((f = LIST_FIRST(&s->lanes[i].flights))) {
			LIST_REMOVE(f, link);
			if (f->transit)
				continue; /* its launch group's, until that is back */
			upstream_abort(s->up, f->t);
			/* Its slot back now, not at its lease's deadline; it may have cost
			 * (its record says interrupted, nothing spent: so do its user's
			 * budgets). */
			if (f->lease.shared)
				sched_fleet_release(&s->lanes[i], GATE_BATCH, f->charged, &f->lease,
				                    0);
			ledger_settle(s->ledger, &f->hold, -1, -1, time_wall_ms());
			writeback_add(s->wb, f->job.id, f->attempt_id, &o, time_wall_ms(), NULL);
			sched_flight_free(f);
		}
		/* Waiting callers are told to come back. */
		while ((t = TAILQ_FIRST(&s->lanes[i].waiting))) {
			sched_ticket_unqueue(t);
			sched_fleet_forget(t);
			sched_ticket_refuse(t, "gate_wait_exceeded", 5000);
			t->info.refuse(t->info.ud, 5000);
			sched_ticket_free(t);
		}
	}
	sched_fleet_flush(s);
	if (s->wb && writeback_flush(s->wb) < 0)
		log_err("stopping with outcomes the database would not take; their jobs are "
		        "requeued at the next start");
}

void sched_free(struct scheduler *s)
{
	struct sched_stray *st;
	int i;

	if (!s)
		return;
	sched_stop(s);
	for (i = 0; i < s->n_lanes; i++) {
		if (s->lanes[i].timer)
			event_free(s->lanes[i].timer);
		if (s->lanes[i].key) {
			explicit_bzero(s->lanes[i].key, strlen(s->lanes[i].key));
			free(s->lanes[i].key);
		}
	}
	sched_fleet_free(s);
	writeback_free(s->wb); /* the writer drained: an expiry in its hands is back */
	while ((st = s->strays)) {
		s->strays = st->next;
		free(st);
	}
	ledger_free(s->ledger);
	if (s->pump)
		event_free(s->pump);
	if (s->expiry)
		event_free(s->expiry);
	upstream_free(s->up);
	free(s);
}

int sched_in_flight(const struct scheduler *s)
{
	return upstream_in_flight(s->up);
}

struct writer *sched_writer(struct scheduler *s)
{
	return s->writer;
}

struct ledger *sched_ledger(struct scheduler *s)
{
	return s->ledger;
}

int sched_store_writable(const struct scheduler *s)
{
	return !writeback_failing(s->wb);
}

struct upstream *sched_upstream(struct scheduler *s)
{
	return s->up;
}

const char *sched_instance_id(const struct scheduler *s)
{
	return s->id;
}

const char *sched_lane_key(const struct scheduler *s, int i)
{
	return i >= 0 && i < s->n_lanes ? s->lanes[i].key : NULL;
}

int sched_fleet_stats(const struct scheduler *s, struct fleet_stats *ret)
{
	if (!s->fleet)
		return -ENOENT;
	fleet_stats(s->fleet, ret);
	return 0;
}

int sched_n_lanes(const struct scheduler *s)
{
	return s->n_lanes;
}

int sched_lane_index(const struct scheduler *s, const char *name)
{
	int i;

	for (i = 0; i < s->n_lanes; i++)
		if (strcmp(s->lanes[i].cfg->name, name) == 0)
			return i;
	return -ENOENT;
}

int sched_lane_snapshot(const struct scheduler *s, int i, int64_t now, struct lane_snapshot *ret)
{
	const struct lane *l;
	int64_t wall;

	if (i < 0 || i >= s->n_lanes)
		return -ENOENT;
	l = &s->lanes[i];
	memset(ret, 0, sizeof(*ret));
	ret->cfg = l->cfg;
	ret->gate = l->gate;
	ret->lim = l->lim;
	gate_refill(&ret->gate, now);
	ret->has_key = l->key != NULL;
	ret->avg_latency_ms = l->avg_latency_ms;
	ret->calls_waiting = l->n_waiting;
	ret->calls_waiting_tokens = l->waiting_tokens;
	ret->stats = l->stats;
	/* The gate's times are the monotonic clock's; the snapshot's, the wall's. */
	wall = time_wall_ms() - (time_mono_ms() - now);
	ret->window_learned = l->gate.learned;
	ret->window_learned_at = wall - (now - l->gate.learned_at);
	ret->probation_since = l->gate.probation_since ? wall - (now - l->gate.probation_since) : 0;
	ret->unreachable = l->gate.faults >= GATE_BREAKER_TRIP;
	ret->unreachable_since = ret->unreachable ? wall - (now - l->gate.fault_since) : 0;
	ret->no_credit_since = l->gate.no_credit_since ? wall - (now - l->gate.no_credit_since) : 0;
	if (l->mode != LANE_ALONE) {
		static const char *const modes[] = {
		    [LANE_STARTING] = "starting",
		    [LANE_SHARED] = "shared",
		    [LANE_FALLBACK] = "alone",
		    [LANE_RECONCILING] = "reconciling",
		};

		ret->fleet_mode = modes[l->mode];
		ret->share = config_lane_share(l->cfg);
		ret->fleet_hosts = fleet_hosts(s->fleet, ret->share);
		ret->in_flight_here = l->own[GATE_BATCH] + l->own[GATE_INTERACTIVE];
	}
	ret->paused_at = l->paused_at;
	ret->paused_by = l->paused_by;
	return 0;
}
