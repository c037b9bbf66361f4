/*
 * ingest.h - receiving one batch: validates each input line as it arrives,
 * keeps the valid ones in memory (bounded by the batch limits; from a file,
 * bodies past a budget are read again when stored), then checks the whole
 * (duplicate custom_ids, admission) and stores it - in one transaction, or
 * for a large batch a slice at a time while its lines still come,
 * invisible to the lanes and to repeats until whole and admitted - or
 * refuses it with the line numbers of the first bad lines. Nothing of a
 * refused batch is kept: what was stored of it goes before the answer.
 * The writes run on the store's writer thread (ingest-write.c).
 */
#ifndef LLMQ_INGEST_H
#define LLMQ_INGEST_H

#include <stdint.h>
#include <json-c/json.h>

#include "llmqd.h"

struct ingest_opts {
	int64_t lines;               /* how many lines follow the header */
	int64_t window_ms;           /* completion window */
	const char *name;            /* input file name, for people; may be NULL */
	int dry_run;                 /* project cost and finish, store nothing */
	int64_t priority;            /* higher runs first; equal priorities share round-robin */
	const char *idempotency_key; /* a repeat answers with the stored batch; may be NULL */
	/* The Batch API's (NULL when not given): */
	const char *endpoint;      /* every line must go to this URL */
	const char *input_file_id; /* the uploaded file the lines come from */
	const char *metadata;      /* JSON object, kept with the batch */
	/*
	 * The file the lines come from (ingest_line_at() gives their offsets),
	 * or -1: then every body is kept in memory until stored; from a file,
	 * only the first INGEST_KEEP_BYTES, the others are read again.
	 */
	int source_fd;
};

/* Whoever sent the batch: where its one answer goes. */
struct ingest_owner {
	/* The answer (taken; NULL when it could not be made). The ingest is over. */
	void (*reply)(void *ud, json_object *o);
	/* The answer will be late (a locked database): gone(arg) if the sender leaves. */
	void (*await)(void *ud, void (*gone)(void *arg), void *arg);
	void (*await_end)(void *ud);
};

struct ingest;

/* A batch from uid (-1 unknown); NULL when out of memory. */
struct ingest *ingest_new(struct llmqd *d, const struct ingest_opts *opts, int64_t uid,
                          const struct ingest_owner *owner, void *owner_ud);
/* The next input line (without its newline); too_long: it was cut. */
void ingest_line(struct ingest *in, const char *line, size_t len, int too_long);
/* The same, from opts->source_fd at offset. */
void ingest_line_at(struct ingest *in, const char *line, size_t len, int too_long, int64_t offset);
/* All lines are in: check, admit, store, answer. in is freed (now or once answered). */
void ingest_end(struct ingest *in);
/* The sender left: nothing is stored; in is freed. */
void ingest_abort(struct ingest *in);

#endif
