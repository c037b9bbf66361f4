/*
 * store-usage.c - the accounting: interactive calls' records (the calls
 * table), and what the tries of both kinds add up to as the triggers keep
 * it (usage_daily, usage_quarters, usage_totals): a day's usage by user,
 * usage reports, the unpriced models, the metrics' totals, the budgets
 * spent; and the recent tries that ended with an error. A batch job's
 * attempts are written by store-jobs.c.
 */
#include "store/store-private.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int store_call_insert(struct store *s, const struct store_call *c)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_CALL_INSERT, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, c->call_id);
	sqlite3_bind_int(st, 2, c->try_no);
	store_bind_text(st, 3, c->lane);
	store_bind_text(st, 4, c->endpoint);
	store_bind_text(st, 5, c->model);
	sqlite3_bind_int(st, 6, c->stream);
	store_bind_opt_int(st, 7, c->uid);
	sqlite3_bind_int64(st, 8, c->started_at);
	sqlite3_bind_int64(st, 9, c->ended_at);
	store_bind_text(st, 10, c->outcome);
	store_bind_opt_int(st, 11, c->status_code > 0 ? c->status_code : -1);
	store_bind_text(st, 12, c->error_code);
	store_bind_opt_int(st, 13, c->retry_after_ms);
	sqlite3_bind_int64(st, 14, c->tokens_charged);
	store_bind_opt_int(st, 15, c->tokens_used);
	store_bind_opt_int(st, 16, c->gate_wait_ms);
	store_bind_opt_int(st, 17, c->latency_ms);
	store_bind_text(st, 18, c->request_id);
	store_bind_text(st, 19, c->request_body);
	store_bind_text(st, 20, c->response_body);
	store_bind_opt_int(st, 21, c->prompt_tokens);
	store_bind_opt_int(st, 22, c->cached_tokens);
	store_bind_opt_int(st, 23, c->completion_tokens);
	store_bind_opt_int(st, 24, c->cost_nusd);
	return store_run(s, st, NULL);
}

int store_usage_day(struct store *s, const char *day, struct store_usage *ret, int max, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_USAGE_DAY, &st), rc = SQLITE_DONE, n = 0;

	if (r < 0)
		return r;
	store_bind_text(st, 1, day);
	sqlite3_bind_int(st, 2, max);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret[n] = (struct store_usage){
		    .uid = sqlite3_column_int64(st, 0),
		    .requests = sqlite3_column_int64(st, 1),
		    .tokens = sqlite3_column_int64(st, 2),
		    .failed = sqlite3_column_int64(st, 3),
		    .rate_limited = sqlite3_column_int64(st, 4),
		    .cost_nusd = sqlite3_column_int64(st, 5),
		    .unpriced_tokens = sqlite3_column_int64(st, 6),
		};
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

static void column_copy(sqlite3_stmt *st, int i, char *buf, size_t len)
{
	const char *v = (const char *)sqlite3_column_text(st, i);

	snprintf(buf, len, "%s", v ? v : "");
}

static void usage_bind(sqlite3_stmt *st, const struct store_usage_query *q)
{
	store_bind_text(st, 1, q->pieces_json);
	sqlite3_bind_int(st, 2, q->by_period);
	sqlite3_bind_int(st, 3, q->by_user);
	sqlite3_bind_int(st, 4, q->by_model);
	sqlite3_bind_int(st, 5, q->by_lane);
	sqlite3_bind_int(st, 6, q->by_class);
	sqlite3_bind_int(st, 7, q->all);
	sqlite3_bind_int64(st, 8, q->uid);
}

/* Step st, each row into row by fill, to cb; 0, or the first error. */
static int usage_rows(sqlite3_stmt *st, void (*fill)(sqlite3_stmt *, struct store_usage_row *),
                      store_usage_cb cb, void *userdata)
{
	struct store_usage_row row;
	int r = 0, rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&row, 0, sizeof(row));
		fill(st, &row);
		r = cb(userdata, &row);
		if (r < 0)
			break;
	}
	sqlite3_reset(st);
	if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		r = store_errno(rc);
	return r;
}

/* Columns from first on: requests .. rate_limited. */
static void usage_figures(sqlite3_stmt *st, int first, struct store_usage_row *r)
{
	int64_t *f[] = {&r->requests,          &r->prompt_tokens, &r->cached_tokens,
	                &r->completion_tokens, &r->tokens,        &r->cost_nusd,
	                &r->unpriced_tokens,   &r->failed,        &r->rate_limited};
	size_t i;

	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		*f[i] = sqlite3_column_int64(st, first + (int)i);
}

static void usage_report_row(sqlite3_stmt *st, struct store_usage_row *r)
{
	r->period = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
	r->uid = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
	column_copy(st, 2, r->model, sizeof(r->model));
	column_copy(st, 3, r->lane, sizeof(r->lane));
	column_copy(st, 4, r->class_name, sizeof(r->class_name));
	usage_figures(st, 5, r);
}

int store_usage_report(struct store *s, const struct store_usage_query *q, store_usage_cb cb,
                       void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_USAGE_REPORT, &st);

	if (r < 0)
		return r;
	usage_bind(st, q);
	return usage_rows(st, usage_report_row, cb, userdata);
}

static void usage_unpriced_row(sqlite3_stmt *st, struct store_usage_row *r)
{
	r->period = r->uid = -1;
	column_copy(st, 0, r->model, sizeof(r->model));
	r->unpriced_tokens = sqlite3_column_int64(st, 1);
}

int store_usage_unpriced(struct store *s, const struct store_usage_query *q, store_usage_cb cb,
                         void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_USAGE_UNPRICED, &st);

	if (r < 0)
		return r;
	usage_bind(st, q);
	return usage_rows(st, usage_unpriced_row, cb, userdata);
}

static void usage_total_row(sqlite3_stmt *st, struct store_usage_row *r)
{
	r->period = -1;
	r->uid = sqlite3_column_int64(st, 0);
	column_copy(st, 1, r->class_name, sizeof(r->class_name));
	column_copy(st, 2, r->lane, sizeof(r->lane));
	column_copy(st, 3, r->model, sizeof(r->model));
	usage_figures(st, 4, r);
}

int store_usage_totals(struct store *s, store_usage_cb cb, void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_USAGE_TOTALS, &st);

	return r < 0 ? r : usage_rows(st, usage_total_row, cb, userdata);
}

int store_budget_spent(struct store *s, const char *day, const char *month_first,
                       const char *month_next, store_spent_cb cb, void *userdata)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_BUDGET_SPENT, &st), rc;

	if (r < 0)
		return r;
	store_bind_text(st, 1, day);
	store_bind_text(st, 2, month_first);
	store_bind_text(st, 3, month_next);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = cb(userdata, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
		       sqlite3_column_int64(st, 2));
		if (r < 0) {
			sqlite3_reset(st);
			return r;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : store_errno(rc);
}

int store_recent_errors(struct store *s, int64_t uid, int64_t since, int scan,
                        struct store_error *ret, int max, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_RECENT_ERRORS, &st), rc = SQLITE_DONE, n = 0;

	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, uid);
	sqlite3_bind_int(st, 2, max);
	sqlite3_bind_int(st, 3, scan);
	sqlite3_bind_int64(st, 4, since);
	while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_error *e = &ret[n++];

		column_copy(st, 0, e->class_name, sizeof(e->class_name));
		column_copy(st, 1, e->lane, sizeof(e->lane));
		e->at = sqlite3_column_int64(st, 2);
		e->status_code = sqlite3_column_int(st, 3);
		column_copy(st, 4, e->code, sizeof(e->code));
		column_copy(st, 5, e->message, sizeof(e->message));
		column_copy(st, 6, e->batch_id, sizeof(e->batch_id));
		column_copy(st, 7, e->custom_id, sizeof(e->custom_id));
		e->uid =
		    sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 8);
		column_copy(st, 9, e->model, sizeof(e->model));
	}
	if (n == max)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return store_errno(rc);
	*ret_n = n;
	return 0;
}
