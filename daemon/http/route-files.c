/*
 * route-files.c - the Files API's routes: GET /v1/files, GET
 * /v1/files/{id}, GET /v1/files/{id}/content, DELETE /v1/files/{id}, and
 * POST /v1/files handed to route-files-upload.c.
 *
 * Uploaded files are kept by files.c and the files table. A batch's output
 * and error files are not kept: file-output-<batch> and file-errors-<batch>
 * are the lines `llmq results` (and `--errors`) writes, made from the jobs
 * table as they are read.
 *
 * Ownership: a struct download lives until the content is sent or the
 * caller left; a struct file_delete until the writer is done with it,
 * whether or not its caller waited.
 */
#include "http/caller.h"
#include "http/reply.h"
#include "http/route-files.h"
#include "http/route.h"
#include "llmqd.h"
#include "log.h"
#include "store/files.h"
#include "store/store.h"
#include "store/writer.h"
#include "engine/scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/buffer.h>

#define DOWNLOAD_CHUNK (64 * 1024)
#define DOWNLOAD_HIGH (256 * 1024) /* unsent bytes past which the download waits */
#define RESULTS_PAGE 256
#define FILES_LIST_MAX 10000

struct download {
	struct llmqd *d;
	struct hreq *req;
	int fd;                /* an uploaded file, or -1 */
	char batch[24];        /* an output or error file: its batch */
	int errors;            /* the error file */
	int64_t after;         /* the last job id sent */
	int more;              /* a next results page may hold more */
	int held;              /* the batch is held from retention (store_batch_hold) */
	int64_t left;          /* an uploaded file: its bytes still to send */
	struct evbuffer *line; /* a results page's lines, before they go out */
};

/* The file object of the hosted API. */
static json_object *file_object(const char *id, int64_t bytes, int64_t created_ms,
                                const char *filename, const char *purpose)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "object", json_object_new_string("file"));
	json_object_object_add(o, "bytes", json_object_new_int64(bytes));
	json_object_object_add(o, "created_at", json_object_new_int64(created_ms / 1000));
	json_object_object_add(o, "expires_at", NULL);
	json_object_object_add(o, "filename", json_object_new_string(filename));
	json_object_object_add(o, "purpose", json_object_new_string(purpose));
	json_object_object_add(o, "status", json_object_new_string("processed"));
	json_object_object_add(o, "status_details", NULL);
	return o;
}

json_object *route_files_object(const struct store_file *f)
{
	return file_object(f->id, f->bytes, f->created_at, f->filename, f->purpose);
}

static void not_found(struct hreq *req, const char *id)
{
	http_error(req, 404, "invalid_request_error", "not_found",
	           "no file %.64s among yours; GET /v1/files lists them", id);
}

/* ---- output and error files: file-output-<batch>, file-errors-<batch> ---- */

#define OUTPUT_PREFIX "file-output-"
#define ERRORS_PREFIX "file-errors-"

/* Which batch a made file id names: 1 (errors says which), or 0. */
static int made_file(const char *id, char *batch, size_t len, int *errors)
{
	const char *b = NULL;

	if (strncmp(id, OUTPUT_PREFIX, strlen(OUTPUT_PREFIX)) == 0)
		b = id + strlen(OUTPUT_PREFIX), *errors = 0;
	else if (strncmp(id, ERRORS_PREFIX, strlen(ERRORS_PREFIX)) == 0)
		b = id + strlen(ERRORS_PREFIX), *errors = 1;
	if (!b || strlen(b) >= len)
		return 0;
	snprintf(batch, len, "%s", b);
	return 1;
}

static int64_t json_int(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static int count_line(void *ud, const char *bytes, size_t len, int end)
{
	int64_t *n = ud;

	*n += (int64_t)len + (end ? 1 : 0);
	return 0;
}

/* The size of a made file: its lines are made to count them. */
static int made_file_bytes(struct llmqd *d, const char *batch, int errors, int64_t *ret)
{
	int64_t after = 0, n = 0;
	int count, more = 1, r = 0;

	while (more && r == 0)
		r = store_results(d->store, batch, after, RESULTS_PAGE, errors, count_line, &n,
		                  &after, &count, &more);
	*ret = n;
	return r;
}

static void made_file_get(struct llmqd *d, struct hreq *req, const char *id, int64_t uid)
{
	char batch[24];
	json_object *b = NULL;
	int64_t bytes = 0;
	int errors = 0, r;

	if (!made_file(id, batch, sizeof(batch), &errors) ||
	    http_owned_batch(d, batch, uid, &b) < 0) {
		not_found(req, id);
		return;
	}
	r = made_file_bytes(d, batch, errors, &bytes);
	if (r < 0) {
		json_object_put(b);
		http_store_error(d, req, "read the batch's results", r);
		return;
	}
	http_json(req, 200,
	          file_object(id, bytes,
	                      json_int(b, "finished_at") ? json_int(b, "finished_at")
	                                                 : json_int(b, "created_at"),
	                      errors ? "batch_errors.jsonl" : "batch_output.jsonl",
	                      errors ? "batch_error" : "batch_output"));
	json_object_put(b);
}

/* ---- GET /v1/files/{id}/content ---- */

static void download_free(struct download *dl)
{
	if (dl->held)
		store_batch_unhold(dl->d->store, dl->batch);
	if (dl->fd >= 0)
		close(dl->fd);
	if (dl->line)
		evbuffer_free(dl->line);
	free(dl);
}

static void download_gone(void *ud)
{
	download_free(ud);
}

static int add_line(void *ud, const char *bytes, size_t len, int end)
{
	struct download *dl = ud;

	if (evbuffer_add(dl->line, bytes, len) < 0 || (end && evbuffer_add(dl->line, "\n", 1) < 0))
		return -ENOMEM;
	return 0;
}

/*
 * Send until the caller's socket holds DOWNLOAD_HIGH unsent bytes (the
 * drain callback comes back here) or the content ended.
 */
static void download_pump(void *ud)
{
	struct download *dl = ud;
	char buf[DOWNLOAD_CHUNK];
	size_t unsent = 0;
	json_object *b = NULL;
	ssize_t n;
	int count, r, cut = 0;

	while (unsent < DOWNLOAD_HIGH) {
		if (dl->fd >= 0) {
			if (dl->left <= 0)
				break;
			n = read(dl->fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				/* Read failed, or the file was deleted (its bytes freed) under us.
				 */
				log_err("HTTP download of a file: %s with %lld bytes still to "
				        "send; the "
				        "download is cut",
				        n < 0 ? strerror(errno) : "the file ended",
				        (long long)dl->left);
				cut = 1;
				break;
			}
			dl->left -= n;
			unsent = hreq_chunk(dl->req, buf, (size_t)n);
			continue;
		}
		if (!dl->more) {
			/* The last page: the batch must still be there for it to be whole. */
			if (store_batch_brief(dl->d->store, dl->batch, &b) < 0) {
				log_err(
				    "HTTP download of batch %s: the batch went while it was read; "
				    "the download is cut",
				    dl->batch);
				cut = 1;
			}
			json_object_put(b);
			break;
		}
		r = store_results(dl->d->store, dl->batch, dl->after, RESULTS_PAGE, dl->errors,
		                  add_line, dl, &dl->after, &count, &dl->more);
		if (r < 0) {
			log_err("HTTP download of batch %s: %s; the download is cut", dl->batch,
			        store_errmsg(dl->d->store));
			cut = 1;
			break;
		}
		while (evbuffer_get_length(dl->line) > 0) {
			struct evbuffer_iovec v;

			evbuffer_peek(dl->line, -1, NULL, &v, 1);
			unsent = hreq_chunk(dl->req, v.iov_base, v.iov_len);
			evbuffer_drain(dl->line, v.iov_len);
		}
	}
	if (unsent >= DOWNLOAD_HIGH)
		return;
	hreq_on_gone(dl->req, NULL, NULL);
	hreq_on_drain(dl->req, NULL, NULL);
	if (cut)
		hreq_abort(dl->req); /* the caller sees an error, not a short file */
	else
		hreq_end(dl->req);
	download_free(dl);
}

static void file_content(struct llmqd *d, struct hreq *req, const char *id, int64_t uid)
{
	struct download *dl = calloc(1, sizeof(*dl));
	struct store_file f;
	json_object *b = NULL;
	int r;

	if (!dl || !(dl->line = evbuffer_new())) {
		free(dl);
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	dl->d = d;
	dl->req = req;
	dl->fd = -1;
	if (made_file(id, dl->batch, sizeof(dl->batch), &dl->errors)) {
		if (http_owned_batch(d, dl->batch, uid, &b) < 0) {
			not_found(req, id);
			download_free(dl);
			return;
		}
		json_object_put(b);
		dl->more = 1;
		/* Retention leaves a batch alone while its results are read. */
		if (store_batch_hold(d->store, dl->batch) < 0) {
			download_free(dl);
			http_error(req, 503, "server_error", NULL,
			           "llmqd ran out of memory; try again");
			return;
		}
		dl->held = 1;
	} else {
		r = store_file_get(d->store, id, &f);
		if (r == 0 && files_deleting(d->files, id))
			r = -ENOENT;
		if (r == -ENOENT || (r == 0 && !http_owns(uid, f.uid))) {
			not_found(req, id);
			download_free(dl);
			return;
		}
		if (r == 0)
			r = dl->fd = files_open_read(d->files, id);
		if (r == -ENOENT) { /* its bytes went a moment ago */
			not_found(req, id);
			download_free(dl);
			return;
		}
		dl->left = f.bytes;
		if (r < 0) {
			download_free(dl);
			http_store_error(d, req, "read the file", r);
			return;
		}
	}
	hreq_add_header(req, "Content-Type", "application/jsonl");
	hreq_start(req, 200);
	hreq_on_gone(req, download_gone, dl);
	hreq_on_drain(req, download_pump, dl);
	download_pump(dl);
}

/* ---- GET /v1/files, GET and DELETE /v1/files/{id} ---- */

static void files_list(struct llmqd *d, struct hreq *req, int64_t uid)
{
	char v[64], after[64] = "";
	struct store_file *rows;
	json_object *o, *data;
	int limit = FILES_LIST_MAX, n = 0, i, r, first = -1, last = -1;

	if (hreq_param(req, "limit", v, sizeof(v)) >= 0) {
		limit = atoi(v);
		if (limit < 1 || limit > FILES_LIST_MAX) {
			http_error(req, 400, "invalid_request_error", "invalid_limit",
			           "limit must be 1..%d", FILES_LIST_MAX);
			return;
		}
	}
	if (hreq_param(req, "purpose", v, sizeof(v)) >= 0 && strcmp(v, "batch") != 0) {
		http_json(req, 200,
		          json_tokener_parse("{\"object\":\"list\",\"data\":[],"
		                             "\"first_id\":null,\"last_id\":null,"
		                             "\"has_more\":false}"));
		return;
	}
	hreq_param(req, "after", after, sizeof(after));
	rows = calloc((size_t)limit + 1, sizeof(*rows));
	if (!rows) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	r = store_file_list(d->store, uid, after[0] ? after : NULL, limit + 1, rows, &n);
	if (r < 0) {
		free(rows);
		http_store_error(d, req, "list the files", r);
		return;
	}
	o = json_object_new_object();
	data = json_object_new_array();
	/* A file whose deletion is not finished (files.h) is gone already. */
	for (i = 0; o && data && i < n && i < limit; i++) {
		if (files_deleting(d->files, rows[i].id))
			continue;
		json_object_array_add(data, route_files_object(&rows[i]));
		if (first < 0)
			first = i;
		last = i;
	}
	if (o && data) {
		json_object_object_add(o, "object", json_object_new_string("list"));
		json_object_object_add(o, "data", data);
		json_object_object_add(o, "first_id",
		                       first >= 0 ? json_object_new_string(rows[first].id) : NULL);
		json_object_object_add(o, "last_id",
		                       last >= 0 ? json_object_new_string(rows[last].id) : NULL);
		json_object_object_add(o, "has_more", json_object_new_boolean(n > limit));
		data = NULL;
	}
	json_object_put(data);
	free(rows);
	http_json(req, 200, o);
}

static void file_get(struct llmqd *d, struct hreq *req, const char *id, int64_t uid)
{
	struct store_file f;
	int r = store_file_get(d->store, id, &f);

	if (r == 0 && files_deleting(d->files, id))
		r = -ENOENT;
	if (r == -ENOENT || (r == 0 && !http_owns(uid, f.uid))) {
		made_file_get(d, req, id, uid);
		return;
	}
	if (r < 0) {
		http_store_error(d, req, "read the file's record", r);
		return;
	}
	http_json(req, 200, route_files_object(&f));
}

/*
 * Deleting a file: the bytes first, through a tombstone (files.h), which
 * works on a full disk, where deleting the row first failed, and frees the
 * room the row's deletion needs; a crash after it is finished by the
 * sweep. The fsync and the truncation wait for the disk, and the row's
 * deletion for the database: they run on the writer thread when there is
 * one, in one item, and the answer comes once they are done.
 */
struct file_delete {
	struct writer_item item; /* first: the item is the deletion */
	struct llmqd *d;
	struct hreq *req; /* NULL once its caller left */
	struct files *files;
	char id[128];
	int row;  /* the row's deletion: 0 or -errno */
	int left; /* the tombstone stays for the sweep */
};

static int file_delete_run(struct store *st, struct writer_item *it)
{
	struct file_delete *k = (struct file_delete *)it;
	int r = files_tombstone(k->files, k->id);

	if (r < 0)
		return r;
	writer_holds_lock(it, 1);
	k->row = store_file_delete(st, k->id);
	writer_holds_lock(it, 0);
	k->left = (k->row < 0 && k->row != -ENOENT) || files_unlink_tombstone(k->files, k->id) < 0;
	return 0;
}

static void file_delete_done(struct writer_item *it, int r)
{
	struct file_delete *k = (struct file_delete *)it;
	struct hreq *req = k->req;
	json_object *o;

	files_delete_end(k->files, r == 0 && k->left);
	if (r < 0 && r != -ENOENT)
		log_err("file %s: cannot delete its bytes: %s", k->id, strerror(-r));
	else if (r == 0 && k->row < 0 && k->row != -ENOENT)
		log_warn("file %s: its bytes are deleted; its record goes once the database takes "
		         "writes again (%s)",
		         k->id, strerror(-k->row));
	if (!req)
		goto out;
	hreq_on_gone(req, NULL, NULL);
	if (r == -ENOENT) { /* deleted meanwhile */
		not_found(req, k->id);
		goto out;
	}
	if (r < 0) {
		http_error(req, 500, "server_error", NULL,
		           "llmqd cannot delete the file's bytes in %s: %s; the file is kept",
		           files_dir(k->files), strerror(-r));
		goto out;
	}
	o = json_object_new_object();
	if (o) {
		json_object_object_add(o, "id", json_object_new_string(k->id));
		json_object_object_add(o, "object", json_object_new_string("file"));
		json_object_object_add(o, "deleted", json_object_new_boolean(1));
	}
	http_json(req, 200, o);
out:
	free(k);
}

static void file_delete_gone(void *ud)
{
	struct file_delete *k = ud;

	k->req = NULL; /* the deletion goes on; nobody is answered */
}

static void file_delete(struct llmqd *d, struct hreq *req, const char *id, int64_t uid)
{
	struct writer *w = sched_writer(d->sched);
	struct file_delete *k;
	struct store_file f;
	char batch[24];
	int errors, r = store_file_get(d->store, id, &f);

	if (r == 0 && files_deleting(d->files, id))
		r = -ENOENT;

	if (r == -ENOENT && made_file(id, batch, sizeof(batch), &errors)) {
		http_error(req, 400, "invalid_request_error", "not_deletable",
		           "%.64s is made from batch %s's jobs when read; it goes when the batch "
		           "does (retention)",
		           id, batch);
		return;
	}
	if (r == -ENOENT || (r == 0 && !http_owns(uid, f.uid))) {
		not_found(req, id);
		return;
	}
	if (r < 0) {
		http_store_error(d, req, "read the file's record", r);
		return;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	k->item.run = file_delete_run;
	k->item.done = file_delete_done;
	k->d = d;
	k->req = req;
	k->files = d->files;
	snprintf(k->id, sizeof(k->id), "%s", id);
	files_delete_begin(d->files);
	hreq_on_gone(req, file_delete_gone, k);
	if (w)
		writer_submit(w, &k->item);
	else
		file_delete_done(&k->item, file_delete_run(d->store, &k->item));
}

static void files_route(struct llmqd *d, struct hreq *req, const char *path)
{
	const char *m = hreq_method(req), *rest;
	char id[128];
	int64_t uid;
	size_t n;
	int r;

	r = http_caller(d, req, 1, &uid);
	if (r < 0) {
		http_refuse_caller(req, r);
		return;
	}
	if (strcmp(path, "/v1/files") == 0) {
		if (strcmp(m, "POST") == 0)
			route_files_upload(d, req, uid);
		else if (strcmp(m, "GET") == 0)
			files_list(d, req, uid);
		else
			http_error(req, 405, "invalid_request_error", NULL,
			           "/v1/files takes POST (upload) and GET (list)");
		return;
	}
	rest = path + 10;
	n = strcspn(rest, "/");
	if (n == 0 || n >= sizeof(id)) {
		not_found(req, rest);
		return;
	}
	memcpy(id, rest, n);
	id[n] = '\0';
	rest += n;
	if (strcmp(rest, "/content") == 0 && strcmp(m, "GET") == 0)
		file_content(d, req, id, uid);
	else if (*rest == '\0' && strcmp(m, "GET") == 0)
		file_get(d, req, id, uid);
	else if (*rest == '\0' && strcmp(m, "DELETE") == 0)
		file_delete(d, req, id, uid);
	else
		http_error(req, 405, "invalid_request_error", NULL,
		           "/v1/files/{id} takes GET and DELETE; /v1/files/{id}/content takes GET");
}

const struct http_route route_files[] = {
    {.path = "/v1/files", .tree = 1, .handle = files_route},
    {0},
};
