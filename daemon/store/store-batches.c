/*
 * store-batches.c - the batches table: a batch stored (at once, or as
 * validating with its jobs held until started and released), found by its
 * idempotency key, read as JSON (one, a page, a filtered list: its counts
 * from job_counts, no row per job), cancelled, paused, expired and retried;
 * and new batch ids. Its jobs' rows are store-jobs.c's (a slice of them
 * store-slice.c's), their queue store-queue.c's, its results
 * store-results.c's.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int store_batch_insert(struct store *s, const struct store_batch *b)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_BATCH_INSERT, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, b->id);
	sqlite3_bind_int64(st, 2, b->created_at);
	store_bind_opt_int(st, 3, b->uid);
	store_bind_text(st, 4, b->input_name);
	sqlite3_bind_int64(st, 5, b->window_ms);
	sqlite3_bind_int64(st, 6, b->total);
	sqlite3_bind_int64(st, 7, b->est_tokens);
	sqlite3_bind_int64(st, 8, b->priority);
	store_bind_text(st, 9, b->idempotency_key);
	store_bind_text(st, 10, b->state);
	store_bind_text(st, 11, b->endpoint);
	store_bind_text(st, 12, b->input_file_id);
	store_bind_text(st, 13, b->metadata);
	store_bind_text(st, 14, b->errors);
	if (b->finished_at > 0)
		sqlite3_bind_int64(st, 15, b->finished_at);
	else
		sqlite3_bind_null(st, 15);
	return store_run(s, st, NULL);
}

int store_batch_by_key(struct store *s, int64_t uid, const char *key, char id[static 19],
                       int64_t *ret_total)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *v;
	int r = store_prep(s, S_BATCH_BY_KEY, &st), rc;

	if (r < 0)
		return r;
	store_bind_opt_int(st, 1, uid);
	store_bind_text(st, 2, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		v = sqlite3_column_text(st, 0);
		snprintf(id, 19, "%s", v ? (const char *)v : "");
		*ret_total = sqlite3_column_int64(st, 1);
		r = 1;
	} else {
		r = store_errno(rc);
	}
	sqlite3_reset(st);
	return r;
}

int store_batch_states(struct store *s, const char *const *states, int n, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int i, r, rc;

	for (i = 0; i < n; i++) {
		r = store_prep(s, S_BATCH_STATES, &st);
		if (r < 0)
			return r;
		store_bind_text(st, 1, states[i]);
		rc = sqlite3_step(st);
		ret[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_reset(st);
		if (rc != SQLITE_ROW)
			return store_errno(rc) ? store_errno(rc) : -EIO;
	}
	return 0;
}

int store_batch_release(struct store *s, const char *id, int64_t first, int64_t last, int start)
{
	sqlite3_stmt *st = NULL;
	int r, own;

	TX_BEGIN(s, own);
	r = start ? store_prep(s, S_BATCH_RELEASE, &st) : 0;
	if (r == 0 && start) {
		store_bind_text(st, 1, id);
		r = store_run(s, st, NULL);
	}
	if (r == 0)
		r = store_prep(s, S_BATCH_RELEASE_JOBS, &st);
	if (r == 0) {
		store_bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, first);
		sqlite3_bind_int64(st, 3, last);
		r = store_run(s, st, NULL);
	}
	return store_tx_end(s, own, r);
}

int store_batch_start(struct store *s, const struct store_batch *b, int64_t first, int64_t last)
{
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	int r, own;

	TX_BEGIN(s, own);
	r = store_prep(s, S_BATCH_START, &st);
	if (r == 0) {
		store_bind_text(st, 1, b->id);
		sqlite3_bind_int64(st, 2, b->created_at);
		sqlite3_bind_int64(st, 3, b->total);
		sqlite3_bind_int64(st, 4, b->est_tokens);
		store_bind_text(st, 5, b->idempotency_key);
		r = store_run(s, st, &changed);
	}
	if (r == 0 && changed != 1)
		r = -ENOENT;
	if (r == 0)
		r = store_prep(s, S_BATCH_RELEASE_JOBS, &st);
	if (r == 0) {
		store_bind_text(st, 1, b->id);
		sqlite3_bind_int64(st, 2, first);
		sqlite3_bind_int64(st, 3, last);
		r = store_run(s, st, NULL);
	}
	return store_tx_end(s, own, r);
}

int store_batch_delete(struct store *s, const char *id)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_BATCH_DELETE, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, id);
	return store_run(s, st, NULL);
}

static void put_int_or_null(json_object *o, const char *key, sqlite3_stmt *st, int i)
{
	json_object_object_add(o, key,
	                       sqlite3_column_type(st, i) == SQLITE_NULL
	                           ? NULL
	                           : json_object_new_int64(sqlite3_column_int64(st, i)));
}

static void put_text_or_null(json_object *o, const char *key, sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);

	json_object_object_add(o, key, t ? json_object_new_string(t) : NULL);
}

/* A column holding JSON written by llmqd, as the value it holds. */
static void put_json_or_null(json_object *o, const char *key, sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);

	json_object_object_add(o, key, t ? json_tokener_parse(t) : NULL);
}

static json_object *batch_row(sqlite3_stmt *st)
{
	static const char *const counts[] = {"queued", "running", "succeeded", "failed",
	                                     "cancelled"};
	json_object *o = json_object_new_object(), *c = json_object_new_object();
	const char *t;
	int i;

	if (!o || !c) {
		json_object_put(o);
		json_object_put(c);
		return NULL;
	}
	json_object_object_add(o, "id",
	                       json_object_new_string((const char *)sqlite3_column_text(st, 0)));
	json_object_object_add(o, "state",
	                       json_object_new_string((const char *)sqlite3_column_text(st, 1)));
	json_object_object_add(o, "created_at", json_object_new_int64(sqlite3_column_int64(st, 2)));
	put_int_or_null(o, "uid", st, 3);
	t = (const char *)sqlite3_column_text(st, 4);
	json_object_object_add(o, "input_name", t ? json_object_new_string(t) : NULL);
	json_object_object_add(o, "window_ms", json_object_new_int64(sqlite3_column_int64(st, 5)));
	json_object_object_add(o, "total", json_object_new_int64(sqlite3_column_int64(st, 6)));
	json_object_object_add(o, "est_tokens", json_object_new_int64(sqlite3_column_int64(st, 7)));
	put_int_or_null(o, "finished_at", st, 8);
	for (i = 0; i < 5; i++)
		json_object_object_add(c, counts[i],
		                       json_object_new_int64(sqlite3_column_int64(st, 9 + i)));
	json_object_object_add(o, "counts", c);
	put_int_or_null(o, "tokens_used", st, 14);
	put_int_or_null(o, "tokens_pending", st, 15);
	put_int_or_null(o, "expired_at", st, 16);
	put_text_or_null(o, "endpoint", st, 17);
	put_text_or_null(o, "input_file_id", st, 18);
	put_json_or_null(o, "metadata", st, 19);
	put_json_or_null(o, "errors", st, 20);
	put_int_or_null(o, "cancelling_at", st, 21);
	put_text_or_null(o, "name", st, 22);
	put_int_or_null(o, "paused_at", st, 23);
	put_int_or_null(o, "paused_by", st, 24);
	put_int_or_null(o, "retried_at", st, 25);
	return o;
}

int store_expire(struct store *s, int64_t now, int64_t *ret_jobs)
{
	static const enum stmt_id steps[] = {S_EXPIRE_MARK, S_EXPIRE_JOBS, S_EXPIRE_FINISH};
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	size_t i;
	int r, own;

	*ret_jobs = 0;
	TX_BEGIN(s, own);
	for (i = 0, r = 0; r == 0 && i < sizeof(steps) / sizeof(steps[0]); i++) {
		r = store_prep(s, steps[i], &st);
		if (r == 0) {
			sqlite3_bind_int64(st, 1, now);
			r = store_run(s, st, &changed);
		}
		if (r == 0 && steps[i] == S_EXPIRE_JOBS)
			*ret_jobs = changed;
	}
	return store_tx_end(s, own, r);
}

static int batch_get(struct store *s, enum stmt_id which, const char *id, json_object **ret)
{
	sqlite3_stmt *st = NULL;
	json_object *o;
	int r, rc;

	r = store_prep(s, which, &st);
	if (r < 0)
		return r;
	store_bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		r = -ENOENT;
	else if (rc != SQLITE_ROW)
		r = store_errno(rc);
	else if (!(o = batch_row(st)))
		r = -ENOMEM;
	else
		*ret = o;
	sqlite3_reset(st);
	return r;
}

int store_batch_get(struct store *s, const char *id, json_object **ret)
{
	return batch_get(s, S_BATCH_GET, id, ret);
}

int store_batch_brief(struct store *s, const char *id, json_object **ret)
{
	return batch_get(s, S_BATCH_BRIEF, id, ret);
}

/* The rows of a bound batch query, as an array. */
static int batch_rows(sqlite3_stmt *st, json_object **ret)
{
	json_object *arr = json_object_new_array(), *o;
	int rc;

	if (!arr) {
		sqlite3_reset(st);
		return -ENOMEM;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		o = batch_row(st);
		if (!o) {
			rc = SQLITE_NOMEM;
			break;
		}
		json_object_array_add(arr, o);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		json_object_put(arr);
		return store_errno(rc);
	}
	*ret = arr;
	return 0;
}

int store_batch_page(struct store *s, int64_t uid, const char *after, int limit, json_object **ret)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_BATCH_PAGE, &st);

	if (r < 0)
		return r;
	store_bind_opt_int(st, 1, uid);
	store_bind_text(st, 2, after);
	sqlite3_bind_int(st, 3, limit);
	return batch_rows(st, ret);
}

int store_batch_list(struct store *s, const struct store_batch_filter *f, json_object **ret)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_BATCH_LIST, &st);

	if (r < 0)
		return r;
	sqlite3_bind_int(st, 1, f->limit);
	sqlite3_bind_int64(st, 2, f->uid);
	store_bind_text(st, 3, f->states_json);
	sqlite3_bind_int64(st, 4, f->since);
	return batch_rows(st, ret);
}

int store_batch_cancel(struct store *s, const char *id, int64_t now, int64_t *ret_cancelled)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0, changed = 0;
	json_object *b = NULL;
	int r, own;

	r = store_batch_get(s, id, &b);
	json_object_put(b);
	if (r < 0)
		return r;
	TX_BEGIN(s, own);
	r = store_prep(s, S_BATCH_CANCEL_JOBS, &st);
	if (r == 0) {
		store_bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = store_run(s, st, &n);
	}
	if (r == 0)
		r = store_prep(s, S_BATCH_CANCEL, &st);
	if (r == 0) {
		store_bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = store_run(s, st, &changed);
	}
	r = store_tx_end(s, own, r);
	if (r == 0 && ret_cancelled)
		*ret_cancelled = n;
	return r;
}

int store_batch_pause(struct store *s, const char *id, int64_t at, int64_t by, int64_t *ret_changed)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_BATCH_PAUSE, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, id);
	if (at > 0) {
		sqlite3_bind_int64(st, 2, at);
		store_bind_opt_int(st, 3, by);
	}
	return store_run(s, st, ret_changed);
}

int store_batches_paused(struct store *s, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_BATCHES_PAUSED, &st), rc;

	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : store_errno(rc) ? store_errno(rc) : -EIO;
}

int store_batch_retry_failed(struct store *s, const char *id, int64_t now, int64_t *ret_jobs)
{
	sqlite3_stmt *st = NULL;
	int64_t jobs = 0, changed = 0;
	int r, own;

	TX_BEGIN(s, own);
	r = store_prep(s, S_RETRY_BATCH, &st);
	if (r == 0) {
		store_bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = store_run(s, st, &changed);
	}
	if (r == 0 && changed != 1)
		r = -EBUSY; /* not completed: still running, cancelled, or failed as a whole */
	if (r == 0)
		r = store_prep(s, S_RETRY_JOBS, &st);
	if (r == 0) {
		store_bind_text(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		r = store_run(s, st, &jobs);
	}
	/* Nothing failed: the batch stays as it was. */
	if (r == 0 && jobs == 0)
		r = -ENODATA;
	r = store_tx_end(s, own, r);
	if (r == -ENODATA) {
		*ret_jobs = 0;
		return 0;
	}
	if (r == 0)
		*ret_jobs = jobs;
	return r;
}

int store_new_batch_id(char buf[static 19])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[8];
	int i;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -errno;
	buf[0] = 'b';
	buf[1] = '_';
	for (i = 0; i < 8; i++) {
		buf[2 + 2 * i] = hex[rnd[i] >> 4];
		buf[3 + 2 * i] = hex[rnd[i] & 15];
	}
	buf[18] = '\0';
	return 0;
}
