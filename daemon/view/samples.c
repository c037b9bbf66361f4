/*
 * samples.c - the ring of a lane's last hour and the per-minute sums (see
 * samples.h). Pure.
 */
#include "view/samples.h"

#include <string.h>

static int64_t samples_period_of(int64_t mono_ms)
{
	return mono_ms >= 0 ? mono_ms / SAMPLES_PERIOD_MS
	                    : -((-mono_ms + SAMPLES_PERIOD_MS - 1) / SAMPLES_PERIOD_MS);
}

static int samples_slot(int64_t period)
{
	int64_t k = period % SAMPLES_KEPT;

	return (int)(k < 0 ? k + SAMPLES_KEPT : k);
}

/* What grew from a to b; nothing when it went down. */
static int64_t samples_grew(uint64_t a, uint64_t b)
{
	return b > a ? (int64_t)(b - a) : 0;
}

/* The period a reading taken at now belongs to: the middle of the time it covers. */
static int64_t samples_label(const struct samples *s, const struct samples_time *now)
{
	int64_t from = s->last_mono < now->mono_ms ? s->last_mono : now->mono_ms;

	return samples_period_of(from + (now->mono_ms - from) / 2);
}

/* Reading r at now, counted into smp (which holds its period's earlier part, if any). */
static void samples_add(const struct samples *s, const struct samples_time *now,
                        const struct samples_reading *r, struct sample *smp)
{
	smp->tokens_launched += samples_grew(s->last.tokens_launched, r->tokens_launched);
	smp->tokens_used += samples_grew(s->last.tokens_used, r->tokens_used);
	smp->requests += samples_grew(s->last.requests, r->requests);
	smp->r429 += samples_grew(s->last.r429, r->r429);
	smp->in_flight = r->in_flight;
	smp->queued = r->queued;
	smp->tpm_limit = r->tpm_limit;
	smp->rpm_limit = r->rpm_limit;
	smp->wall_ms = now->wall_ms;
}

/* The sample of period p that the ring holds, or an empty one of p. */
static struct sample samples_at(const struct samples *s, int64_t p)
{
	const struct sample *slot = &s->ring[samples_slot(p)];
	struct sample empty = {.period = p};

	return slot->period == p ? *slot : empty;
}

void samples_init(struct samples *s, const struct samples_time *now,
                  const struct samples_reading *r)
{
	int i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < SAMPLES_KEPT; i++)
		s->ring[i].period = SAMPLES_NONE;
	s->last = *r;
	s->last_mono = now->mono_ms;
}

void samples_record(struct samples *s, const struct samples_time *now,
                    const struct samples_reading *r)
{
	int64_t p = samples_label(s, now);
	struct sample smp = samples_at(s, p);

	samples_add(s, now, r, &smp);
	s->ring[samples_slot(p)] = smp;
	s->last = *r;
	s->last_mono = now->mono_ms > s->last_mono ? now->mono_ms : s->last_mono;
}

static void samples_point_from(const struct sample *smp, int provisional, struct samples_point *pt)
{
	*pt = (struct samples_point){
	    .period = smp->period,
	    .wall_ms = smp->wall_ms,
	    .provisional = provisional,
	    .tokens_launched = smp->tokens_launched,
	    .tokens_used = smp->tokens_used,
	    .requests = smp->requests,
	    .r429 = smp->r429,
	    .in_flight = smp->in_flight,
	    .queued = smp->queued,
	    .tpm_limit = smp->tpm_limit,
	    .rpm_limit = smp->rpm_limit,
	};
}

/* Each point's sums over the minute that ends with it (the points are in order). */
static void samples_minute_sums(struct samples_point *pt, int n)
{
	int64_t tok = 0, used = 0, req = 0, r429 = 0;
	int i, first = 0;

	for (i = 0; i < n; i++) {
		tok += pt[i].tokens_launched;
		used += pt[i].tokens_used;
		req += pt[i].requests;
		r429 += pt[i].r429;
		for (; pt[first].period <= pt[i].period - SAMPLES_MINUTE; first++) {
			tok -= pt[first].tokens_launched;
			used -= pt[first].tokens_used;
			req -= pt[first].requests;
			r429 -= pt[first].r429;
		}
		pt[i].tokens_per_min = tok;
		pt[i].used_per_min = used;
		pt[i].requests_per_min = req;
		pt[i].r429_per_min = r429;
	}
}

int samples_series(const struct samples *s, const struct samples_time *now,
                   const struct samples_reading *cur, struct samples_point *ret, int max)
{
	int64_t last = samples_period_of(now->mono_ms), p, vp = 0;
	struct sample v = {.period = SAMPLES_NONE}, smp;
	int n = 0;

	if (cur) {
		vp = samples_label(s, now);
		v = samples_at(s, vp);
		samples_add(s, now, cur, &v);
	}
	for (p = last - SAMPLES_KEPT + 1; p <= last && n < max; p++) {
		if (cur && p == vp) {
			samples_point_from(&v, 1, &ret[n++]);
			continue;
		}
		smp = samples_at(s, p);
		if (s->ring[samples_slot(p)].period == p)
			samples_point_from(&smp, 0, &ret[n++]);
	}
	samples_minute_sums(ret, n);
	return n;
}
