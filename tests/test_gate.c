/* The gate, driven by a fake clock: exact launch times, buckets, feedback. */
#include <criterion/criterion.h>
#include <math.h>

#include "gate/gate.h"

/* The prototype's defaults: 3 in flight, 15 s stagger, 30000 TPM, 15% headroom. */
static const struct gate_limits proto = {
    .max_concurrency = 3, .stagger_ms = 15000, .tpm = 30000, .headroom = 0.15, .burst_ms = 0};

/* Launch n jobs of cost each lasting dur ms, as early as the gate allows. */
static void simulate(struct gate *g, int n, int64_t cost, int64_t dur, int64_t *launch)
{
	int64_t ends[64], now = 0, t;
	int i, k, open = 0;
	struct gate_mark m;

	for (i = 0; i < n; i++) {
		for (;;) {
			t = gate_when(g, GATE_BATCH, cost, now, NULL);
			if (t != GATE_NEVER) {
				now = t;
				break;
			}
			/* At the cap: jump to the earliest finish. */
			for (k = 1, t = 0; k < open; k++)
				if (ends[k] < ends[t])
					t = k;
			now = now > ends[t] ? now : ends[t];
			gate_done(g, GATE_BATCH, cost, -1, now);
			ends[t] = ends[--open];
		}
		cr_assert_eq(gate_when(g, GATE_BATCH, cost, now, NULL), now);
		gate_launch(g, GATE_BATCH, cost, now, 0, &m);
		launch[i] = now;
		ends[open++] = now + dur;
	}
}

Test(gate, prototype_defaults_pace_at_effective_rate)
{
	struct gate g;
	int64_t at[12];
	int i;

	gate_init(&g, &proto, 0);
	simulate(&g, 12, 7000, 5000, at);
	/* 25500 tokens/min effective: a 7000-token job every 16.47 s, which is
	 * slower than the 15 s stagger, so the token budget sets the pace: launch
	 * i at i x 7000 / 0.425 ms (less the bucket's slack, which the first launch
	 * finds full), within the clock's 1 ms, with no drift however many launches. */
	cr_assert_eq(at[0], 0);
	for (i = 1; i < 12; i++) {
		double ideal = (double)i * 7000 / 0.425 - GATE_SLACK_MS;

		cr_assert_leq(fabs((double)at[i] - ideal), 1.0, "launch %d at %lld, ideal %.1f", i,
		              (long long)at[i], ideal);
		cr_assert_geq(at[i] - at[i - 1], 15000, "never closer than the stagger");
	}
}

Test(gate, stagger_and_concurrency_exact)
{
	struct gate_limits l = proto;
	struct gate g;
	int64_t at[6];

	l.burst_ms = 60000; /* a whole minute of budget may burst */
	gate_init(&g, &l, 0);
	simulate(&g, 6, 7000, 100000, at);
	cr_assert_eq(at[0], 0);
	cr_assert_eq(at[1], 15000);
	cr_assert_eq(at[2], 30000);
	/* Three in flight: the fourth waits for the first to finish at 100 s. */
	cr_assert_eq(at[3], 100000);
	cr_assert_eq(at[4], 115000);
	cr_assert_eq(at[5], 130000);
}

/* The stagger spaces batch launches; a caller neither waits for it nor pushes it on. */
Test(gate, stagger_is_for_batches_unless_asked)
{
	struct gate_limits l = proto;
	struct gate_mark m;
	struct gate g;

	l.burst_ms = 60000;
	gate_init(&g, &l, 0);
	gate_launch(&g, GATE_BATCH, 100, 0, 0, &m);
	/* 1 ms after a batch launch: the next batch waits 15 s, a caller goes now. */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 1, NULL), 15000);
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 100, 1, NULL), 1);
	gate_launch(&g, GATE_INTERACTIVE, 100, 1, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 100, 2, NULL), 2, "callers back to back");
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 2, NULL), 15000, "the batch's stagger unmoved");

	/* interactive_stagger = yes: callers are spaced like the prototype's runs. */
	l.stagger_interactive = 1;
	gate_init(&g, &l, 0);
	gate_launch(&g, GATE_INTERACTIVE, 100, 0, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 100, 1, NULL), 15000);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 1, NULL), 15000);
}

Test(gate, concurrency_cap_reports_never)
{
	struct gate_limits l = {.max_concurrency = 2};
	struct gate_mark m;
	struct gate g;
	enum gate_block why;

	gate_init(&g, &l, 0);
	gate_launch(&g, GATE_BATCH, 1, 0, 0, &m);
	gate_launch(&g, GATE_BATCH, 1, 0, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 5, &why), GATE_NEVER);
	cr_assert_eq(why, GATE_CONCURRENCY);
	gate_done(&g, GATE_BATCH, 1, -1, 10);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 10, NULL), 10);
}

Test(gate, stagger_jitter_bounds)
{
	struct gate_limits l = {.max_concurrency = 10, .stagger_ms = 1000, .stagger_jitter = 0.5};
	struct gate_mark m;
	struct gate g;

	gate_init(&g, &l, 0);
	gate_launch(&g, GATE_BATCH, 0, 0, 0.999, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 0, 0, NULL), 1499);
	gate_launch(&g, GATE_BATCH, 0, 1499, 0.0, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 0, 1499, NULL), 2499);
}

Test(gate, bucket_refills_continuously_and_caps)
{
	struct gate_limits l = {.max_concurrency = 100, .tpm = 60000, .burst_ms = 10000};
	struct gate_mark m;
	struct gate g;

	gate_init(&g, &l, 0);
	/* 1000 tokens/s, capacity 10 s (+ the slack) = 10020 tokens, starting full. */
	cr_assert_float_eq(gate_token_capacity(&g), 10000 + GATE_SLACK_MS, 1e-9);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 10000, 0, NULL), 0);
	gate_launch(&g, GATE_BATCH, 10000, 0, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 500 + GATE_SLACK_MS, 0, NULL), 500);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 500 + GATE_SLACK_MS, 500, NULL), 500);
	/* Idle for a long time: capped at capacity, not more. */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 10000, 1000000, NULL), 1000000);
	gate_launch(&g, GATE_BATCH, 10000, 1000000, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, GATE_SLACK_MS + 1, 1000000, NULL), 1000001);
	/* A job dearer than the burst waits for a full bucket, then goes into debt. */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 25000, 1000000, NULL), 1010000 - GATE_SLACK_MS);
}

Test(gate, rpm_bucket)
{
	struct gate_limits l = {.max_concurrency = 100, .rpm = 600, .headroom = 0.5};
	struct gate_mark m;
	struct gate g;
	enum gate_block why;

	gate_init(&g, &l, 0);
	/* 300 requests/min effective: one per 200 ms (the bucket's slack, full
	 * at the start, brings the second launch forward by GATE_SLACK_MS). */
	gate_launch(&g, GATE_BATCH, 0, 0, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 0, 0, &why), 200 - GATE_SLACK_MS);
	cr_assert_eq(why, GATE_REQUESTS);
	gate_launch(&g, GATE_BATCH, 0, 200 - GATE_SLACK_MS, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 0, 200 - GATE_SLACK_MS, &why), 400 - GATE_SLACK_MS);
	cr_assert_eq(why, GATE_REQUESTS);
}

Test(gate, reconciliation_refunds_and_charges)
{
	struct gate_limits l = {.max_concurrency = 10, .tpm = 60000, .burst_ms = 60000};
	struct gate_mark m;
	struct gate g;
	double cap;

	gate_init(&g, &l, 0);
	cap = gate_token_capacity(&g);
	gate_launch(&g, GATE_BATCH, 30000, 0, 0, &m);
	cr_assert_float_eq(g.tok, cap - 30000, 1e-6);
	gate_done(&g, GATE_BATCH, 30000, 10000, 0); /* used less: refund */
	cr_assert_float_eq(g.tok, cap - 10000, 1e-6);
	gate_launch(&g, GATE_BATCH, 1000, 0, 0, &m);
	gate_done(&g, GATE_BATCH, 1000, 6000, 0); /* used more: extra charge */
	cr_assert_float_eq(g.tok, cap - 16000, 1e-6);
	gate_launch(&g, GATE_BATCH, 1000, 0, 0, &m);
	gate_done(&g, GATE_BATCH, 1000, -1, 0); /* unknown usage: keep the reservation */
	cr_assert_float_eq(g.tok, cap - 17000, 1e-6);
	gate_done(&g, GATE_BATCH, 60000, 0, 0); /* a refund never overfills */
	cr_assert_float_eq(g.tok, cap, 1e-6);
}

Test(gate, provider_feedback_pulls_view_down)
{
	struct gate_limits l = {
	    .max_concurrency = 10, .tpm = 100000, .rpm = 1000, .burst_ms = 60000, .headroom = 0.1};
	struct gate_feedback fb = {.limit_tokens = -1,
	                           .remaining_tokens = 40000,
	                           .reset_tokens_ms = 36000,
	                           .limit_requests = -1,
	                           .remaining_requests = -1,
	                           .reset_requests_ms = -1};
	struct gate_mark m1, m2;
	struct gate g;

	double before;

	gate_init(&g, &l, 0);
	gate_launch(&g, GATE_BATCH, 1000, 0, 0, &m1);
	gate_launch(&g, GATE_BATCH, 2000, 0, 0, &m2);
	/* The provider answered the first launch with 40000 left: minus our
	 * headroom (10000) and the 2000 launched after it. */
	gate_observe(&g, &fb, &m1, 0);
	cr_assert_float_eq(g.tok, 28000, 1e-6);
	/* A provider that enforces shorter windows: a view above ours changes nothing. */
	gate_set_window(&g, GATE_WINDOW_SECOND, 0);
	before = g.tok;
	fb.remaining_tokens = 1000000;
	gate_observe(&g, &fb, &m2, 0);
	cr_assert_float_eq(g.tok, before, 1e-6);
	/* No requests left: pause until the reset. */
	fb.remaining_tokens = -1;
	fb.remaining_requests = 0;
	fb.reset_requests_ms = 1500;
	gate_observe(&g, &fb, &m2, 100);
	cr_assert_eq(g.paused_until, 1600);
	cr_assert_geq(gate_when(&g, GATE_BATCH, 1, 100, NULL), 1600);
	/* A lower provider limit becomes the lane's limit. */
	fb.limit_tokens = 50000;
	fb.remaining_requests = -1;
	gate_observe(&g, &fb, &m2, 100);
	cr_assert_eq(gate_effective_tpm(&g), 45000);
}

Test(gate, the_minute_window_spends_what_the_provider_says_it_holds)
{
	/* Pacing alone: no burst. The provider's bucket holds a minute. */
	struct gate_limits l = {.max_concurrency = 100, .tpm = 60000, .headroom = 0.1};
	struct gate_feedback fb = {.limit_tokens = 60000,
	                           .remaining_tokens = 59000,
	                           .reset_tokens_ms = 1000,
	                           .limit_requests = -1,
	                           .remaining_requests = -1,
	                           .reset_requests_ms = -1};
	struct gate_mark m1, m2, m3, mk;
	struct gate g;
	int i;

	gate_init(&g, &l, 0);
	/* Before any answer: paced (a 1000-token job waits ~1.1 s at 54,000/min). */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1000, 0, NULL), 0, "the first goes at once");
	gate_launch(&g, GATE_BATCH, 1000, 0, 0, &m1);
	cr_assert_eq(m1.room, 0, "nobody said there was room yet");
	cr_assert_gt(gate_when(&g, GATE_BATCH, 1000, 0, NULL), 1000);
	gate_launch(&g, GATE_BATCH, 1000, 10, 0, &m2);
	/* The answer to the first: 59,000 left of 60,000, less the headroom
	 * (6,000) and the 1,000 launched since: 52,000 - but at first only a
	 * second of budget (900) may go at once. */
	gate_observe(&g, &fb, &m1, 300);
	cr_assert_float_eq(g.tok, 900, 1e-6);
	cr_assert_eq(m2.room, 0);
	/* Each round of answers that succeed doubles it: 2, 4, ... 64 s. */
	for (i = 0; i < 6; i++) {
		gate_launch(&g, GATE_BATCH, 1, 300, 0, &mk);
		gate_confirm(&g, &mk);
	}
	gate_confirm(&g, &mk); /* the same round twice counts once */
	cr_assert_eq(g.allow_ms, 64000);
	/* The figure is from when the second arrived (10): 290 ms since, of which
	 * the first GATE_TRANSIT_MS of refill are not counted. */
	fb.remaining_tokens = 59006; /* the six little launches after the second are not in it */
	gate_observe(&g, &fb, &m2, 300);
	cr_assert_float_eq(g.tok, 53290 - GATE_TRANSIT_MS, 1e-6);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 50000, 300, NULL), 300);
	gate_launch(&g, GATE_BATCH, 50000, 300, 0, &m3);
	cr_assert_eq(m3.room, 1, "the provider's own figure made room for it");
	/* The answer to that launch: 9,000 left, 10 ms since (no refill counted
	 * within GATE_TRANSIT_MS), less the headroom. */
	fb.remaining_tokens = 9000;
	fb.reset_tokens_ms = 51000;
	gate_observe(&g, &fb, &m3, 310);
	cr_assert_float_eq(g.tok, 3000, 1e-6);
	/* An answer to an older launch, arriving late, never raises it again. */
	fb.remaining_tokens = 80000;
	gate_observe(&g, &fb, &m2, 310);
	cr_assert_float_eq(g.tok, 3000, 1e-6);
	/* Idle (nothing in flight, no answer for GATE_PROVIDER_FRESH_MS): paced again. */
	gate_done(&g, GATE_BATCH, 1000, 1000, 400);
	gate_done(&g, GATE_BATCH, 1000, 1000, 400);
	gate_done(&g, GATE_BATCH, 50000, 50000, 400);
	for (i = 0; i < 6; i++)
		gate_done(&g, GATE_BATCH, 1, 1, 400);
	gate_refill(&g, 400 + GATE_PROVIDER_FRESH_MS + 120000);
	cr_assert_leq(g.tok, gate_token_capacity(&g) + 1e-6);
}

Test(gate, a_learned_short_window_paces_and_a_probe_is_alone)
{
	struct gate_limits l = {.max_concurrency = 10, .tpm = 60000, .burst_ms = 5000};
	struct gate_feedback fb = {.limit_tokens = 60000,
	                           .remaining_tokens = 60000,
	                           .reset_tokens_ms = 0,
	                           .limit_requests = -1,
	                           .remaining_requests = -1,
	                           .reset_requests_ms = -1};
	struct gate_mark m;
	struct gate g;

	gate_init(&g, &l, 0);
	gate_set_window(&g, GATE_WINDOW_SECOND, 0);
	/* A burst of at most one second of budget, whatever burst_seconds says. */
	cr_assert_float_eq(gate_token_capacity(&g), 1000.0 * (1000 + GATE_SLACK_MS) / 1000.0, 1e-6);
	gate_launch(&g, GATE_BATCH, 10, 0, 0, &m);
	gate_observe(&g, &fb, &m, 10);
	cr_assert_lt(g.tok, 1100, "the provider's minute is not followed up");
	cr_assert_eq(m.room, 0);
	/* A probe: one transfer at a time until the upstream answers. */
	g.probe = 1;
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 10, NULL), GATE_NEVER);
	gate_done(&g, GATE_BATCH, 10, 10, 20);
	cr_assert_neq(gate_when(&g, GATE_BATCH, 1, 20, NULL), GATE_NEVER);
}

Test(gate, pause_extends_never_shortens)
{
	struct gate_limits l = {.max_concurrency = 1};
	struct gate g;
	enum gate_block why;

	gate_init(&g, &l, 0);
	gate_pause(&g, 5000, "429 from upstream");
	gate_pause(&g, 3000, "shorter");
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 0, &why), 5000);
	cr_assert_eq(why, GATE_PAUSED);
	cr_assert_str_eq(g.pause_reason, "429 from upstream");
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 5000, NULL), 5000);
}

Test(gate, drain_empties_buckets)
{
	struct gate_limits l = {.max_concurrency = 5, .tpm = 60000, .burst_ms = 60000};
	struct gate g;

	gate_init(&g, &l, 0);
	gate_drain(&g, 0);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1000, 0, NULL), 1000);
}

Test(gate, headroom_is_a_share_of_the_providers_bucket)
{
	/* A provider enforcing 60000/min over one-second windows has a bucket of
	 * 1000: it reports 700 left, full again in 300 ms. Keeping 3% of the
	 * minute (1800) would be more than its whole bucket; 3% of 1000 is 30. */
	struct gate_limits l = {
	    .max_concurrency = 10, .tpm = 60000, .headroom = 0.03, .burst_ms = 60000};
	struct gate_feedback fb = {.limit_tokens = 60000,
	                           .remaining_tokens = 700,
	                           .reset_tokens_ms = 300,
	                           .limit_requests = -1,
	                           .remaining_requests = -1,
	                           .reset_requests_ms = -1};
	struct gate_mark m;
	struct gate g;

	gate_init(&g, &l, 0);
	gate_launch(&g, GATE_BATCH, 300, 0, 0, &m);
	gate_observe(&g, &fb, &m, 0);
	cr_assert_float_eq(g.tok, 670, 1e-6);
}

/* Classes: the interactive reserve, and who goes first. */

Test(gate, batch_leaves_the_reserved_slots_to_callers)
{
	struct gate_limits l = {.max_concurrency = 3, .interactive_reserve = 0.2};
	struct gate g;
	struct gate_mark m;

	gate_init(&g, &l, 0);
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 1, 0, NULL), 0, "a caller is about");
	cr_assert_eq(gate_batch_slots(&g), 2);
	gate_launch(&g, GATE_BATCH, 1, 0, 0, &m);
	gate_launch(&g, GATE_BATCH, 1, 0, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 0, NULL), GATE_NEVER, "a third batch job waits");
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 1, 0, NULL), 0, "a caller takes the slot");
	gate_launch(&g, GATE_INTERACTIVE, 1, 0, 0, &m);
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 1, 0, NULL), GATE_NEVER, "the lane is full");
	gate_done(&g, GATE_INTERACTIVE, 1, -1, 5);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 5, NULL), GATE_NEVER,
	             "the freed reserved slot is still not the batch's");
	gate_done(&g, GATE_BATCH, 1, -1, 6);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 6, NULL), 6);
}

Test(gate, one_slot_lane_has_no_reserve_but_callers_go_first)
{
	struct gate_limits l = {.max_concurrency = 1, .interactive_reserve = 0.2};
	struct gate g;

	gate_init(&g, &l, 0);
	cr_assert_eq(gate_batch_slots(&g), 1, "a batch keeps at least one slot");
	cr_assert_eq(gate_first_class(&g, 0), GATE_INTERACTIVE);
}

Test(gate, the_pocket_is_kept_for_callers_and_batch_alone_still_gets_the_rate)
{
	/* 60,000 tokens/min = 1 token/ms; reserve 0.2 keeps 200 tokens (0.2 s). */
	struct gate_limits l = {.max_concurrency = 100, .tpm = 60000, .interactive_reserve = 0.2};
	struct gate g;
	struct gate_mark m;
	int64_t t = 0, n = 0;

	gate_init(&g, &l, 0);
	cr_assert_float_eq(gate_token_capacity(&g), GATE_SLACK_MS, 1e-9, "no caller: no pocket");
	gate_when(&g, GATE_INTERACTIVE, 1, 0, NULL); /* a caller is about */
	cr_assert_float_eq(gate_token_capacity(&g), 200 + GATE_SLACK_MS, 1e-9);
	/* The pocket fills at the rate; full at 200 ms, a batch job may not dip into it. */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 200, NULL), 200);
	gate_launch(&g, GATE_BATCH, 100, 200, 0, &m); /* level 220 - 100 = 120 < pocket */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 200, NULL), 280, "back up to the pocket");
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 100, 200, NULL), 200,
	             "a caller spends it now");
	/* A batch alone, paced: 100-token jobs at 1 token/ms, one every 100 ms. */
	gate_init(&g, &l, 0);
	while (t < 60000) {
		t = gate_when(&g, GATE_BATCH, 100, t, NULL);
		gate_launch(&g, GATE_BATCH, 100, t, 0, &m);
		gate_done(&g, GATE_BATCH, 100, 100, t);
		n++;
	}
	cr_assert_geq(n, 600, "a minute holds the whole budget: %lld launches", (long long)n);
	cr_assert_leq(n, 602, "and no more: %lld", (long long)n);
}

/* The launch times of n batch jobs of cost on a fresh gate of limits l. */
static void batch_alone(const struct gate_limits *l, int n, int64_t cost, int64_t dur, int64_t *at)
{
	struct gate g;

	gate_init(&g, l, 0);
	simulate(&g, n, cost, dur, at);
}

/*
 * Work-conserving: a lane no caller has used for GATE_RESERVE_IDLE_MS is
 * exactly a lane without a reserve - its slots, its budget, no pocket on top
 * (the provider's bucket does not hold one); a caller arriving then takes the
 * next slot that frees and the next launch its cost allows, and the reserve
 * holds from then on.
 */
Test(gate, a_reserve_nobody_uses_costs_a_batch_nothing)
{
	/* 60,000 tokens/min = 1 token/ms, a burst of 1 s; reserve 0.2: 1 slot of 3. */
	struct gate_limits l = {
	    .max_concurrency = 3, .tpm = 60000, .burst_ms = 1000, .interactive_reserve = 0.2};
	struct gate_limits none = l;
	int64_t with[40], without[40];
	struct gate_mark m;
	struct gate g;
	int i;

	none.interactive_reserve = 0;
	batch_alone(&l, 40, 300, 500, with);
	batch_alone(&none, 40, 300, 500, without);
	for (i = 0; i < 40; i++)
		cr_assert_eq(with[i], without[i], "launch %d at %lld, without a reserve %lld", i,
		             (long long)with[i], (long long)without[i]);

	/* All three slots the batch's; a caller arrives: the first slot freed is its. */
	gate_init(&g, &l, 0);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 0, NULL), 0, "slot %d", i);
		gate_launch(&g, GATE_BATCH, 100, 0, 0, &m);
	}
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 50, 150, NULL), GATE_NEVER);
	cr_assert(gate_reserve_held(&g, 150));
	gate_done(&g, GATE_BATCH, 100, 100, 300);
	cr_assert_eq(gate_first_class(&g, 300), GATE_INTERACTIVE);
	cr_assert_eq(gate_when(&g, GATE_INTERACTIVE, 50, 300, NULL), 300,
	             "at once: its cost refilled while it waited for the slot");
	gate_launch(&g, GATE_INTERACTIVE, 50, 300, 0, &m);
	gate_done(&g, GATE_INTERACTIVE, 50, 50, 400);
	/* While callers are about the reserve holds: 2 batch jobs in flight is all. */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 400, NULL), GATE_NEVER);
	/* A minute without callers: the whole lane is the batch's again. */
	cr_assert(gate_reserve_held(&g, 300 + GATE_RESERVE_IDLE_MS - 1));
	cr_assert(!gate_reserve_held(&g, 300 + GATE_RESERVE_IDLE_MS));
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 300 + GATE_RESERVE_IDLE_MS, NULL),
	             300 + GATE_RESERVE_IDLE_MS);
}

Test(gate, callers_go_first_until_they_had_more_than_their_share)
{
	struct gate_limits l = {.max_concurrency = 100, .interactive_reserve = 0.2};
	struct gate g;
	struct gate_mark m;
	int i;

	gate_init(&g, &l, 0);
	for (i = 0; i < 10; i++)
		gate_launch(&g, GATE_BATCH, 100, 0, 0, &m);
	for (i = 0; i < 30; i++)
		gate_launch(&g, GATE_INTERACTIVE, 100, 0, 0, &m);
	cr_assert_eq(gate_first_class(&g, 0), GATE_INTERACTIVE, "75%% interactive: within 80%%");
	for (i = 0; i < 20; i++)
		gate_launch(&g, GATE_INTERACTIVE, 100, 0, 0, &m);
	cr_assert_eq(gate_first_class(&g, 0), GATE_BATCH, "83%% interactive: the batch's turn");
	/* The meter forgets: a minute later batch launches count as much again. */
	for (i = 0; i < 10; i++)
		gate_launch(&g, GATE_BATCH, 100, 60000, 0, &m);
	cr_assert_eq(gate_first_class(&g, 60000), GATE_INTERACTIVE);
}

Test(gate, fixed_windows_take_a_windows_budget_and_nothing_near_their_end)
{
	/* 600 requests/min: 10 a window. */
	struct gate_limits l = {.max_concurrency = 100, .rpm = 600};
	struct gate_mark m;
	struct gate g;
	int64_t t;
	int n = 0;

	gate_init(&g, &l, 0);
	gate_set_window(&g, GATE_WINDOW_SECOND, 0);
	/* A 429 said the provider's window ends at 400: ours align to it. */
	gate_align_window(&g, 400, 0);
	cr_assert_eq(g.win_end, 400);
	/* In the window [400, 1400): exactly 10 launches, from 410 on. */
	t = gate_when(&g, GATE_BATCH, 1, 0, NULL);
	cr_assert_eq(t, 0, "the current window still has its budget");
	g.req = 0; /* spent, as after the 429 that taught the window */
	t = gate_when(&g, GATE_BATCH, 1, 0, NULL);
	cr_assert_eq(t, 400 + GATE_WINDOW_LEAD_MS);
	while ((t = gate_when(&g, GATE_BATCH, 1, 410, NULL)) == 410) {
		gate_launch(&g, GATE_BATCH, 1, 410, 0, &m);
		n++;
	}
	cr_assert_eq(n, 10);
	cr_assert_eq(t, 1400 + GATE_WINDOW_LEAD_MS, "the eleventh waits for the next window");
	/* Nothing in a window's last GATE_WINDOW_TAIL_MS, budget or not. */
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 2400 - GATE_WINDOW_TAIL_MS, NULL),
	             2400 + GATE_WINDOW_LEAD_MS);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 1, 2000, NULL), 2000);
}

/*
 * A provider that counts fixed one-second windows charges each request at
 * arrival and refunds nothing within the window: an answer's refund must not
 * reopen the window it was charged to.
 */
Test(gate, a_refund_does_not_reopen_a_fixed_window)
{
	/* 60,000 tokens/min: 1,000 a window. */
	struct gate_limits l = {.max_concurrency = 100, .tpm = 60000};
	struct gate_mark m;
	struct gate g;
	int i;

	gate_init(&g, &l, 0);
	gate_set_window(&g, GATE_WINDOW_SECOND, 0); /* windows [0, 1000), [1000, 2000), ... */
	/* The window [1000, 2000) starts with its whole budget. */
	for (i = 0; i < 3; i++) {
		cr_assert_eq(gate_when(&g, GATE_BATCH, 300, 1010, NULL), 1010);
		gate_launch(&g, GATE_BATCH, 300, 1010, 0, &m);
	}
	/* 900 of 1,000 charged; three answers at 1,300 used 100 each. */
	for (i = 0; i < 3; i++)
		gate_done(&g, GATE_BATCH, 300, 100, 1300);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 300, 1300, NULL), 2000 + GATE_WINDOW_LEAD_MS,
	             "the window holds 100 more, whatever the answers gave back");
	/* The next window starts with its whole budget again: three more, no fourth. */
	for (i = 0; i < 3; i++) {
		cr_assert_eq(gate_when(&g, GATE_BATCH, 300, 2010, NULL), 2010);
		gate_launch(&g, GATE_BATCH, 300, 2010, 0, &m);
	}
	cr_assert_eq(gate_when(&g, GATE_BATCH, 300, 2010, NULL), 3000 + GATE_WINDOW_LEAD_MS);
	/* What was used beyond the estimate is still owed. */
	gate_done(&g, GATE_BATCH, 300, 400, 2100);
	cr_assert_float_eq(g.tok, 0, 1e-9, "100 left less 100 overspent");
}

/* Back to the minute after a learned window (probation): slowly, from a window's budget. */
Test(gate, back_to_the_minute_starts_slow)
{
	struct gate_limits l = {.max_concurrency = 100, .tpm = 60000};
	struct gate g;

	gate_init(&g, &l, 0);
	g.allow_ms = 60000; /* as after a long run in the minute */
	gate_set_window(&g, GATE_WINDOW_SECOND, 0);
	gate_set_window(&g, GATE_WINDOW_MINUTE, 600000);
	cr_assert_eq(g.window, GATE_WINDOW_MINUTE);
	cr_assert_eq(g.allow_ms, GATE_WINDOW_MS, "the provider's bucket is learned again");
	cr_assert_eq(g.prov_seen_at, 0, "paced until the provider says how much it holds");
	cr_assert_leq(g.tok, gate_token_capacity(&g) + 1e-9);
}

/*
 * One absurd charge (n = 128, max_tokens = 10,000,000: 1,280,000,001 tokens)
 * once left a lane 3,011,763 s in debt. The debt is bounded by a minute of
 * budget, and the provider's fresh word that its bucket is full brings the
 * level back at the next answer.
 */
Test(gate, debt_is_bounded_and_a_full_provider_bucket_restores_the_level)
{
	struct gate_limits l = {.max_concurrency = 10, .tpm = 60000, .rpm = 600};
	struct gate_feedback fb = {.limit_tokens = 60000,
	                           .remaining_tokens = 60000,
	                           .reset_tokens_ms = 0,
	                           .limit_requests = 600,
	                           .remaining_requests = 600,
	                           .reset_requests_ms = 0};
	struct gate_mark huge, small;
	struct gate g;
	int64_t t;

	gate_init(&g, &l, 0);
	gate_launch(&g, GATE_INTERACTIVE, 1280000001LL, 0, 0, &huge);
	cr_assert_geq(g.tok, -60000.0 - 1e-6, "at most a minute in debt, not %.0f", g.tok);
	t = gate_when(&g, GATE_BATCH, 100, 0, NULL);
	cr_assert_leq(t, 60100, "the lane waits a minute at most, not %lld ms", (long long)t);
	/* The refused call refunds (retry_spent: 0), and the level is the bucket's again. */
	gate_done(&g, GATE_INTERACTIVE, 1280000001LL, 0, 10);
	cr_assert_geq(gate_when(&g, GATE_BATCH, 100, 10, NULL), 10);
	cr_assert_leq(gate_when(&g, GATE_BATCH, 100, 10, NULL), 200);
	/* A charge the provider never saw: its answer to a later launch says full. */
	gate_charge(&g, 1000000, 0, 20);
	cr_assert_float_eq(g.tok, -60000, 1e-6);
	gate_launch(&g, GATE_BATCH, 100, 20, 0, &small);
	gate_observe(&g, &fb, &small, 30);
	cr_assert_gt(g.tok, 0, "the provider's full bucket restores the level: %.0f", g.tok);
	cr_assert_eq(gate_when(&g, GATE_BATCH, 100, 30, NULL), 30);
}
