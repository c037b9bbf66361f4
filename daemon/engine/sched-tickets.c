/*
 * sched-tickets.c - interactive calls at their lane's gate. A ticket is
 * one call (the HTTP face's): admitted or refused when it comes (its
 * predicted wait, its user's budgets), queued in memory, its turn among the
 * waiting users, then granted (the gate's reservation taken) and flying
 * under its owner until it is done or cancelled; every ending is recorded
 * as a call. The scheduler owns a ticket from enqueue until
 * sched_call_done, sched_call_cancel or a refusal frees it.
 */
#include "engine/scheduler-private.h"
#include "gate/admission.h"
#include "service/config.h"
#include "store/store.h"
#include "timeutil.h"
#include "store/writeback.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sched_ticket_free(struct sched_ticket *t)
{
	if (!t)
		return;
	/* Whatever path ends it, what its user's budgets hold for it goes back. */
	if (t->hold.held)
		ledger_settle(t->lane->s->ledger, &t->hold, -1, -1, time_wall_ms());
	if (t->deadline)
		event_free(t->deadline);
	free(t);
}

void sched_ticket_unqueue(struct sched_ticket *t)
{
	struct lane *l = t->lane;

	TAILQ_REMOVE(&l->waiting, t, link);
	l->n_waiting--;
	l->waiting_tokens -= t->info.cost;
	evtimer_del(t->deadline);
}

enum launch_result sched_ticket_launch(struct lane *l)
{
	struct sched_lease lease = {"", 0};
	struct sched_ticket *t;
	struct gate_mark mark;
	int64_t now = time_mono_ms(), when;

	if (!l->n_waiting)
		return NOTHING;
	t = sched_next_call(l, now);
	if (!t)
		return NOTHING; /* their budgets hold the callers back: a hold given back kicks */
	when = gate_when(&l->gate, GATE_INTERACTIVE, t->info.cost, now, NULL);
	if (when == GATE_NEVER)
		return MUST_WAIT;
	if (when > now) {
		sched_arm(l, when, now);
		return MUST_WAIT;
	}
	gate_launch(&l->gate, GATE_INTERACTIVE, t->info.cost, now, sched_rand01(l->s), &mark);
	if (l->mode != LANE_ALONE)
		sched_fleet_lease_alone(l, &lease);
	sched_start_call(l, t, &mark, &lease, now);
	return LAUNCHED;
}

void sched_start_call(struct lane *l, struct sched_ticket *t, const struct gate_mark *mark,
                      const struct sched_lease *lease, int64_t now)
{
	sched_ticket_unqueue(t);
	t->mark = *mark;
	t->lease = *lease;
	t->granted = now;
	l->last_call_uid = t->info.uid;
	ledger_hold(l->s->ledger, t->info.uid, sched_lane_idx(l), t->info.model, t->info.cost,
	            t->enqueued_wall, time_wall_ms(), now, &t->hold);
	sched_own(l, GATE_INTERACTIVE, 1);
	if (l->mode != LANE_ALONE)
		LIST_INSERT_HEAD(&l->flying, t, flying);
	l->stats.tokens_charged[GATE_INTERACTIVE] += (uint64_t)t->info.cost;
	stats_observe(&l->stats.gate_wait[GATE_INTERACTIVE], now - t->enqueued);
	t->info.grant(t->info.ud);
}

static struct lane *lane_by_name(const struct scheduler *s, const char *name)
{
	int i = sched_lane_index(s, name);

	return i < 0 ? NULL : (struct lane *)&s->lanes[i];
}

static void record_call(struct lane *l, const struct sched_ticket *t, const char *outcome,
                        const struct up_response *resp, const struct answer *a,
                        const char *error_code, int64_t retry_after_ms, const char *response_body)
{
	int64_t now = time_mono_ms();
	int bodies = l->s->d->cfg->http_log_bodies;
	struct store_call c = {
	    .call_id = t->info.call_id,
	    .try_no = t->info.try_no,
	    .lane = l->cfg->name,
	    .endpoint = t->info.endpoint,
	    .model = t->info.model,
	    .stream = t->info.stream,
	    .uid = t->info.uid,
	    .started_at = t->enqueued_wall,
	    .ended_at = t->enqueued_wall + (now - t->enqueued),
	    .outcome = outcome,
	    .status_code = resp ? resp->status : 0,
	    .error_code = error_code,
	    .retry_after_ms = retry_after_ms,
	    .tokens_charged = t->granted ? t->info.cost : 0,
	    .tokens_used = a ? a->total : -1,
	    .gate_wait_ms = (t->granted ? t->granted : now) - t->enqueued,
	    .latency_ms = resp && resp->status > 0 ? resp->latency_ms : -1,
	    .request_id = resp && resp->hdr.request_id[0] ? resp->hdr.request_id : NULL,
	    .request_body = bodies ? t->info.request_body : NULL,
	    .response_body = bodies ? response_body : NULL,
	    .prompt_tokens = a ? a->prompt : -1,
	    .cached_tokens = a ? a->cached : -1,
	    .completion_tokens = a ? a->completion : -1,
	    .cost_nusd = -1,
	};

	if (a && strcmp(outcome, "refused") != 0)
		c.cost_nusd = sched_cost(l->s, t->info.model, a);

	writeback_add_call(l->s->wb, &c);
}

/* How long the gate would make this call wait, from a copy of the gate. */
static int64_t predicted_wait(struct lane *l, int64_t cost, int64_t now)
{
	struct gate g = l->gate;

	gate_refill(&g, now);
	return admission_call_wait_ms(&g, l->avg_latency_ms, l->n_waiting, l->waiting_tokens, cost,
	                              now);
}

void sched_ticket_refuse(struct sched_ticket *t, const char *code, int64_t retry_after_ms)
{
	struct lane *l = t->lane;

	l->stats.requests[GATE_INTERACTIVE][SO_REFUSED]++;
	record_call(l, t, "refused", NULL, NULL, code, retry_after_ms, NULL);
}

/* How long until a budget's verdict may change: its reset (at least 1 s);
 * -1 when no wait helps (it is smaller than the call). */
static int64_t sched_budget_retry_ms(const struct budget_verdict *v)
{
	int64_t in = v->resets_at - time_wall_ms();

	if (v->fit == BUDGET_NEVER)
		return -1;
	return in > 1000 ? in : 1000;
}

/* The call's user's budgets and share now; why: what a refusal says. */
static enum ledger_go sched_call_judge(struct lane *l, const struct sched_ticket *t, int64_t now,
                                       struct sched_budget_refusal *why)
{
	struct ledger_user u;
	enum ledger_go g;

	memset(why, 0, sizeof(*why));
	g = ledger_judge(l->s->ledger, t->info.uid, sched_lane_idx(l), t->info.model, t->info.cost,
	                 time_wall_ms(), now, &why->v);
	if (g == LEDGER_NO) {
		ledger_user(l->s->ledger, t->info.uid, time_wall_ms(), now, &u);
		budget_describe(&why->v, u.name[0] ? u.name : "this user", why->message,
		                sizeof(why->message));
	}
	return g;
}

/* A waiting call its budget refuses: answered, and gone. */
static void sched_refuse_budget(struct sched_ticket *t, const struct sched_budget_refusal *why)
{
	sched_ticket_unqueue(t);
	sched_fleet_forget(t);
	sched_ticket_refuse(t, "budget_exceeded", sched_budget_retry_ms(&why->v));
	t->info.over_budget(t->info.ud, why);
	sched_ticket_free(t);
}

static int sched_cmp_uid(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Users take turns: the waiting users in uid order from the one after the
 * user a call went for last, each their oldest call first; a user over
 * their share goes only when nobody else may, one whose calls in flight hold
 * their budget waits, and a call a spent budget refuses is answered.
 */
struct sched_ticket *sched_next_call(struct lane *l, int64_t now)
{
	struct sched_ticket *t, *next, *later = NULL, *pick = NULL;
	struct sched_budget_refusal why;
	int64_t *uids;
	int n = 0, i, k, start = 0;

	uids = malloc((size_t)l->n_waiting * sizeof(*uids));
	if (!uids)
		return TAILQ_FIRST(&l->waiting);
	TAILQ_FOREACH(t, &l->waiting, link)
	if (n < l->n_waiting)
		uids[n++] = t->info.uid;
	qsort(uids, (size_t)n, sizeof(*uids), sched_cmp_uid);
	for (i = k = 0; i < n; i++)
		if (k == 0 || uids[k - 1] != uids[i])
			uids[k++] = uids[i];
	n = k;
	while (start < n && uids[start] <= l->last_call_uid)
		start++;
	for (i = 0; i < n && !pick; i++) {
		int64_t uid = uids[(start + i) % n];

		for (t = TAILQ_FIRST(&l->waiting); t; t = next) {
			next = TAILQ_NEXT(t, link);
			if (t->info.uid != uid)
				continue;
			switch (sched_call_judge(l, t, now, &why)) {
			case LEDGER_GO:
				pick = t;
				break;
			case LEDGER_LATER:
				if (!later)
					later = t;
				break;
			case LEDGER_NO:
				if (why.v.fit != BUDGET_HELD) {
					sched_refuse_budget(t, &why);
					continue; /* the user's next call */
				}
				break;
			}
			break;
		}
	}
	free(uids);
	return pick ? pick : later;
}

int sched_call_budget_ok(struct lane *l, struct sched_ticket *t, int64_t now)
{
	struct sched_budget_refusal why;

	if (sched_call_judge(l, t, now, &why) != LEDGER_NO)
		return 1;
	if (why.v.fit == BUDGET_HELD)
		return 0;
	sched_refuse_budget(t, &why);
	return -1;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_ticket *t = arg;
	struct lane *l = t->lane;
	int64_t now = time_mono_ms(), ra;

	sched_ticket_unqueue(t);
	sched_fleet_forget(t);
	ra = predicted_wait(l, t->info.cost, now);
	if (ra < 1000)
		ra = 1000;
	sched_ticket_refuse(t, "gate_wait_exceeded", ra);
	t->info.refuse(t->info.ud, ra);
	sched_ticket_free(t);
}

int sched_call_enqueue(struct scheduler *s, const struct sched_call_info *info,
                       struct sched_ticket **ret, int64_t *ret_retry_after_ms,
                       struct sched_budget_refusal *ret_budget)
{
	struct lane *l = lane_by_name(s, info->lane);
	struct sched_ticket *t;
	int64_t now = time_mono_ms(), wait;
	struct timeval tv;
	struct gate g;

	if (!l)
		return -ENOENT;
	if (l->paused_at)
		return -EBUSY; /* an operator paused it: no telling when it goes again */
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->lane = l;
	t->info = *info;
	t->enqueued = now;
	t->enqueued_wall = time_wall_ms();
	t->id = ++s->tickets;
	g = l->gate;
	gate_refill(&g, now);
	if (admission_never_fits(&g, info->cost)) {
		/* No wait would do: the call is refused as a batch line would be. */
		sched_ticket_refuse(t, "request_too_large", -1);
		sched_ticket_free(t);
		return -E2BIG;
	}
	/* A budget spent is refused at once; one that in-flight calls hold waits. */
	if (sched_call_judge(l, t, now, ret_budget) == LEDGER_NO &&
	    ret_budget->v.fit != BUDGET_HELD) {
		*ret_retry_after_ms = sched_budget_retry_ms(&ret_budget->v);
		sched_ticket_refuse(t, "budget_exceeded", *ret_retry_after_ms);
		sched_ticket_free(t);
		return -EDQUOT;
	}
	wait = s->stopping ? INT64_MAX : predicted_wait(l, info->cost, now);
	if (wait > info->max_wait_ms) {
		*ret_retry_after_ms = wait == INT64_MAX ? 60000 : wait;
		sched_ticket_refuse(t, "gate_wait_exceeded", *ret_retry_after_ms);
		sched_ticket_free(t);
		return -EAGAIN;
	}
	t->deadline = evtimer_new(s->d->base, deadline_cb, t);
	if (!t->deadline) {
		sched_ticket_free(t);
		return -ENOMEM;
	}
	time_to_timeval(info->max_wait_ms, &tv);
	evtimer_add(t->deadline, &tv);
	TAILQ_INSERT_TAIL(&l->waiting, t, link);
	l->n_waiting++;
	l->waiting_tokens += info->cost;
	sched_pump_soon(s);
	*ret = t;
	return 0;
}

void sched_call_cancel(struct scheduler *s, struct sched_ticket *t)
{
	struct lane *l;

	if (!t)
		return;
	l = t->lane;
	if (!t->granted) {
		sched_ticket_unqueue(t);
		sched_fleet_forget(t);
	} else {
		/* In flight: the slot comes back; what was spent stays charged. */
		struct gate_answer ga = {.cls = GATE_INTERACTIVE,
		                         .charged = t->info.cost,
		                         .used = -1,
		                         .done = 1,
		                         .event = GATE_EV_NONE,
		                         .retry_after_ms = -1};

		if (l->mode != LANE_ALONE)
			LIST_REMOVE(t, flying);
		sched_lane_settle(l, &ga, &t->lease, NULL);
		/* Its record says aborted, nothing spent: so do its user's budgets. */
		ledger_settle(s->ledger, &t->hold, -1, -1, time_wall_ms());
		sched_pump_soon(s);
	}
	l->stats.requests[GATE_INTERACTIVE][SO_ABORTED]++;
	record_call(l, t, "aborted", NULL, NULL, "caller_gone", -1, NULL);
	sched_ticket_free(t);
}

enum retry_verdict sched_call_done(struct scheduler *s, struct sched_ticket *t,
                                   const struct up_response *resp,
                                   const struct price_usage *streamed, int may_retry,
                                   int64_t deadline, const char *response_body,
                                   int64_t *ret_retry_in_ms)
{
	struct lane *l = t->lane;
	const struct lane_config *c = l->cfg;
	int64_t now = time_mono_ms(), wait = -1;
	const char *outcome, *code;
	struct retry_input in;
	struct retry_policy pol;
	struct retry_decision d;
	struct retry_job job;
	enum stat_outcome so;
	enum retry_verdict v;
	struct answer a;
	int i;

	v = sched_answer_settle(l, GATE_INTERACTIVE, t->info.cost, resp, streamed, &a, &in);
	/* The same policy decides what the answer does to the lane. */
	job = (struct retry_job){t->info.try_no, 0, 0};
	sched_lane_policy(c, &pol);
	retry_decide(&in, a.retry_after_ms, t->mark.room, &pol, &job, sched_rand01(s), &d);
	if (l->mode != LANE_ALONE && t->granted)
		LIST_REMOVE(t, flying);
	sched_answer_apply(l, GATE_INTERACTIVE, &t->mark, &t->lease, t->info.cost, &a, &in, resp,
	                   &d, resp->error);
	/* What the call's record says it spent (record_call, below). */
	ledger_settle(s->ledger, &t->hold, a.total, sched_cost(s, t->info.model, &a),
	              time_wall_ms());
	so = sched_answer_outcome(v);
	for (i = 1; i < resp->sends; i++) /* sends that died with a reused connection */
		record_call(l, t, "retry", NULL, NULL, "connection_lost", -1, NULL);
	if (may_retry && (v == RV_RETRY || v == RV_RATE_LIMITED || v == RV_UNREACHABLE) &&
	    t->info.try_no < c->retry_max_attempts) {
		/* A 429 already paused the lane: the gate is the wait. */
		wait = v == RV_RATE_LIMITED ? 0
		                            : retry_backoff_ms(t->info.try_no, c->backoff_base_ms,
		                                               c->backoff_cap_ms, sched_rand01(s));
		if (a.retry_after_ms > wait)
			wait = a.retry_after_ms;
		if (now + wait >= deadline)
			wait = -1;
	}
	if (wait < 0 && so != SO_SUCCEEDED)
		so = SO_FAILED; /* the caller gets this answer: it is final */
	outcome = stats_outcome_name(so);
	code = resp->status == 0 ? "transport_error" : a.code;
	l->stats.requests[GATE_INTERACTIVE][so]++;
	record_call(l, t, outcome, resp, &a, v == RV_SUCCEEDED ? NULL : code, a.retry_after_ms,
	            response_body);
	json_object_put(a.root);
	sched_ticket_free(t);
	sched_pump_soon(s);
	*ret_retry_in_ms = wait;
	return v;
}
