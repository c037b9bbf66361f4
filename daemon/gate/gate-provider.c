/*
 * gate-provider.c - what the provider's answers teach a lane's gate: its
 * x-ratelimit figures followed down (and its bucket spent by an allowance
 * that doubles with each round of answers that confirm it), the window it
 * enforces learnt from a 429 and aligned to its retry-after, probation back
 * to the minute, and an answer settled: usage reconciled, the breaker, the
 * lack of credit, a 429's pause. Pure, as gate.c: the clock is an argument.
 */
#include "gate/gate-private.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
		g->req = fmin(g->req, gate_req_capacity(g));
	}
	g->window = window == GATE_WINDOW_SECOND ? GATE_WINDOW_SECOND : GATE_WINDOW_MINUTE;
	if (g->window == GATE_WINDOW_SECOND) {
		/* Where the provider's windows start is not known yet: ours starts now. */
		g->prov_seen_at = 0;
		g->win_end = now + GATE_WINDOW_MS;
		g->tok = fmin(g->tok, gate_tok_cap_now(g, now));
		g->req = fmin(g->req, gate_req_cap_now(g, now));
	}
}

void gate_align_window(struct gate *g, int64_t boundary, int64_t now)
{
	if (!gate_fixed(g))
		return;
	gate_refill(g, now);
	while (boundary - now > GATE_WINDOW_MS)
		boundary -= GATE_WINDOW_MS;
	while (boundary <= now)
		boundary += GATE_WINDOW_MS;
	g->win_end = boundary;
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
	double own_tok = gate_token_capacity(g), own_req = gate_req_capacity(g);

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
	if (!gate_provider_fresh(g, now)) {
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
	                  fb->reset_tokens_ms, gate_tpm_limit(g), g->seq_tokens - mark->tokens,
	                  g->seq_refunds - mark->refunds, now - mark->at, newest);
	req_view =
	    follow(g, &g->req, &g->prov_req_bucket, fb->remaining_requests, fb->reset_requests_ms,
	           gate_rpm_limit(g), g->seq_requests - mark->requests, 0, now - mark->at, newest);
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
		g->tok = fmax(g->tok, fmin(tok_view, gate_tok_cap_now(g, now)));
	if (newest && fb->limit_requests > 0 && fb->remaining_requests >= fb->limit_requests)
		g->req = fmax(g->req, fmin(req_view, gate_req_cap_now(g, now)));
	gate_bound_debt(g);
	if (fb->remaining_requests == 0 && fb->reset_requests_ms > 0)
		gate_pause(g, now + fb->reset_requests_ms, "provider reports no requests left");
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
