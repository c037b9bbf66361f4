/*
 * gate.c - token/request buckets, stagger and concurrency for one lane.
 *
 * Buckets are continuous: level += rate x elapsed, capped at capacity. A job
 * may launch when the level covers its cost, or - for a job dearer than the
 * whole capacity - when the bucket is full; the level then goes negative and
 * the debt is paid back at the refill rate before the next launch. With the
 * default capacity (burst) of 0 this is pure pacing at the effective rate.
 */
#include "gate/gate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static double per_ms(int64_t per_min, double headroom)
{
	return per_min > 0 ? (double)per_min * (1.0 - headroom) / 60000.0 : 0;
}

static int64_t tpm_limit(const struct gate *g)
{
	if (g->provider_tpm > 0 && (g->lim.tpm == 0 || g->provider_tpm < g->lim.tpm))
		return g->provider_tpm;
	return g->lim.tpm;
}

static int64_t rpm_limit(const struct gate *g)
{
	if (g->provider_rpm > 0 && (g->lim.rpm == 0 || g->provider_rpm < g->lim.rpm))
		return g->provider_rpm;
	return g->lim.rpm;
}

double gate_tokens_per_ms(const struct gate *g)
{
	return per_ms(tpm_limit(g), g->lim.headroom);
}

double gate_requests_per_ms(const struct gate *g)
{
	return per_ms(rpm_limit(g), g->lim.headroom);
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

static double req_capacity(const struct gate *g)
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
static void bound_debt(struct gate *g)
{
	double tok_floor = -fmax(gate_token_capacity(g), gate_tokens_per_ms(g) * 60000.0);
	double req_floor = -fmax(req_capacity(g), gate_requests_per_ms(g) * 60000.0);

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
static int provider_fresh(const struct gate *g, int64_t now)
{
	return g->window != GATE_WINDOW_SECOND && g->prov_seen_at > 0 &&
	       (g->in_flight > 0 || now - g->prov_seen_at <= GATE_PROVIDER_FRESH_MS);
}

static int fixed(const struct gate *g)
{
	return g->window == GATE_WINDOW_SECOND;
}

/* What the buckets may hold now: the provider's bucket while it is believed;
 * one window's budget in fixed windows. */
static double tok_cap_now(const struct gate *g, int64_t now)
{
	double c = gate_token_capacity(g);

	if (fixed(g))
		return gate_tokens_per_ms(g) * GATE_WINDOW_MS;
	return provider_fresh(g, now) && g->prov_tok_cap > c ? g->prov_tok_cap : c;
}

static double req_cap_now(const struct gate *g, int64_t now)
{
	double c = req_capacity(g);

	if (fixed(g))
		return gate_requests_per_ms(g) * GATE_WINDOW_MS;
	return provider_fresh(g, now) && g->prov_req_cap > c ? g->prov_req_cap : c;
}

/* The most one launch may take from the token bucket before it must be full. */
static double tok_burst_now(const struct gate *g, int64_t now)
{
	double b = gate_tokens_per_ms(g) * (double)burst_ms(g);

	return provider_fresh(g, now) && g->prov_tok_cap > b ? g->prov_tok_cap : b;
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
	if (fixed(g)) {
		/* A new window brings its whole budget: a provider counting fixed
		 * windows starts each from zero. */
		if (now >= g->win_end) {
			g->win_end += ((now - g->win_end) / GATE_WINDOW_MS + 1) * GATE_WINDOW_MS;
			g->tok = tok_cap_now(g, now);
			g->req = req_cap_now(g, now);
		}
		g->refilled_at = now;
		return;
	}
	dt = (double)(now - g->refilled_at);
	g->tok = fmin(tok_cap_now(g, now), g->tok + gate_tokens_per_ms(g) * dt);
	g->req = fmin(req_cap_now(g, now), g->req + gate_requests_per_ms(g) * dt);
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
	g->req = req_capacity(g);
}

void gate_set_window(struct gate *g, int window, int64_t now)
{
	gate_refill(g, now);
	if (g->window == GATE_WINDOW_SECOND && window != GATE_WINDOW_SECOND) {
		/* Back to the minute (probation): its bucket is learned again from the
		 * provider's answers, spending a window's budget at first. */
		g->allow_ms = GATE_WINDOW_MS;
		g->allow_mark = g->seq_tokens;
		g->prov_tok_cap = g->prov_req_cap = 0;
		g->prov_seen_at = 0;
		g->tok = fmin(g->tok, gate_token_capacity(g));
		g->req = fmin(g->req, req_capacity(g));
	}
	g->window = window == GATE_WINDOW_SECOND ? GATE_WINDOW_SECOND : GATE_WINDOW_MINUTE;
	if (g->window == GATE_WINDOW_SECOND) {
		/* Where the provider's windows start is not known yet: ours starts now. */
		g->prov_seen_at = 0;
		g->win_end = now + GATE_WINDOW_MS;
		g->tok = fmin(g->tok, tok_cap_now(g, now));
		g->req = fmin(g->req, req_cap_now(g, now));
	}
}

void gate_align_window(struct gate *g, int64_t boundary, int64_t now)
{
	if (!fixed(g))
		return;
	gate_refill(g, now);
	while (boundary - now > GATE_WINDOW_MS)
		boundary -= GATE_WINDOW_MS;
	while (boundary <= now)
		boundary += GATE_WINDOW_MS;
	g->win_end = boundary;
}

void gate_set_limits(struct gate *g, const struct gate_limits *lim, int64_t now)
{
	gate_refill(g, now);
	g->lim = *lim;
	clamp_limits(&g->lim);
	g->tok = fmin(g->tok, gate_token_capacity(g));
	g->req = fmin(g->req, req_capacity(g));
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
	tok_keep = keep && !fixed(g) ? token_pocket(g) : 0;
	req_keep = keep && !fixed(g) ? req_pocket(g) : 0;
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
	if (fixed(g)) {
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
		           (rpm_limit(g) > 0 && g->req < 1 - 1e-9) ||
		           (tpm_limit(g) > 0 &&
		            g->tok < fmin((double)cost, tok_cap_now(g, now)) - 1e-9)) {
			t = next_window;
			why =
			    tpm_limit(g) > 0 && g->tok < (double)cost ? GATE_TOKENS : GATE_REQUESTS;
		}
		goto out;
	}
	if (rpm_limit(g) > 0) {
		w = now + wait_for(g->req, 1 + req_keep, gate_requests_per_ms(g));
		if (w > t) {
			t = w;
			why = GATE_REQUESTS;
		}
	}
	if (tpm_limit(g) > 0) {
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
	ret_mark->room = provider_fresh(g, now);
	decay_share(g, now);
	g->share[cls] += (double)(cost > 0 ? cost : 1);
	g->in_flight++;
	g->class_in_flight[cls]++;
	g->tok -= (double)cost;
	g->req -= 1;
	bound_debt(g);
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
	if (fixed(g) && used < charged)
		return;
	g->tok = fmin(tok_cap_now(g, now), g->tok + (double)(charged - used));
	bound_debt(g);
	g->seq_refunds += charged - used;
}

/*
 * The size of the provider's bucket: what remains plus what refills until
 * the reset, at the per-minute limit. A provider that enforces its minute
 * over one-second windows has a bucket of limit/60, not limit: the headroom
 * is kept as a share of that, or it would be larger than the bucket itself.
 */
static double provider_capacity(int64_t remaining, int64_t reset_ms, int64_t per_min)
{
	double full = (double)per_min;

	if (reset_ms >= 0 && (double)remaining + (double)reset_ms * full / 60000.0 < full)
		return (double)remaining + (double)reset_ms * full / 60000.0;
	return full;
}

/*
 * One bucket brought down to the provider's figure remaining (-1: not
 * said), which describes its bucket when the marked launch arrived (as
 * OpenAI's headers do). Since then: launches made after it took from it
 * (since), answers gave back (refunded) and it refilled at its full rate for
 * elapsed ms. In the minute window the figure also tells the bucket's size.
 */
static double follow(struct gate *g, double *level, double *bucket, int64_t remaining,
                     int64_t reset_ms, int64_t per_min, int64_t since, int64_t refunded,
                     int64_t elapsed, int newest)
{
	double cap, view;

	if (remaining < 0 || per_min <= 0)
		return -1;
	cap = provider_capacity(remaining, reset_ms, per_min);
	/* The figure is of when the launch arrived, a transit after llmq sent it,
	 * on the provider's clock: its first GATE_TRANSIT_MS of refill is not
	 * counted, or a lane spending its last token would spend one it has not. */
	elapsed -= GATE_TRANSIT_MS;
	view = fmin(cap, (double)remaining + (double)refunded +
	                     (double)per_min / 60000.0 * (double)(elapsed > 0 ? elapsed : 0)) -
	       g->lim.headroom * cap - (double)since;
	if (view < *level)
		*level = view;
	if (g->window != GATE_WINDOW_SECOND && newest)
		*bucket = cap * (1.0 - g->lim.headroom);
	return view;
}

/* What of the provider's bucket the allowance lets the lane hold. */
static void allow(struct gate *g)
{
	g->prov_tok_cap = fmin(g->prov_tok_bucket, gate_tokens_per_ms(g) * (double)g->allow_ms);
	g->prov_req_cap = fmin(g->prov_req_bucket, gate_requests_per_ms(g) * (double)g->allow_ms);
}

/*
 * The provider's bucket is spent by raising the allowance: each round of
 * answers that confirm it doubles it, and the budget it adds becomes
 * available at once (the provider's next figures pull the level down if it
 * was not there). Past that start, the lane refills at its own effective
 * rate, so the headroom is a share of the rate as ever.
 */
static void grow(struct gate *g, double tok_before, double req_before)
{
	double own_tok = gate_token_capacity(g), own_req = req_capacity(g);

	allow(g);
	if (g->prov_tok_cap > fmax(tok_before, own_tok))
		g->tok += g->prov_tok_cap - fmax(tok_before, own_tok);
	if (g->prov_req_cap > fmax(req_before, own_req))
		g->req += g->prov_req_cap - fmax(req_before, own_req);
}

void gate_confirm(struct gate *g, const struct gate_mark *mark)
{
	if (g->window == GATE_WINDOW_SECOND || mark->tokens <= g->allow_mark ||
	    g->allow_ms >= 2 * 60000)
		return;
	g->allow_ms *= 2;
	g->allow_mark = g->seq_tokens;
	grow(g, g->prov_tok_cap, g->prov_req_cap);
}

void gate_observe(struct gate *g, const struct gate_feedback *fb, const struct gate_mark *mark,
                  int64_t now)
{
	int newest = mark->tokens >= g->prov_mark_tokens;
	double tok_before, req_before, tok_view, req_view;

	gate_refill(g, now);
	/* After an idle spell the provider's bucket is learned again, slowly. */
	if (!provider_fresh(g, now)) {
		g->allow_ms = GATE_WINDOW_MS;
		g->allow_mark = g->seq_tokens;
		g->prov_tok_cap = g->prov_req_cap = 0;
	}
	if (fb->limit_tokens > 0)
		g->provider_tpm = fb->limit_tokens;
	if (fb->limit_requests > 0)
		g->provider_rpm = fb->limit_requests;
	tok_before = g->prov_tok_cap;
	req_before = g->prov_req_cap;
	tok_view = follow(g, &g->tok, &g->prov_tok_bucket, fb->remaining_tokens,
	                  fb->reset_tokens_ms, tpm_limit(g), g->seq_tokens - mark->tokens,
	                  g->seq_refunds - mark->refunds, now - mark->at, newest);
	req_view =
	    follow(g, &g->req, &g->prov_req_bucket, fb->remaining_requests, fb->reset_requests_ms,
	           rpm_limit(g), g->seq_requests - mark->requests, 0, now - mark->at, newest);
	if (g->window != GATE_WINDOW_SECOND && newest) {
		grow(g, tok_before, req_before);
		/* The first figure replaces what the lane guessed while it paced. */
		if (tok_before == 0 && tok_view >= 0)
			g->tok = fmax(g->tok, fmin(tok_view, g->prov_tok_cap));
		if (req_before == 0 && req_view >= 0)
			g->req = fmax(g->req, fmin(req_view, g->prov_req_cap));
	}
	if (newest && g->window != GATE_WINDOW_SECOND &&
	    (fb->remaining_tokens >= 0 || fb->remaining_requests >= 0)) {
		g->prov_seen_at = now;
		g->prov_mark_tokens = mark->tokens;
	}
	/* The provider's fresh word that its bucket was full when this launch
	 * arrived: whatever llmq charged before it was not spent there, so the
	 * level comes back up to the provider's (a lane left in debt by a wrong
	 * charge recovers at its next answer). */
	if (newest && fb->limit_tokens > 0 && fb->remaining_tokens >= fb->limit_tokens)
		g->tok = fmax(g->tok, fmin(tok_view, tok_cap_now(g, now)));
	if (newest && fb->limit_requests > 0 && fb->remaining_requests >= fb->limit_requests)
		g->req = fmax(g->req, fmin(req_view, req_cap_now(g, now)));
	bound_debt(g);
	if (fb->remaining_requests == 0 && fb->reset_requests_ms > 0)
		gate_pause(g, now + fb->reset_requests_ms, "provider reports no requests left");
}

void gate_charge(struct gate *g, int64_t tokens, int64_t requests, int64_t now)
{
	gate_refill(g, now);
	g->tok -= (double)tokens;
	g->req -= (double)requests;
	bound_debt(g);
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

/* A 429 teaches (or confirms) that the provider enforces a short window. */
static void gate_learn(struct gate *g, int64_t now, struct gate_news *ret)
{
	if (g->lim.provider_window != GATE_WINDOW_AUTO)
		return;
	if (g->window == GATE_WINDOW_SECOND) {
		g->confirmed_at = now;
		return;
	}
	gate_set_window(g, GATE_WINDOW_SECOND, now);
	g->learned = 1;
	g->learned_at = now;
	g->confirmed_at = now;
	ret->learned = 1;
	ret->probation_ended = g->probation_since != 0;
	g->probation_since = 0;
}

/* The lane after the answer: the breaker, the credit, a 429's pause and window. */
static void gate_lane_event(struct gate *g, const struct gate_answer *a, int64_t now,
                            struct gate_news *ret)
{
	char why[96];

	switch (a->event) {
	case GATE_EV_NONE:
		return;
	case GATE_EV_UNREACHABLE:
		if (g->faults == 0)
			g->fault_since = now;
		if (++g->faults < GATE_BREAKER_TRIP)
			return;
		g->breaker_ms = g->breaker_ms ? g->breaker_ms * 2 : GATE_BREAKER_FIRST_MS;
		if (g->breaker_ms > GATE_BREAKER_MAX_MS)
			g->breaker_ms = GATE_BREAKER_MAX_MS;
		snprintf(why, sizeof(why), "upstream unreachable; probing every %llds",
		         (long long)(g->breaker_ms / 1000));
		gate_pause(g, now + g->breaker_ms, why);
		g->probe = 1;
		ret->breaker_open = g->faults == GATE_BREAKER_TRIP;
		return;
	case GATE_EV_QUOTA:
		if (!g->no_credit_since)
			g->no_credit_since = now;
		snprintf(why, sizeof(why), "insufficient_quota: probing every %llds",
		         (long long)(a->pause_ms / 1000));
		gate_pause(g, now + a->pause_ms, why);
		ret->no_credit = !g->probe;
		g->probe = 1;
		break;
	case GATE_EV_RATE_LIMITED:
		gate_pause(g, now + a->pause_ms, "429 from upstream");
		gate_drain(g, now);
		ret->rate_limited = 1;
		if (a->learn || g->window == GATE_WINDOW_SECOND)
			gate_learn(g, now, ret);
		/* The provider's window ends when its 429 says to come back. */
		if (g->window == GATE_WINDOW_SECOND && a->retry_after_ms >= 0 &&
		    a->retry_after_ms <= GATE_WINDOW_MS) {
			gate_align_window(g, now + a->retry_after_ms, now);
			ret->aligned = 1;
		}
		g->probe = 0;
		g->no_credit_since = 0; /* a rate limit is not a lack of credit */
		break;
	case GATE_EV_ANSWERED:
		ret->resumed = g->probe || g->faults >= GATE_BREAKER_TRIP;
		g->probe = 0;
		g->no_credit_since = 0;
		break;
	}
	g->faults = 0;
	g->breaker_ms = 0;
}

void gate_settle(struct gate *g, const struct gate_answer *a, int64_t now, struct gate_news *ret)
{
	int64_t took;

	memset(ret, 0, sizeof(*ret));
	if (a->observe) {
		gate_observe(g, &a->fb, &a->mark, now);
		if (a->succeeded)
			gate_confirm(g, &a->mark);
	}
	if (a->done) {
		gate_done(g, a->cls, a->charged, a->used, now);
		if (a->observe && a->mark.at > 0 && now >= a->mark.at) {
			took = now - a->mark.at;
			g->lat_ms = g->lat_ms ? (g->lat_ms * 7 + took) / 8 : took;
		}
	}
	if (a->resends > 0)
		gate_charge(g, a->charged * a->resends, a->resends, now);
	gate_lane_event(g, a, now, ret);
}

int gate_probation(struct gate *g, int64_t now)
{
	if (!g->learned || g->window != GATE_WINDOW_SECOND ||
	    g->lim.provider_window != GATE_WINDOW_AUTO || g->lim.probation_ms <= 0 ||
	    now - g->confirmed_at < g->lim.probation_ms)
		return 0;
	gate_set_window(g, GATE_WINDOW_MINUTE, now);
	g->learned = 0;
	g->probation_since = now;
	return 1;
}

/* When a slot may be free: the oldest launch's expected end. */
static int64_t gate_slot_wait(const struct gate *g, int64_t oldest_at, int64_t now)
{
	int64_t w = GATE_SLOT_WAIT_UNKNOWN_MS;

	if (oldest_at != GATE_NEVER && g->lat_ms > 0)
		w = oldest_at + g->lat_ms - now;
	if (w < GATE_SLOT_WAIT_MIN_MS)
		w = GATE_SLOT_WAIT_MIN_MS;
	if (w > GATE_SLOT_WAIT_MAX_MS)
		w = GATE_SLOT_WAIT_MAX_MS;
	return w;
}

/* Turns past their time are given up. */
static void gate_turns_expire(struct gate *g, int64_t now)
{
	int i, k = 0;

	for (i = 0; i < g->n_turns; i++)
		if (g->turns[i].until > now)
			g->turns[k++] = g->turns[i];
	g->n_turns = k;
}

static int gate_turn_of(const struct gate *g, const char *host)
{
	int i;

	for (i = 0; i < g->n_turns; i++)
		if (strcmp(g->turns[i].host, host) == 0)
			return i;
	return -1;
}

/* The host waits until until: it keeps its place, or takes the last. */
static void gate_turn_wait(struct gate *g, const char *host, int64_t until)
{
	int i = gate_turn_of(g, host);

	if (i < 0) {
		if (g->n_turns == GATE_TURNS || strlen(host) > GATE_HOST_MAX)
			return;
		i = g->n_turns++;
		snprintf(g->turns[i].host, sizeof(g->turns[i].host), "%s", host);
	}
	g->turns[i].until = until;
}

void gate_grant(struct gate *g, const struct gate_ask *ask, int64_t now, struct gate_grant *ret)
{
	enum gate_block why = GATE_OK;
	int64_t t = now, until;
	int n = ask->n < 1 ? 1 : ask->n > GATE_GRANT_MAX ? GATE_GRANT_MAX : ask->n;
	int turns = ask->cls == GATE_BATCH && ask->host && ask->host[0], mine = -1;

	memset(ret, 0, sizeof(*ret));
	ret->probation = gate_probation(g, now);
	if (turns) {
		gate_turns_expire(g, now);
		mine = gate_turn_of(g, ask->host);
		if (g->n_turns > 0 && mine != 0) {
			/* Another host's batch was told to wait first: it goes first. */
			ret->why = GATE_TURN;
			ret->wait_ms = g->turns[0].until - now;
			gate_turn_wait(g, ask->host, now + ret->wait_ms + GATE_TURN_GRACE_MS);
			return;
		}
	}
	while (ret->granted < n) {
		t = gate_when(g, ask->cls, ask->cost, now, &why);
		if (t > now)
			break;
		gate_launch(g, ask->cls, ask->cost, now, ask->jitter01, &ret->marks[ret->granted]);
		ret->granted++;
	}
	if (ask->cls == GATE_INTERACTIVE && ask->claim && ret->granted > 0 &&
	    g->claim == ask->claim) {
		g->claim = 0;
		g->claim_until = 0;
	}
	/* Its turn taken: the next host's comes. */
	if (turns && mine == 0 && ret->granted > 0) {
		memmove(&g->turns[0], &g->turns[1], sizeof(g->turns[0]) * (size_t)(g->n_turns - 1));
		g->n_turns--;
	}
	if (ret->granted == n)
		return;
	ret->why = why;
	ret->wait_ms = t == GATE_NEVER ? gate_slot_wait(g, ask->oldest_at, now) : t - now;
	if (turns && ret->granted == 0)
		gate_turn_wait(g, ask->host, now + ret->wait_ms + GATE_TURN_GRACE_MS);
	if (ask->cls == GATE_INTERACTIVE && ask->claim && ret->granted == 0) {
		until = now + ret->wait_ms + GATE_CLAIM_GRACE_MS;
		if (g->claim_until <= now || g->claim == ask->claim || until > g->claim_until) {
			g->claim_until = until;
			g->claim = ask->claim;
		}
	}
}

void gate_adopt(struct gate *g, enum gate_class cls, int64_t cost, int64_t now)
{
	g->in_flight++;
	g->class_in_flight[cls]++;
	gate_charge(g, cost, 1, now);
}

const char *const gate_field_names[GATE_FIELDS] = {
    "in_flight",
    "in_flight_batch",
    "in_flight_interactive",
    "share_batch",
    "share_interactive",
    "share_at",
    "caller_seen_at",
    "callers_seen",
    "next_launch",
    "tok",
    "req",
    "refilled_at",
    "paused_until",
    "seq_tokens",
    "seq_requests",
    "seq_refunds",
    "provider_tpm",
    "provider_rpm",
    "window",
    "probe",
    "prov_tok_bucket",
    "prov_req_bucket",
    "prov_tok_cap",
    "prov_req_cap",
    "prov_seen_at",
    "prov_mark_tokens",
    "win_end",
    "allow_ms",
    "allow_mark",
    "faults",
    "fault_since",
    "breaker_ms",
    "no_credit_since",
    "learned",
    "learned_at",
    "confirmed_at",
    "probation_since",
    "lat_ms",
    "claim_until",
};

const unsigned char gate_field_is_time[GATE_FIELDS] = {
    [5] = 1,  [6] = 1,  [8] = 1,  [11] = 1, [12] = 1, [24] = 1, [26] = 1,
    [30] = 1, [32] = 1, [34] = 1, [35] = 1, [36] = 1, [38] = 1,
};

void gate_pack(const struct gate *g, double out[GATE_FIELDS])
{
	const double v[GATE_FIELDS] = {
	    g->in_flight,
	    g->class_in_flight[GATE_BATCH],
	    g->class_in_flight[GATE_INTERACTIVE],
	    g->share[GATE_BATCH],
	    g->share[GATE_INTERACTIVE],
	    (double)g->share_at,
	    (double)g->caller_seen_at,
	    g->callers_seen,
	    (double)g->next_launch,
	    g->tok,
	    g->req,
	    (double)g->refilled_at,
	    (double)g->paused_until,
	    (double)g->seq_tokens,
	    (double)g->seq_requests,
	    (double)g->seq_refunds,
	    (double)g->provider_tpm,
	    (double)g->provider_rpm,
	    g->window,
	    g->probe,
	    g->prov_tok_bucket,
	    g->prov_req_bucket,
	    g->prov_tok_cap,
	    g->prov_req_cap,
	    (double)g->prov_seen_at,
	    (double)g->prov_mark_tokens,
	    (double)g->win_end,
	    (double)g->allow_ms,
	    (double)g->allow_mark,
	    g->faults,
	    (double)g->fault_since,
	    (double)g->breaker_ms,
	    (double)g->no_credit_since,
	    g->learned,
	    (double)g->learned_at,
	    (double)g->confirmed_at,
	    (double)g->probation_since,
	    (double)g->lat_ms,
	    (double)g->claim_until,
	};

	memcpy(out, v, sizeof(v));
}

void gate_unpack(struct gate *g, const double in[GATE_FIELDS])
{
	g->in_flight = (int)in[0];
	g->class_in_flight[GATE_BATCH] = (int)in[1];
	g->class_in_flight[GATE_INTERACTIVE] = (int)in[2];
	g->share[GATE_BATCH] = in[3];
	g->share[GATE_INTERACTIVE] = in[4];
	g->share_at = (int64_t)in[5];
	g->caller_seen_at = (int64_t)in[6];
	g->callers_seen = (int)in[7];
	g->next_launch = (int64_t)in[8];
	g->tok = in[9];
	g->req = in[10];
	g->refilled_at = (int64_t)in[11];
	g->paused_until = (int64_t)in[12];
	g->seq_tokens = (int64_t)in[13];
	g->seq_requests = (int64_t)in[14];
	g->seq_refunds = (int64_t)in[15];
	g->provider_tpm = (int64_t)in[16];
	g->provider_rpm = (int64_t)in[17];
	g->window = (int)in[18];
	g->probe = (int)in[19];
	g->prov_tok_bucket = in[20];
	g->prov_req_bucket = in[21];
	g->prov_tok_cap = in[22];
	g->prov_req_cap = in[23];
	g->prov_seen_at = (int64_t)in[24];
	g->prov_mark_tokens = (int64_t)in[25];
	g->win_end = (int64_t)in[26];
	g->allow_ms = (int64_t)in[27];
	g->allow_mark = (int64_t)in[28];
	g->faults = (int)in[29];
	g->fault_since = (int64_t)in[30];
	g->breaker_ms = (int64_t)in[31];
	g->no_credit_since = (int64_t)in[32];
	g->learned = (int)in[33];
	g->learned_at = (int64_t)in[34];
	g->confirmed_at = (int64_t)in[35];
	g->probation_since = (int64_t)in[36];
	g->lat_ms = (int64_t)in[37];
	g->claim_until = (int64_t)in[38];
}
