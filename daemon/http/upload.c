/*
 * upload.c - see upload.h.
 */
#include "http/upload.h"
#include "protocol.h"
#include "text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum {
	UP_NONE,
	UP_PURPOSE,
	UP_FILE,
	UP_OTHER, /* a field the hosted API may send (expires_after...): read, bounded, dropped */
};

static int fail(struct upload *u, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct upload *u, int status, const char *fmt, ...)
{
	va_list ap;

	if (u->status == 0) { /* the first failure is the one to tell */
		va_start(ap, fmt);
		vsnprintf(u->err, sizeof(u->err), fmt, ap);
		va_end(ap);
		u->status = status;
	}
	return -EINVAL;
}

static int part_begin(void *ud, const struct multipart_part *p)
{
	struct upload *u = ud;

	u->field_len = 0;
	if (strcmp(p->name, "file") == 0) {
		if (u->has_file)
			return fail(u, 400, "the form has two \"file\" parts; send one file");
		u->has_file = 1;
		u->part = UP_FILE;
		if (p->filename_len > LLMQ_MAX_NAME)
			return fail(
			    u, 400,
			    "the file's name is %zu bytes long; at most %d are kept: rename "
			    "the file",
			    p->filename_len, LLMQ_MAX_NAME);
		snprintf(u->filename, sizeof(u->filename), "%s",
		         p->filename[0] ? p->filename : "upload.jsonl");
		/* Shown by llmq list and status, to root too: no escape sequences. */
		text_clean(u->filename);
	} else if (strcmp(p->name, "purpose") == 0) {
		if (u->has_purpose)
			return fail(u, 400, "the form has two \"purpose\" fields");
		u->has_purpose = 1;
		u->part = UP_PURPOSE;
	} else {
		u->part = UP_OTHER;
	}
	return 0;
}

static int part_data(void *ud, const char *p, size_t len)
{
	struct upload *u = ud;
	size_t i;
	int r;

	switch (u->part) {
	case UP_FILE:
		if ((uint64_t)u->bytes + len > (uint64_t)u->max_bytes)
			return fail(u, 413,
			            "the file is larger than %lld MiB, the most a batch input file "
			            "may be; split it into several files",
			            (long long)(u->max_bytes >> 20));
		for (i = 0; i < len; i++)
			if (p[i] == '\n')
				u->lines++;
		if (u->lines > u->max_lines)
			return fail(
			    u, 400,
			    "the file has more than %lld lines, the most a batch input file "
			    "may have; split it into several files",
			    (long long)u->max_lines);
		u->bytes += (int64_t)len;
		if (len)
			u->last_nl = p[len - 1] == '\n';
		r = u->write(u->wud, p, len);
		if (r < 0)
			return fail(u, r == -ENOSPC || r == -EDQUOT ? 507 : 500,
			            "llmqd cannot keep the file: %s", strerror(-r));
		return 0;
	case UP_PURPOSE:
		if (u->field_len + len >= sizeof(u->purpose))
			return fail(u, 400,
			            "the \"purpose\" field is too long; it must be \"batch\"");
		memcpy(u->purpose + u->field_len, p, len);
		u->field_len += len;
		u->purpose[u->field_len] = '\0';
		return 0;
	default:
		u->field_len += len;
		if (u->field_len > UPLOAD_MAX_FIELD)
			return fail(u, 400,
			            "a form field other than \"file\" is longer than %d bytes",
			            UPLOAD_MAX_FIELD);
		return 0;
	}
}

static int part_end(void *ud)
{
	struct upload *u = ud;

	u->part = UP_NONE;
	return 0;
}

static const struct multipart_cb form_cb = {
    .part_begin = part_begin,
    .part_data = part_data,
    .part_end = part_end,
};

int upload_init(struct upload *u, const char *content_type, int64_t max_bytes, int64_t max_lines,
                int (*write)(void *ud, const char *p, size_t len), void *wud)
{
	char boundary[MULTIPART_MAX_BOUNDARY + 1];

	memset(u, 0, sizeof(*u));
	u->write = write;
	u->wud = wud;
	u->max_bytes = max_bytes;
	u->max_lines = max_lines;
	if (!content_type || multipart_boundary(content_type, boundary, sizeof(boundary)) < 0)
		return fail(u, 400,
		            "POST /v1/files takes multipart/form-data with a boundary (fields "
		            "\"purpose\" and \"file\"), got Content-Type %.80s",
		            content_type ? content_type : "(none)");
	multipart_init(&u->mp, boundary, &form_cb, u);
	return 0;
}

int upload_feed(struct upload *u, const char *p, size_t len)
{
	if (u->status)
		return -EINVAL;
	if (multipart_feed(&u->mp, p, len) < 0)
		return fail(u, 400, "malformed form: %s", u->mp.err);
	return 0;
}

int upload_finish(struct upload *u)
{
	if (u->status)
		return -EINVAL;
	if (multipart_finish(&u->mp) < 0)
		return fail(u, 400, "malformed form: %s", u->mp.err);
	if (!u->has_purpose)
		return fail(u, 400, "the form has no \"purpose\" field; send purpose=batch");
	if (strcmp(u->purpose, "batch") != 0)
		return fail(u, 400,
		            "purpose \"%s\" is not served here: llmqd keeps files for the Batch "
		            "API only; send purpose=batch",
		            u->purpose);
	if (!u->has_file)
		return fail(u, 400,
		            "the form has no \"file\" part; send the JSONL file as \"file\"");
	if (u->bytes == 0)
		return fail(u, 400, "the file is empty; a batch input file has one request a line");
	if (!u->last_nl && ++u->lines > u->max_lines)
		return fail(u, 400,
		            "the file has more than %lld lines, the most a batch input file may "
		            "have; split it into several files",
		            (long long)u->max_lines);
	return 0;
}
