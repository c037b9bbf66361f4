/*
 * sched-lanes.c - a lane: its queue (the next ready job, users in turn,
 * their budgets and shares judged) and its earliest wake, its gate (an
 * answer settled into it, what that taught told and remembered: a learned
 * short window, its phase, its probation), its setup (limits, window,
 * a pause an operator left), a reload, and an operator's pause and limits.
 * Launching from a lane is sched-flights.c's and sched-tickets.c's; a gate
 * that is the fleet's is asked in sched-fleet.c.
 */
#include "engine/scheduler-private.h"
#include "service/config.h"
#include "gate/lane.h"
#include "log.h"
#include "store/store.h"
#include "timeutil.h"

#include <stdlib.h>
#include <string.h>

int sched_lane_idx(const struct lane *l)
{
	return (int)(l - l->s->lanes);
}

/* The slot of uid's last batch on lane l (direct-mapped: a user whose slot
 * another took starts again from their first batch). */
struct sched_turn *sched_turn(struct lane *l, int64_t uid)
{
	return &l->turns[(uint64_t)uid % SCHED_TURNS];
}

static const char *sched_last_batch(void *ud, int64_t uid)
{
	struct sched_turn *t = sched_turn(ud, uid);

	return t->uid == uid ? t->batch : NULL;
}

/* The ready query's judge: the job's user's budgets and share of the lane. */
static enum store_pick_verdict sched_judge_job(void *ud, const struct store_job *job)
{
	struct lane *l = ud;
	struct budget_verdict v;

	switch (ledger_judge(l->s->ledger, job->uid, sched_lane_idx(l), job->model, job->est_tokens,
	                     time_wall_ms(), time_mono_ms(), &v)) {
	case LEDGER_GO:
		return STORE_PICK_GO;
	case LEDGER_LATER:
		return STORE_PICK_LATER;
	case LEDGER_NO:
		break;
	}
	/* A budget spent: the lane looks again when it resets (a hold given
	 * back kicks the lanes anyway). */
	if (v.fit == BUDGET_SPENT && v.resets_at < l->budget_wake)
		l->budget_wake = v.resets_at;
	return STORE_PICK_SKIP;
}

int sched_next_job(struct lane *l, int64_t wall, struct store_job *ret)
{
	struct store_pick p = {
	    .after_uid = l->last_uid,
	    .last_batch = sched_last_batch,
	    .judge = sched_judge_job,
	    .floor = sched_launch_floor,
	    .ud = l,
	    .ret_none = &l->none_ready,
	};

	l->budget_wake = INT64_MAX;
	l->none_ready = 0;
	if (!l->queued)
		return 0;
	l->stats.queue_reads++;
	return store_next_ready_pick(l->s->d->store, l->cfg->name, wall, &p, ret);
}

/*
 * A lane's queue found with nothing ready, nothing passed over and nothing
 * due is not looked at again until something may have added to it: a
 * batch stored, retried or resumed, jobs requeued at start (sched_kick),
 * outcomes written (a job retried), a launch whose record was refused.
 */
int64_t sched_next_wake(struct lane *l, int64_t wall)
{
	int64_t next = INT64_MAX;

	if (!l->queued)
		return INT64_MAX;
	if (store_next_wakeup(l->s->d->store, l->cfg->name, wall, &next) < 0)
		next = wall + 1000;
	next = next < l->budget_wake ? next : l->budget_wake;
	if (next == INT64_MAX && l->none_ready)
		l->queued = 0;
	return next;
}

/* Count a launch of this host's (the fleet's leases are reconciled from them). */
void sched_own(struct lane *l, enum gate_class cls, int delta)
{
	if (l->mode != LANE_ALONE)
		l->own[cls] += delta;
}

void sched_lane_policy(const struct lane_config *c, struct retry_policy *p)
{
	*p = (struct retry_policy){
	    .max_attempts = c->retry_max_attempts,
	    .backoff_base_ms = c->backoff_base_ms,
	    .backoff_cap_ms = c->backoff_cap_ms,
	    .retry_after_max_ms = c->retry_after_max_ms,
	    .quota_pause_ms = c->quota_pause_ms,
	    .lane_wait_max_ms = c->lane_wait_max_ms,
	};
}

/*
 * A learned short window not confirmed by a 429 for window_probation_seconds
 * (an overload's 429 teaches it as well as a real short window does, and it
 * would cost throughput for good): try
 * the provider's minute again, from a window's budget (gate_set_window), on
 * probation; the next 429 that shows the short window brings it back.
 */
void sched_probation(struct lane *l, int64_t now)
{
	if (gate_probation(&l->gate, now))
		sched_on_probation(l);
}

/* The lane went on probation (here, or in the fleet's shared gate): say so, keep it. */
void sched_on_probation(struct lane *l)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)], quiet[32];
	int64_t wall = time_wall_ms();

	if (store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "minute", wall,
	                          -1) < 0)
		log_debug("lane %s: the minute's probation is not remembered: %s", c->name,
		          store_errmsg(l->s->d->store));
	time_format_duration(c->window_probation_ms, quiet, sizeof(quiet));
	log_info("lane %s: no 429 has confirmed the provider's short window for %s: the lane "
	         "tries its minute again, slowly (on probation; a 429 brings the short window "
	         "back)",
	         c->name, quiet);
}

/*
 * A 429 came although the provider's own figures said there was room: it
 * enforces its limits over windows shorter than a minute. The gate paces
 * from now on (gate_settle); the lane remembers it for this upstream across
 * restarts, and says so.
 */
static void sched_on_learned(struct lane *l, const struct gate_news *n)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)];
	int r;

	if (n->probation_ended)
		log_info("lane %s: the minute was tried again and a 429 came: the short window "
		         "stays (probation ended)",
		         c->name);
	r = store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "second",
	                          time_wall_ms(), -1);
	log_warn("lane %s: a 429 came although the provider's headers said there was room: it "
	         "enforces its limits over windows shorter than a minute. The lane paces from "
	         "now on (bursts of at most 1s)%s; set provider_window to pin it",
	         c->name, r < 0 ? " (not remembered: the database refused)" : ", remembered");
}

/* The provider's windows end at now + retry_after (the gate aligned its
 * own): keep their phase (of the wall clock's seconds) for the next start. */
static void sched_on_aligned(struct lane *l, int64_t now, int64_t retry_after)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)];
	int64_t wall = time_wall_ms(), phase = (wall + retry_after) % GATE_WINDOW_MS;

	if (l->window_phase == phase || c->provider_window != GATE_WINDOW_AUTO)
		return;
	l->window_phase = phase;
	if (store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "second",
	                          wall - (now - l->gate.learned_at), phase) < 0)
		log_debug("lane %s: the window's phase is not remembered: %s", c->name,
		          store_errmsg(l->s->d->store));
}

/* The window a lane starts with: pinned by the config, else learned before. */
void sched_lane_start_window(struct lane *l, int64_t now)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)], w[16];
	int64_t at = 0, phase = -1, wall = time_wall_ms();

	if (c->provider_window != GATE_WINDOW_AUTO) {
		gate_set_window(&l->gate, c->provider_window, now);
		return;
	}
	l->window_phase = -1;
	if (store_lane_window_get(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), w, sizeof(w), &at,
	                          &phase) == 1 &&
	    strcmp(w, "second") == 0) {
		gate_set_window(&l->gate, GATE_WINDOW_SECOND, now);
		l->gate.learned = 1;
		l->gate.learned_at = now - (wall - at);
		l->gate.confirmed_at = now;
		/* Windows kept their phase of the wall clock's seconds: align at once. */
		if (phase >= 0) {
			l->window_phase = phase;
			gate_align_window(&l->gate,
			                  now + (phase - wall % GATE_WINDOW_MS + GATE_WINDOW_MS) %
			                            GATE_WINDOW_MS,
			                  now);
		}
	}
}

/* What gate_settle() did to the lane that people should hear of, or that
 * lane_state keeps. error says what the last failure was. */
void sched_tell(struct lane *l, const struct gate_answer *ga, const struct gate_news *n,
                const char *error, int64_t now)
{
	const struct lane_config *c = l->cfg;

	if (n->breaker_open)
		log_warn("lane %s: the upstream could not be reached %d times in a row (%s); "
		         "the lane pauses and probes it with one request, backing off up "
		         "to %llds. Queued jobs keep their attempts",
		         c->name, GATE_BREAKER_TRIP, error ? error : "no answer",
		         (long long)(GATE_BREAKER_MAX_MS / 1000));
	if (n->no_credit)
		log_warn("lane %s: upstream says insufficient_quota: the key has no credit. "
		         "The lane pauses and tries one request every %llds; its jobs stay "
		         "queued until their batch's window ends: add credit or check the "
		         "key's billing",
		         c->name, (long long)(c->quota_pause_ms / 1000));
	if (n->rate_limited)
		log_info("lane %s: 429, pausing %lldms", c->name, (long long)ga->pause_ms);
	if (n->learned)
		sched_on_learned(l, n);
	if (n->aligned)
		sched_on_aligned(l, now, ga->retry_after_ms);
	if (n->resumed)
		log_info("lane %s: the upstream answers again; the lane resumes", c->name);
}

/*
 * What an answer and its decision do to the lane's gate, as one step
 * (gate_settle): the provider's figures, the refund and the slot, pauses,
 * the circuit breaker (several tries in a row that reached no upstream
 * pause the lane, then one request probes it, backing off), running out of
 * credit (paused, probed once per pause), a 429's pause and what it teaches
 * of the provider's window. error says what the last failure was, for the
 * log.
 */
void sched_lane_settle(struct lane *l, struct gate_answer *ga, const struct sched_lease *lease,
                       const char *error)
{
	int64_t now = time_mono_ms();
	struct gate_news n;

	sched_own(l, ga->cls, -1);
	if (l->mode != LANE_ALONE && sched_fleet_settle(l, ga, lease, error) == 0)
		return;
	/* The lane's own gate: a mark of the shared gate's is of another clock. */
	ga->observe = !lease->shared;
	gate_settle(&l->gate, ga, now, &n);
	sched_tell(l, ga, &n, error, now);
}

/* A lane's gate limits: the configured ones, and how its window is learned. */
void sched_lane_limits(const struct lane_config *c, struct gate_limits *ret)
{
	*ret = c->limits;
	ret->provider_window = c->provider_window;
	ret->probation_ms = c->window_probation_ms;
}

/* A lane an operator paused stays paused across restarts (lane_paused). */
void sched_restore_pause(struct lane *l)
{
	int r = store_lane_paused_get(l->s->d->store, l->cfg->name, &l->paused_at, &l->paused_by);

	if (r < 0) {
		l->paused_at = 0;
		log_err("lane %s: cannot read whether an operator paused it: %s; it runs",
		        l->cfg->name, store_errmsg(l->s->d->store));
	} else if (r == 1) {
		log_warn("lane %s: paused by an operator (uid %lld) before llmqd started; "
		         "llmq resume %s lets it launch again",
		         l->cfg->name, (long long)l->paused_by, l->cfg->name);
	}
}

int sched_reload(struct scheduler *s)
{
	struct gate_limits lim;
	int64_t now = time_mono_ms();
	char *key;
	int i, r;

	for (i = 0; i < s->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		r = lane_load_key(l->cfg, &key);
		if (r < 0)
			return r;
		if (l->key) {
			explicit_bzero(l->key, strlen(l->key));
			free(l->key);
		}
		l->key = key;
		sched_lane_limits(l->cfg, &l->lim);
		sched_fleet_limits(l, &lim);
		gate_set_limits(&l->gate, &lim, now);
	}
	ledger_reload(s->ledger);
	sched_kick(s);
	return 0;
}

void sched_lane_pause(struct scheduler *s, int i, int64_t at, int64_t by)
{
	struct lane *l = &s->lanes[i];

	l->paused_at = at;
	l->paused_by = at ? by : 0;
	if (!at)
		sched_kick(s);
}

void sched_lane_set_limits(struct scheduler *s, int i, const struct gate_limits *lim)
{
	struct lane *l = &s->lanes[i];
	struct gate_limits now_lim;

	/* The lane's (the key's, in a fleet: its shared gate takes them with the
	 * next call); gating alone, this host's share of them. */
	l->lim = *lim;
	l->lim.provider_window = l->cfg->provider_window;
	l->lim.probation_ms = l->cfg->window_probation_ms;
	sched_fleet_limits(l, &now_lim);
	gate_set_limits(&l->gate, &now_lim, time_mono_ms());
	sched_kick(s);
}
