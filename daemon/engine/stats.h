/*
 * stats.h - a lane's counters and latency histograms, by class and outcome.
 * Plain data: the scheduler counts, metrics.c and status read copies.
 */
#ifndef LLMQ_STATS_H
#define LLMQ_STATS_H

#include <stdint.h>

#include "gate/gate.h"

/* What became of one upstream try (or, for "refused", of a call never sent). */
enum stat_outcome {
	SO_SUCCEEDED,
	SO_FAILED,
	SO_RETRY,
	SO_RATE_LIMITED,
	SO_ABORTED,
	SO_REFUSED,
	SO__COUNT,
};

/* Upper bounds of the histogram buckets, in seconds (+Inf is implied). */
#define STATS_BUCKETS 14
extern const double stats_bucket_le[STATS_BUCKETS];

struct stats_histo {
	uint64_t le[STATS_BUCKETS]; /* observations <= stats_bucket_le[i] (not cumulative) */
	uint64_t count;
	double sum; /* seconds */
};

struct lane_stats {
	uint64_t requests[GATE_CLASSES][SO__COUNT];
	uint64_t upstream_429[GATE_CLASSES];
	uint64_t tokens_charged[GATE_CLASSES];
	uint64_t tokens_used[GATE_CLASSES];
	struct stats_histo gate_wait[GATE_CLASSES];
	struct stats_histo latency[GATE_CLASSES];
	uint64_t queue_reads; /* looks at its queue of batch jobs in the database */
};

const char *stats_outcome_name(enum stat_outcome o);
const char *stats_class_name(enum gate_class c);

void stats_observe(struct stats_histo *h, int64_t ms);

#endif
