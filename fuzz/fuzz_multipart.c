/*
 * fuzz_multipart.c - the multipart/form-data parser (daemon/http/multipart.c)
 * and the upload form on it (daemon/http/upload.c), as POST /v1/files feeds them.
 *
 * The first byte picks the shape of the rest:
 *   even: a Content-Type line, then the body, both as a caller sends them;
 *   odd:  fields separated by 0xff, which the target encodes as a form with
 *         a boundary none of them holds ("purpose", "file", then others).
 * Beyond not crashing: the body fed in one piece and in random pieces gives
 * the same transcript (parts, their bytes, the error); no part's bytes hold
 * the delimiter; an encoded form reads back as exactly its fields; and the
 * upload form agrees with the parser under it: an upload accepted is a form
 * the parser accepted, whose "file" part is the bytes written, line count
 * included, within the limits.
 */
#include "fuzz.h"

#include "http/multipart.h"
#include "http/upload.h"

#include <errno.h>

#define MAX_FIELDS 6
#define UPLOAD_BYTES 2000
#define UPLOAD_LINES 20

struct feed {
	struct fuzz_log log;
	const char *delim;    /* "\r\n--" boundary */
	struct fuzz_log part; /* the current part's bytes */
	int in_file;
	struct fuzz_log file; /* the bytes of the part named "file" */
};

static int part_begin(void *ud, const struct multipart_part *p)
{
	struct feed *f = ud;

	FUZZ_ASSERT(strnlen(p->name, sizeof(p->name)) < sizeof(p->name), "name unterminated");
	FUZZ_ASSERT(strnlen(p->filename, sizeof(p->filename)) < sizeof(p->filename), "filename");
	FUZZ_ASSERT(strnlen(p->content_type, sizeof(p->content_type)) < sizeof(p->content_type),
	            "content type unterminated");
	FUZZ_ASSERT(p->name[0], "a part without a name was begun");
	fuzz_log_strs(&f->log, '\n',
	              (const char *const[]){"part", p->name, p->filename, p->content_type}, 4);
	f->part.len = 0;
	f->in_file = strcmp(p->name, "file") == 0;
	if (f->in_file)
		f->file.len = 0;
	return 0;
}

static int part_data(void *ud, const char *data, size_t len)
{
	struct feed *f = ud;

	FUZZ_ASSERT(len > 0, "an empty piece of data");
	fuzz_log_add(&f->log, data, len);
	fuzz_log_add(&f->part, data, len);
	if (f->in_file)
		fuzz_log_add(&f->file, data, len);
	return 0;
}

static int part_end(void *ud)
{
	struct feed *f = ud;
	size_t n = strlen(f->delim);

	FUZZ_ASSERT(f->part.len < n || !memmem(f->part.p, f->part.len, f->delim, n),
	            "a part's bytes hold the delimiter");
	fuzz_log_printf(&f->log, "\nend of part (%zu bytes)\n", f->part.len);
	f->in_file = 0;
	return 0;
}

static const struct multipart_cb cb = {part_begin, part_data, part_end};

/* The form's body, whole or in pieces; 0 when the parser took it whole. */
static int parse(const char *boundary, const uint8_t *body, size_t size, struct fuzz_rng *rng,
                 struct feed *f)
{
	static struct multipart mp;
	char delim[4 + MULTIPART_MAX_BOUNDARY + 1];
	size_t at = 0, piece;
	int r = 0;

	snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	f->delim = delim;
	multipart_init(&mp, boundary, &cb, f);
	while (at < size && r == 0) {
		piece = rng ? fuzz_piece(rng, size - at) : size - at;
		r = multipart_feed(&mp, (const char *)body + at, piece);
		at += piece;
	}
	if (r == 0)
		r = multipart_finish(&mp);
	FUZZ_ASSERT(r == 0 || r == -EINVAL, "multipart: %d", r);
	FUZZ_ASSERT(r == 0 || mp.err[0], "an error without a reason");
	fuzz_log_printf(&f->log, "result %d %s\n", r, r ? mp.err : "");
	f->delim = NULL;
	return r;
}

struct sink {
	struct fuzz_log bytes;
};

static int sink_write(void *ud, const char *p, size_t len)
{
	fuzz_log_add(&((struct sink *)ud)->bytes, p, len);
	return 0;
}

/* The upload form over the same body: it agrees with the parser under it. */
static void upload(const char *content_type, const uint8_t *body, size_t size, struct fuzz_rng *rng,
                   int parsed, const struct fuzz_log *file)
{
	static struct upload u;
	struct sink s = {0};
	size_t at = 0, piece, i;
	int64_t lines = 0;
	int r;

	r = upload_init(&u, content_type, UPLOAD_BYTES, UPLOAD_LINES, sink_write, &s);
	while (r == 0 && at < size) {
		piece = fuzz_piece(rng, size - at);
		r = upload_feed(&u, (const char *)body + at, piece);
		at += piece;
	}
	if (r == 0)
		r = upload_finish(&u);
	if (r < 0) {
		FUZZ_ASSERT(u.status == 400 || u.status == 413, "upload status %d", u.status);
		FUZZ_ASSERT(u.err[0], "an upload refused without a reason");
	} else {
		FUZZ_ASSERT(parsed == 0, "an upload accepted from a form the parser refused");
		FUZZ_ASSERT(u.has_purpose && u.has_file && strcmp(u.purpose, "batch") == 0,
		            "accepted without purpose=batch and a file");
		FUZZ_ASSERT(s.bytes.len == file->len &&
		                (s.bytes.len == 0 || memcmp(s.bytes.p, file->p, file->len) == 0),
		            "written %zu bytes, the file part has %zu", s.bytes.len, file->len);
		for (i = 0; i < s.bytes.len; i++)
			lines += s.bytes.p[i] == '\n';
		if (s.bytes.len && s.bytes.p[s.bytes.len - 1] != '\n')
			lines++;
		FUZZ_ASSERT(u.bytes == (int64_t)s.bytes.len && u.lines == lines,
		            "counted %lld bytes, %lld lines; wrote %zu, %lld", (long long)u.bytes,
		            (long long)u.lines, s.bytes.len, (long long)lines);
		FUZZ_ASSERT(u.bytes > 0 && u.bytes <= UPLOAD_BYTES && u.lines <= UPLOAD_LINES,
		            "past the limits: %lld bytes, %lld lines", (long long)u.bytes,
		            (long long)u.lines);
	}
	fuzz_log_free(&s.bytes);
}

/* Fields split at 0xff, encoded as a form: the parser reads back exactly them. */
static void encoded(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"purpose", "file", "a", "b", "c", "d"};
	const uint8_t *field[MAX_FIELDS];
	size_t flen[MAX_FIELDS], n = 0, i, start = 0;
	char boundary[40], type[80], delim[48];
	struct fuzz_log body = {0}, expect = {0};
	struct feed f = {0};
	struct fuzz_rng rng;

	for (i = 0; i <= size && n < MAX_FIELDS; i++) {
		if (i == size || data[i] == 0xff) {
			field[n] = data + start;
			flen[n++] = i - start;
			start = i + 1;
		}
	}
	fuzz_rng_seed(&rng, data, size);
	snprintf(boundary, sizeof(boundary), "llmq-%016llx", (unsigned long long)rng.s);
	snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	for (i = 0; i < n; i++)
		if (memmem(field[i], flen[i], delim + 2, strlen(delim + 2)))
			return; /* a field holding the boundary cannot be sent with it */
	fuzz_log_printf(&body, "preamble\r\n");
	for (i = 0; i < n; i++) {
		fuzz_log_printf(&body,
		                "--%s\r\nContent-Disposition: form-data; name=\"%s\"%s\r\n\r\n",
		                boundary, names[i], i == 1 ? "; filename=\"in.jsonl\"" : "");
		fuzz_log_add(&body, field[i], flen[i]);
		fuzz_log_printf(&body, "\r\n");
		fuzz_log_strs(&expect, '\n',
		              (const char *const[]){"part", names[i], i == 1 ? "in.jsonl" : "", ""},
		              4);
		fuzz_log_add(&expect, field[i], flen[i]);
		fuzz_log_printf(&expect, "\nend of part (%zu bytes)\n", flen[i]);
	}
	fuzz_log_printf(&body, "--%s--\r\nepilogue", boundary);
	fuzz_log_printf(&expect, "result 0 \n");
	parse(boundary, (const uint8_t *)body.p, body.len, &rng, &f);
	fuzz_log_same(&expect, &f.log, "an encoded form");
	snprintf(type, sizeof(type), "multipart/form-data; boundary=%s", boundary);
	upload(type, (const uint8_t *)body.p, body.len, &rng, 0, &f.file);
	fuzz_log_free(&f.log);
	fuzz_log_free(&f.part);
	fuzz_log_free(&f.file);
	fuzz_log_free(&body);
	fuzz_log_free(&expect);
}

/* A Content-Type line and a body, as a caller sends them. */
static void raw(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	char type[256], boundary[MULTIPART_MAX_BOUNDARY + 1];
	struct feed whole = {0}, pieces = {0};
	struct fuzz_rng rng;
	size_t tlen;
	int r;

	if (!nl || (tlen = (size_t)(nl - data)) >= sizeof(type))
		return;
	memcpy(type, data, tlen);
	type[tlen] = '\0';
	data += tlen + 1;
	size -= tlen + 1;
	fuzz_rng_seed(&rng, data, size);
	if (multipart_boundary(type, boundary, sizeof(boundary)) < 0) {
		upload(type, data, size, &rng, -1, &whole.file); /* refused at init */
		return;
	}
	FUZZ_ASSERT(boundary[0] && strlen(boundary) <= MULTIPART_MAX_BOUNDARY &&
	                !strpbrk(boundary, "\r\n\""),
	            "boundary \"%s\"", boundary);
	r = parse(boundary, data, size, NULL, &whole);
	parse(boundary, data, size, &rng, &pieces);
	fuzz_log_same(&whole.log, &pieces.log, "multipart");
	upload(type, data, size, &rng, r, &whole.file);
	fuzz_log_free(&whole.log);
	fuzz_log_free(&whole.part);
	fuzz_log_free(&whole.file);
	fuzz_log_free(&pieces.log);
	fuzz_log_free(&pieces.part);
	fuzz_log_free(&pieces.file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		encoded(data + 1, size - 1);
	else
		raw(data + 1, size - 1);
	return 0;
}
