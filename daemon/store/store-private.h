/*
 * store-private.h - what the store's own files share and nothing outside
 * them sees: the connection (struct store), each statement's id (its SQL
 * text in store-sql.c), and store.c's helpers that prepare, bind and run
 * them, and keep an operation of several statements atomic. The API is
 * store.h.
 */
#ifndef LLMQ_STORE_PRIVATE_H
#define LLMQ_STORE_PRIVATE_H

#include "store/store.h"

#include <stdint.h>
#include <sys/stat.h>
#include <sqlite3.h>

enum stmt_id {
	S_RECOVER_ATTEMPTS,
	S_RECOVER_JOBS,
	S_BATCH_INSERT,
	S_BATCH_BY_KEY,
	S_LANE_WINDOW_GET,
	S_EXPIRE_MARK,
	S_EXPIRE_JOBS,
	S_EXPIRE_FINISH,
	S_LANE_WINDOW_SET,
	S_JOB_INSERT,
	S_NEXT_USER,
	S_NEXT_PRIORITY,
	S_NEXT_READY,
	S_NEXT_READY_IN,
	S_CALL_INSERT,
	S_BATCH_STATES,
	S_PRUNE_JOBS,
	S_PRUNE_BATCHES,
	S_PRUNE_CALLS,
	S_NEXT_WAKEUP,
	S_JOB_START,
	S_ATTEMPT_INSERT,
	S_ATTEMPT_END,
	S_ATTEMPT_LOST,
	S_JOB_FINISH,
	S_JOB_REQUEUE,
	S_BATCH_REFRESH,
	S_BATCH_GET,
	S_BATCH_BRIEF,
	S_BATCH_LIST,
	S_BATCH_PAGE,
	S_FILE_INSERT,
	S_RECOVER_LOADING,
	S_RECOVER_HELD,
	S_BATCH_RELEASE_JOBS,
	S_BATCH_RELEASE,
	S_BATCH_DELETE,
	S_FILE_GET,
	S_FILE_LIST,
	S_FILE_DELETE,
	S_BATCH_CANCEL_JOBS,
	S_BATCH_CANCEL,
	S_RESULTS_OK,
	S_RESULTS_ERR,
	S_BACKLOG,
	S_BACKLOG_ALL,
	S_BACKLOG_UPTO,
	S_BATCH_LANES,
	S_BATCH_LANE_COUNTS,
	S_USAGE_DAY,
	S_USAGE_REPORT,
	S_USAGE_UNPRICED,
	S_USAGE_TOTALS,
	S_LANE_PAUSED_GET,
	S_LANE_PAUSED_SET,
	S_LANE_PAUSED_DEL,
	S_BATCH_PAUSE,
	S_BATCHES_PAUSED,
	S_RETRY_JOBS,
	S_RETRY_BATCH,
	S_RECENT_ERRORS,
	S_JOB_BATCH_STATE,
	S_FILES_BYTES,
	S_UNFINISHED_JOBS,
	S_BUDGET_SPENT,
	S_JOBS_INSERT_SLICE,
	S_BATCH_START,
	S_BEGIN,
	S_BEGIN_READ,
	S_COMMIT,
	S_ROLLBACK,
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S__COUNT
};

/* Each statement's SQL (store-sql.c), prepared on its first use. */
extern const char *const store_sql[S__COUNT];

/* A batch whose results are being read: retention leaves it alone. */
struct store_held {
	char id[24];
	int n;
};

struct store {
	sqlite3 *db;
	struct store_held *held;
	int n_held, cap_held;
	char *reading; /* the held ids as a JSON array; NULL: none */
	sqlite3_stmt *stmt[S__COUNT];
	int in_tx;
	int exclusive;          /* opened with locking_mode EXCLUSIVE: the disk had no room */
	int patient;            /* start-up: wait STORE_OPEN_WAIT_MS for locks */
	int (*sibling)(void *); /* store_on_sibling()'s */
	void *sibling_ud;
	int64_t contended_since; /* wall ms of the first write refused by a lock; 0: none */
	struct stat st;          /* the file opened, to notice it being replaced */
	char *path;
};

/* The one adapter from SQLite result codes to -errno. */
int store_errno(int rc);
/* Make llmq_slice (store-slice.c) known to a new connection. */
int store_slice_register(sqlite3 *db);
/* Statement id, prepared once, reset and its bindings cleared. */
int store_prep(struct store *s, enum stmt_id id, sqlite3_stmt **ret);
/* Run a statement that returns no rows; *ret_changes may be NULL. */
int store_run(struct store *s, sqlite3_stmt *st, int64_t *ret_changes);
/* Binds v (not copied), or NULL when v is NULL. */
void store_bind_text(sqlite3_stmt *st, int i, const char *v);
/* Binds v, or NULL when v < 0 (none). */
void store_bind_opt_int(sqlite3_stmt *st, int i, int64_t v);
/* Runs llmqd's own SQL text (a pragma, a migration): nothing is bound. */
int store_exec(struct store *s, const char *sql);
/* Run statement id, which takes no values. */
int store_simple(struct store *s, enum stmt_id id);
/* The one number statement id gives for uid (bound as ?1). */
int store_sum_of(struct store *s, enum stmt_id id, int64_t uid, int64_t *ret);

/*
 * An operation of several statements is atomic: its own transaction, or,
 * inside a caller's transaction (a group of them in one commit), a savepoint
 * that is rolled back alone when the operation fails.
 */
#define TX_BEGIN(s, own)                                                                           \
	do {                                                                                       \
		(own) = !(s)->in_tx;                                                               \
		r = (own) ? store_tx_begin(s) : store_simple((s), S_SAVEPOINT);                    \
		if (r < 0)                                                                         \
			return r;                                                                  \
	} while (0)

/* Ends what TX_BEGIN began: r < 0 rolls it back, else it is kept; returns r,
 * or the commit's error. */
int store_tx_end(struct store *s, int own, int r);

#endif
