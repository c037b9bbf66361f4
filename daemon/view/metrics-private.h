/*
 * metrics-private.h - what the exposition's files share and nobody else
 * sees: the text being written (a failed append remembered, not checked at
 * each line), a family's header, and the families by user (metrics-usage.c).
 */
#ifndef LLMQ_METRICS_PRIVATE_H
#define LLMQ_METRICS_PRIVATE_H

#include "view/metrics.h"

struct metrics_out {
	struct evbuffer *buf;
	int failed;
};

void metrics_put(struct metrics_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "# HELP" and "# TYPE" of a family. */
void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help);

/* The usage families, from the store's totals; 0 or -errno. */
int metrics_usage(struct llmqd *d, struct metrics_out *o);

/* Each user's budgets, from the ledger; 0 or -errno. */
int metrics_budgets(struct llmqd *d, struct metrics_out *o);

#endif
