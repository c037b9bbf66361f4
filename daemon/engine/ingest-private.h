/*
 * ingest-private.h - one batch on its way in, shared by ingest.c (receiving
 * and checking its lines), ingest-store.c (storing it and answering when
 * stored), ingest-write.c (its transactions, on the writer thread) and
 * ingest-answer.c (what it answers): the batch's state, and the few calls
 * between them. The API is ingest.h.
 */
#ifndef LLMQ_INGEST_PRIVATE_H
#define LLMQ_INGEST_PRIVATE_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "gate/admission.h"
#include "protocol.h"
#include "engine/ingest.h"
#include "store/store.h"
#include "store/writer.h"

/* Stored per transaction: so many jobs, or so many bytes of bodies. */
#define INGEST_SLICE 1000
#define INGEST_SLICE_BYTES (4u << 20)
#define INGEST_MAX_SLICES                                                                          \
	(LLMQ_MAX_BATCH_LINES / INGEST_SLICE + LLMQ_MAX_BATCH_BYTES / INGEST_SLICE_BYTES + 2)
/*
 * A batch's writes in the writer's queue at once: one being written, the
 * next waiting, so that the writer never waits for the loop, nor does any
 * other write wait behind a large batch for more than a slice or two.
 */
#define INGEST_FLYING 2
/* How long another program's lock may delay the answer (then the batch is refused). */
#define INGEST_LOCK_WAIT_MS 30000

struct ingest_job {
	int64_t line;
	char *custom_id;
	char *url;
	char *model;
	char *body; /* NULL: read again from the source file when stored, or stored */
	size_t body_len;
	int64_t offset; /* of the body's bytes in the source file, -1: none */
	int64_t est;
	const struct lane_config *lane;
};

struct ingest_error {
	int64_t line;
	char *msg;
};

/* Where a batch is, once its lines have begun to be stored (ingest-store.c). */
enum ingest_phase {
	INGEST_RECEIVING, /* its lines come; whole slices are stored as they do */
	INGEST_STORING,   /* all in and admitted: the rest stored, then started and answered */
	INGEST_DROPPING,  /* refused (or a repeat): what was stored goes, then the answer */
	INGEST_RELEASING, /* answered: its other slices are let go */
	INGEST_ABANDONED, /* its sender left: what was stored goes, nobody is answered */
};

struct ingest_write;

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
	/* Once admitted: */
	struct admission_verdict v;
	int64_t tokens;
	char id[19]; /* "" until a first write needs it */
	/* Its writes (ingest-write.c), handed over in order: */
	enum ingest_phase phase;
	size_t handed, stored;   /* jobs handed to the store; of them, written */
	uint64_t unhanded_bytes; /* bodies of the jobs not yet handed */
	int flying;              /* writes handed, not yet back */
	int broken;          /* the writer's while writes fly: one failed, the rest do nothing */
	int err;             /* the first failure among the writes back, -errno */
	int gave_up;         /* -errno: the store would not take the batch; it is refused */
	int batch_in;        /* the batch's row is stored (validating until started) */
	int sliced;          /* stored as validating, its jobs held: started, then let go */
	int start_handed;    /* the start is handed over */
	int started;         /* in_progress */
	int deleting;        /* the delete of what was stored is handed over */
	int awaiting;        /* the owner was told the answer will be late */
	int gone;            /* nobody to answer: answered, or its sender left */
	json_object *answer; /* DROPPING: the answer, once what was stored is gone */
	size_t n_slices, released, releasing; /* slices written; let go; handed to be */
	struct {
		int64_t first, last;
	} slices[INGEST_MAX_SLICES];
	struct event *retry;   /* another program's lock: the same again, later */
	int waiting;           /* retry is armed */
	int64_t lock_deadline; /* monotonic ms; 0 until a write meets the lock */
	/* Without a writer thread: writes run on the loop, one a turn. */
	struct event *turn;
	struct ingest_write *turn_q, **turn_tail;
	int source_fd; /* the file the lines come from, or -1 */
	uint64_t kept; /* bytes of bodies kept in memory, not yet stored */
};

/* The ingest is over: in (NULL: nothing), its copies, its source file and its timers go. */
void ingest_free(struct ingest *in);
/* The one answer to in's owner (taken; NULL when it could not be made). */
void ingest_reply(struct ingest *in, json_object *o);

/* ingest-answer.c: the answers (NULL when out of memory). */
/* A repeated idempotency key: 1 with the answer naming the batch stored
 * under it in *ret, 0 when the key is new, or -errno. */
int ingest_answer_repeat(struct ingest *in, json_object **ret);
/* The batch stored, or for a dry run where its lines would go. */
json_object *ingest_answer_ok(struct ingest *in);
/* The store would not take it (r: -errno; -EBUSY: another program's lock). */
json_object *ingest_answer_refusal(struct ingest *in, int r);

/* ingest-store.c: */
/* A line was kept: store the slices that are whole, while lines still come. */
void ingest_store_feed(struct ingest *in);
/* The batch is admitted: store it and answer; in is freed, now or once done. */
void ingest_store_and_reply(struct ingest *in);
/* The batch will not be stored: what was goes, then o answers (taken; NULL:
 * out of memory); in is freed, now or once done. */
void ingest_store_drop(struct ingest *in, json_object *o);
/* The sender left before the end: what was stored goes; in is freed, now or once done. */
void ingest_store_abort(struct ingest *in);
/* in->retry's callback: a write the lock refused, again (arg: the ingest). */
void ingest_store_retry(evutil_socket_t fd, short what, void *arg);

/* ingest-write.c: one transaction of a batch's, run on the writer thread. */
enum ingest_write_kind {
	INGEST_WRITE_SLICE,   /* a slice of jobs, held; the first with the batch's row */
	INGEST_WRITE_START,   /* the batch whole: in_progress (with its jobs, if not sliced) */
	INGEST_WRITE_RELEASE, /* a later slice let go */
	INGEST_WRITE_DELETE,  /* what was stored of a batch that will not be */
};

/* A job whose body is read again from the source file, by the write. */
struct ingest_reread {
	size_t row;
	int64_t offset; /* of its bytes (the row's body_len of them) */
	char *body;     /* the write's own, once read */
};

/*
 * From ingest_write_submit() to its done(), the write is the writer's: the
 * loop touches none of it, nor the strings of in->jobs its rows point at,
 * nor in->broken while any write of in's flies.
 */
struct ingest_write {
	struct writer_item item; /* first: the item is the write */
	struct ingest *in;       /* the loop's: read in done() alone */
	enum ingest_write_kind kind;
	struct store_batch batch; /* its row (the first SLICE, START); its id (all) */
	int with_batch;           /* the row is inserted first */
	struct store_slice slice; /* SLICE, and START when not sliced: the jobs */
	struct store_job_row *rows;
	/* The lanes' names the rows point to: the write's own, since a reload
	 * copies the configuration over while the writer thread runs it. */
	char lanes[CONFIG_MAX_LANES][sizeof(((struct lane_config *)0)->name)];
	size_t from;         /* the jobs are in->jobs[from, from + slice.n) */
	int64_t first, last; /* SLICE: the ids they took; START, RELEASE: the ids let go */
	int64_t now;
	int *broken; /* in->broken */
	int source_fd;
	struct ingest_reread *reread;
	size_t n_reread;
	char *why;                 /* what the store said of a failure */
	struct ingest_write *next; /* in->turn_q's */
};

/* A write of in->jobs[from, to) (none when from == to); NULL when out of memory. */
struct ingest_write *ingest_write_new(struct ingest *in, enum ingest_write_kind kind, size_t from,
                                      size_t to);
/* Hand it to the writer thread, or without one to a later turn of the loop. */
void ingest_write_submit(struct ingest_write *w);
/* in->turn's callback: without a writer, the next write (arg: the ingest). */
void ingest_write_turn(evutil_socket_t fd, short what, void *arg);
void ingest_write_free(struct ingest_write *w);
/* ingest-store.c: a write is back, r what it returned; w is freed. */
void ingest_store_written(struct ingest_write *w, int r);

#endif
