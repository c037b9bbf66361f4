/*
 * route-files-upload.c - POST /v1/files: a multipart form streamed to a
 * temporary file as it arrives (upload.c parses it), within the user's quota
 * and the disk's floor, handed to writeback as it grows, then kept by
 * files.c and recorded in the files table on the writer thread, or removed.
 *
 * Ownership: a struct upload_ctx lives from the request's head until it is
 * answered or its caller left; its temporary file is removed unless it was
 * committed.
 */
#include "http/reply.h"
#include "http/route-files.h"
#include "http/upload.h"
#include "llmqd.h"
#include "log.h"
#include "protocol.h"
#include "service/quota.h"
#include "store/files.h"
#include "store/store.h"
#include "store/writer.h"
#include "engine/scheduler.h"
#include "timeutil.h"
#include "engine/health.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UPLOAD_FLUSH (8 << 20)

struct upload_keep;

struct upload_ctx {
	struct llmqd *d;
	struct hreq *req;
	int64_t uid;
	int fd;
	char tmp[64];
	int64_t written, flushed; /* bytes written; of them, handed to writeback */
	int64_t room;             /* bytes the user's quota leaves; -1: no quota */
	char quota[512];          /* why the quota refused it; "" while it did not */
	struct upload form;
	struct upload_keep *keep; /* once whole: being kept */
};

static void upload_free(struct upload_ctx *u)
{
	if (u->fd >= 0)
		files_discard(u->d->files, u->fd, u->tmp);
	free(u);
}

static void upload_gone(void *ud)
{
	struct upload_ctx *u = ud;

	log_info("HTTP upload from uid %lld: the caller left after %lld bytes; nothing kept",
	         (long long)u->uid, (long long)u->form.bytes);
	upload_free(u);
}

static int upload_write(void *ud, const char *p, size_t len)
{
	struct upload_ctx *u = ud;
	ssize_t n;

	if (u->room >= 0 && u->written + (int64_t)len > u->room) {
		quota_files(u->d, u->uid, u->written + (int64_t)len, u->quota, sizeof(u->quota));
		if (!u->quota[0])
			snprintf(u->quota, sizeof(u->quota),
			         "the upload passes files_max_bytes_per_user");
		return -EDQUOT;
	}
	while (len > 0) {
		n = write(u->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
		u->written += n;
	}
	/*
	 * Start writing back what has come so far, without waiting for it, so
	 * that the fsync once the file is whole waits for its tail only, not
	 * for 200 MB (the loop does not wait for the disk meanwhile).
	 */
	if (u->written - u->flushed >= UPLOAD_FLUSH) {
		sync_file_range(u->fd, u->flushed, u->written - u->flushed, SYNC_FILE_RANGE_WRITE);
		u->flushed = u->written;
	}
	return 0;
}

/* The error code of an upload refused with status. */
static const char *files_refusal_code(int status)
{
	switch (status) {
	case 413:
		return "file_too_large";
	case 507:
		return "insufficient_storage";
	case 0:
	case 400:
		return "invalid_file";
	default:
		return status >= 500 ? NULL : "invalid_file";
	}
}

static void upload_refuse(struct upload_ctx *u)
{
	struct hreq *req = u->req;

	hreq_on_gone(req, NULL, NULL);
	if (u->quota[0]) {
		hreq_on_gone(req, NULL, NULL);
		u->d->refusals[REFUSAL_TOO_LARGE]++;
		http_error(req, 507, "invalid_request_error", "quota_exceeded",
		           "%s; nothing was kept", u->quota);
		upload_free(u);
		return;
	}
	if (u->form.status == 413)
		u->d->refusals[REFUSAL_TOO_LARGE]++;
	else if (u->form.status < 500)
		u->d->refusals[REFUSAL_INVALID]++;
	http_error(req, u->form.status ? u->form.status : 400,
	           u->form.status >= 500 ? "server_error" : "invalid_request_error",
	           files_refusal_code(u->form.status), "%s; nothing was kept", u->form.err);
	upload_free(u);
}

static int upload_data(void *ud, struct hreq *req, const char *p, size_t len)
{
	struct upload_ctx *u = ud;

	if (!p) { /* the body stopped coming: the server answers */
		log_info("HTTP upload from uid %lld cut at its deadline after %lld bytes; nothing "
		         "kept",
		         (long long)u->uid, (long long)u->form.bytes);
		upload_free(u);
		return -1;
	}
	if (upload_feed(&u->form, p, len) < 0) {
		upload_refuse(u);
		return -1;
	}
	return 0;
}

/*
 * Keeping a whole upload: its bytes made durable (fsync), named, the folder
 * made durable, and its row written. Both wait for the disk, so they run on
 * the writer thread when there is one (the loop goes on meanwhile), in one
 * item; the answer comes once both are done. The item touches only the
 * files folder's descriptor, which never changes, and its own copies.
 */
struct upload_keep {
	struct writer_item item; /* first: the item is the keep */
	struct upload_ctx *u;
	struct files *files;
	int fd;
	char tmp[64];
	struct store_file f;
	int recorded; /* the file was kept; r is then the row's */
};

static int upload_keep_run(struct store *st, struct writer_item *it)
{
	struct upload_keep *k = (struct upload_keep *)it;
	int r = files_commit(k->files, k->fd, k->tmp, k->f.id);

	k->fd = -1; /* closed by commit, its temporary file renamed or removed */
	if (r < 0)
		return r;
	k->recorded = 1;
	writer_holds_lock(it, 1);
	r = store_file_insert(st, &k->f);
	writer_holds_lock(it, 0);
	if (r < 0)
		files_remove(k->files, k->f.id);
	return r;
}

static void upload_keep_done(struct writer_item *it, int r)
{
	struct upload_keep *k = (struct upload_keep *)it;
	struct upload_ctx *u = k->u;
	struct hreq *req;

	if (!u) { /* the caller left meanwhile: what was kept stays kept */
		free(k);
		return;
	}
	req = u->req;
	hreq_on_gone(req, NULL, NULL);
	if (r < 0 && !k->recorded) {
		log_err("HTTP upload: cannot keep the file: %s", strerror(-r));
		http_error(req, r == -ENOSPC || r == -EDQUOT ? 507 : 500, "server_error",
		           files_refusal_code(r == -ENOSPC || r == -EDQUOT ? 507 : 500),
		           "llmqd cannot keep the file: %s; nothing was kept", strerror(-r));
	} else if (r < 0) {
		http_store_error(u->d, req, "record the file (nothing was kept)", r);
	} else {
		log_info("file %s: %lld bytes, %lld lines, \"%s\", from uid %lld", k->f.id,
		         (long long)k->f.bytes, (long long)k->f.lines, k->f.filename,
		         (long long)u->uid);
		http_json(req, 200, route_files_object(&k->f));
	}
	upload_free(u);
	free(k);
}

/* The caller left while its file was being kept: nobody is answered. */
static void upload_keep_gone(void *ud)
{
	struct upload_ctx *u = ud;

	log_info("HTTP upload from uid %lld: the caller left while its file was kept",
	         (long long)u->uid);
	u->keep->u = NULL;
	upload_free(u);
}

static void upload_end(void *ud, struct hreq *req)
{
	struct upload_ctx *u = ud;
	struct writer *w = sched_writer(u->d->sched);
	struct upload_keep *k;
	int r;

	if (upload_finish(&u->form) < 0) {
		upload_refuse(u);
		return;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		upload_free(u);
		return;
	}
	r = files_new_id(k->f.id);
	if (r < 0) {
		free(k);
		http_error(req, 500, "server_error", NULL,
		           "llmqd cannot name the file: %s; nothing was kept", strerror(-r));
		upload_free(u);
		return;
	}
	k->item.run = upload_keep_run;
	k->item.done = upload_keep_done;
	k->u = u;
	k->files = u->d->files;
	k->fd = u->fd;
	u->fd = -1; /* the keep's now */
	snprintf(k->tmp, sizeof(k->tmp), "%s", u->tmp);
	k->f.uid = u->uid;
	k->f.created_at = time_wall_ms();
	snprintf(k->f.filename, sizeof(k->f.filename), "%s", u->form.filename);
	snprintf(k->f.purpose, sizeof(k->f.purpose), "%s", u->form.purpose);
	k->f.bytes = u->form.bytes;
	k->f.lines = u->form.lines;
	u->keep = k;
	hreq_on_gone(req, upload_keep_gone, u);
	if (w) {
		writer_submit(w, &k->item);
		return;
	}
	upload_keep_done(&k->item, upload_keep_run(u->d->store, &k->item));
}

static const struct hreq_sink upload_sink = {
    .data = upload_data,
    .end = upload_end,
};

void route_files_upload(struct llmqd *d, struct hreq *req, int64_t uid)
{
	struct upload_ctx *u = calloc(1, sizeof(*u));
	char why[512];
	int64_t length;
	int r;

	if (!u) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	u->d = d;
	u->req = req;
	u->uid = uid;
	u->fd = -1;
	u->room = -1;
	if (health_disk(d, why, sizeof(why))) {
		d->refusals[REFUSAL_TOO_LARGE]++;
		http_error(req, 507, "server_error", "insufficient_storage", "%s; nothing was kept",
		           why);
		free(u);
		return;
	}
	/* What the head says comes (the form is a little more than its file). */
	length = hreq_content_length(req);
	r = quota_files(d, uid, length > 0 ? length : 0, why, sizeof(why));
	if (r == -EDQUOT) {
		d->refusals[REFUSAL_TOO_LARGE]++;
		http_error(req, 507, "invalid_request_error", "quota_exceeded",
		           "%s; nothing was kept", why);
		free(u);
		return;
	}
	if (r < 0) {
		http_store_error(d, req, "count your uploaded files", r);
		free(u);
		return;
	}
	if (d->cfg->files_max_bytes_per_user > 0) {
		int64_t held = 0;

		if (store_files_bytes(d->store, uid, &held) == 0)
			u->room = d->cfg->files_max_bytes_per_user - held;
	}
	if (upload_init(&u->form, hreq_header(req, "Content-Type"), (int64_t)LLMQ_MAX_BATCH_BYTES,
	                LLMQ_MAX_BATCH_LINES, upload_write, u) < 0) {
		upload_refuse(u);
		return;
	}
	r = files_create_temp(d->files, u->tmp, sizeof(u->tmp), &u->fd);
	if (r < 0) {
		http_error(req, 500, "server_error", NULL, "llmqd cannot create a file in %s: %s",
		           files_dir(d->files), strerror(-r));
		free(u);
		return;
	}
	hreq_on_gone(req, upload_gone, u);
	hreq_stream_body(req, &upload_sink, u);
}
