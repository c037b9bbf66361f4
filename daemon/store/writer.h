/*
 * writer.h - the store's writer thread: write transactions run there, on a
 * second SQLite connection to the same database (WAL: the loop's connection
 * keeps reading meanwhile), so the loop never waits for the disk.
 *
 * The loop hands the writer items; an item belongs to the writer from
 * writer_submit() until its done() runs, back on the loop, in the order the
 * items were submitted. The queue between them, under one mutex, is all the
 * two threads share; the writer touches its own connection and the item it
 * holds, nothing else (no logging: done() logs what run() noted).
 */
#ifndef LLMQ_WRITER_H
#define LLMQ_WRITER_H

#include <event2/event.h>

#include "store/store.h"

struct writer;

struct writer_item {
	/* On the writer thread, with its connection: 0 or -errno. */
	int (*run)(struct store *st, struct writer_item *it);
	/* On the loop, with what run() returned. */
	void (*done)(struct writer_item *it, int r);
	int r;
	struct writer *w;         /* the writer it was handed to */
	struct writer_item *next; /* the queue's */
};

/*
 * From run(), on the writer thread: the writer's connection holds the
 * database's write lock (after BEGIN), or no longer (after COMMIT or
 * ROLLBACK). A write of the loop's that meets the lock meanwhile waits for
 * it to be let go (a transaction's time, not the 1 ms steps of SQLite's
 * busy handler), and is not taken for another program's lock. An item
 * never handed over (run on the loop, when there is no writer) is told
 * nothing.
 */
void writer_holds_lock(struct writer_item *it, int held);

/*
 * Start the writer on a connection of its own to store's database; -ENOTSUP
 * when it cannot have one (the database is held with locking_mode EXCLUSIVE,
 * or SQLite was built without threads): the caller then writes on the loop.
 */
int writer_new(struct event_base *base, struct store *store, struct writer **ret);

/* Hand it over; it is written after every item handed over before it. */
void writer_submit(struct writer *w, struct writer_item *it);

/* Wait (blocking the loop) until every item handed over is done, their
 * done() run. For shutdown and for tests. */
void writer_drain(struct writer *w);

/* Items handed over and not yet done. */
int writer_pending(const struct writer *w);

/* Drain the queue, stop the thread, join it and close its connection. */
void writer_free(struct writer *w);

#endif
