/*
 * The ring of a lane's last hour, driven by a fake clock: which period a
 * reading fills, what a period counts, the per-minute sums, the running
 * period as a provisional point, and the hour's end.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "params.h"
#include "view/samples.h"

#define P SAMPLES_PERIOD_MS
#define MAX_READS 16
#define MAX_POINTS 8

/* A reading: when (monotonic ms; wall is 1e12 + that), the tokens launched
 * and requests so far, and the lane's in-flight level. */
struct read {
	int64_t at;
	uint64_t tokens;
	uint64_t requests;
	int64_t in_flight;
};

/* What a point must be. */
struct want {
	int64_t period;
	int64_t tokens;
	int64_t tokens_per_min;
	int64_t requests_per_min;
	int64_t in_flight;
	int provisional;
	int64_t wall_ms;
};

struct samples_case {
	const char *what;
	struct read reads[MAX_READS]; /* the first one starts the counting (samples_init) */
	int n_reads;
	int64_t now;
	int has_cur; /* a reading at now, shown as the running period */
	struct read cur;
	struct want points[MAX_POINTS];
	int n_points;
};

#define WALL(t) (1000000000000LL + (t))

static void dup_case(void *p)
{
	struct samples_case *c = p;

	c->what = params_strdup(c->what);
}

ParameterizedTestParameters(samples, series)
{
	static struct samples_case cases[] = {
	    {.what = "a timer just after each period's end fills the period that ended",
	     .reads = {{0, 0, 0, 0}, {P + 5, 100, 2, 1}, {2 * P + 3, 250, 5, 2}},
	     .n_reads = 3,
	     .now = 2 * P + 500,
	     .points = {{0, 100, 100, 2, 1, 0, WALL(P + 5)},
	                {1, 150, 250, 5, 2, 0, WALL(2 * P + 3)}},
	     .n_points = 2},
	    {.what = "a timer late by half a period still fills the period that ended",
	     .reads = {{0, 0, 0, 0}, {P + 4999, 100, 1, 0}},
	     .n_reads = 2,
	     .now = P + 5000,
	     .points = {{0, 100, 100, 1, 0, 0, WALL(P + 4999)}},
	     .n_points = 1},
	    {.what = "two readings in one period add up; the levels are the later one's",
	     .reads =
	         {{0, 0, 0, 0}, {P + 5, 10, 1, 3}, {P + 4000, 30, 2, 7}, {2 * P + 5, 70, 4, 1}},
	     .n_reads = 4,
	     .now = 2 * P + 10,
	     .points = {{0, 10, 10, 1, 3, 0, WALL(P + 5)}, {1, 60, 70, 4, 1, 0, WALL(2 * P + 5)}},
	     .n_points = 2},
	    {.what = "a counter that went down counts as nothing and is counted from again",
	     .reads =
	         {{0, 0, 0, 0}, {P + 5, 500, 5, 0}, {2 * P + 5, 400, 5, 0}, {3 * P + 5, 450, 6, 0}},
	     .n_reads = 4,
	     .now = 3 * P + 10,
	     .points = {{0, 500, 500, 5, 0, 0, WALL(P + 5)},
	                {1, 0, 500, 5, 0, 0, WALL(2 * P + 5)},
	                {2, 50, 550, 6, 0, 0, WALL(3 * P + 5)}},
	     .n_points = 3},
	    /* 60 tokens a period: the minute ending with period 6 holds periods 1..6
	     * (360), period 0's 60 having left it. */
	    {.what = "the per-minute sums hold the six periods that end with the point",
	     .reads = {{0, 0, 0, 0},
	               {P + 1, 60, 1, 0},
	               {2 * P + 1, 120, 2, 0},
	               {3 * P + 1, 180, 3, 0},
	               {4 * P + 1, 240, 4, 0},
	               {5 * P + 1, 300, 5, 0},
	               {6 * P + 1, 360, 6, 0},
	               {7 * P + 1, 420, 7, 0}},
	     .n_reads = 8,
	     .now = 7 * P + 2,
	     .points = {{0, 60, 60, 1, 0, 0, WALL(P + 1)},
	                {1, 60, 120, 2, 0, 0, WALL(2 * P + 1)},
	                {2, 60, 180, 3, 0, 0, WALL(3 * P + 1)},
	                {3, 60, 240, 4, 0, 0, WALL(4 * P + 1)},
	                {4, 60, 300, 5, 0, 0, WALL(5 * P + 1)},
	                {5, 60, 360, 6, 0, 0, WALL(6 * P + 1)},
	                {6, 60, 360, 6, 0, 0, WALL(7 * P + 1)}},
	     .n_points = 7},
	    /* The loop stalled for 40 s: what happened meanwhile lands in one
	     * period (the middle of the 40 s), and the minute is counted by
	     * periods, not by points: period 6's minute no longer holds period 0. */
	    {.what = "a stall leaves periods empty; the minute is counted by periods",
	     .reads =
	         {{0, 0, 0, 0}, {P + 1, 100, 1, 0}, {5 * P + 1, 300, 3, 0}, {7 * P + 1, 310, 4, 0}},
	     .n_reads = 4,
	     .now = 7 * P + 2,
	     .points = {{0, 100, 100, 1, 0, 0, WALL(P + 1)},
	                {3, 200, 300, 3, 0, 0, WALL(5 * P + 1)},
	                {6, 10, 210, 3, 0, 0, WALL(7 * P + 1)}},
	     .n_points = 3},
	    {.what = "a reading now is the running period, provisional, with its own levels",
	     .reads = {{0, 0, 0, 0}, {P + 5, 100, 1, 1}},
	     .n_reads = 2,
	     .now = P + 4005,
	     .has_cur = 1,
	     .cur = {P + 4005, 180, 3, 4},
	     .points = {{0, 100, 100, 1, 1, 0, WALL(P + 5)}, {1, 80, 180, 3, 4, 1, WALL(P + 4005)}},
	     .n_points = 2},
	    {.what = "with nothing recorded yet, a reading now is the only point",
	     .reads = {{0, 0, 0, 0}},
	     .n_reads = 1,
	     .now = 3000,
	     .has_cur = 1,
	     .cur = {3000, 42, 1, 1},
	     .points = {{0, 42, 42, 1, 1, 1, WALL(3000)}},
	     .n_points = 1},
	    /* Recorded in period 2 already (a timer that fired early): the
	     * provisional point adds to what period 2 holds. */
	    {.what = "a reading now adds to its period's sample, which stays as it was",
	     .reads =
	         {{0, 0, 0, 0}, {P + 5, 10, 1, 0}, {2 * P + 5, 30, 2, 0}, {2 * P + 6000, 50, 3, 2}},
	     .n_reads = 4,
	     .now = 2 * P + 9000,
	     .has_cur = 1,
	     .cur = {2 * P + 9000, 65, 4, 5},
	     .points = {{0, 10, 10, 1, 0, 0, WALL(P + 5)},
	                {1, 20, 30, 2, 0, 0, WALL(2 * P + 5)},
	                {2, 35, 65, 4, 5, 1, WALL(2 * P + 9000)}},
	     .n_points = 3},
	};

	return cr_make_param_array(
	    struct samples_case,
	    params_copy(cases, sizeof(cases) / sizeof(cases[0]), sizeof(cases[0]), dup_case),
	    sizeof(cases) / sizeof(cases[0]));
}

static struct samples_reading reading_of(const struct read *r)
{
	return (struct samples_reading){
	    .tokens_launched = r->tokens,
	    .tokens_used = r->tokens / 2,
	    .requests = r->requests,
	    .in_flight = r->in_flight,
	    .queued = 2 * r->in_flight,
	    .tpm_limit = 25500,
	    .rpm_limit = 0,
	};
}

static struct samples_time at(int64_t t)
{
	return (struct samples_time){.mono_ms = t, .wall_ms = WALL(t)};
}

ParameterizedTest(struct samples_case *c, samples, series)
{
	static struct samples s;
	struct samples_point pt[SAMPLES_KEPT + 1];
	struct samples_reading r = reading_of(&c->reads[0]), cur;
	struct samples_time t = at(c->reads[0].at), now = at(c->now);
	struct sample before;
	int i, n;

	samples_init(&s, &t, &r);
	for (i = 1; i < c->n_reads; i++) {
		r = reading_of(&c->reads[i]);
		t = at(c->reads[i].at);
		samples_record(&s, &t, &r);
	}
	cur = reading_of(&c->cur);
	before = s.ring[(now.mono_ms / P) % SAMPLES_KEPT];
	n = samples_series(&s, &now, c->has_cur ? &cur : NULL, pt, SAMPLES_KEPT + 1);
	cr_assert_eq(memcmp(&before, &s.ring[(now.mono_ms / P) % SAMPLES_KEPT], sizeof(before)), 0,
	             "%s: reading the series changes nothing", c->what);
	cr_assert_eq(n, c->n_points, "%s: %d points, want %d", c->what, n, c->n_points);
	for (i = 0; i < n; i++) {
		const struct want *w = &c->points[i];

		cr_assert_eq(pt[i].period, w->period, "%s: point %d is period %lld, want %lld",
		             c->what, i, (long long)pt[i].period, (long long)w->period);
		cr_assert_eq(pt[i].tokens_launched, w->tokens,
		             "%s: period %lld: %lld tokens, want %lld", c->what,
		             (long long)w->period, (long long)pt[i].tokens_launched,
		             (long long)w->tokens);
		cr_assert_eq(pt[i].tokens_used, w->tokens / 2, "%s: period %lld: used tokens %lld",
		             c->what, (long long)w->period, (long long)pt[i].tokens_used);
		cr_assert_eq(pt[i].tokens_per_min, w->tokens_per_min,
		             "%s: period %lld: %lld tokens in its minute, want %lld", c->what,
		             (long long)w->period, (long long)pt[i].tokens_per_min,
		             (long long)w->tokens_per_min);
		cr_assert_eq(pt[i].requests_per_min, w->requests_per_min,
		             "%s: period %lld: %lld requests in its minute, want %lld", c->what,
		             (long long)w->period, (long long)pt[i].requests_per_min,
		             (long long)w->requests_per_min);
		cr_assert_eq(pt[i].in_flight, w->in_flight, "%s: period %lld: in flight", c->what,
		             (long long)w->period);
		cr_assert_eq(pt[i].queued, 2 * w->in_flight, "%s: queued", c->what);
		cr_assert_eq(pt[i].tpm_limit, 25500, "%s: the limit", c->what);
		cr_assert_eq(pt[i].provisional, w->provisional, "%s: period %lld provisional",
		             c->what, (long long)w->period);
		cr_assert_eq(pt[i].wall_ms, w->wall_ms, "%s: period %lld shown at %lld, want %lld",
		             c->what, (long long)w->period, (long long)pt[i].wall_ms,
		             (long long)w->wall_ms);
	}
}

/* 400 periods of 10 tokens each: the series holds the last 360, the hour. */
Test(samples, the_hour_keeps_the_last_360_periods)
{
	static struct samples s;
	struct samples_point pt[SAMPLES_KEPT + 1];
	struct samples_reading r = {0};
	struct samples_time t = at(0), now;
	int i, n;

	samples_init(&s, &t, &r);
	for (i = 1; i <= 400; i++) {
		r.tokens_launched = (uint64_t)i * 10;
		t = at((int64_t)i * P + 7);
		samples_record(&s, &t, &r);
	}
	now = at(400 * P + 100);
	n = samples_series(&s, &now, NULL, pt, SAMPLES_KEPT + 1);
	/* Periods 0..399 were filled; the hour up to period 400 is 41..400,
	 * of which 41..399 have samples. */
	cr_assert_eq(n, 359, "%d points", n);
	cr_assert_eq(pt[0].period, 41);
	cr_assert_eq(pt[n - 1].period, 399);
	for (i = 0; i < n; i++)
		cr_assert_eq(pt[i].tokens_launched, 10, "period %lld", (long long)pt[i].period);
	/* The first point's minute holds only what the hour kept of it. */
	cr_assert_eq(pt[0].tokens_per_min, 10);
	cr_assert_eq(pt[n - 1].tokens_per_min, 60);
	/* With the running period: 360 points, the oldest gone from the hour. */
	r.tokens_launched += 5;
	n = samples_series(&s, &now, &r, pt, SAMPLES_KEPT + 1);
	cr_assert_eq(n, 360, "%d points", n);
	cr_assert_eq(pt[n - 1].period, 400);
	cr_assert_eq(pt[n - 1].tokens_launched, 5);
	cr_assert(pt[n - 1].provisional);
	/* A ret too short for the hour takes its oldest part. */
	n = samples_series(&s, &now, &r, pt, 10);
	cr_assert_eq(n, 10);
	cr_assert_eq(pt[9].period, 50);
}
