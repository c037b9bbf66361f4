/*
 * writeback-private.h - what the writeback's two files share: a lot of
 * outcomes and call records as the loop keeps them (writeback.c), and one
 * lot's transaction, run on whichever thread holds the connection
 * (writeback-lot.c).
 */
#ifndef LLMQ_WRITEBACK_PRIVATE_H
#define LLMQ_WRITEBACK_PRIVATE_H

#include <stdint.h>
#include <sys/queue.h>

#include "store/store.h"
#include "store/writer.h"

struct pending {
	int64_t job_id;
	int64_t attempt_id;
	int64_t at;
	struct store_outcome o; /* its strings point at the copies below */
	char *request_id, *response, *error_code, *error_message;
	char ended[STORE_ID_LEN]; /* the batch this outcome ended, once written */
	char *note;               /* what to log once written (set by the write) */
	TAILQ_ENTRY(pending) link;
};

#define CALL_STRINGS 9

/* An interactive call's try; c's strings point at the copies in str. */
struct pending_call {
	struct store_call c;
	char *str[CALL_STRINGS];
	char *note; /* what to log once written (set by the write) */
	TAILQ_ENTRY(pending_call) link;
};

/* Outcomes and call records, in the order they came. */
struct wb_lot {
	TAILQ_HEAD(, pending) queue;
	TAILQ_HEAD(, pending_call) calls;
	int n_calls;
};

void wb_pending_free(struct pending *p);
void wb_pending_call_free(struct pending_call *p);

void wb_lot_init(struct wb_lot *lot);
/* What was never written: its jobs are requeued at the next start. */
void wb_lot_free(struct wb_lot *lot);
/* Put back at the head of dst what src holds (a refused group's lot). */
void wb_lot_put_back(struct wb_lot *dst, struct wb_lot *src);
/*
 * Write a lot, all in one transaction or none; 0 or -errno. On whichever
 * thread holds st: it touches st and the lot alone (it is the writer's item
 * it, or NULL on the loop).
 */
int wb_lot_write(struct store *st, struct wb_lot *lot, struct writer_item *it);

#endif
