/* The preflight guard: cost, queue caps, completion window. */
#include <criterion/criterion.h>
#include <string.h>

#include "gate/admission.h"

static struct lane_config lane;
static struct gate gate;

static void setup(void)
{
	memset(&lane, 0, sizeof(lane));
	strcpy(lane.name, "openai");
	lane.limits = (struct gate_limits){
	    .max_concurrency = 3, .stagger_ms = 0, .tpm = 60000, .headroom = 0.0, .burst_ms = 0};
	gate_init(&gate, &lane.limits, 0);
}

TestSuite(admission, .init = setup);

static struct admission_load load(int64_t qjobs, int64_t qtok, int64_t bjobs, int64_t btok,
                                  int64_t max_cost)
{
	struct admission_load l = {.cfg = &lane,
	                           .gate = &gate,
	                           .queued_jobs = qjobs,
	                           .queued_tokens = qtok,
	                           .batch_jobs = bjobs,
	                           .batch_tokens = btok,
	                           .max_cost = max_cost,
	                           .max_cost_line = 7};
	return l;
}

Test(admission, accepts_what_fits)
{
	struct admission_load l = load(0, 0, 10, 60000, 6000);
	struct admission_verdict v;

	admission_check(&l, 1, 86400000, 0, &v);
	cr_assert_not(v.refused, "%s", v.reason);
	/* 60000 tokens at 1000/s, less what the bucket holds (its slack, full). */
	cr_assert_eq(v.finish_ms, 60000 - GATE_SLACK_MS);
}

Test(admission, request_dearer_than_budget_never_runs)
{
	struct admission_load l = load(0, 0, 2, 70000, 61000);
	struct admission_verdict v;

	admission_check(&l, 1, 86400000, 0, &v);
	cr_assert(v.refused);
	cr_assert_not(v.retryable);
	cr_assert(strstr(v.reason, "line 7"), "%s", v.reason);
	cr_assert(strstr(v.reason, "61000"), "%s", v.reason);
}

Test(admission, headroom_shrinks_the_budget)
{
	struct admission_load l;
	struct admission_verdict v;

	lane.limits.headroom = 0.15;
	gate_init(&gate, &lane.limits, 0);
	l = load(0, 0, 1, 52000, 52000);
	admission_check(&l, 1, 86400000, 0, &v);
	cr_assert(v.refused, "52000 > 51000 effective");
}

Test(admission, queue_caps)
{
	struct admission_load l = load(90, 9000, 20, 2000, 100);
	struct admission_verdict v;

	lane.queue_max_jobs = 100;
	admission_check(&l, 1, 86400000, 0, &v);
	cr_assert(v.refused);
	cr_assert(v.retryable);
	cr_assert_gt(v.retry_after_ms, 0);
	cr_assert(strstr(v.reason, "queue_max_jobs"), "%s", v.reason);

	lane.queue_max_jobs = 0;
	lane.queue_max_tokens = 10000;
	admission_check(&l, 1, 86400000, 0, &v);
	cr_assert(v.refused);
	cr_assert_eq(v.retry_after_ms, 1000, "1000 tokens over at 1 token/ms");
}

Test(admission, window_too_short)
{
	/* 120000 queued + 60000 new at 1000 tokens/s = 180 s > 2 min window. */
	struct admission_load l = load(10, 120000, 10, 60000, 6000);
	struct admission_verdict v;

	admission_check(&l, 1, 120000, 0, &v);
	cr_assert(v.refused);
	cr_assert(v.retryable, "alone it would fit");
	cr_assert_eq(v.retry_after_ms, 60000 - GATE_SLACK_MS);
	cr_assert(strstr(v.reason, "completion window"), "%s", v.reason);
	admission_check(&l, 1, 180000, 0, &v);
	cr_assert_not(v.refused);
}

Test(admission, pause_counts_toward_finish)
{
	struct admission_load l = load(0, 0, 1, 1000, 1000);
	struct admission_verdict v;

	gate_pause(&gate, 30000, "429");
	admission_check(&l, 1, 86400000, 0, &v);
	cr_assert_eq(v.finish_ms, 31000 - GATE_SLACK_MS);
}

Test(admission, concurrency_and_latency_bound_the_drain)
{
	lane.limits.tpm = 0;
	gate_init(&gate, &lane.limits, 0);
	/* 30 jobs, 3 at a time, 2 s each: 20 s. */
	cr_assert_eq(admission_drain_ms(&gate, 2000, 30, 0, 0), 20000);
}

Test(admission, a_call_waits_for_the_debt_ahead_of_it)
{
	struct gate_mark m;
	struct gate g;

	/* 1 token/ms. Idle: no wait. */
	gate_init(&g, &lane.limits, 0);
	cr_assert_eq(admission_call_wait_ms(&g, 0, 0, 0, 500, 0), 0);
	/* 300 tokens of debt and two calls of 200 ahead: 700 ms. */
	gate_launch(&g, GATE_INTERACTIVE, 300 + (int64_t)g.tok, 0, 0, &m);
	gate_done(&g, GATE_INTERACTIVE, 0, -1, 0);
	cr_assert_eq(admission_call_wait_ms(&g, 0, 2, 400, 50, 0), 700);
	/* Paused for 5 s: at least that. */
	gate_pause(&g, 5000, "429");
	cr_assert_eq(admission_call_wait_ms(&g, 0, 0, 0, 50, 0), 5000);
}

Test(admission, a_full_lane_makes_a_call_wait_a_latency)
{
	struct gate_mark m;
	struct gate g;
	int i;

	lane.limits.tpm = 0;
	gate_init(&g, &lane.limits, 0);
	for (i = 0; i < 3; i++)
		gate_launch(&g, GATE_INTERACTIVE, 1, 0, 0, &m);
	cr_assert_eq(admission_call_wait_ms(&g, 400, 0, 0, 1, 0), 400);
	cr_assert_eq(admission_call_wait_ms(&g, 400, 3, 3, 1, 0), 800, "a second round");
}
