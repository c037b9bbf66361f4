/*
 * sched-launch.c - a pump's launches recorded before they go: queued ->
 * running, attempts + 1 and an open attempt row, the launches of one pump
 * in one transaction (each job's start a savepoint in it).
 *
 * With the writer thread (store/writer.h), the pump hands that transaction
 * over as one item and each job is sent from the item's done(), once its
 * record is confirmed; a record refused (the job cancelled meanwhile, a
 * lock, a full disk) is not sent and its reservations go back. Between its
 * pick and its record a job is still queued in the database: it is a flight
 * in transit, kept at the head of its lane's list, and the ready query
 * passes over it (sched_launch_floor); a lane whose launches are being
 * recorded picks no more until they are. The writer is in order, so a
 * job's outcome is always written after its launch's record. Without a
 * writer (the database held exclusively), the transaction is the loop's,
 * begun at the pump's first launch and taken back if its commit fails.
 */
#include "engine/scheduler-private.h"
#include "log.h"
#include "store/store.h"
#include "store/writeback.h"
#include "store/writer.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the writer thread reads and writes of a launch: copies, not the flight. */
struct launch_rec {
	struct flight *f; /* the loop's */
	int64_t job_id;
	int64_t at; /* wall ms: the attempt's start */
	int64_t charged;
	int64_t waited;
	char lane[sizeof(((struct lane_config *)0)->name)];
	/* Set by the writer. */
	int64_t attempt_id;
	int r;
};

/* A pump's launches: one writer item, one transaction. */
struct launch_item {
	struct writer_item item; /* first: the writer's item is this */
	struct scheduler *s;
	struct launch_rec *recs;
	int n, cap;
	char *why; /* what the writer's connection said of a refusal */
};

/* Before a launch's record: the pump's transaction, at its first. */
static void launches_open(struct scheduler *s)
{
	if (s->launching == LAUNCH_WANTED)
		s->launching = store_tx_begin(s->d->store) == 0 ? LAUNCH_GROUPED : LAUNCH_ALONE;
}

/* Record f's job as started; -ESTALE when it is no longer queued (cancelled). */
int sched_record_job(struct lane *l, struct flight *f, int64_t wall)
{
	struct store *st = l->s->d->store;
	int r;

	f->lane = l;
	launches_open(l->s);
	r = store_job_start(st, &f->job, l->cfg->name, wall, f->charged,
	                    wall > f->job.queued_since ? wall - f->job.queued_since : 0,
	                    &f->attempt_id);
	/* A lock another program holds is reported once, by health.c. */
	if (r < 0 && r != -ESTALE && r != -EBUSY)
		log_err("lane %s: cannot start job %lld: %s; retrying in 1s", l->cfg->name,
		        (long long)f->job.id, store_errmsg(st));
	/* Recorded: its user's budgets hold its estimate, counted in the day its
	 * attempt started (store_job_start's wall). */
	if (r == 0)
		ledger_hold(l->s->ledger, f->job.uid, sched_lane_idx(l), f->job.model,
		            f->job.est_tokens, wall, wall, time_mono_ms(), &f->hold);
	return r;
}

/* On the writer thread: the group's records in one transaction; each
 * job's -ESTALE (no longer queued) is its own, any other failure all's. */
static int launch_run(struct store *st, struct writer_item *it)
{
	struct launch_item *g = (struct launch_item *)it;
	struct store_job job = {0};
	int r, i;

	r = store_tx_begin(st);
	if (r == 0)
		writer_holds_lock(it, 1);
	for (i = 0; r == 0 && i < g->n; i++) {
		struct launch_rec *lr = &g->recs[i];

		job.id = lr->job_id;
		lr->r = store_job_start(st, &job, lr->lane, lr->at, lr->charged, lr->waited,
		                        &lr->attempt_id);
		if (lr->r < 0 && lr->r != -ESTALE)
			r = lr->r;
	}
	if (r == 0)
		r = store_tx_commit(st);
	if (r < 0) {
		g->why = strdup(store_errmsg(st));
		store_tx_rollback(st);
		for (i = 0; i < g->n; i++)
			g->recs[i].r = r;
	}
	writer_holds_lock(it, 0);
	return r;
}

/* A launch picked and reserved whose record did not come: its reservations back. */
static void launch_give_back(struct lane *l, struct flight *f, int64_t now)
{
	ledger_settle(l->s->ledger, &f->hold, 0, 0, time_wall_ms());
	if (f->lease.shared)
		sched_fleet_release(l, GATE_BATCH, f->charged, &f->lease, 1);
	else
		gate_done(&l->gate, GATE_BATCH, f->charged, 0, now);
}

/* Stopping: a launch recorded and never sent; its try is closed as interrupted. */
static void launch_interrupted(struct scheduler *s, struct flight *f)
{
	struct store_outcome o = {
	    .attempt_outcome = "interrupted",
	    .error_code = "interrupted",
	    .error_message = "llmqd stopped before the request was sent",
	    .retry_after_ms = -1,
	    .prompt_tokens = -1,
	    .completion_tokens = -1,
	    .total_tokens = -1,
	    .cached_tokens = -1,
	    .cost_nusd = -1,
	    .latency_ms = -1,
	    .remaining_tokens = -1,
	    .remaining_requests = -1,
	};

	writeback_add(s->wb, f->job.id, f->attempt_id, &o, time_wall_ms(), NULL);
}

/* On the loop, in the order pumps handed them over: send what was recorded. */
static void launch_done(struct writer_item *it, int r)
{
	struct launch_item *g = (struct launch_item *)it;
	struct scheduler *s = g->s;
	int64_t now = time_mono_ms(), wall = time_wall_ms();
	int i, told = 0;

	(void)r; /* each launch has its own */
	for (i = 0; i < g->n; i++) {
		struct launch_rec *lr = &g->recs[i];
		struct flight *f = lr->f;
		struct lane *l = f->lane;

		l->recording--;
		f->attempt_id = lr->attempt_id;
		if (lr->r == 0 && !s->stopping) {
			sched_flight_send(l, f, wall);
			continue;
		}
		/* Stopping, sched_stop took it off its lane's list already. */
		if (!s->stopping)
			LIST_REMOVE(f, link);
		launch_give_back(l, f, now);
		if (lr->r == 0)
			launch_interrupted(s, f);
		if (lr->r < 0 && lr->r != -ESTALE) {
			/* Still queued: looked for again in a second, not at the pump
			 * below (a full disk would spin the loop and the writer). */
			l->queued = 1;
			l->refused_until = now + 1000;
			if (!s->stopping)
				sched_arm(l, now + 1000, now);
			/* A lock another program holds is reported once, by health.c. */
			if (!told++ && lr->r != -EBUSY)
				log_err("lane %s: cannot record the launch of job %lld: %s (%s); "
				        "it is not sent, and tried again in 1s",
				        l->cfg->name, (long long)lr->job_id, strerror(-lr->r),
				        g->why ? g->why : "no detail");
		}
		sched_flight_free(f);
	}
	free(g->recs);
	free(g->why);
	free(g);
	/* The lanes pick again: their next launches, and those given back. */
	sched_pump_soon(s);
}

int sched_launch_defer(struct lane *l, struct flight *f, int64_t wall)
{
	struct scheduler *s = l->s;
	struct launch_item *g = s->group;
	struct launch_rec *lr;

	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g)
			return -ENOMEM;
		g->item.run = launch_run;
		g->item.done = launch_done;
		g->s = s;
		s->group = g;
	}
	if (g->n == g->cap) {
		int cap = g->cap ? g->cap * 2 : 16;

		lr = realloc(g->recs, (size_t)cap * sizeof(*lr));
		if (!lr)
			return -ENOMEM;
		g->recs = lr;
		g->cap = cap;
	}
	lr = &g->recs[g->n++];
	memset(lr, 0, sizeof(*lr));
	lr->f = f;
	lr->job_id = f->job.id;
	lr->at = wall;
	lr->charged = f->charged;
	lr->waited = wall > f->job.queued_since ? wall - f->job.queued_since : 0;
	snprintf(lr->lane, sizeof(lr->lane), "%s", l->cfg->name);
	f->lane = l;
	f->transit = 1;
	f->pump = s->pumps;
	/* Its user's budgets hold its estimate from now, so that the pump's next
	 * picks see it, counted in the day its attempt starts. */
	ledger_hold(s->ledger, f->job.uid, sched_lane_idx(l), f->job.model, f->job.est_tokens, wall,
	            wall, time_mono_ms(), &f->hold);
	LIST_INSERT_HEAD(&l->flights, f, link);
	sched_flight_turn(l, f);
	return 0;
}

int sched_launch_deferred(const struct scheduler *s)
{
	return s->writer != NULL;
}

int64_t sched_launch_floor(void *ud, const char *batch_id)
{
	struct lane *l = ud;
	struct flight *f;
	int64_t floor = 0;

	/* In transit: the head of the lane's list (groups are answered in order). */
	LIST_FOREACH(f, &l->flights, link)
	{
		if (!f->transit)
			break;
		if (f->job.id > floor && strcmp(f->job.batch_id, batch_id) == 0)
			floor = f->job.id;
	}
	return floor;
}

int sched_start_job(struct lane *l, struct flight *f, int64_t now, int64_t wall)
{
	int r;

	if (sched_launch_deferred(l->s)) {
		r = sched_launch_defer(l, f, wall);
		if (r < 0)
			sched_flight_free(f);
		return r;
	}
	r = sched_record_job(l, f, wall);

	if (r < 0) {
		sched_flight_free(f);
		return r;
	}
	sched_flight_send(l, f, wall);
	return 0;
}

/* The database never saw this pump's launches: take them back. */
static void undo_pump(struct scheduler *s)
{
	int64_t now = time_mono_ms();
	struct flight *f, *next;
	int i;

	for (i = 0; i < s->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		for (f = LIST_FIRST(&l->flights); f; f = next) {
			next = LIST_NEXT(f, link);
			if (f->pump != s->pumps)
				continue;
			LIST_REMOVE(f, link);
			upstream_abort(s->up, f->t);
			sched_own(l, GATE_BATCH, -1);
			/* Nothing was spent: neither of the lane's budget nor of its user's. */
			ledger_settle(s->ledger, &f->hold, 0, 0, time_wall_ms());
			if (f->lease.shared)
				sched_fleet_release(l, GATE_BATCH, f->charged, &f->lease, 1);
			else
				gate_done(&l->gate, GATE_BATCH, f->charged, 0, now);
			l->stats.tokens_charged[GATE_BATCH] -= (uint64_t)f->charged;
			sched_flight_free(f);
		}
		l->queued = 1;
		sched_arm(l, now + 1000, now);
	}
}

/*
 * The launches of one pump share one transaction (each job's start is a
 * savepoint in it), begun at its first launch: a pump that launches no job
 * (a caller's call granted, nothing queued) never takes the database's
 * write lock, so it never waits for the writer's transaction. Transfers
 * only go out on a later loop turn, so if the commit fails they are taken
 * back before a byte was sent.
 */
int sched_launches_begin(struct scheduler *s)
{
	if (s->launching != LAUNCH_NONE)
		return 0; /* within another's: its launches join that group */
	s->pumps++;
	s->launching = LAUNCH_WANTED;
	return 1;
}

/* Hand the pump's group to the writer: its lanes pick no more until it is back. */
static void launches_hand_over(struct scheduler *s)
{
	struct launch_item *g = s->group;
	int i;

	s->group = NULL;
	if (!g)
		return;
	for (i = 0; i < g->n; i++)
		g->recs[i].f->lane->recording++;
	writer_submit(s->writer, &g->item);
}

void sched_launches_end(struct scheduler *s, int owner)
{
	struct store *st = s->d->store;
	int grouped = s->launching == LAUNCH_GROUPED, r;

	if (!owner)
		return;
	s->launching = LAUNCH_NONE;
	launches_hand_over(s);
	if (grouped && (r = store_tx_commit(st)) < 0) {
		if (r != -EBUSY)
			log_err("cannot record the launches of jobs: %s; trying again in 1s",
			        store_errmsg(st));
		store_tx_rollback(st);
		undo_pump(s);
	}
}

void sched_launches_stop(struct scheduler *s)
{
	launches_hand_over(s);
}
