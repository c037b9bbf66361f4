/*
 * sched-launch.c - a pump's launches recorded before they go: queued ->
 * running, attempts + 1 and an open attempt row, the launches of one pump
 * in one transaction (each job's start a savepoint in it), begun at its
 * first launch and taken back if its commit fails.
 */
#include "engine/scheduler-private.h"
#include "log.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <stdlib.h>

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

int sched_start_job(struct lane *l, struct flight *f, int64_t now, int64_t wall)
{
	int r = sched_record_job(l, f, wall);

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

void sched_launches_end(struct scheduler *s, int owner)
{
	struct store *st = s->d->store;
	int grouped = s->launching == LAUNCH_GROUPED, r;

	if (!owner)
		return;
	s->launching = LAUNCH_NONE;
	if (grouped && (r = store_tx_commit(st)) < 0) {
		if (r != -EBUSY)
			log_err("cannot record the launches of jobs: %s; trying again in 1s",
			        store_errmsg(st));
		store_tx_rollback(st);
		undo_pump(s);
	}
}
