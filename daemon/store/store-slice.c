/*
 * store-slice.c - a batch's jobs stored a slice at a time, in one INSERT a
 * slice. The slice's rows reach SQLite through llmq_slice, a table-valued
 * function over the caller's array, bound as a pointer (SQL text cannot
 * make one, so no statement but ours can read it): a statement's fixed cost
 * (cursors on the jobs table and its indexes, the trigger that keeps
 * job_counts, the foreign key's look-up of the batch, a statement journal)
 * is then paid once a slice, not once a job. The batch's own row and its
 * release are store-batches.c's.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* The pointer type sqlite3_bind_pointer() and sqlite3_value_pointer() agree on. */
#define SLICE_POINTER "llmq_slice"

/* llmq_slice's columns, in the order of its declaration below. */
enum {
	SLICE_LINE,
	SLICE_CUSTOM_ID,
	SLICE_URL,
	SLICE_MODEL,
	SLICE_LANE,
	SLICE_BODY,
	SLICE_EST_TOKENS,
	SLICE_ROWS, /* hidden: the argument, llmq_slice(?) */
};

struct slice_cursor {
	sqlite3_vtab_cursor base; /* first: SQLite's */
	const struct store_slice *sl;
	size_t i;
};

static int slice_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                         sqlite3_vtab **ret, char **err)
{
	sqlite3_vtab *v;
	int rc;

	rc = sqlite3_declare_vtab(db, "CREATE TABLE x(line, custom_id, url, model, lane, body, "
	                              "est_tokens, rows HIDDEN)");
	if (rc != SQLITE_OK)
		return rc;
	/* Not from a trigger or a view a database file might bring. */
	sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
	v = sqlite3_malloc(sizeof(*v));
	if (!v)
		return SQLITE_NOMEM;
	memset(v, 0, sizeof(*v));
	*ret = v;
	return SQLITE_OK;
}

static int slice_disconnect(sqlite3_vtab *v)
{
	sqlite3_free(v);
	return SQLITE_OK;
}

/* Only one plan: the rows given as the argument, in their order (by line). */
static int slice_best_index(sqlite3_vtab *v, sqlite3_index_info *info)
{
	int i;

	for (i = 0; i < info->nConstraint; i++) {
		if (info->aConstraint[i].iColumn != SLICE_ROWS)
			continue;
		if (info->aConstraint[i].op != SQLITE_INDEX_CONSTRAINT_EQ ||
		    !info->aConstraint[i].usable)
			return SQLITE_CONSTRAINT;
		info->aConstraintUsage[i].argvIndex = 1;
		info->aConstraintUsage[i].omit = 1;
		info->estimatedCost = 1;
		info->estimatedRows = 1000;
		info->orderByConsumed = info->nOrderBy == 1 &&
		                        info->aOrderBy[0].iColumn == SLICE_LINE &&
		                        !info->aOrderBy[0].desc;
		return SQLITE_OK;
	}
	return SQLITE_CONSTRAINT;
}

static int slice_open(sqlite3_vtab *v, sqlite3_vtab_cursor **ret)
{
	struct slice_cursor *c = sqlite3_malloc(sizeof(*c));

	if (!c)
		return SQLITE_NOMEM;
	memset(c, 0, sizeof(*c));
	*ret = &c->base;
	return SQLITE_OK;
}

static int slice_close(sqlite3_vtab_cursor *cur)
{
	sqlite3_free(cur);
	return SQLITE_OK;
}

static int slice_filter(sqlite3_vtab_cursor *cur, int idx, const char *idx_str, int argc,
                        sqlite3_value **argv)
{
	struct slice_cursor *c = (struct slice_cursor *)cur;

	c->sl = argc == 1 ? sqlite3_value_pointer(argv[0], SLICE_POINTER) : NULL;
	c->i = 0;
	return SQLITE_OK;
}

static int slice_next(sqlite3_vtab_cursor *cur)
{
	((struct slice_cursor *)cur)->i++;
	return SQLITE_OK;
}

static int slice_eof(sqlite3_vtab_cursor *cur)
{
	struct slice_cursor *c = (struct slice_cursor *)cur;

	return !c->sl || c->i >= c->sl->n;
}

static int slice_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
	struct slice_cursor *c = (struct slice_cursor *)cur;
	const struct store_job_row *row = &c->sl->rows[c->i];

	switch (col) {
	case SLICE_LINE:
		sqlite3_result_int64(ctx, row->line);
		break;
	case SLICE_CUSTOM_ID:
		sqlite3_result_text(ctx, row->custom_id, -1, SQLITE_STATIC);
		break;
	case SLICE_URL:
		sqlite3_result_text(ctx, row->url, -1, SQLITE_STATIC);
		break;
	case SLICE_MODEL:
		sqlite3_result_text(ctx, row->model, -1, SQLITE_STATIC);
		break;
	case SLICE_LANE:
		sqlite3_result_text(ctx, row->lane, -1, SQLITE_STATIC);
		break;
	case SLICE_BODY:
		sqlite3_result_text64(ctx, row->body, row->body_len, SQLITE_STATIC, SQLITE_UTF8);
		break;
	case SLICE_EST_TOKENS:
		sqlite3_result_int64(ctx, row->est_tokens);
		break;
	default:
		sqlite3_result_null(ctx);
		break;
	}
	return SQLITE_OK;
}

static int slice_rowid(sqlite3_vtab_cursor *cur, sqlite_int64 *ret)
{
	*ret = (sqlite_int64)((struct slice_cursor *)cur)->i;
	return SQLITE_OK;
}

/* Eponymous only (no xCreate): it exists on every connection, as a function. */
static const sqlite3_module slice_module = {
    .iVersion = 0,
    .xConnect = slice_connect,
    .xBestIndex = slice_best_index,
    .xDisconnect = slice_disconnect,
    .xOpen = slice_open,
    .xClose = slice_close,
    .xFilter = slice_filter,
    .xNext = slice_next,
    .xEof = slice_eof,
    .xColumn = slice_column,
    .xRowid = slice_rowid,
};

int store_slice_register(sqlite3 *db)
{
	return store_errno(sqlite3_create_module(db, SLICE_POINTER, &slice_module, NULL));
}

int store_jobs_insert(struct store *s, const struct store_slice *sl, int64_t now,
                      int64_t *ret_first)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0;
	int r;

	if (sl->n == 0)
		return -EINVAL;
	r = store_prep(s, S_JOBS_INSERT_SLICE, &st);
	if (r < 0)
		return r;
	store_bind_text(st, 1, sl->batch_id);
	store_bind_text(st, 2, sl->held ? "~" : "");
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, sl->priority);
	sqlite3_bind_pointer(st, 5, (void *)sl, SLICE_POINTER, NULL);
	r = store_run(s, st, &n);
	if (r < 0)
		return r;
	if (n != (int64_t)sl->n)
		return -EIO;
	/*
	 * The rows took consecutive ids, in order: the write lock is held, and
	 * each new row's id is the largest one plus one (SQLite's rule while
	 * the largest possible id is not taken).
	 */
	*ret_first = sqlite3_last_insert_rowid(s->db) - n + 1;
	return 0;
}
