/*
 * ingest.h - receiving one submit: validates each input line as it arrives,
 * keeps the valid ones in memory (bounded by the batch limits), then checks
 * the whole (duplicate custom_ids, admission) and stores it in one
 * transaction, or refuses it with the line numbers of the first bad lines.
 * Nothing of a refused batch is stored.
 */
#ifndef LLMQ_INGEST_H
#define LLMQ_INGEST_H

#include <stdint.h>

#include "ipc.h"
#include "llmqd.h"

struct ingest_opts {
	int64_t lines;               /* how many lines follow the header */
	int64_t window_ms;           /* completion window */
	const char *name;            /* input file name, for people; may be NULL */
	int dry_run;                 /* project cost and finish, store nothing */
	int64_t priority;            /* higher runs first; equal priorities share round-robin */
	const char *idempotency_key; /* a repeat answers with the stored batch; may be NULL */
};

/* Start receiving on c. Replies itself (now on a bad header, or when done). */
void ingest_start(struct llmqd *d, struct ipc_client *c, const struct ingest_opts *opts);

#endif
