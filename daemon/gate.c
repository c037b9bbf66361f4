/*
 * gate.c - token/request buckets, stagger and concurrency for one lane.
 *
 * Buckets are continuous: level += rate x elapsed, capped at capacity. A job
 * may launch when the level covers its cost, or - for a job dearer than the
 * whole capacity - when the bucket is full; the level then goes negative and
 * the debt is paid back at the refill rate before the next launch. With the
 * default capacity (burst) of 0 this is pure pacing at the effective rate.
 */
#include "gate.h"

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
static double token_pocket(const struct gate *g)
{
	return g->lim.interactive_reserve * gate_tokens_per_ms(g) * GATE_POCKET_MS;
}

static double req_pocket(const struct gate *g)
{
	return g->lim.interactive_reserve * gate_requests_per_ms(g) * GATE_POCKET_MS;
}

/* The reserve's pocket sits on top of the burst, so a batch alone still
 * spends the whole rate: it only never dips into the pocket. */
double gate_token_capacity(const struct gate *g)
{
	return gate_tokens_per_ms(g) * (double)(g->lim.burst_ms + GATE_SLACK_MS) + token_pocket(g);
}

static double req_capacity(const struct gate *g)
{
	double c = gate_requests_per_ms(g) * (double)g->lim.burst_ms;

	return (c < 1 ? 1 : c) + gate_requests_per_ms(g) * GATE_SLACK_MS + req_pocket(g);
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
	dt = (double)(now - g->refilled_at);
	g->tok = fmin(gate_token_capacity(g), g->tok + gate_tokens_per_ms(g) * dt);
	g->req = fmin(req_capacity(g), g->req + gate_requests_per_ms(g) * dt);
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
	g->tok = gate_token_capacity(g);
	g->req = req_capacity(g);
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
	/* A batch launch leaves the interactive pocket untouched. */
	double tok_keep = cls == GATE_BATCH ? token_pocket(g) : 0;
	double req_keep = cls == GATE_BATCH ? req_pocket(g) : 0;

	gate_refill(g, now);
	if (g->in_flight >= g->lim.max_concurrency ||
	    (cls == GATE_BATCH && g->class_in_flight[GATE_BATCH] >= gate_batch_slots(g))) {
		t = GATE_NEVER;
		why = GATE_CONCURRENCY;
		goto out;
	}
	if (g->paused_until > t) {
		t = g->paused_until;
		why = GATE_PAUSED;
	}
	if (g->next_launch > t) {
		t = g->next_launch;
		why = GATE_STAGGER;
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
		double need = fmin((double)cost, gate_tokens_per_ms(g) * (double)g->lim.burst_ms);

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
	decay_share(g, now);
	g->share[cls] += (double)(cost > 0 ? cost : 1);
	g->in_flight++;
	g->class_in_flight[cls]++;
	g->tok -= (double)cost;
	g->req -= 1;
	g->seq_tokens += cost;
	g->seq_requests++;
	g->next_launch = now + g->lim.stagger_ms +
	                 (int64_t)((double)g->lim.stagger_ms * g->lim.stagger_jitter * jitter01);
	ret_mark->tokens = g->seq_tokens;
	ret_mark->requests = g->seq_requests;
}

void gate_done(struct gate *g, enum gate_class cls, int64_t charged, int64_t used, int64_t now)
{
	gate_refill(g, now);
	if (g->in_flight > 0)
		g->in_flight--;
	if (g->class_in_flight[cls] > 0)
		g->class_in_flight[cls]--;
	if (used >= 0)
		g->tok = fmin(gate_token_capacity(g), g->tok + (double)(charged - used));
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

void gate_observe(struct gate *g, const struct gate_feedback *fb, const struct gate_mark *mark,
                  int64_t now)
{
	double view;

	gate_refill(g, now);
	if (fb->limit_tokens > 0)
		g->provider_tpm = fb->limit_tokens;
	if (fb->limit_requests > 0)
		g->provider_rpm = fb->limit_requests;
	/*
	 * The provider counted every request up to and including this one;
	 * launches made after it (seq beyond mark) are in our level but not in
	 * its figure, so take them off its figure before comparing.
	 */
	if (fb->remaining_tokens >= 0 && tpm_limit(g) > 0) {
		view = (double)fb->remaining_tokens -
		       g->lim.headroom * provider_capacity(fb->remaining_tokens,
		                                           fb->reset_tokens_ms, tpm_limit(g)) -
		       (double)(g->seq_tokens - mark->tokens);
		if (view < g->tok)
			g->tok = view;
	}
	if (fb->remaining_requests >= 0 && rpm_limit(g) > 0) {
		view = (double)fb->remaining_requests -
		       g->lim.headroom * provider_capacity(fb->remaining_requests,
		                                           fb->reset_requests_ms, rpm_limit(g)) -
		       (double)(g->seq_requests - mark->requests);
		if (view < g->req)
			g->req = view;
	}
	if (fb->remaining_requests == 0 && fb->reset_requests_ms > 0)
		gate_pause(g, now + fb->reset_requests_ms, "provider reports no requests left");
}

void gate_charge(struct gate *g, int64_t tokens, int64_t requests, int64_t now)
{
	gate_refill(g, now);
	g->tok -= (double)tokens;
	g->req -= (double)requests;
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
