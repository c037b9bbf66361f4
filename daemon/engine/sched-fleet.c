/*
 * sched-fleet.c - the scheduler's lanes when their gate is the fleet's:
 * grants asked of it and their leases, and the answers settled there.
 *
 * With LLMQ_REDIS_URL, a lane's gate lives in Redis under its share's key
 * (daemon/fleet/fleet.lua), and every host that shares it asks there: a grant for
 * a call, or for up to ask_n of its batch's next launches (growing while
 * every one granted is used, up to the host's share of the slots, so that a
 * lane without limits goes nearly as fast as alone, and one that paces asks
 * for one; a draining lane keeps a few asks under way). The answer is
 * launches with their leases, or how long to wait: the lane's timer is
 * armed for then, and nothing is asked before (a launch of its own ending
 * frees a slot, which is worth asking again). The answers of one loop turn
 * settle together, with the provider's figures and each decision's lane
 * event; the state an answer carries (when the lane's copy is older than
 * FLEET_MIRROR_MS) is mirrored into l->gate for status, metrics and
 * admission (sched-fleet-mirror.c). A call's fixed arguments are built
 * here for both files.
 *
 * Redis coming and going (gating alone with 1/N of the limits, handing the
 * launches in flight over when it is back) is sched-fleet-mirror.c's.
 */
#include "service/config.h"
#include "log.h"
#include "engine/scheduler-private.h"
#include "timeutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

/* A lane asks for the shared state with an answer when its mirror is older. */
#define FLEET_MIRROR_MS 250
/* A lease outlives its request's timeouts by this much. */
#define FLEET_LEASE_MARGIN_MS 2000
/* Grants a draining lane may ask at once. */
#define FLEET_ASKS_MAX 4

struct fleet_ask {
	struct lane *l;
	enum gate_class cls;
	int64_t cost;
	int n;
	struct sched_ticket *t; /* a call's: NULL once it left */
	uint64_t gen;           /* the lane's ask_gen when asked */
	char ids[GATE_GRANT_MAX][sizeof(((struct sched_lease *)0)->id)];
};

/* A settle on its way, with what the lane's own gate needs if it never gets there. */
struct fleet_settle {
	struct gate_answer ga;
	char id[sizeof(((struct sched_lease *)0)->id)];
	int shared; /* the mark is the shared gate's */
	char error[256];
	int has_error;
};

/* The answers of one loop turn, settled by one call. */
struct fleet_settles {
	struct lane *l;
	int n;
	struct fleet_settle one[FLEET_SETTLE_MAX];
};

const char *sched_fleet_arg_num(struct fleet_argv *a, const char *fmt, ...)
{
	char *p = a->num[a->nums++];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p, sizeof(a->num[0]), fmt, ap);
	va_end(ap);
	return a->v[a->n++] = p;
}

void sched_fleet_arg(struct fleet_argv *a, const char *s)
{
	a->v[a->n++] = s;
}

/* with_state: the answer carries the shared state (else only when the mirror is old). */
void sched_fleet_argv_init(struct fleet_argv *a, const struct lane *l, int with_state)
{
	const char *share = config_lane_share(l->cfg);
	struct gate_limits lim;

	a->n = a->nums = 0;
	snprintf(a->keys[0], sizeof(a->keys[0]), "llmq:{%s}:gate", share);
	snprintf(a->keys[1], sizeof(a->keys[1]), "llmq:{%s}:leases", share);
	snprintf(a->keys[2], sizeof(a->keys[2]), "llmq:{%s}:lease", share);
	sched_fleet_arg(a, "3");
	sched_fleet_arg(a, a->keys[0]);
	sched_fleet_arg(a, a->keys[1]);
	sched_fleet_arg(a, a->keys[2]);
	sched_fleet_arg(a, ""); /* Redis's own time */
	sched_fleet_arg(a, with_state || time_mono_ms() - l->heard >= FLEET_MIRROR_MS ? "1" : "");
	/* The shared gate's limits are the whole key's, not a host's share. */
	lim = l->lim;
	sched_fleet_arg_num(a, "%d", lim.max_concurrency);
	sched_fleet_arg_num(a, "%lld", (long long)lim.stagger_ms);
	sched_fleet_arg_num(a, "%.17g", lim.stagger_jitter);
	sched_fleet_arg_num(a, "%lld", (long long)lim.tpm);
	sched_fleet_arg_num(a, "%lld", (long long)lim.rpm);
	sched_fleet_arg_num(a, "%.17g", lim.headroom);
	sched_fleet_arg_num(a, "%lld", (long long)lim.burst_ms);
	sched_fleet_arg_num(a, "%.17g", lim.interactive_reserve);
	sched_fleet_arg_num(a, "%d", lim.stagger_interactive);
	sched_fleet_arg_num(a, "%d", lim.provider_window);
	sched_fleet_arg_num(a, "%lld", (long long)lim.probation_ms);
}

int64_t sched_fleet_deadline_ms(const struct lane *l)
{
	return l->cfg->request_timeout_ms + l->cfg->connect_timeout_ms + FLEET_LEASE_MARGIN_MS;
}

double sched_fleet_num(const redisReply *r, size_t i)
{
	if (i >= r->elements)
		return 0;
	if (r->element[i]->type == REDIS_REPLY_INTEGER)
		return (double)r->element[i]->integer;
	if (r->element[i]->type == REDIS_REPLY_STRING)
		return strtod(r->element[i]->str, NULL);
	return 0;
}

void sched_fleet_lease_alone(struct lane *l, struct sched_lease *ret)
{
	snprintf(ret->id, sizeof(ret->id), "%s/%d/%llu", fleet_host_id(l->s->fleet),
	         (int)(l - l->s->lanes), (unsigned long long)++l->leases);
	ret->shared = 0;
}

int sched_fleet_reply_ok(const redisReply *r, size_t min)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements >= min;
}

static void fleet_mark(const redisReply *r, size_t at, struct gate_mark *ret)
{
	ret->tokens = (int64_t)sched_fleet_num(r, at);
	ret->requests = (int64_t)sched_fleet_num(r, at + 1);
	ret->refunds = (int64_t)sched_fleet_num(r, at + 2);
	ret->at = (int64_t)sched_fleet_num(r, at + 3);
	ret->room = (int)sched_fleet_num(r, at + 4);
}

/* The most launches one ask may want: this host's share of the slots. */
static int fleet_ask_max(const struct lane *l)
{
	int n = fleet_hosts(l->s->fleet, config_lane_share(l->cfg)), m;

	m = (l->cfg->limits.max_concurrency + n - 1) / n;
	return m < 1 ? 1 : m > GATE_GRANT_MAX ? GATE_GRANT_MAX : m;
}

/*
 * Asks one lane may have in flight: one, but while its batch uses all it is
 * granted at the most per ask (a lane without limits, draining), a few, so
 * that a grant's round trip (one loop turn of the host's, at a minimum) does
 * not set the pace.
 */
static int fleet_asks_max(const struct lane *l)
{
	return l->ask_n >= fleet_ask_max(l) ? FLEET_ASKS_MAX : 1;
}

/* The batch's next jobs on the leases granted, in one transaction; unused leases back. */
static void fleet_launch_jobs(struct lane *l, struct fleet_ask *ask, const redisReply *r,
                              int granted)
{
	struct scheduler *s = l->s;
	int64_t now = time_mono_ms(), wall = time_wall_ms();
	int i = 0, used = 0, owner, rr;
	struct sched_lease lease;
	struct flight *f;

	owner = sched_launches_begin(s);
	while (i < granted && !s->stopping && l->mode == LANE_SHARED) {
		f = calloc(1, sizeof(*f));
		if (!f)
			break;
		rr = sched_next_job(l, wall, &f->job);
		/* None left, or dearer than what was granted: ask again for it. */
		if (rr <= 0 || f->job.est_tokens > ask->cost) {
			sched_flight_free(f);
			break;
		}
		f->charged = ask->cost;
		fleet_mark(r, 4 + 5 * (size_t)i, &f->mark);
		snprintf(f->lease.id, sizeof(f->lease.id), "%s", ask->ids[i]);
		f->lease.shared = 1;
		rr = sched_start_job(l, f, now, wall);
		if (rr == -ESTALE)
			continue; /* cancelled meanwhile: the next job takes its lease */
		if (rr < 0) {
			/* The database would not record it: try again in a second. */
			l->wait_until[GATE_BATCH] = now + 1000;
			l->wait_why[GATE_BATCH] = GATE_OK;
			break;
		}
		i++;
		used++;
	}
	for (; i < granted; i++) {
		snprintf(lease.id, sizeof(lease.id), "%s", ask->ids[i]);
		lease.shared = 1;
		sched_fleet_release(l, GATE_BATCH, ask->cost, &lease, 1);
	}
	sched_launches_end(s, owner);
	/* Ask for more at once while every launch granted finds a job, up to this
	 * host's share of the key's slots: one host's ask does not take what all
	 * of them wait for. */
	if (used == ask->n)
		l->ask_n = ask->n * 2 > fleet_ask_max(l) ? fleet_ask_max(l) : ask->n * 2;
	else if (used < granted)
		l->ask_n = used > 1 ? used : 1;
}

static void fleet_granted(void *ud, struct redisReply *r, const char *err)
{
	struct fleet_ask *ask = ud;
	struct lane *l = ask->l;
	struct sched_ticket *t = ask->t;
	int64_t now = time_mono_ms(), wait;
	struct sched_lease lease;
	struct gate_mark mark;
	int granted, changed;

	if (t)
		t->asked = NULL;
	if (ask->gen == l->ask_gen && l->asks > 0)
		l->asks--;
	if (!r || l->mode != LANE_SHARED) {
		/* Redis went away (the lane gates alone now), or the lane is being
		 * handed over: the reconcile drops what this would have granted. */
		free(ask);
		sched_pump_soon(l->s);
		return;
	}
	if (!sched_fleet_reply_ok(r, 7)) {
		sched_fleet_broken(l, "grant", r);
		free(ask);
		sched_pump_soon(l->s);
		return;
	}
	granted = (int)sched_fleet_num(r, 0);
	wait = (int64_t)sched_fleet_num(r, 1);
	changed = sched_fleet_mirror(l, r, 4 + 5 * (size_t)granted);
	if (sched_fleet_num(r, 3))
		sched_on_probation(l);
	if (granted < ask->n) {
		l->wait_until[ask->cls] = now + wait;
		l->wait_why[ask->cls] = (enum gate_block)sched_fleet_num(r, 2);
	} else {
		l->wait_until[ask->cls] = 0;
	}
	if (ask->cls == GATE_INTERACTIVE && granted > 0) {
		fleet_mark(r, 4, &mark);
		snprintf(lease.id, sizeof(lease.id), "%s", ask->ids[0]);
		lease.shared = 1;
		/* Its user's budget may have been spent meanwhile (their other calls):
		 * it waits again, or is refused; the launch goes back either way. */
		if (t && !l->s->stopping && sched_call_budget_ok(l, t, now) == 1)
			sched_start_call(l, t, &mark, &lease, now);
		else /* the caller left meanwhile */
			sched_fleet_release(l, GATE_INTERACTIVE, ask->cost, &lease, 1);
	} else if (ask->cls == GATE_BATCH && granted > 0) {
		fleet_launch_jobs(l, ask, r, granted);
	}
	free(ask);
	if (changed) {
		log_warn("lane %s: the fleet's Redis lost the shared state (restarted empty?); "
		         "handing it this host's launches in flight",
		         l->cfg->name);
		sched_fleet_reconcile(l);
	}
	sched_pump_soon(l->s);
}

/* Ask the shared gate for n launches of cls at cost (a call's: t). */
static int fleet_ask(struct lane *l, enum gate_class cls, int64_t cost, int n,
                     struct sched_ticket *t)
{
	struct scheduler *s = l->s;
	struct fleet_ask *ask;
	struct fleet_argv a;
	int i, r;

	/* The answers first: the slots they free are the grant's to give. */
	sched_fleet_settles_send(l);
	ask = calloc(1, sizeof(*ask));
	if (!ask)
		return -ENOMEM;
	ask->l = l;
	ask->cls = cls;
	ask->cost = cost;
	ask->n = n < 1 ? 1 : n > GATE_GRANT_MAX ? GATE_GRANT_MAX : n;
	ask->t = t;
	sched_fleet_argv_init(&a, l, 0);
	sched_fleet_arg_num(&a, "%d", cls);
	sched_fleet_arg_num(&a, "%lld", (long long)cost);
	sched_fleet_arg_num(&a, "%d", ask->n);
	sched_fleet_arg_num(&a, "%.17g", sched_rand01(s));
	sched_fleet_arg_num(&a, "%llu", (unsigned long long)(t ? t->id : 0));
	sched_fleet_arg_num(&a, "%lld", (long long)sched_fleet_deadline_ms(l));
	sched_fleet_arg(&a, fleet_host_id(s->fleet));
	for (i = 0; i < ask->n; i++) {
		snprintf(ask->ids[i], sizeof(ask->ids[i]), "%s/%d/%llu", fleet_host_id(s->fleet),
		         (int)(l - s->lanes), (unsigned long long)++l->leases);
		sched_fleet_arg(&a, ask->ids[i]);
	}
	r = fleet_call(s->fleet, FLEET_FN_GRANT, a.n, a.v, NULL, fleet_granted, ask);
	if (r < 0) {
		free(ask);
		return r;
	}
	ask->gen = l->ask_gen;
	l->asks++;
	if (t)
		t->asked = ask;
	return 0;
}

void sched_fleet_pump(struct lane *l)
{
	struct scheduler *s = l->s;
	int64_t now = time_mono_ms(), wall = time_wall_ms(), next, until;
	struct sched_ticket *t;
	struct store_job job;
	int calls_first, r;

	if (s->stopping || l->mode != LANE_SHARED || l->asks >= fleet_asks_max(l))
		return;
	/* Users in turn, their budgets judged, as alone. */
	t = l->n_waiting ? sched_next_call(l, now) : NULL;
	if (t && t->asked)
		t = NULL; /* its ask is under way */
	/* A call that goes first and must wait holds the batch back (its claim
	 * holds every host's); one that need not goes now. */
	calls_first = t && gate_first_class(&l->gate, now) == GATE_INTERACTIVE;
	if (t && (calls_first || now < l->wait_until[GATE_BATCH]) &&
	    now >= l->wait_until[GATE_INTERACTIVE]) {
		r = fleet_ask(l, GATE_INTERACTIVE, t->info.cost, 1, t);
		goto out;
	}
	if (calls_first || now < l->wait_until[GATE_BATCH]) {
		until = calls_first ? l->wait_until[GATE_INTERACTIVE] : l->wait_until[GATE_BATCH];
		if (t && l->wait_until[GATE_INTERACTIVE] < until)
			until = l->wait_until[GATE_INTERACTIVE];
		sched_arm(l, until, now);
		return;
	}
	/* The batch's next job sets what to ask for; it is picked again when granted. */
	r = sched_next_job(l, wall, &job);
	if (r < 0) {
		log_err("lane %s: cannot read the queue: %s; retrying in 1s", l->cfg->name,
		        store_errmsg(s->d->store));
		sched_arm(l, now + 1000, now);
		return;
	}
	if (r == 0) {
		if (t && now >= l->wait_until[GATE_INTERACTIVE]) {
			r = fleet_ask(l, GATE_INTERACTIVE, t->info.cost, 1, t);
			goto out;
		}
		if (t)
			sched_arm(l, l->wait_until[GATE_INTERACTIVE], now);
		else if ((next = sched_next_wake(l, wall)) != INT64_MAX)
			sched_arm(l, now + (next > wall ? next - wall : 0), now);
		return;
	}
	r = fleet_ask(l, GATE_BATCH, job.est_tokens, l->ask_n > 0 ? l->ask_n : 1, NULL);
	store_job_clear(&job);
out:
	if (r < 0)
		sched_arm(l, now + 100, now); /* the fleet just went: the lane falls back */
}

/* An answer that never got to the shared gate: the lane's own gate (gating
 * alone now) takes what it says; its slot was counted out already. */
static void fleet_settle_alone(struct lane *l, struct fleet_settle *st, int64_t now)
{
	struct gate_news n;

	st->ga.done = 0;
	st->ga.observe = 0;
	gate_settle(&l->gate, &st->ga, now, &n);
	sched_tell(l, &st->ga, &n, st->has_error ? st->error : NULL, now);
}

static void fleet_settled(void *ud, struct redisReply *r, const char *err)
{
	struct fleet_settles *b = ud;
	struct lane *l = b->l;
	int64_t now = time_mono_ms();
	struct gate_news n;
	size_t at;
	int i, changed;

	if (!r || !sched_fleet_reply_ok(r, 8 * (size_t)b->n + 3)) {
		if (r)
			sched_fleet_broken(l, "settle", r);
		for (i = 0; i < b->n; i++)
			fleet_settle_alone(l, &b->one[i], now);
		free(b);
		sched_pump_soon(l->s);
		return;
	}
	for (i = 0; i < b->n; i++) {
		at = 8 * (size_t)i;
		n.breaker_open = (int)sched_fleet_num(r, at + 1);
		n.resumed = (int)sched_fleet_num(r, at + 2);
		n.no_credit = (int)sched_fleet_num(r, at + 3);
		n.rate_limited = (int)sched_fleet_num(r, at + 4);
		n.learned = (int)sched_fleet_num(r, at + 5);
		n.probation_ended = (int)sched_fleet_num(r, at + 6);
		n.aligned = (int)sched_fleet_num(r, at + 7);
		sched_tell(l, &b->one[i].ga, &n, b->one[i].has_error ? b->one[i].error : NULL, now);
	}
	changed = l->mode == LANE_SHARED && sched_fleet_mirror(l, r, 8 * (size_t)b->n);
	free(b);
	if (changed)
		sched_fleet_reconcile(l);
	sched_pump_soon(l->s);
}

/* The answers gathered for the lane go to the shared gate, as one call. */
void sched_fleet_settles_send(struct lane *l)
{
	struct fleet_settles *b = l->settles;
	int64_t now = time_mono_ms();
	struct fleet_argv *a;
	int i, r = -ENOMEM;

	if (!b)
		return;
	l->settles = NULL;
	a = calloc(1, sizeof(*a));
	if (a) {
		sched_fleet_argv_init(a, l, 0);
		for (i = 0; i < b->n; i++) {
			const struct gate_answer *ga = &b->one[i].ga;

			sched_fleet_arg(a, b->one[i].id);
			sched_fleet_arg_num(a, "%d", ga->cls);
			sched_fleet_arg_num(a, "%lld", (long long)ga->charged);
			sched_fleet_arg_num(a, "%lld", (long long)ga->used);
			sched_fleet_arg_num(a, "%d", ga->succeeded);
			sched_fleet_arg_num(a, "%lld", (long long)ga->resends);
			/* A launch made alone has a mark of this host's clock: no figures. */
			sched_fleet_arg_num(a, "%d", ga->observe && b->one[i].shared);
			sched_fleet_arg_num(a, "%lld", (long long)ga->fb.limit_tokens);
			sched_fleet_arg_num(a, "%lld", (long long)ga->fb.remaining_tokens);
			sched_fleet_arg_num(a, "%lld", (long long)ga->fb.reset_tokens_ms);
			sched_fleet_arg_num(a, "%lld", (long long)ga->fb.limit_requests);
			sched_fleet_arg_num(a, "%lld", (long long)ga->fb.remaining_requests);
			sched_fleet_arg_num(a, "%lld", (long long)ga->fb.reset_requests_ms);
			sched_fleet_arg_num(a, "%lld", (long long)ga->mark.tokens);
			sched_fleet_arg_num(a, "%lld", (long long)ga->mark.requests);
			sched_fleet_arg_num(a, "%lld", (long long)ga->mark.refunds);
			sched_fleet_arg_num(a, "%lld", (long long)ga->mark.at);
			sched_fleet_arg_num(a, "%d", ga->event);
			sched_fleet_arg_num(a, "%lld", (long long)ga->pause_ms);
			sched_fleet_arg_num(a, "%d", ga->learn);
			sched_fleet_arg_num(a, "%lld", (long long)ga->retry_after_ms);
		}
		r = fleet_call(l->s->fleet, FLEET_FN_SETTLE, a->n, a->v, NULL, fleet_settled, b);
		free(a);
	}
	if (r < 0) {
		for (i = 0; i < b->n; i++)
			fleet_settle_alone(l, &b->one[i], now);
		free(b);
	}
}

int sched_fleet_settle(struct lane *l, const struct gate_answer *ga,
                       const struct sched_lease *lease, const char *error)
{
	struct fleet_settle *st;

	if ((l->mode != LANE_SHARED && l->mode != LANE_RECONCILING) || !lease->id[0] ||
	    !fleet_up(l->s->fleet))
		return -ENOTCONN;
	if (!l->settles && !(l->settles = calloc(1, sizeof(*l->settles))))
		return -ENOMEM;
	l->settles->l = l;
	st = &l->settles->one[l->settles->n++];
	memset(st, 0, sizeof(*st));
	st->ga = *ga;
	snprintf(st->id, sizeof(st->id), "%s", lease->id);
	st->shared = lease->shared;
	if (error) {
		snprintf(st->error, sizeof(st->error), "%s", error);
		st->has_error = 1;
	}
	if (l->settles->n == FLEET_SETTLE_MAX)
		sched_fleet_settles_send(l);
	/* A slot of this host's is free: worth asking again before the wait told. */
	if (l->wait_why[GATE_BATCH] == GATE_CONCURRENCY)
		l->wait_until[GATE_BATCH] = 0;
	if (l->wait_why[GATE_INTERACTIVE] == GATE_CONCURRENCY)
		l->wait_until[GATE_INTERACTIVE] = 0;
	return 0;
}

void sched_fleet_after_turn(struct scheduler *s)
{
	int i;

	for (i = 0; s->fleet && i < s->n_lanes; i++)
		sched_fleet_settles_send(&s->lanes[i]);
}

void sched_fleet_release(struct lane *l, enum gate_class cls, int64_t cost,
                         const struct sched_lease *lease, int refund)
{
	struct gate_answer ga = {
	    .cls = cls,
	    .charged = cost,
	    .used = refund ? 0 : -1,
	    .succeeded = refund,
	    .done = 1,
	    .event = GATE_EV_NONE,
	    .retry_after_ms = -1,
	};

	/* Redis away: the lease is dropped when the lane hands over its launches. */
	sched_fleet_settle(l, &ga, lease, NULL);
}

void sched_fleet_forget(struct sched_ticket *t)
{
	if (t->asked) {
		t->asked->t = NULL;
		t->asked = NULL;
	}
}
