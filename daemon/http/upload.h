/*
 * upload.h - the form of POST /v1/files: a multipart/form-data body with a
 * "purpose" field and a "file" part, as the hosted Files API takes it. The
 * file part's bytes go to a writer as they arrive (never held whole), are
 * counted, and are bounded as the hosted API bounds a batch input file
 * (200 MB, 50,000 lines); everything else is checked once the body ended.
 * Pure but for the writer: testable with any sink.
 */
#ifndef LLMQ_UPLOAD_H
#define LLMQ_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "http/multipart.h"

#define UPLOAD_MAX_FIELD 4096 /* a form field other than the file */

struct upload {
	struct multipart mp;
	int (*write)(void *ud, const char *p, size_t len); /* 0, or -errno */
	void *wud;
	int64_t max_bytes, max_lines;
	int part;         /* which part is being read: UP_* of upload.c */
	size_t field_len; /* of the current non-file field */
	char purpose[32];
	int has_purpose, has_file;
	char filename[256];
	int64_t bytes, lines;
	int last_nl; /* the last byte of the file was a newline */
	int status;  /* the HTTP status a failure deserves */
	char err[240];
};

/*
 * 0, or -EINVAL when content_type is not multipart/form-data with a
 * boundary (u->status, u->err say so).
 */
int upload_init(struct upload *u, const char *content_type, int64_t max_bytes, int64_t max_lines,
                int (*write)(void *ud, const char *p, size_t len), void *wud);
/* The next piece of the body: 0, or < 0 with u->status and u->err set. */
int upload_feed(struct upload *u, const char *p, size_t len);
/* The body ended: 0 when it was a whole form with a batch file, else < 0. */
int upload_finish(struct upload *u);

#endif
