/*
 * store-results.c - a batch's results in the Batch API's output format, a
 * page at a time, each line handed over in pieces: an answer stored as one
 * line of JSON is read in chunks straight from its row, never loaded whole.
 * The lines' SQL is RESULT_LINE in store-sql.c.
 */
#include "store/store-private.h"

#include <stdint.h>

/* A job's stored answer, handed to cb in chunks as read from its row. */
static int stream_response(struct store *s, int64_t job_id, store_line_cb cb, void *userdata)
{
	char chunk[64 * 1024];
	sqlite3_blob *blob = NULL;
	int total, off, n, r;

	r = store_errno(sqlite3_blob_open(s->db, "main", "jobs", "response", job_id, 0, &blob));
	if (r < 0)
		return r;
	total = sqlite3_blob_bytes(blob);
	for (off = 0; off < total && r == 0; off += n) {
		n = total - off < (int)sizeof(chunk) ? total - off : (int)sizeof(chunk);
		r = store_errno(sqlite3_blob_read(blob, chunk, n, off));
		if (r == 0)
			r = cb(userdata, chunk, (size_t)n, 0);
	}
	sqlite3_blob_close(blob);
	return r;
}

int store_results(struct store *s, const char *id, int64_t after, int limit, int errors,
                  store_line_cb cb, void *userdata, int64_t *ret_last, int *ret_count,
                  int *ret_more)
{
	sqlite3_stmt *st = NULL;
	int64_t last = after;
	int r, rc, count = 0;

	r = store_prep(s, errors ? S_RESULTS_ERR : S_RESULTS_OK, &st);
	if (r < 0)
		return r;
	store_bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, after);
	sqlite3_bind_int(st, 3, limit);
	*ret_more = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		last = sqlite3_column_int64(st, 0);
		r = cb(userdata, (const char *)sqlite3_column_text(st, 1),
		       (size_t)sqlite3_column_bytes(st, 1), 0);
		if (r == 0 && sqlite3_column_type(st, 2) == SQLITE_NULL)
			r = stream_response(s, last, cb, userdata);
		else if (r == 0)
			r = cb(userdata, (const char *)sqlite3_column_text(st, 2),
			       (size_t)sqlite3_column_bytes(st, 2), 0);
		if (r == 0)
			r = cb(userdata, (const char *)sqlite3_column_text(st, 3),
			       (size_t)sqlite3_column_bytes(st, 3), 1);
		if (r < 0)
			break;
		count++;
		if (r > 0) {
			*ret_more = 1; /* the caller has enough: the rest on the next page */
			r = 0;
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_reset(st);
	if (r == 0 && rc != SQLITE_DONE)
		r = store_errno(rc);
	if (r == 0) {
		*ret_last = last;
		*ret_count = count;
		if (count == limit)
			*ret_more = 1;
	}
	return r;
}
