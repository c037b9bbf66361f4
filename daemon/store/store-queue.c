/*
 * store-queue.c - the queue of ready jobs: which goes next on a lane (users
 * in turn, each user's highest priority, their batches round-robin, paused
 * batches stepped over), when the next retry is due, and what waits (a
 * lane's backlog, the lanes a batch's jobs wait on, a user's unfinished
 * jobs). Reads the jobs_ready index and job_counts; writes nothing.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *col_dup(sqlite3_stmt *st, int i, size_t *ret_len)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	int n = sqlite3_column_bytes(st, i);
	char *p;

	if (!t)
		return NULL;
	p = malloc((size_t)n + 1);
	if (!p)
		return NULL;
	memcpy(p, t, (size_t)n);
	p[n] = '\0';
	if (ret_len)
		*ret_len = (size_t)n;
	return p;
}

void store_job_clear(struct store_job *j)
{
	if (!j)
		return;
	free(j->batch_id);
	free(j->custom_id);
	free(j->url);
	free(j->body);
	free(j->model);
	memset(j, 0, sizeof(*j));
}

/* Step st (bound by the caller) for one job row; 1 and *ret filled, 0 when
 * none. *ret_paused: its batch is paused. */
static int job_row(sqlite3_stmt *st, struct store_job *ret, int *ret_paused)
{
	struct store_job j = {0};
	int r, rc;

	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		r = store_errno(rc);
		sqlite3_reset(st);
		return r;
	}
	j.id = sqlite3_column_int64(st, 0);
	j.batch_id = col_dup(st, 1, NULL);
	j.custom_id = col_dup(st, 2, NULL);
	j.url = col_dup(st, 3, NULL);
	j.body = col_dup(st, 4, &j.body_len);
	j.est_tokens = sqlite3_column_int64(st, 5);
	j.attempts = sqlite3_column_int(st, 6);
	j.queued_since = sqlite3_column_int64(st, 7);
	j.free_tries = sqlite3_column_int(st, 8);
	j.lane_wait_ms = sqlite3_column_int64(st, 9);
	j.model = col_dup(st, 10, NULL);
	*ret_paused = sqlite3_column_int(st, 11);
	j.uid = sqlite3_column_int64(st, 12);
	sqlite3_reset(st);
	if (!j.batch_id || !j.custom_id || !j.url || !j.body || !j.model) {
		store_job_clear(&j);
		return -ENOMEM;
	}
	*ret = j;
	return 1;
}

static int ready_after(struct store *s, const char *lane, int64_t now, int64_t uid, int64_t prio,
                       const char *after, struct store_job *ret, int *ret_paused)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_NEXT_READY, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, prio);
	store_bind_text(st, 4, after);
	sqlite3_bind_int64(st, 5, uid);
	return job_row(st, ret, ret_paused);
}

/* One number from a statement bound by the caller: 1 and *ret, 0 when no row. */
static int step_int(sqlite3_stmt *st, int64_t *ret)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_errno(rc);
}

/* The highest priority below below of uid's ready jobs on lane: 1, or 0 when none. */
static int ready_priority(struct store *s, const char *lane, int64_t now, int64_t uid,
                          int64_t below, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_NEXT_PRIORITY, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, below);
	sqlite3_bind_int64(st, 4, uid);
	return step_int(st, ret);
}

/* The first user after after with a ready job on lane: 1, or 0 when none. */
static int ready_user(struct store *s, const char *lane, int64_t now, int64_t after, int64_t *ret)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_NEXT_USER, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, after);
	return step_int(st, ret);
}

/* Past this many paused batches and users passed over in one look, a lane
 * waits for its next pump. */
#define STORE_READY_MAX_SKIPS 10000

/* The same as ready_after, within batch after job after_id. */
static int ready_in(struct store *s, const char *lane, int64_t now, int64_t uid, int64_t prio,
                    const char *batch, int64_t after_id, struct store_job *ret, int *ret_paused)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_NEXT_READY_IN, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, prio);
	store_bind_text(st, 4, batch);
	sqlite3_bind_int64(st, 5, uid);
	sqlite3_bind_int64(st, 6, after_id);
	return job_row(st, ret, ret_paused);
}

/*
 * uid's next ready job on lane: of their highest priority, from their first
 * batch after after_batch, then from their first again; a paused batch is
 * stepped over by its id, and a batch's jobs on their way (p->floor) by one
 * more look within it (*skips counts both; *passed what was passed over
 * but those on their way). 1, or 0 when none.
 */
static int ready_of_user(struct store *s, const char *lane, int64_t now, int64_t uid,
                         const struct store_pick *p, struct store_job *ret, int *skips, int *passed)
{
	const char *after_batch = p->last_batch ? p->last_batch(p->ud, uid) : NULL;
	char after[STORE_ID_LEN + 8];
	int64_t below = INT64_MAX, prio = 0, floor;
	int r, paused = 0, wrapped;

	while ((r = ready_priority(s, lane, now, uid, below, &prio)) == 1) {
		snprintf(after, sizeof(after), "%s",
		         below == INT64_MAX && after_batch ? after_batch : "");
		wrapped = !after[0];
		while (*skips < STORE_READY_MAX_SKIPS) {
			r = ready_after(s, lane, now, uid, prio, after, ret, &paused);
			if (r < 0)
				return r;
			if (r == 0 && wrapped)
				break;
			if (r == 0) {
				after[0] = '\0';
				wrapped = 1;
				continue;
			}
			snprintf(after, sizeof(after), "%s", ret->batch_id);
			floor = !paused && p->floor ? p->floor(p->ud, ret->batch_id) : 0;
			if (!paused && ret->id > floor)
				return 1;
			store_job_clear(ret);
			(*skips)++;
			if (paused) {
				(*passed)++;
				continue;
			}
			/* Its first jobs are on their way: the next one of the batch, if any. */
			r = ready_in(s, lane, now, uid, prio, after, floor, ret, &paused);
			if (r != 0)
				return r;
		}
		if (*skips >= STORE_READY_MAX_SKIPS) {
			(*passed)++;
			return 0;
		}
		below = prio; /* every batch of this priority is paused: the next one down */
	}
	return r;
}

int store_next_ready_pick(struct store *s, const char *lane, int64_t now,
                          const struct store_pick *p, struct store_job *ret)
{
	struct store_job job, later = {0};
	int64_t from = p->after_uid, uid = 0;
	int r, have_later = 0, wrapped = p->after_uid == STORE_UID_FIRST, skips = 0, passed = 0;
	enum store_pick_verdict v;

	/* The users after the one served last, then from the first up to it. */
	while (skips < STORE_READY_MAX_SKIPS) {
		r = ready_user(s, lane, now, from, &uid);
		if (r < 0)
			goto out;
		if (r == 0 || (wrapped && p->after_uid != STORE_UID_FIRST && uid > p->after_uid)) {
			if (wrapped)
				break;
			wrapped = 1;
			from = STORE_UID_FIRST;
			continue;
		}
		from = uid;
		r = ready_of_user(s, lane, now, uid, p, &job, &skips, &passed);
		if (r < 0)
			goto out;
		if (r == 0)
			continue;
		v = p->judge ? p->judge(p->ud, &job) : STORE_PICK_GO;
		if (v == STORE_PICK_GO) {
			store_job_clear(&later);
			*ret = job;
			if (p->ret_none)
				*p->ret_none = 0;
			return 1;
		}
		if (v == STORE_PICK_LATER && !have_later) {
			later = job;
			have_later = 1;
		} else {
			store_job_clear(&job);
		}
		skips++;
		passed++;
	}
	if (skips >= STORE_READY_MAX_SKIPS)
		passed++;
	if (p->ret_none)
		*p->ret_none = passed == 0;
	/* Nobody else may go: a user over their share goes (work-conserving). */
	if (have_later) {
		*ret = later;
		return 1;
	}
	return 0;
out:
	store_job_clear(&later);
	return r;
}

/* The single-user form: batches in turn after after_batch, for every user alike. */
static const char *store_same_batch(void *ud, int64_t uid)
{
	(void)uid;
	return ud;
}

int store_next_ready(struct store *s, const char *lane, int64_t now, const char *after_batch,
                     struct store_job *ret)
{
	struct store_pick p = {
	    .after_uid = STORE_UID_FIRST,
	    .last_batch = store_same_batch,
	    .ud = (void *)after_batch,
	};

	return store_next_ready_pick(s, lane, now, &p, ret);
}

int store_next_wakeup(struct store *s, const char *lane, int64_t now, int64_t *ret_ms)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_NEXT_WAKEUP, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, lane);
	sqlite3_bind_int64(st, 2, now);
	r = step_int(st, ret_ms);
	if (r == 0)
		*ret_ms = INT64_MAX;
	return r < 0 ? r : 0;
}

int store_unfinished_jobs(struct store *s, int64_t uid, int64_t *ret)
{
	return store_sum_of(s, S_UNFINISHED_JOBS, uid, ret);
}

static int backlog(struct store *s, enum stmt_id id, const char *lane, const char *batch,
                   int64_t *ret_jobs, int64_t *ret_tokens)
{
	sqlite3_stmt *st = NULL;
	int r, rc;

	r = store_prep(s, id, &st);
	if (r < 0)
		return r;
	if (lane)
		store_bind_text(st, 1, lane);
	if (batch)
		store_bind_text(st, 2, batch);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret_jobs = sqlite3_column_int64(st, 0);
		*ret_tokens = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : store_errno(rc);
}

int store_backlog(struct store *s, const char *lane, int64_t *ret_jobs, int64_t *ret_tokens)
{
	return backlog(s, lane ? S_BACKLOG : S_BACKLOG_ALL, lane, NULL, ret_jobs, ret_tokens);
}

int store_backlog_upto(struct store *s, const char *lane, const char *batch_id, int64_t *ret_jobs,
                       int64_t *ret_tokens)
{
	return backlog(s, S_BACKLOG_UPTO, lane, batch_id, ret_jobs, ret_tokens);
}

int store_batch_lanes(struct store *s, const char *batch_id, struct store_batch_lane *ret, int max,
                      int *ret_n)
{
	sqlite3_stmt *st = NULL;
	const char *lane;
	int r = store_prep(s, S_BATCH_LANES, &st), rc = SQLITE_DONE, n = 0;

	if (r < 0)
		return r;
	store_bind_text(st, 1, batch_id);
	sqlite3_bind_int(st, 2, max);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		lane = (const char *)sqlite3_column_text(st, 0);
		snprintf(ret[n].lane, sizeof(ret[n].lane), "%s", lane ? lane : "");
		ret[n].jobs = sqlite3_column_int64(st, 1);
		ret[n].first_not_before = sqlite3_column_int64(st, 2);
		ret[n].last_not_before = sqlite3_column_int64(st, 3);
		n++;
	}
	if (n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return store_errno(rc);
	*ret_n = n;
	return 0;
}

int store_batch_lane_counts(struct store *s, const char *batch_id, struct store_batch_lane *ret,
                            int max, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	const char *lane;
	int r = store_prep(s, S_BATCH_LANE_COUNTS, &st), rc = SQLITE_DONE, n = 0;

	if (r < 0)
		return r;
	store_bind_text(st, 1, batch_id);
	sqlite3_bind_int(st, 2, max);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		lane = (const char *)sqlite3_column_text(st, 0);
		memset(&ret[n], 0, sizeof(ret[n]));
		snprintf(ret[n].lane, sizeof(ret[n].lane), "%s", lane ? lane : "");
		ret[n].jobs = sqlite3_column_int64(st, 1);
		n++;
	}
	if (n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return store_errno(rc);
	*ret_n = n;
	return 0;
}
