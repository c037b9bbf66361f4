/*
 * ingest-private.h - one batch on its way in, shared by ingest.c (receiving
 * and checking its lines) and ingest-store.c (storing it and answering): the
 * batch's state, and the few calls between the two halves. The API is
 * ingest.h.
 */
#ifndef LLMQ_INGEST_PRIVATE_H
#define LLMQ_INGEST_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "gate/admission.h"
#include "protocol.h"
#include "engine/ingest.h"

/* Stored per transaction, per turn of the loop: so many jobs, or so many bytes of bodies. */
#define INGEST_SLICE 1000
#define INGEST_SLICE_BYTES (4u << 20)
#define INGEST_MAX_SLICES                                                                          \
	(LLMQ_MAX_BATCH_LINES / INGEST_SLICE + LLMQ_MAX_BATCH_BYTES / INGEST_SLICE_BYTES + 2)

struct ingest_job {
	int64_t line;
	char *custom_id;
	char *url;
	char *model;
	char *body; /* NULL: read again from the source file when stored */
	size_t body_len;
	int64_t offset; /* of the line in the source file */
	size_t line_len;
	int64_t est;
	const struct lane_config *lane;
};

struct ingest_error {
	int64_t line;
	char *msg;
};

struct ingest {
	struct llmqd *d;
	const struct ingest_owner *owner;
	void *owner_ud;
	int64_t uid; /* the submitter, -1 unknown */
	struct ingest_opts opts;
	char *name;
	char *key; /* the idempotency key, or NULL */
	char *endpoint, *input_file_id, *metadata;
	int64_t line_no;
	uint64_t bytes;
	int too_big;
	int failed; /* -errno: a line could not be kept (out of memory) */
	struct ingest_job *jobs;
	size_t n_jobs, cap_jobs;
	struct ingest_error *errors;
	size_t n_errors_kept;
	int64_t n_errors;
	/* Once admitted: what is stored, retried while another program holds a lock. */
	struct admission_verdict v;
	int64_t tokens;
	char id[19];
	struct event *retry;
	int64_t lock_deadline; /* monotonic ms; 0 until the first refusal */
	/* Stored in steps: how far, and the job ids of each slice. */
	size_t stored, released, n_slices;
	int sliced; /* more than one slice: stored as validating, its jobs held */
	struct {
		int64_t first, last;
	} slices[INGEST_MAX_SLICES];
	int awaiting;  /* the owner was told the answer will be late */
	int answered;  /* in_progress and answered: the rest of its slices are let go */
	int source_fd; /* the file the lines come from, or -1 */
	uint64_t kept; /* bytes of bodies kept in memory */
};

/* The ingest is over: in (NULL: nothing), its copies, its source file and its timer go. */
void ingest_free(struct ingest *in);
/* The one answer to in's owner (taken; NULL when it could not be made). */
void ingest_reply(struct ingest *in, json_object *o);

/* ingest-store.c: */
/* A repeated idempotency key: 1 when answered with the stored batch, 0 when
 * the key is new, or -errno. */
int ingest_store_reply_if_repeat(struct ingest *in);
/* The batch is admitted: store it and answer; in is freed, now or once done. */
void ingest_store_and_reply(struct ingest *in);

#endif
