/*
 * store-files.c - the files table: an uploaded file's row (inserted, found,
 * listed a page at a time, deleted), and the bytes a user's files hold. The
 * bytes themselves, on disk, are files.c's.
 */
#include "store/store-private.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void file_row(sqlite3_stmt *st, struct store_file *f)
{
	const char *t;

	memset(f, 0, sizeof(*f));
	snprintf(f->id, sizeof(f->id), "%s", (const char *)sqlite3_column_text(st, 0));
	f->uid = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
	f->created_at = sqlite3_column_int64(st, 2);
	t = (const char *)sqlite3_column_text(st, 3);
	snprintf(f->filename, sizeof(f->filename), "%s", t ? t : "");
	t = (const char *)sqlite3_column_text(st, 4);
	snprintf(f->purpose, sizeof(f->purpose), "%s", t ? t : "");
	f->bytes = sqlite3_column_int64(st, 5);
	f->lines = sqlite3_column_int64(st, 6);
}

int store_file_insert(struct store *s, const struct store_file *f)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_FILE_INSERT, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, f->id);
	store_bind_opt_int(st, 2, f->uid);
	sqlite3_bind_int64(st, 3, f->created_at);
	store_bind_text(st, 4, f->filename);
	store_bind_text(st, 5, f->purpose);
	sqlite3_bind_int64(st, 6, f->bytes);
	sqlite3_bind_int64(st, 7, f->lines);
	return store_run(s, st, NULL);
}

int store_file_get(struct store *s, const char *id, struct store_file *ret)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_FILE_GET, &st), rc;

	if (r < 0)
		return r;
	store_bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		file_row(st, ret);
	r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
	sqlite3_reset(st);
	return r;
}

int store_file_list(struct store *s, int64_t uid, const char *after, int limit,
                    struct store_file *ret, int *ret_n)
{
	sqlite3_stmt *st = NULL;
	int r = store_prep(s, S_FILE_LIST, &st), rc = SQLITE_DONE, n = 0;

	if (r < 0)
		return r;
	store_bind_opt_int(st, 1, uid);
	store_bind_text(st, 2, after);
	sqlite3_bind_int(st, 3, limit);
	while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
		file_row(st, &ret[n++]);
	if (n == limit)
		rc = SQLITE_DONE;
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return store_errno(rc);
	*ret_n = n;
	return 0;
}

int store_file_delete(struct store *s, const char *id)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0;
	int r = store_prep(s, S_FILE_DELETE, &st);

	if (r < 0)
		return r;
	store_bind_text(st, 1, id);
	r = store_run(s, st, &n);
	return r < 0 ? r : n == 0 ? -ENOENT : 0;
}

int store_files_bytes(struct store *s, int64_t uid, int64_t *ret)
{
	return store_sum_of(s, S_FILES_BYTES, uid, ret);
}
