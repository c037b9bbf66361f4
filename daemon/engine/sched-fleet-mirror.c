/*
 * sched-fleet-mirror.c - a lane's standing with the fleet's shared state:
 * the fleet started and stopped, the state its answers carry mirrored into
 * the lane's gate, a look at it once a heartbeat when nothing was asked,
 * and Redis coming and going.
 *
 * Redis away: each lane gates alone with 1/N of its limits (N the hosts
 * that shared its key at the last heartbeat), counting its own launches in
 * flight. Back: the lane hands its launches in flight over as leases
 * (reconcile) before it asks again, so that nothing bursts; and a Redis that
 * comes back empty (its epoch changed) is handed them the same way. Grants,
 * leases and settles are sched-fleet.c's.
 */
#include "service/config.h"
#include "log.h"
#include "engine/scheduler-private.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

void sched_fleet_limits(const struct lane *l, struct gate_limits *ret)
{
	const struct scheduler *s = l->s;
	int n;

	*ret = l->lim;
	if (l->mode != LANE_FALLBACK || !s->fleet)
		return;
	n = fleet_hosts(s->fleet, config_lane_share(l->cfg));
	if (n <= 1)
		return;
	/* 1/N of the key: of its budgets, its slots, and N times its spacing. */
	if (ret->tpm > 0)
		ret->tpm = ret->tpm / n > 0 ? ret->tpm / n : 1;
	if (ret->rpm > 0)
		ret->rpm = ret->rpm / n > 0 ? ret->rpm / n : 1;
	ret->max_concurrency = ret->max_concurrency / n > 0 ? ret->max_concurrency / n : 1;
	ret->stagger_ms *= n;
}

/*
 * An answer's tail (from reply element from: Redis's time, the state's
 * epoch, and when asked the state as text, a field a line then the pause's
 * reason): the state into the lane's gate, its times moved to this host's
 * clock. 1 when the epoch is not the one seen before: Redis lost the state,
 * and this host's launches in flight with it.
 */
int sched_fleet_mirror(struct lane *l, const redisReply *r, size_t from)
{
	double v[GATE_FIELDS], redis_now;
	int64_t now = time_mono_ms();
	const char *epoch, *p;
	char *end;
	int i, changed;

	if (r->elements < from + 3 || r->element[from + 1]->type != REDIS_REPLY_STRING ||
	    r->element[from + 2]->type != REDIS_REPLY_STRING)
		return 0;
	redis_now = sched_fleet_num(r, from);
	epoch = r->element[from + 1]->str;
	p = r->element[from + 2]->str;
	for (i = 0; *p && i < GATE_FIELDS; i++) {
		v[i] = strtod(p, &end);
		if (end == p || *end != '\n')
			break;
		if (gate_field_is_time[i] && v[i] != 0)
			v[i] = v[i] - redis_now + (double)now;
		p = end + 1;
	}
	if (i == GATE_FIELDS) {
		gate_unpack(&l->gate, v);
		snprintf(l->gate.pause_reason, sizeof(l->gate.pause_reason), "%s", p);
		l->heard = now;
	}
	changed = l->epoch[0] && strcmp(l->epoch, epoch) != 0;
	snprintf(l->epoch, sizeof(l->epoch), "%s", epoch);
	return changed;
}

/* Gating alone from now on, with 1/N of the limits, counting its own launches. */
static void fleet_fall_back(struct lane *l)
{
	struct gate_limits lim;
	int64_t now = time_mono_ms();
	int n;

	if (l->mode == LANE_FALLBACK)
		return;
	l->mode = LANE_FALLBACK;
	/* Answers not sent yet: the own gate takes them (fleet_call fails now). */
	sched_fleet_settles_send(l);
	/* Asks in flight are answered as failures, and find the lane alone. */
	l->asks = 0;
	l->ask_gen++;
	l->wait_until[GATE_BATCH] = l->wait_until[GATE_INTERACTIVE] = 0;
	l->gate.in_flight = l->own[GATE_BATCH] + l->own[GATE_INTERACTIVE];
	l->gate.class_in_flight[GATE_BATCH] = l->own[GATE_BATCH];
	l->gate.class_in_flight[GATE_INTERACTIVE] = l->own[GATE_INTERACTIVE];
	l->gate.claim_until = 0;
	l->gate.claim = 0;
	/* What the mirror holds is the key's: this host's share of it. */
	n = fleet_hosts(l->s->fleet, config_lane_share(l->cfg));
	if (n > 1) {
		l->gate.prov_tok_bucket /= n;
		l->gate.prov_req_bucket /= n;
		l->gate.prov_tok_cap /= n;
		l->gate.prov_req_cap /= n;
		if (l->gate.tok > 0)
			l->gate.tok /= n;
		if (l->gate.req > 0)
			l->gate.req /= n;
	}
	sched_fleet_limits(l, &lim);
	gate_set_limits(&l->gate, &lim, now);
	log_info("lane %s: gates alone: concurrency %d, tpm %lld, rpm %lld (1/%d of the key's, "
	         "hosts at the last heartbeat), %d of its launches in flight",
	         l->cfg->name, lim.max_concurrency, (long long)lim.tpm, (long long)lim.rpm,
	         fleet_hosts(l->s->fleet, config_lane_share(l->cfg)),
	         l->own[GATE_BATCH] + l->own[GATE_INTERACTIVE]);
}

/* An error answer from the library: this lane gates alone until the next connect. */
void sched_fleet_broken(struct lane *l, const char *what, const redisReply *r)
{
	log_err("lane %s: the fleet's %s answered %s; the lane gates alone until llmqd connects "
	        "to Redis again",
	        l->cfg->name, what,
	        r->type == REDIS_REPLY_ERROR ? r->str : "something that is not a list");
	fleet_fall_back(l);
}

static void fleet_reconciled(void *ud, struct redisReply *r, const char *err)
{
	struct lane *l = ud;
	int64_t adopted, dropped;

	if (l->mode != LANE_RECONCILING)
		return;
	if (!r) {
		fleet_fall_back(l);
		sched_pump_soon(l->s);
		return;
	}
	if (!sched_fleet_reply_ok(r, 5)) {
		sched_fleet_broken(l, "reconcile", r);
		sched_pump_soon(l->s);
		return;
	}
	adopted = (int64_t)sched_fleet_num(r, 0);
	dropped = (int64_t)sched_fleet_num(r, 1);
	l->epoch[0] = '\0';
	sched_fleet_mirror(l, r, 2);
	/* The mirror's limits are the whole key's again. */
	l->gate.lim = l->lim;
	l->mode = LANE_SHARED;
	l->ask_n = 1;
	l->wait_until[GATE_BATCH] = l->wait_until[GATE_INTERACTIVE] = 0;
	log_info("lane %s: shares its gate (key %s) with %d host%s: %lld launch%s in flight "
	         "handed over, %lld lease%s of this host's dropped",
	         l->cfg->name, config_lane_share(l->cfg),
	         fleet_hosts(l->s->fleet, config_lane_share(l->cfg)),
	         fleet_hosts(l->s->fleet, config_lane_share(l->cfg)) == 1 ? "" : "s",
	         (long long)adopted, adopted == 1 ? "" : "es", (long long)dropped,
	         dropped == 1 ? "" : "s");
	sched_pump_soon(l->s);
}

/* Hand the lane's launches in flight over as leases; nothing is asked until done. */
void sched_fleet_reconcile(struct lane *l)
{
	struct scheduler *s = l->s;
	struct sched_ticket *t;
	struct flight *f;
	const char **v;
	char(*nums)[32];
	struct fleet_argv a;
	int n = 0, k = 0, i, r;

	sched_fleet_settles_send(l);
	l->mode = LANE_RECONCILING;
	l->asks = 0;
	l->ask_gen++;
	LIST_FOREACH(f, &l->flights, link)
	n++;
	LIST_FOREACH(t, &l->flying, flying)
	n++;
	v = calloc((size_t)(FLEET_ARGS_FIXED + 3 * n), sizeof(*v));
	nums = calloc((size_t)(2 * n + 1), sizeof(*nums));
	if (!v || !nums) {
		free(v);
		free(nums);
		fleet_fall_back(l);
		return;
	}
	sched_fleet_argv_init(&a, l, 1);
	sched_fleet_arg(&a, fleet_host_id(s->fleet));
	sched_fleet_arg_num(&a, "%lld", (long long)sched_fleet_deadline_ms(l));
	memcpy(v, a.v, (size_t)a.n * sizeof(*v));
	k = a.n;
	i = 0;
	LIST_FOREACH(f, &l->flights, link)
	{
		if (!f->lease.id[0])
			continue;
		v[k++] = f->lease.id;
		v[k++] = "0";
		snprintf(nums[i], sizeof(nums[i]), "%lld", (long long)f->charged);
		v[k++] = nums[i++];
	}
	LIST_FOREACH(t, &l->flying, flying)
	{
		if (!t->lease.id[0])
			continue;
		v[k++] = t->lease.id;
		v[k++] = "1";
		snprintf(nums[i], sizeof(nums[i]), "%lld", (long long)t->info.cost);
		v[k++] = nums[i++];
	}
	r = fleet_call(s->fleet, FLEET_FN_RECONCILE, k, v, NULL, fleet_reconciled, l);
	free(v);
	free(nums);
	if (r < 0)
		fleet_fall_back(l);
}

static void fleet_peeked(void *ud, struct redisReply *r, const char *err)
{
	struct lane *l = ud;

	l->peeking = 0;
	if (!r || l->mode != LANE_SHARED)
		return;
	if (!sched_fleet_reply_ok(r, 3)) {
		sched_fleet_broken(l, "state", r);
		return;
	}
	if (sched_fleet_mirror(l, r, 0)) {
		log_warn("lane %s: the fleet's Redis lost the shared state (restarted empty?); "
		         "handing it this host's launches in flight",
		         l->cfg->name);
		sched_fleet_reconcile(l);
	}
	sched_pump_soon(l->s);
}

void sched_fleet_tick(struct scheduler *s)
{
	int64_t now = time_mono_ms();
	struct fleet_argv a;
	int i;

	for (i = 0; s->fleet && i < s->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		if (l->mode != LANE_SHARED || l->peeking || l->asks ||
		    now - l->heard < FLEET_HEARTBEAT_MS)
			continue;
		sched_fleet_argv_init(&a, l, 1);
		if (fleet_call(s->fleet, FLEET_FN_STATE, a.n, a.v, NULL, fleet_peeked, l) == 0)
			l->peeking = 1;
	}
}

static void fleet_on_state(void *ud, int up)
{
	struct scheduler *s = ud;
	int i;

	for (i = 0; i < s->n_lanes; i++) {
		if (s->lanes[i].mode == LANE_ALONE)
			continue;
		if (up)
			sched_fleet_reconcile(&s->lanes[i]);
		else
			fleet_fall_back(&s->lanes[i]);
	}
	sched_pump_soon(s);
}

int sched_fleet_new(struct scheduler *s)
{
	const struct config *cfg = s->d->cfg;
	const char *shares[CONFIG_MAX_LANES];
	char err[512];
	int i, r;

	if (!cfg->fleet.redis_url[0])
		return 0;
	for (i = 0; i < s->n_lanes; i++)
		shares[i] = config_lane_share(s->lanes[i].cfg);
	r = fleet_new(s->d->base, &cfg->fleet, shares, s->n_lanes, &s->fleet, err, sizeof(err));
	if (r < 0) {
		log_err("fleet: %s", err);
		return r;
	}
	for (i = 0; i < s->n_lanes; i++)
		s->lanes[i].ask_n = 1;
	fleet_start(s->fleet, fleet_on_state, s);
	return 0;
}

void sched_fleet_flush(struct scheduler *s)
{
	sched_fleet_after_turn(s);
	if (s->fleet)
		fleet_flush(s->fleet);
}

void sched_fleet_free(struct scheduler *s)
{
	int i;

	fleet_free(s->fleet);
	s->fleet = NULL;
	for (i = 0; i < s->n_lanes; i++) {
		free(s->lanes[i].settles);
		s->lanes[i].settles = NULL;
	}
}
