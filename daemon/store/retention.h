/*
 * retention.h - forgets what is old: batches finished longer ago than
 * LLMQ_RETENTION (default 30 days, as the hosted Batch API keeps files), with
 * their jobs and attempts, and interactive calls' records as old. Works in
 * small steps from a timer, so the loop never stalls on a large delete, and
 * gives the space back to the file system.
 */
#ifndef LLMQ_RETENTION_H
#define LLMQ_RETENTION_H

#include "llmqd.h"

struct retention;
struct writer;

/* Nothing is started when cfg->retention_ms is 0 (keep everything). Its
 * steps are written by writer (NULL: on the loop). */
int retention_new(struct llmqd *d, struct writer *writer, struct retention **ret);
void retention_free(struct retention *r);

#endif
