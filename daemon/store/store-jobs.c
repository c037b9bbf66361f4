/*
 * store-jobs.c - one job's life in the jobs and attempts tables: inserted
 * (ready, or held until its batch is whole), started (a new open attempt),
 * completed (the attempt closed, the job finished or requeued, its batch
 * completed with its last job), and what a crash left recovered at start.
 * Which job goes next is store-queue.c's.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int store_recover(struct store *s, int64_t now, int64_t before, int64_t *ret_requeued)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0;
	int r;

	r = store_tx_begin(s);
	if (r < 0)
		return r;
	r = store_prep(s, S_RECOVER_ATTEMPTS, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2, before);
		r = store_run(s, st, NULL);
	}
	if (r == 0)
		r = store_prep(s, S_RECOVER_JOBS, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2, before);
		r = store_run(s, st, &n);
	}
	/* Batches a crash caught while they were being stored: never started. */
	if (r == 0)
		r = store_prep(s, S_RECOVER_LOADING, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, before);
		r = store_run(s, st, NULL);
	}
	/* ... and the jobs of a stored batch that were still to be let go. */
	if (r == 0)
		r = store_prep(s, S_RECOVER_HELD, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, before);
		r = store_run(s, st, NULL);
	}
	if (r == 0)
		r = store_tx_commit(s);
	if (r < 0) {
		store_tx_rollback(s);
		return r;
	}
	if (ret_requeued)
		*ret_requeued = n;
	return 0;
}

int store_job_insert(struct store *s, const struct store_job_new *j, int64_t now)
{
	sqlite3_stmt *st = NULL;
	char held[80];
	int r = store_prep(s, S_JOB_INSERT, &st);

	if (r < 0)
		return r;
	snprintf(held, sizeof(held), "~%s", j->lane);
	store_bind_text(st, 1, j->batch_id);
	sqlite3_bind_int64(st, 2, j->line);
	store_bind_text(st, 3, j->custom_id);
	store_bind_text(st, 4, j->url);
	store_bind_text(st, 5, j->model);
	store_bind_text(st, 6, j->held ? held : j->lane);
	sqlite3_bind_text64(st, 7, j->body, j->body_len, SQLITE_STATIC, SQLITE_UTF8);
	sqlite3_bind_int64(st, 8, j->est_tokens);
	sqlite3_bind_int64(st, 9, now);
	sqlite3_bind_int64(st, 10, j->priority);
	return store_run(s, st, NULL);
}

int store_job_start(struct store *s, const struct store_job *j, const char *lane, int64_t now,
                    int64_t tokens_charged, int64_t gate_wait_ms, int64_t *ret_attempt_id)
{
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	int r, own;

	TX_BEGIN(s, own);
	r = store_prep(s, S_JOB_START, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, j->id);
		sqlite3_bind_int64(st, 2, now);
		r = store_run(s, st, &changed);
	}
	if (r == 0 && changed != 1)
		r = -ESTALE; /* no longer queued: cancelled meanwhile */
	if (r == 0)
		r = store_prep(s, S_ATTEMPT_INSERT, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, j->id);
		store_bind_text(st, 2, lane);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int64(st, 4, tokens_charged);
		sqlite3_bind_int64(st, 5, gate_wait_ms);
		r = store_run(s, st, NULL);
	}
	r = store_tx_end(s, own, r);
	if (r == 0)
		*ret_attempt_id = sqlite3_last_insert_rowid(s->db);
	return r;
}

/* running -> a final state, and the batch completed when it was its last job
 * (its id into ret_ended then, when not NULL). */
static int finish(struct store *s, int64_t job_id, const struct store_outcome *o, int64_t now,
                  char *ret_ended)
{
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	int r, rc;

	r = store_prep(s, S_JOB_FINISH, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, job_id);
	store_bind_text(st, 2, o->job_state);
	store_bind_opt_int(st, 3, o->status_code > 0 ? o->status_code : -1);
	store_bind_text(st, 4, o->request_id);
	if (o->response)
		sqlite3_bind_text64(st, 5, o->response, o->response_len, SQLITE_STATIC,
		                    SQLITE_UTF8);
	store_bind_text(st, 6, o->error_code);
	store_bind_text(st, 7, o->error_message);
	store_bind_opt_int(st, 8, o->prompt_tokens);
	store_bind_opt_int(st, 9, o->completion_tokens);
	store_bind_opt_int(st, 10, o->total_tokens);
	sqlite3_bind_int64(st, 11, now);
	sqlite3_bind_int(st, 12, o->response && o->response_json);
	r = store_run(s, st, &changed);
	if (r == 0 && changed != 1)
		r = -ESTALE;
	if (r == 0)
		r = store_prep(s, S_BATCH_REFRESH, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, job_id);
		sqlite3_bind_int64(st, 2, now);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && ret_ended)
			snprintf(ret_ended, STORE_ID_LEN, "%s",
			         (const char *)sqlite3_column_text(st, 0));
		sqlite3_reset(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			r = store_errno(rc);
	}
	return r;
}

/* 1 when the job's batch is being cancelled, 0 when not, or -errno. */
static int batch_cancelling(struct store *s, int64_t job_id)
{
	sqlite3_stmt *st = NULL;
	int r, rc;

	r = store_prep(s, S_JOB_BATCH_STATE, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, job_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		r = strcmp((const char *)sqlite3_column_text(st, 0), "cancelling") == 0;
	else
		r = rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
	sqlite3_reset(st);
	return r;
}

static int requeue(struct store *s, int64_t job_id, const struct store_outcome *o, int64_t now,
                   char *ret_ended)
{
	struct store_outcome c;
	sqlite3_stmt *st = NULL;
	int64_t changed = 0;
	int r;

	r = batch_cancelling(s, job_id);
	if (r < 0)
		return r;
	if (r == 1) {
		c = *o;
		c.job_state = "cancelled";
		c.error_code = "batch_cancelled";
		c.error_message = "the batch was cancelled before this request could be retried";
		return finish(s, job_id, &c, now, ret_ended);
	}
	r = store_prep(s, S_JOB_REQUEUE, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, job_id);
	sqlite3_bind_int64(st, 2, o->not_before);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int(st, 4, o->free_try);
	sqlite3_bind_int64(st, 5, o->lane_wait_ms);
	r = store_run(s, st, &changed);
	if (r == 0 && changed != 1)
		r = -ESTALE;
	return r;
}

int store_job_complete(struct store *s, int64_t job_id, int64_t attempt_id,
                       const struct store_outcome *o, int64_t now, char *ret_ended)
{
	sqlite3_stmt *st = NULL;
	int r, own, i;

	TX_BEGIN(s, own);
	/* Sends the upstream saw but no answer came back for: one row each. */
	for (i = 0, r = 0; r == 0 && i < o->lost_sends; i++) {
		r = store_prep(s, S_ATTEMPT_LOST, &st);
		if (r == 0) {
			sqlite3_bind_int64(st, 1, attempt_id);
			sqlite3_bind_int64(st, 2, now);
			r = store_run(s, st, NULL);
		}
	}
	if (r == 0)
		r = store_prep(s, S_ATTEMPT_END, &st);
	if (r == 0) {
		sqlite3_bind_int64(st, 1, attempt_id);
		sqlite3_bind_int64(st, 2, now);
		store_bind_text(st, 3, o->attempt_outcome);
		store_bind_opt_int(st, 4, o->status_code > 0 ? o->status_code : -1);
		store_bind_text(st, 5, o->error_code);
		store_bind_text(st, 6, o->error_message);
		store_bind_opt_int(st, 7, o->retry_after_ms);
		store_bind_opt_int(st, 8, o->total_tokens);
		store_bind_opt_int(st, 9, o->latency_ms);
		store_bind_text(st, 10, o->request_id);
		store_bind_opt_int(st, 11, o->remaining_tokens);
		store_bind_opt_int(st, 12, o->remaining_requests);
		store_bind_opt_int(st, 13, o->prompt_tokens);
		store_bind_opt_int(st, 14, o->cached_tokens);
		store_bind_opt_int(st, 15, o->completion_tokens);
		store_bind_opt_int(st, 16, o->cost_nusd);
		r = store_run(s, st, NULL);
	}
	if (r == 0)
		r = o->job_state ? finish(s, job_id, o, now, ret_ended)
		                 : requeue(s, job_id, o, now, ret_ended);
	return store_tx_end(s, own, r);
}
