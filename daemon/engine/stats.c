/*
 * stats.c - names and histogram arithmetic for stats.h.
 */
#include "engine/stats.h"

const double stats_bucket_le[STATS_BUCKETS] = {
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120,
};

const char *stats_outcome_name(enum stat_outcome o)
{
	static const char *const names[SO__COUNT] = {
	    [SO_SUCCEEDED] = "succeeded",       [SO_FAILED] = "failed",   [SO_RETRY] = "retry",
	    [SO_RATE_LIMITED] = "rate_limited", [SO_ABORTED] = "aborted", [SO_REFUSED] = "refused",
	};

	return o < SO__COUNT ? names[o] : "unknown";
}

const char *stats_class_name(enum gate_class c)
{
	return c == GATE_INTERACTIVE ? "interactive" : "batch";
}

void stats_observe(struct stats_histo *h, int64_t ms)
{
	double s = ms > 0 ? (double)ms / 1000.0 : 0;
	int i;

	h->count++;
	h->sum += s;
	for (i = 0; i < STATS_BUCKETS; i++) {
		if (s <= stats_bucket_le[i]) {
			h->le[i]++;
			return;
		}
	}
}
