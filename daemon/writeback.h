/*
 * writeback.h - job outcomes on their way to the store. Outcomes are queued
 * and written in one transaction per loop turn, by an event at the loop's
 * lowest priority that runs after every other callback of the turn. When the
 * database refuses (disk full), the queue is kept, with its own copies of
 * every string, and written again every second: its jobs stay running in the
 * database meanwhile, so nothing launches them twice, and nothing is lost.
 */
#ifndef LLMQ_WRITEBACK_H
#define LLMQ_WRITEBACK_H

#include <stdint.h>
#include <event2/event.h>

#include "store.h"

struct writeback;

/* on_written runs after queued outcomes reached the database. */
int writeback_new(struct event_base *base, struct store *store, void (*on_written)(void *),
                  void *userdata, struct writeback **ret);
/* Frees what is still queued (its jobs are requeued at the next start). */
void writeback_free(struct writeback *wb);

/* Queue the outcome of a job's attempt; o's strings are copied. */
void writeback_add(struct writeback *wb, int64_t job_id, int64_t attempt_id,
                   const struct store_outcome *o, int64_t now);

/* Write the queue now, all in one transaction or none; 0 or -errno. */
int writeback_flush(struct writeback *wb);

#endif
