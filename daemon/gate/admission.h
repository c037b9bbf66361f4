/*
 * admission.h - the preflight guard. Decides, before anything is stored,
 * whether a lane can serve a batch: no request may cost more than the lane's
 * effective budget per minute, the lane's queue stays under its caps, and
 * the projected finish (what is queued, plus this batch, at the lane's
 * effective rate) falls inside the batch's completion window. Pure: the
 * clock and the lane's load are arguments.
 */
#ifndef LLMQ_ADMISSION_H
#define LLMQ_ADMISSION_H

#include <stdint.h>

#include "service/config.h"
#include "gate/gate.h"

/* One lane's share of a batch, and what the lane already holds. */
struct admission_load {
	const struct lane_config *cfg;
	const struct gate *gate; /* a snapshot, brought up to now */
	int64_t avg_latency_ms;  /* observed; 0 when unknown */
	int64_t queued_jobs;     /* already queued or running on the lane */
	int64_t queued_tokens;
	int64_t batch_jobs; /* this batch's jobs routed to the lane */
	int64_t batch_tokens;
	int64_t max_cost;      /* the dearest job of the batch on this lane */
	int64_t max_cost_line; /* and its line number */
};

struct admission_verdict {
	int refused;
	int retryable; /* 0: the batch can never run as it is */
	int64_t retry_after_ms;
	int64_t finish_ms; /* projected time from now until the batch is done */
	char reason[512];
};

/*
 * How long the lane needs to run jobs/tokens from now: the slowest of the
 * token budget, the request budget, the stagger, and concurrency x latency,
 * after any pause.
 */
int64_t admission_drain_ms(const struct gate *g, int64_t avg_latency_ms, int64_t jobs,
                           int64_t tokens, int64_t now);

/*
 * How long an interactive call costing cost tokens would wait at the gate
 * g (a snapshot brought up to now) behind ahead_jobs calls of ahead_tokens
 * already waiting: the slowest of the pause, the stagger, the request and
 * token buckets (interactive calls may spend the whole lane), and - at the
 * concurrency cap - the transfers in flight at their mean latency.
 */
int64_t admission_call_wait_ms(const struct gate *g, int64_t avg_latency_ms, int64_t ahead_jobs,
                               int64_t ahead_tokens, int64_t cost, int64_t now);

void admission_check(const struct admission_load *loads, int n, int64_t window_ms, int64_t now,
                     struct admission_verdict *ret);

/*
 * Whether a request costing cost tokens can never run on the lane whose
 * gate is g: it needs more than the lane's whole effective budget per
 * minute. Waiting cannot cure that: a batch line, or a call, is refused.
 */
int admission_never_fits(const struct gate *g, int64_t cost);

#endif
