/*
 * gate.c - token/request buckets, stagger and concurrency for one lane.
 *
 * Buckets are continuous: level += rate x elapsed, capped at capacity. A job
 * may launch when the level covers its cost, or - for a job dearer than the
 * whole capacity - when the bucket is full; the level then goes negative and
 * the debt is paid back at the refill rate before the next launch. With the
 * default capacity (burst) of 0 this is pure pacing at the effective rate.
 *
 * The provider's figures, its windows and probation are gate-provider.c's;
 * grants, hosts' turns and the gate as numbers are gate-grant.c's.
 */
#include "gate/gate-private.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static double per_ms(int64_t per_min, double headroom)
{
	return per_min > 0 ? (double)per_min * (1.0 - headroom) / 60000.0 : 0;
}

int64_t gate_tpm_limit(const struct gate *g)
{
	if (g->provider_tpm > 0 && (g->lim.tpm == 0 || g->provider_tpm < g->lim.tpm))
		return g->provider_tpm;
	return g->lim.tpm;
}

int64_t gate_rpm_limit(const struct gate *g)
{
	if (g->provider_rpm > 0 && (g->lim.rpm == 0 || g->provider_rpm < g->lim.rpm))
		return g->provider_rpm;
	return g->lim.rpm;
}

double gate_tokens_per_ms(const struct gate *g)
{
	return per_ms(gate_tpm_limit(g), g->lim.headroom);
}

double gate_requests_per_ms(const struct gate *g)
{
	return per_ms(gate_rpm_limit(g), g->lim.headroom);
}

int64_t gate_effective_tpm(const struct gate *g)
{
	return (int64_t)floor(gate_tokens_per_ms(g) * 60000.0 + 1e-6);
}

/*
 * A launch happens when the loop gets to it: a timer fires a little late, a
 * burst of answers is being stored. Whatever refilled meanwhile would be lost
 * to a bucket capped at exactly its burst, so each bucket holds
 * GATE_SLACK_MS of refill more (at 10,000 requests/min, a launch every 6 ms,
 * losing 1 ms of lateness per launch would waste a sixth of the budget).
 */
int gate_reserve_held(const struct gate *g, int64_t now)
{
	return g->lim.interactive_reserve > 0 && g->callers_seen &&
	       now - g->caller_seen_at < GATE_RESERVE_IDLE_MS;
}

/*
 * The reserve's pocket exists while callers are about (as of the gate's last
 * refill): a lane nobody calls has the capacity of a lane without a reserve,
 * so a batch alone spends exactly what it would with interactive_reserve = 0
 * - not the pocket on top, which the provider's bucket does not hold.
 */
static double token_pocket(const struct gate *g)
{
	if (!gate_reserve_held(g, g->refilled_at))
		return 0;
	return g->lim.interactive_reserve * gate_tokens_per_ms(g) * GATE_POCKET_MS;
}

static double req_pocket(const struct gate *g)
{
	if (!gate_reserve_held(g, g->refilled_at))
		return 0;
	return g->lim.interactive_reserve * gate_requests_per_ms(g) * GATE_POCKET_MS;
}

/* A provider that enforces shorter windows takes bursts of a second at most. */
static int64_t burst_ms(const struct gate *g)
{
	return g->window == GATE_WINDOW_SECOND && g->lim.burst_ms > 1000 ? 1000 : g->lim.burst_ms;
}

/* The reserve's pocket sits on top of the burst, so a batch still spends the
 * whole rate while callers are about: it only never dips into the pocket. */
double gate_token_capacity(const struct gate *g)
{
	return gate_tokens_per_ms(g) * (double)(burst_ms(g) + GATE_SLACK_MS) + token_pocket(g);
}

double gate_req_capacity(const struct gate *g)
{
	double c = gate_requests_per_ms(g) * (double)burst_ms(g);

	return (c < 1 ? 1 : c) + gate_requests_per_ms(g) * GATE_SLACK_MS + req_pocket(g);
}

/*
 * The most debt a bucket may carry: one minute of the lane's budget (the
 * provider's own bucket), or its capacity when that is larger. A request
 * dearer than that is refused before it reaches the gate; whatever else
 * charges a lane (resends, usage beyond the estimate, the provider's
 * figures) can never put it out of service for longer than a minute.
 */
void gate_bound_debt(struct gate *g)
{
	double tok_floor = -fmax(gate_token_capacity(g), gate_tokens_per_ms(g) * 60000.0);
	double req_floor = -fmax(gate_req_capacity(g), gate_requests_per_ms(g) * 60000.0);

	if (g->tok < tok_floor)
		g->tok = tok_floor;
	if (g->req < req_floor)
		g->req = req_floor;
}

/*
 * Whether the provider's latest figures are believed: the window is a
 * minute, an answer said, and the lane has not idled since (in flight, or
 * an answer within GATE_PROVIDER_FRESH_MS).
 */
int gate_provider_fresh(const struct gate *g, int64_t now)
{
	return g->window != GATE_WINDOW_SECOND && g->prov_seen_at > 0 &&
	       (g->in_flight > 0 || now - g->prov_seen_at <= GATE_PROVIDER_FRESH_MS);
}

int gate_fixed(const struct gate *g)
{
	return g->window == GATE_WINDOW_SECOND;
}

/* What the buckets may hold now: the provider's bucket while it is believed;
 * one window's budget in fixed windows. */
double gate_tok_cap_now(const struct gate *g, int64_t now)
{
	double c = gate_token_capacity(g);

	if (gate_fixed(g))
		return gate_tokens_per_ms(g) * GATE_WINDOW_MS;
	return gate_provider_fresh(g, now) && g->prov_tok_cap > c ? g->prov_tok_cap : c;
}

double gate_req_cap_now(const struct gate *g, int64_t now)
{
	double c = gate_req_capacity(g);

	if (gate_fixed(g))
		return gate_requests_per_ms(g) * GATE_WINDOW_MS;
	return gate_provider_fresh(g, now) && g->prov_req_cap > c ? g->prov_req_cap : c;
}

/* The most one launch may take from the token bucket before it must be full. */
static double tok_burst_now(const struct gate *g, int64_t now)
{
	double b = gate_tokens_per_ms(g) * (double)burst_ms(g);

	return gate_provider_fresh(g, now) && g->prov_tok_cap > b ? g->prov_tok_cap : b;
}

int gate_batch_slots(const struct gate *g)
{
	int keep = (int)ceil(g->lim.interactive_reserve * g->lim.max_concurrency - 1e-9);
	int n = g->lim.max_concurrency - keep;

	return n < 1 ? 1 : n;
}

static void decay_share(struct gate *g, int64_t now)
{
	double f;
	int c;

	if (now <= g->share_at)
		return;
	f = exp(-(double)(now - g->share_at) / GATE_SHARE_TAU_MS);
	for (c = 0; c < GATE_CLASSES; c++)
		g->share[c] *= f;
	g->share_at = now;
}

enum gate_class gate_first_class(struct gate *g, int64_t now)
{
	double total;

	decay_share(g, now);
	total = g->share[GATE_BATCH] + g->share[GATE_INTERACTIVE];
	if (total > 0 && g->share[GATE_INTERACTIVE] > (1.0 - g->lim.interactive_reserve) * total)
		return GATE_BATCH;
	return GATE_INTERACTIVE;
}

void gate_refill(struct gate *g, int64_t now)
{
	double dt;

	if (now <= g->refilled_at)
		return;
	if (gate_fixed(g)) {
		/* A new window brings its whole budget: a provider counting fixed
		 * windows starts each from zero. */
		if (now >= g->win_end) {
			g->win_end += ((now - g->win_end) / GATE_WINDOW_MS + 1) * GATE_WINDOW_MS;
			g->tok = gate_tok_cap_now(g, now);
			g->req = gate_req_cap_now(g, now);
		}
		g->refilled_at = now;
		return;
	}
	dt = (double)(now - g->refilled_at);
	g->tok = fmin(gate_tok_cap_now(g, now), g->tok + gate_tokens_per_ms(g) * dt);
	g->req = fmin(gate_req_cap_now(g, now), g->req + gate_requests_per_ms(g) * dt);
	g->refilled_at = now;
}

static void clamp_limits(struct gate_limits *lim)
{
	if (lim->max_concurrency < 1)
		lim->max_concurrency = 1;
	if (lim->headroom < 0)
		lim->headroom = 0;
	if (lim->headroom > 0.9)
		lim->headroom = 0.9;
	if (!(lim->interactive_reserve >= 0))
		lim->interactive_reserve = 0;
	if (lim->interactive_reserve > 0.9)
		lim->interactive_reserve = 0.9;
}

void gate_init(struct gate *g, const struct gate_limits *lim, int64_t now)
{
	memset(g, 0, sizeof(*g));
	g->lim = *lim;
	clamp_limits(&g->lim);
	g->share_at = now;
	g->refilled_at = now;
	g->next_launch = now;
	g->window = GATE_WINDOW_MINUTE;
	g->allow_ms = GATE_WINDOW_MS;
	g->tok = gate_token_capacity(g);
	g->req = gate_req_capacity(g);
}

void gate_set_limits(struct gate *g, const struct gate_limits *lim, int64_t now)
{
	gate_refill(g, now);
	g->lim = *lim;
	clamp_limits(&g->lim);
	g->tok = fmin(g->tok, gate_token_capacity(g));
	g->req = fmin(g->req, gate_req_capacity(g));
}

/* Time until a bucket at level, refilling at rate, holds need. */
static int64_t wait_for(double level, double need, double rate)
{
	if (level >= need)
		return 0;
	return (int64_t)ceil((need - level) / rate - 1e-9);
}

int64_t gate_when(struct gate *g, enum gate_class cls, int64_t cost, int64_t now,
                  enum gate_block *ret_why)
{
	enum gate_block why = GATE_OK;
	int64_t t = now, w;
	int keep, batch = cls == GATE_BATCH;
	double tok_keep, req_keep;
	int64_t next_window;

	if (!batch) {
		g->caller_seen_at = now;
		g->callers_seen = 1;
	}
	/* While callers are about, a batch launch leaves the interactive pocket
	 * untouched (a fixed window is too small to keep a pocket in: calls wait
	 * for the next window at most) and the reserved slots free. */
	keep = batch && gate_reserve_held(g, now);
	tok_keep = keep && !gate_fixed(g) ? token_pocket(g) : 0;
	req_keep = keep && !gate_fixed(g) ? req_pocket(g) : 0;
	gate_refill(g, now);
	if (g->in_flight >= g->lim.max_concurrency || (g->probe && g->in_flight > 0) ||
	    (keep && g->class_in_flight[GATE_BATCH] >= gate_batch_slots(g))) {
		t = GATE_NEVER;
		why = GATE_CONCURRENCY;
		goto out;
	}
	if (g->paused_until > t) {
		t = g->paused_until;
		why = GATE_PAUSED;
	}
	/* The fleet: a call waiting on another host goes first (while calls do). */
	if (batch && g->claim_until > t && gate_first_class(g, now) == GATE_INTERACTIVE) {
		t = g->claim_until;
		why = GATE_CLAIMED;
	}
	if (g->next_launch > t && (cls == GATE_BATCH || g->lim.stagger_interactive)) {
		t = g->next_launch;
		why = GATE_STAGGER;
	}
	if (gate_fixed(g)) {
		/* Launch within a window of the provider's, never near its end; what
		 * the window cannot take waits for the next. Paused or staggered: look
		 * again then. */
		next_window = g->win_end + GATE_WINDOW_LEAD_MS;
		if (t > now)
			goto out;
		if (now < g->win_end - GATE_WINDOW_MS + GATE_WINDOW_LEAD_MS) {
			t = g->win_end - GATE_WINDOW_MS + GATE_WINDOW_LEAD_MS;
			why = GATE_REQUESTS;
		} else if (now >= g->win_end - GATE_WINDOW_TAIL_MS ||
		           (gate_rpm_limit(g) > 0 && g->req < 1 - 1e-9) ||
		           (gate_tpm_limit(g) > 0 &&
		            g->tok < fmin((double)cost, gate_tok_cap_now(g, now)) - 1e-9)) {
			t = next_window;
			why = gate_tpm_limit(g) > 0 && g->tok < (double)cost ? GATE_TOKENS
			                                                     : GATE_REQUESTS;
		}
		goto out;
	}
	if (gate_rpm_limit(g) > 0) {
		w = now + wait_for(g->req, 1 + req_keep, gate_requests_per_ms(g));
		if (w > t) {
			t = w;
			why = GATE_REQUESTS;
		}
	}
	if (gate_tpm_limit(g) > 0) {
		/* A job dearer than the burst waits for a full bucket (less the slack). */
		double need = fmin((double)cost, tok_burst_now(g, now));

		w = now + wait_for(g->tok, need + tok_keep, gate_tokens_per_ms(g));
		if (w > t) {
			t = w;
			why = GATE_TOKENS;
		}
	}
out:
	if (ret_why)
		*ret_why = why;
	return t;
}

void gate_launch(struct gate *g, enum gate_class cls, int64_t cost, int64_t now, double jitter01,
                 struct gate_mark *ret_mark)
{
	gate_refill(g, now);
	if (cls == GATE_INTERACTIVE) {
		g->caller_seen_at = now;
		g->callers_seen = 1;
	}
	ret_mark->room = gate_provider_fresh(g, now);
	decay_share(g, now);
	g->share[cls] += (double)(cost > 0 ? cost : 1);
	g->in_flight++;
	g->class_in_flight[cls]++;
	g->tok -= (double)cost;
	g->req -= 1;
	gate_bound_debt(g);
	g->seq_tokens += cost;
	g->seq_requests++;
	/* The prototype's stagger spaced its batch runs: a caller waiting on an open
	 * connection neither waits for it nor pushes it on, unless told to. */
	if (cls == GATE_BATCH || g->lim.stagger_interactive)
		g->next_launch =
		    now + g->lim.stagger_ms +
		    (int64_t)((double)g->lim.stagger_ms * g->lim.stagger_jitter * jitter01);
	ret_mark->tokens = g->seq_tokens;
	ret_mark->requests = g->seq_requests;
	ret_mark->refunds = g->seq_refunds;
	ret_mark->at = now;
}

void gate_done(struct gate *g, enum gate_class cls, int64_t charged, int64_t used, int64_t now)
{
	gate_refill(g, now);
	if (g->in_flight > 0)
		g->in_flight--;
	if (g->class_in_flight[cls] > 0)
		g->class_in_flight[cls]--;
	if (used < 0)
		return;
	/* A provider counting fixed windows charged the estimate at arrival and
	 * gives nothing back within the window: a refund would reopen it (and in a
	 * later window the level started afresh anyway). What was used beyond the
	 * estimate is still owed. */
	if (gate_fixed(g) && used < charged)
		return;
	g->tok = fmin(gate_tok_cap_now(g, now), g->tok + (double)(charged - used));
	gate_bound_debt(g);
	g->seq_refunds += charged - used;
}

void gate_charge(struct gate *g, int64_t tokens, int64_t requests, int64_t now)
{
	gate_refill(g, now);
	g->tok -= (double)tokens;
	g->req -= (double)requests;
	gate_bound_debt(g);
	g->seq_tokens += tokens;
	g->seq_requests += requests;
}

void gate_pause(struct gate *g, int64_t until, const char *reason)
{
	if (until <= g->paused_until)
		return;
	g->paused_until = until;
	snprintf(g->pause_reason, sizeof(g->pause_reason), "%s", reason ? reason : "");
}

void gate_drain(struct gate *g, int64_t now)
{
	gate_refill(g, now);
	if (g->tok > 0)
		g->tok = 0;
	if (g->req > 0)
		g->req = 0;
}
