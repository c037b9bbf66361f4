/*
 * writeback.h - job outcomes and interactive calls' records on their way to
 * the store. Outcomes are queued and written in one transaction per loop
 * turn: the loop calls writeback_after_turn() once every callback of the
 * turn has run (main.c's loop, as redis's beforesleep). Call records go with
 * them, or on their own within 100 ms (they are accounting). When the
 * database refuses (disk full), the queue is kept, with its own copies of
 * every string, and written again every second: its jobs stay running in the
 * database meanwhile, so nothing launches them twice, and nothing is lost.
 */
#ifndef LLMQ_WRITEBACK_H
#define LLMQ_WRITEBACK_H

#include <stdint.h>
#include <event2/event.h>

#include "store/store.h"

struct writeback;
struct writer;

/* on_written runs after queued outcomes reached the database. */
int writeback_new(struct event_base *base, struct store *store, void (*on_written)(void *),
                  void *userdata, struct writeback **ret);
/* Frees what is still queued (its jobs are requeued at the next start). */
void writeback_free(struct writeback *wb);

/*
 * Queue the outcome of a job's attempt; o's strings are copied, except
 * o->response when response_owned is that same buffer (malloc'd): it is
 * taken as it is, so a large answer is never held twice.
 */
void writeback_add(struct writeback *wb, int64_t job_id, int64_t attempt_id,
                   const struct store_outcome *o, int64_t now, char *response_owned);

/* Queue the record of one try of an interactive call; c's strings are copied. */
void writeback_add_call(struct writeback *wb, const struct store_call *c);

/* Write the queue now, all in one transaction or none; 0 or -errno. */
int writeback_flush(struct writeback *wb);

/* The end of a loop turn: write what it queued (unless failing: then the
 * retry timer writes). */
void writeback_after_turn(struct writeback *wb);

/* 1 while the database refuses the queue. */
int writeback_failing(const struct writeback *wb);

/* The writer thread the outcomes go through, for other writes that must
 * keep their order with them; NULL when they are written on the loop. */
struct writer *writeback_writer(const struct writeback *wb);

#endif
