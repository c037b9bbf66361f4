/*
 * store.h - all of llmq's SQL. The store owns the SQLite connection, applies
 * the migrations of sql/ at open, and offers the few operations the daemon
 * needs as prepared statements. It does not log: failures come back as
 * -errno, with store_errmsg() saying what SQLite said.
 */
#ifndef LLMQ_STORE_H
#define LLMQ_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

struct store;

struct store_batch {
	const char *id;
	int64_t created_at;
	int64_t uid; /* -1: unknown */
	const char *input_name;
	int64_t window_ms;
	int64_t total;
	int64_t est_tokens;
	int64_t priority;            /* higher runs first */
	const char *idempotency_key; /* may be NULL */
	/* The Batch API's fields; NULL when not given. */
	const char *state;         /* NULL: in_progress; "failed": an input that did not validate */
	const char *endpoint;      /* e.g. /v1/chat/completions */
	const char *input_file_id; /* files.id */
	const char *metadata;      /* JSON object */
	const char *errors;        /* JSON array of {line, code, message} */
	int64_t finished_at;       /* 0: not finished */
};

/* An uploaded file (the files table). */
struct store_file {
	char id[32];
	int64_t uid; /* -1: anonymous */
	int64_t created_at;
	char filename[256];
	char purpose[32];
	int64_t bytes;
	int64_t lines;
};

struct store_job_new {
	const char *batch_id;
	int64_t line;
	const char *custom_id;
	const char *url;
	const char *model;
	const char *lane;
	const char *body;
	size_t body_len;
	int64_t est_tokens;
	int64_t priority;
	/*
	 * Not to run until store_batch_release(): stored under lane "~" + lane,
	 * a lane no query of a lane's jobs finds.
	 */
	int held;
};

/* One job of a slice (store_jobs_insert()): its strings are the caller's. */
struct store_job_row {
	int64_t line;
	const char *custom_id;
	const char *url;
	const char *model;
	const char *lane;
	const char *body;
	size_t body_len;
	int64_t est_tokens;
};

/* A slice of a batch's jobs, in line order. */
struct store_slice {
	const char *batch_id;
	int64_t priority;
	int held; /* as store_job_new's */
	const struct store_job_row *rows;
	size_t n;
};

/* One try of an interactive call (the HTTP face), as the calls table keeps it. */
struct store_call {
	const char *call_id;
	int try_no;
	const char *lane;
	const char *endpoint;
	const char *model;
	int stream;
	int64_t uid; /* -1: unknown */
	int64_t started_at;
	int64_t ended_at;
	const char *outcome; /* succeeded, failed, retry, rate_limited, aborted, refused */
	int status_code;     /* 0: none */
	const char *error_code;
	int64_t retry_after_ms; /* -1: none */
	int64_t tokens_charged;
	int64_t tokens_used; /* -1: unknown */
	int64_t gate_wait_ms;
	int64_t latency_ms; /* -1: no upstream answer */
	const char *request_id;
	const char *request_body; /* NULL unless the operator asked for bodies */
	const char *response_body;
	int64_t prompt_tokens; /* the usage the answer reported; -1: not said */
	int64_t cached_tokens;
	int64_t completion_tokens;
	int64_t cost_nusd; /* nano-dollars (price.h); -1: no price known for its model */
};

/* A job as the scheduler launches it. Strings are owned; store_job_clear frees. */
struct store_job {
	int64_t id;
	char *batch_id;
	char *custom_id;
	char *url;
	char *body;
	size_t body_len;
	int64_t est_tokens;
	int attempts;
	int free_tries;       /* of the attempts, those that did not count (the lane's state) */
	int64_t lane_wait_ms; /* waited so far because of the lane's state */
	int64_t queued_since; /* updated_at of the queued row: when it became ready */
	char *model;          /* as the line named it: what its answer is priced by */
	int64_t uid;          /* its batch's submitter (-1: unknown) */
};

/* How an attempt ended, and what becomes of its job. */
struct store_outcome {
	const char *job_state;       /* "succeeded", "failed", "cancelled", or NULL: requeue */
	const char *attempt_outcome; /* "succeeded", "failed", "retry", "rate_limited", "aborted" */
	int status_code;             /* 0: no HTTP answer */
	const char *request_id;
	const char *response;
	size_t response_len;
	int response_json; /* response is valid JSON on one line */
	const char *error_code;
	const char *error_message;
	int64_t retry_after_ms; /* -1: none given */
	int64_t prompt_tokens;  /* -1: unknown */
	int64_t completion_tokens;
	int64_t total_tokens;
	int64_t cached_tokens; /* of the prompt's, -1: unknown */
	int64_t cost_nusd;     /* what the try cost, nano-dollars; -1: no price known */
	int64_t latency_ms;
	int64_t remaining_tokens; /* x-ratelimit-remaining-*, -1: absent */
	int64_t remaining_requests;
	int64_t not_before;   /* for a requeue */
	int free_try;         /* for a requeue: this try did not count against the attempts */
	int64_t lane_wait_ms; /* for a requeue: of the wait, the lane's part */
	int lost_sends;       /* sends before this one that the upstream got but never answered */
};

/*
 * Open (or create) the database and bring its schema up to date. Opening
 * writes nothing when there is nothing to migrate. When the disk has no
 * room for the WAL's shared-memory index, the database is opened with
 * locking_mode EXCLUSIVE, its index in memory (store_exclusive() says so):
 * llmqd serves, and other programs cannot read the file meanwhile.
 * -ENOSPC: a migration needs room the disk does not have.
 */
int store_open(const char *path, struct store **ret);
int store_exclusive(const struct store *s);
void store_free(struct store *s);
const char *store_errmsg(struct store *s);
/* The protocol's error reply to a failure r of the store while doing
 * what (ERR_STORAGE for a full disk, else ERR_INTERNAL), logged once. */
json_object *store_error_reply(struct store *s, const char *what, int r);

/* From now on the event loop runs: wait for another program's lock only a
 * moment (start-up waits up to 10 s). */
void store_serving(struct store *s);
/* Wall ms since when another program's lock refuses writes; 0 when none. */
int64_t store_contended_since(const struct store *s);
/* Whether the file open is still the one at its path: 0, -ENOENT (deleted)
 * or -ESTALE (replaced). */
int store_check_file(struct store *s);
int store_schema_version(struct store *s);
/* Cap the database at max_bytes (0: no cap); past it, writes fail with -ENOSPC. */
int store_limit_size(struct store *s, int64_t max_bytes);

/*
 * What a stop left, from before `before` (this start): jobs left running go
 * back to queued and their open attempt is closed; a batch caught while it
 * was stored is deleted, and a stored batch's held jobs are let go. Rows
 * of this run (a batch being received, a job in the air) are not touched,
 * when this runs late (the database was locked at start).
 */
int store_recover(struct store *s, int64_t now, int64_t before, int64_t *ret_requeued);

int store_tx_begin(struct store *s);
int store_tx_commit(struct store *s);
int store_tx_rollback(struct store *s);
/* Reads that share one snapshot, its shared lock taken once: 1 when begun,
 * 0 within a transaction already (or when it could not begin: the reads
 * then run on their own). Nothing is written before store_read_end. */
int store_read_begin(struct store *s);
void store_read_end(struct store *s, int begun);

/*
 * Batches whose completion window ended by now: their queued jobs fail with
 * batch_expired (running ones finish), and the batch completes as expired
 * once none is left. *ret_jobs: how many jobs expired.
 */
int store_expire(struct store *s, int64_t now, int64_t *ret_jobs);

/* What was learned of a lane's upstream: its window ("minute" or "second")
 * and when (wall ms). get: 1, or 0 when nothing is known. */
int store_lane_window_get(struct store *s, const char *lane, const char *base_url, char *window,
                          size_t len, int64_t *ret_at, int64_t *ret_phase);
/* phase: where the windows start, in ms into a wall-clock second; -1: unknown. */
int store_lane_window_set(struct store *s, const char *lane, const char *base_url,
                          const char *window, int64_t at, int64_t phase);

/* -EEXIST when the submitter already has a batch with b's idempotency key. */
int store_batch_insert(struct store *s, const struct store_batch *b);
/* The batch uid stored under key (its id into id, its jobs into *ret_total):
 * 1, or 0 when there is none. */
#define STORE_ID_LEN 19 /* a batch id, "b_" and 16 hex digits, and its NUL */

int store_batch_by_key(struct store *s, int64_t uid, const char *key, char id[static 19],
                       int64_t *ret_total);
int store_job_insert(struct store *s, const struct store_job_new *j, int64_t now);
/* The rowid of the last row inserted (a job's id after store_job_insert). */
int64_t store_last_insert_id(struct store *s);
/*
 * A batch stored in several transactions (state validating, its jobs held)
 * is complete: its held jobs with ids first..last may run; start makes the
 * batch in_progress (with its first range: while any job is held the batch
 * cannot complete). One transaction. store_recover() deletes a validating
 * batch a crash left, and lets go the held jobs of an in_progress one.
 */
int store_batch_release(struct store *s, const char *id, int64_t first, int64_t last, int start);
/*
 * A slice of jobs in one statement (inside the caller's transaction: a
 * slice is stored whole or not at all); its rows take the ids *ret_first
 * to *ret_first + n - 1, in order.
 */
int store_jobs_insert(struct store *s, const struct store_slice *sl, int64_t now,
                      int64_t *ret_first);
/*
 * A validating batch is whole: it becomes in_progress with b's created_at,
 * total, est_tokens and idempotency_key (a key is set only now, so a batch
 * being stored never answers a repeat), and its held jobs first..last may
 * run. One transaction (or a savepoint in the caller's). -EEXIST: another
 * batch of the submitter's holds the key; -ENOENT: no such validating batch.
 */
int store_batch_start(struct store *s, const struct store_batch *b, int64_t first, int64_t last);
/* The batch and its jobs (a validating batch that could not be completed). */
int store_batch_delete(struct store *s, const char *id);
int store_call_insert(struct store *s, const struct store_call *c);
/* How many batches are in each of states[0..n-1]. */
int store_batch_states(struct store *s, const char *const *states, int n, int64_t *ret);

/*
 * The next ready job of lane, users in turn: the first user after the one
 * served last (by uid, from the first again after the last) whose next job
 * the judge lets go; a user's next job is of their highest priority, from
 * their first batch after the one of theirs served last (round-robin by
 * batch), in line order within the batch. A paused batch's jobs are passed
 * over (a paused batch costs one index step, whatever its jobs), and so is a
 * user the judge says to skip; one it says LATER goes only when no other
 * user's job may (work-conserving). Each user looked at costs a few index
 * steps, whatever the queue holds. Returns 1 and fills ret, or 0 when none
 * may go.
 */
enum store_pick_verdict {
	STORE_PICK_GO,    /* this job goes */
	STORE_PICK_LATER, /* only when no other user's job may go */
	STORE_PICK_SKIP,  /* none of this user's jobs now */
};
#define STORE_UID_FIRST INT64_MIN
struct store_pick {
	int64_t after_uid; /* the user served last; STORE_UID_FIRST: from the first */
	/* The batch of uid's served last (NULL or "": from their first); may be NULL. */
	const char *(*last_batch)(void *ud, int64_t uid);
	/* Whether the job found for its user goes; NULL: every job goes. */
	enum store_pick_verdict (*judge)(void *ud, const struct store_job *job);
	/* The highest id of batch_id's jobs on their way to being started (their
	 * launch is being recorded, so they are still queued here): they and the
	 * batch's jobs before them are passed over. 0: none. May be NULL. */
	int64_t (*floor)(void *ud, const char *batch_id);
	void *ud;
	/* Out, when not NULL: 1 when no job was passed over but those on their
	 * way (nothing paused, judged, or left for the next look), else 0. */
	int *ret_none;
};
int store_next_ready_pick(struct store *s, const char *lane, int64_t now,
                          const struct store_pick *p, struct store_job *ret);
/* The same with every user's turn after after_batch (NULL or "": from the
 * first batch), and every job going: one user's batches in turn. */
int store_next_ready(struct store *s, const char *lane, int64_t now, const char *after_batch,
                     struct store_job *ret);
void store_job_clear(struct store_job *j);
/* The first not_before after now among lane's queued jobs of batches not
 * paused (the next retry due); INT64_MAX when there is none. */
int store_next_wakeup(struct store *s, const char *lane, int64_t now, int64_t *ret_ms);

/* queued -> running, attempts + 1, and a new open attempt row. */
int store_job_start(struct store *s, const struct store_job *j, const char *lane, int64_t now,
                    int64_t tokens_charged, int64_t gate_wait_ms, int64_t *ret_attempt_id);
/*
 * Close the attempt and finish or requeue the job, in one transaction. When
 * it was the batch's last job, the batch's id goes into ret_ended (which may
 * be NULL; STORE_ID_LEN bytes), else it is left as it was.
 */
int store_job_complete(struct store *s, int64_t job_id, int64_t attempt_id,
                       const struct store_outcome *o, int64_t now, char *ret_ended);

int store_batch_get(struct store *s, const char *id, json_object **ret);
/* The same without tokens_used and tokens_pending (null): they read every job's row. */
int store_batch_brief(struct store *s, const char *id, json_object **ret);
/* Which batches store_batch_list() gives. */
struct store_batch_filter {
	int limit;               /* at most this many, newest first */
	int64_t uid;             /* -1: every user's; else only those uid submitted */
	const char *states_json; /* a JSON array of states to keep; NULL: any */
	int64_t since;           /* created at or after this (wall ms); 0: any time */
};
int store_batch_list(struct store *s, const struct store_batch_filter *f, json_object **ret);
/* The batches of uid (-1: anonymous callers') newest first, after batch
 * id after (NULL: from the newest), at most limit. */
int store_batch_page(struct store *s, int64_t uid, const char *after, int limit, json_object **ret);

int store_file_insert(struct store *s, const struct store_file *f);
/* -ENOENT when there is none. */
int store_file_get(struct store *s, const char *id, struct store_file *ret);
/* uid's files (-1: anonymous callers'), newest first, after file id after
 * (NULL: from the newest): up to limit into ret, *ret_n of them. */
int store_file_list(struct store *s, int64_t uid, const char *after, int limit,
                    struct store_file *ret, int *ret_n);
/* -ENOENT when there is none. */
int store_file_delete(struct store *s, const char *id);
/*
 * A batch whose results are being read (a download of its output file):
 * retention does not delete it until as many unholds came. -ENOMEM.
 */
int store_batch_hold(struct store *s, const char *id);
void store_batch_unhold(struct store *s, const char *id);
/* The bytes of uid's uploaded files (-1: anonymous callers'). */
int store_files_bytes(struct store *s, int64_t uid, int64_t *ret);
/* The jobs uid has queued or running (-1: anonymous callers'). */
int store_unfinished_jobs(struct store *s, int64_t uid, int64_t *ret);

/* Queued jobs cancelled; running ones left to finish. -ENOENT when unknown. */
int store_batch_cancel(struct store *s, const char *id, int64_t now, int64_t *ret_cancelled);

/*
 * Takes a result line piece by piece (a large answer comes in chunks, read
 * from the database as it goes); end is set on its last piece (there is no
 * newline). < 0 stops with that error; 1 on the last piece ends the page.
 */
typedef int (*store_line_cb)(void *userdata, const char *bytes, size_t len, int end);
/*
 * Result lines (Batch API output format) of batch id with job ids > after, at
 * most limit of them; errors selects failed and cancelled jobs instead of
 * succeeded ones. *ret_last is the last job id seen (after when none);
 * *ret_more says a next page may hold more.
 */
int store_results(struct store *s, const char *id, int64_t after, int limit, int errors,
                  store_line_cb cb, void *userdata, int64_t *ret_last, int *ret_count,
                  int *ret_more);

/* Jobs queued or running, and their estimated tokens; lane NULL for all lanes. */
int store_backlog(struct store *s, const char *lane, int64_t *ret_jobs, int64_t *ret_tokens);

/* Same, counting only the lane's jobs up to the last one of batch_id (FIFO: its ETA). */
int store_backlog_upto(struct store *s, const char *lane, const char *batch_id, int64_t *ret_jobs,
                       int64_t *ret_tokens);

/* Where a batch's unfinished jobs wait: one lane's share of them. */
struct store_batch_lane {
	char lane[72];            /* as the jobs name it ('~' first while held) */
	int64_t jobs;             /* queued or running */
	int64_t first_not_before; /* wall ms: the earliest a queued one may go (0: any time) */
	int64_t last_not_before;  /* and the latest of them */
};
/* The lanes batch_id's queued or running jobs are on, up to max of them, by name. */
int store_batch_lanes(struct store *s, const char *batch_id, struct store_batch_lane *ret, int max,
                      int *ret_n);

/* The same from job_counts (no row per job is read): first_not_before and
 * last_not_before are 0. */
int store_batch_lane_counts(struct store *s, const char *batch_id, struct store_batch_lane *ret,
                            int max, int *ret_n);

/* One user's tries since a time, batch and interactive together. */
struct store_usage {
	int64_t uid;      /* -1: callers nobody knew (anonymous) */
	int64_t requests; /* tries sent upstream */
	int64_t tokens;   /* as the answers reported */
	int64_t failed;
	int64_t rate_limited; /* 429s */
	int64_t cost_nusd;
	int64_t unpriced_tokens; /* of tokens, those of models without a price */
};
/* Users' tries that started on day ("YYYY-MM-DD", llmqd's local time; the
 * usage_daily table), most tokens first: up to max. */
int store_usage_day(struct store *s, const char *day, struct store_usage *ret, int max, int *ret_n);

/*
 * A usage report: the rows of each piece of pieces_json, summed by the keys
 * asked for (a key not asked for is summed over). A piece is [period,
 * "q", from, until]: usage_quarters' quarters of [from, until) (wall ms);
 * or [period, "d", "YYYY-MM-DD", "YYYY-MM-DD"]: usage_daily's days from the
 * first up to the second (llmqd's local days). period: the index rows are
 * summed under when by period. Each row goes to cb (a < 0 return stops with
 * that error).
 */
struct store_usage_query {
	const char *pieces_json;
	int by_period, by_user, by_model, by_lane, by_class;
	int all;     /* every user's; else uid's alone */
	int64_t uid; /* -1: callers nobody could tell */
};
struct store_usage_row {
	int64_t period; /* index into periods; -1 when not by period */
	int64_t uid;    /* when by user (-1: anonymous) */
	char model[128];
	char lane[72];
	char class_name[16];
	int64_t requests, prompt_tokens, cached_tokens, completion_tokens, tokens;
	int64_t cost_nusd, unpriced_tokens, failed, rate_limited;
};
typedef int (*store_usage_cb)(void *userdata, const struct store_usage_row *row);
int store_usage_report(struct store *s, const struct store_usage_query *q, store_usage_cb cb,
                       void *userdata);
/* The models with unpriced tokens in the same pieces (model and
 * unpriced_tokens of each row set), most first. */
int store_usage_unpriced(struct store *s, const struct store_usage_query *q, store_usage_cb cb,
                         void *userdata);
/* Everything ever counted, by user, class, lane and model (usage_totals), in
 * the order first seen: the metrics' counters. */
int store_usage_totals(struct store *s, store_usage_cb cb, void *userdata);

/*
 * What each user spent of their budgets (usage_daily, llmqd's local days):
 * tokens on day ("YYYY-MM-DD"), nano-dollars on the days from month_first
 * up to month_next; one call of cb per user with any.
 */
typedef int (*store_spent_cb)(void *userdata, int64_t uid, int64_t tokens_day, int64_t nusd_month);
int store_budget_spent(struct store *s, const char *day, const char *month_first,
                       const char *month_next, store_spent_cb cb, void *userdata);

/* The SQLite virtual machine's steps so far, all statements together: the
 * work the queries did (tests and benchmarks compare it across queue depths). */
int64_t store_vm_steps(struct store *s);

/* Lane name paused by an operator (the lane_paused table): 1 with when and
 * by whom (-1: unknown), 0 when it is not. */
int store_lane_paused_get(struct store *s, const char *lane, int64_t *ret_at, int64_t *ret_by);
/* Pause (at > 0) or resume (at 0) lane name; kept across restarts. */
int store_lane_paused_set(struct store *s, const char *lane, int64_t at, int64_t by);
/* Pause (at > 0) or resume (at 0) batch id: its queued jobs launch no more,
 * or again. *ret_changed: 0 when it already was. */
int store_batch_pause(struct store *s, const char *id, int64_t at, int64_t by,
                      int64_t *ret_changed);
/* In-progress batches paused. */
int store_batches_paused(struct store *s, int64_t *ret);
/*
 * The failed jobs of a finished (completed) batch are queued again as a new
 * attempt each, their earlier attempts kept (they count afresh against
 * retry_max_attempts), and the batch is in_progress again, with its window
 * running from now. -EBUSY when the batch is not completed; *ret_jobs: how
 * many (0: it has none, and nothing changed).
 */
int store_batch_retry_failed(struct store *s, const char *id, int64_t now, int64_t *ret_jobs);

/* A try that ended with an error (the attempts and calls tables). */
struct store_error {
	char class_name[16]; /* batch, interactive */
	char lane[72];
	int64_t at;      /* wall ms it ended */
	int status_code; /* 0: no HTTP answer */
	char code[64];
	char message[256]; /* "" for interactive calls: not recorded */
	char batch_id[32]; /* "" for interactive calls */
	char custom_id[128];
	char model[128];
	int64_t uid; /* -1: unknown */
};
/*
 * The newest tries with an error started at or after since, of uid (-1:
 * everyone's), newest first, up to max; only the last scan tries with an
 * error of each class are looked at, so the cost is bounded.
 */
int store_recent_errors(struct store *s, int64_t uid, int64_t since, int scan,
                        struct store_error *ret, int max, int *ret_n);

/*
 * Retention, one bounded step: delete up to limit jobs (their attempts go
 * with them) of batches that finished before before, up to limit calls
 * older than that, then the batches left empty; then give up to limit free
 * pages back to the file system. *ret_rows: rows deleted (0: nothing left).
 */
int store_prune(struct store *s, int64_t before, int limit, int64_t *ret_rows);
/* The same on another connection (the writer's), leaving alone the batches
 * held, as store_held_copy() gave them from the loop's. Within a caller's
 * transaction, it deletes in it and gives no pages back (store_vacuum_step,
 * after the commit). */
int store_prune_held(struct store *s, int64_t before, int limit, const char *held,
                     int64_t *ret_rows);
/* Give up to pages free pages back to the file system. */
int store_vacuum_step(struct store *s, int pages);
/* The batches s holds (store_batch_hold), for store_prune_held: malloc'd,
 * NULL when out of memory. */
char *store_held_copy(const struct store *s);

/* The database file's size in bytes. */
int store_db_bytes(struct store *s, int64_t *ret);

/* A new random batch id, b_<16 hex>. */
int store_new_batch_id(char buf[static 19]);

/*
 * The writer thread's connection (store/writer.c): a second connection to
 * s's database, with s's size cap, that waits up to STORE_WRITER_WAIT_MS for
 * a lock (it is not the loop's). -ENOTSUP when there can be none: s holds
 * the file with locking_mode EXCLUSIVE, or SQLite was built without threads.
 * Each connection is used by one thread only.
 */
#define STORE_WRITER_WAIT_MS 1000
int store_open_writer(struct store *s, struct store **ret);
/* Checkpoint the WAL as far as readers allow, waiting for nobody. */
int store_checkpoint(struct store *s);
/* Read the schema and prepare every statement now, outside any transaction
 * (else the first of each is prepared while it holds the write lock). */
int store_prepare_all(struct store *s);
/* Let this connection's commits checkpoint past pages of WAL (0: never). */
#define STORE_AUTOCHECKPOINT 1000
int store_autocheckpoint(struct store *s, int pages);
/*
 * When a write finds the database locked, ask wait(userdata) first: it
 * returns 1 when this process's other connection (the writer's) held the
 * lock and has let go (try again, and no other program is to blame), 0 to
 * wait and count as usual. NULL: none.
 */
void store_on_sibling(struct store *s, int (*wait)(void *), void *userdata);
/* Another connection (the writer's) was refused by a lock since wall ms
 * since (0: it is not any more): store_contended_since() says so. */
void store_note_contended(struct store *s, int64_t since);

#endif
