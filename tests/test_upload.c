/*
 * The form of POST /v1/files (daemon/http/upload.c): the file part's bytes reach
 * the writer whatever the pieces the body arrives in, and a form without a
 * purpose, with another purpose, without a file, or past the limits is
 * refused with the status and the words a caller needs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http/upload.h"

#define B "llmqFormBoundaryQ1w2E3"
#define CT "multipart/form-data; boundary=" B

struct sink {
	char buf[8192];
	size_t len;
	int fail; /* the writer fails with this (-errno) */
};

static int sink_write(void *ud, const char *p, size_t len)
{
	struct sink *s = ud;

	if (s->fail)
		return s->fail;
	cr_assert_lt(s->len + len, sizeof(s->buf));
	memcpy(s->buf + s->len, p, len);
	s->len += len;
	return 0;
}

static const char *part(const char *name, const char *filename, const char *value, char *buf,
                        size_t len)
{
	if (filename)
		snprintf(buf, len,
		         "--" B
		         "\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
		         "Content-Type: application/octet-stream\r\n\r\n%s\r\n",
		         name, filename, value);
	else
		snprintf(buf, len,
		         "--" B "\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n",
		         name, value);
	return buf;
}

/* Feeds body in pieces of step bytes; returns upload_finish's result. */
static int run(struct upload *u, struct sink *s, const char *body, size_t step, int64_t max_bytes,
               int64_t max_lines)
{
	size_t i, n = strlen(body);

	cr_assert_eq(upload_init(u, CT, max_bytes, max_lines, sink_write, s), 0);
	for (i = 0; i < n; i += step)
		if (upload_feed(u, body + i, i + step > n ? n - i : step) < 0)
			return -EINVAL;
	return upload_finish(u);
}

static const char file_text[] = "{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n"
                                "line with --" B " inside it\n";

static void form(char *body, size_t len, const char *purpose_first)
{
	char p1[256], p2[512];

	part("purpose", NULL, "batch", p1, sizeof(p1));
	part("file", "in.jsonl", file_text, p2, sizeof(p2));
	snprintf(body, len, "%s%s--" B "--\r\n", purpose_first ? p1 : p2, purpose_first ? p2 : p1);
}

Test(upload, the_file_reaches_the_writer_whatever_the_pieces)
{
	char body[2048];
	size_t step;

	for (int order = 0; order < 2; order++) {
		form(body, sizeof(body), order ? "purpose first" : NULL);
		for (step = 1; step <= strlen(body); step++) {
			struct upload u;
			struct sink s = {0};

			cr_assert_eq(run(&u, &s, body, step, 1000, 10), 0, "step %zu: %s", step,
			             u.err);
			cr_assert_eq(s.len, strlen(file_text), "step %zu", step);
			cr_assert_eq(memcmp(s.buf, file_text, s.len), 0);
			cr_assert_str_eq(u.purpose, "batch");
			cr_assert_str_eq(u.filename, "in.jsonl");
			cr_assert_eq(u.bytes, (int64_t)strlen(file_text));
			cr_assert_eq(u.lines, 3);
		}
	}
}

Test(upload, a_last_line_without_newline_counts)
{
	char body[1024], p1[128], p2[256];
	struct upload u;
	struct sink s = {0};

	snprintf(body, sizeof(body), "%s%s--" B "--\r\n", part("purpose", NULL, "batch", p1, 128),
	         part("file", "x.jsonl", "a\nb\nc", p2, 256));
	cr_assert_eq(run(&u, &s, body, 7, 1000, 3), 0, "%s", u.err);
	cr_assert_eq(u.lines, 3);
	cr_assert_eq(run(&u, &s, body, 7, 1000, 2), -EINVAL);
	cr_assert_eq(u.status, 400);
	cr_assert(strstr(u.err, "more than 2 lines"), "%s", u.err);
}

Test(upload, wrong_purpose_is_refused_after_the_file)
{
	char body[1024], p1[128], p2[256];
	struct upload u;
	struct sink s = {0};

	snprintf(body, sizeof(body), "%s%s--" B "--\r\n", part("file", "x.jsonl", "a\n", p2, 256),
	         part("purpose", NULL, "fine-tune", p1, 128));
	cr_assert_eq(run(&u, &s, body, 5, 1000, 10), -EINVAL);
	cr_assert_eq(u.status, 400);
	cr_assert(strstr(u.err, "purpose \"fine-tune\"") && strstr(u.err, "purpose=batch"), "%s",
	          u.err);
}

Test(upload, missing_parts_are_named)
{
	char body[1024], p[256];
	struct upload u;
	struct sink s = {0};

	snprintf(body, sizeof(body), "%s--" B "--\r\n", part("file", "x.jsonl", "a\n", p, 256));
	cr_assert_eq(run(&u, &s, body, 64, 1000, 10), -EINVAL);
	cr_assert(strstr(u.err, "no \"purpose\""), "%s", u.err);

	snprintf(body, sizeof(body), "%s--" B "--\r\n", part("purpose", NULL, "batch", p, 256));
	cr_assert_eq(run(&u, &s, body, 64, 1000, 10), -EINVAL);
	cr_assert(strstr(u.err, "no \"file\""), "%s", u.err);

	/* A body cut before its closing delimiter (the caller hung up). */
	snprintf(body, sizeof(body), "%s", part("purpose", NULL, "batch", p, 256));
	cr_assert_eq(run(&u, &s, body, 64, 1000, 10), -EINVAL);
	cr_assert(strstr(u.err, "malformed form"), "%s", u.err);
}

Test(upload, an_empty_file_and_two_files_are_refused)
{
	char body[1024], p1[128], p2[256], p3[256];
	struct upload u;
	struct sink s = {0};

	snprintf(body, sizeof(body), "%s%s--" B "--\r\n", part("purpose", NULL, "batch", p1, 128),
	         part("file", "x.jsonl", "", p2, 256));
	cr_assert_eq(run(&u, &s, body, 64, 1000, 10), -EINVAL);
	cr_assert(strstr(u.err, "empty"), "%s", u.err);

	snprintf(body, sizeof(body), "%s%s%s--" B "--\r\n", part("purpose", NULL, "batch", p1, 128),
	         part("file", "x.jsonl", "a\n", p2, 256), part("file", "y.jsonl", "b\n", p3, 256));
	cr_assert_eq(run(&u, &s, body, 64, 1000, 10), -EINVAL);
	cr_assert(strstr(u.err, "two \"file\""), "%s", u.err);
}

Test(upload, oversize_is_413_and_stops_writing)
{
	char body[2048], p1[128], p2[1024];
	struct upload u;
	struct sink s = {0};

	snprintf(body, sizeof(body), "%s%s--" B "--\r\n", part("purpose", NULL, "batch", p1, 128),
	         part("file", "x.jsonl", file_text, p2, 1024));
	cr_assert_eq(run(&u, &s, body, 3, 20, 100), -EINVAL);
	cr_assert_eq(u.status, 413);
	cr_assert_leq(s.len, 20, "never more than the limit written: %zu", s.len);
	cr_assert(strstr(u.err, "split it"), "%s", u.err);
}

Test(upload, a_long_field_and_a_failing_disk)
{
	char body[8192], big[6000], p1[128], p2[7000];
	struct upload u;
	struct sink s = {0};

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(body, sizeof(body), "%s%s--" B "--\r\n", part("purpose", NULL, "batch", p1, 128),
	         part("note", NULL, big, p2, sizeof(p2)));
	cr_assert_eq(run(&u, &s, body, 512, 1000, 10), -EINVAL);
	cr_assert(strstr(u.err, "longer than"), "%s", u.err);

	form(body, sizeof(body), "purpose first");
	s.fail = -ENOSPC;
	cr_assert_eq(run(&u, &s, body, 512, 1000, 10), -EINVAL);
	cr_assert_eq(u.status, 507);
	cr_assert(strstr(u.err, "No space left"), "%s", u.err);
}

Test(upload, not_a_form)
{
	struct upload u;
	struct sink s = {0};

	cr_assert_eq(upload_init(&u, "application/json", 10, 10, sink_write, &s), -EINVAL);
	cr_assert_eq(u.status, 400);
	cr_assert(strstr(u.err, "multipart/form-data"), "%s", u.err);
	cr_assert_eq(upload_init(&u, NULL, 10, 10, sink_write, &s), -EINVAL);
}

static int count_write(void *ud, const char *p, size_t len)
{
	(void)p;
	*(size_t *)ud += len;
	return 0;
}

/* The limit is set in MiB and said in MiB (200 << 20 was told as "209 MB"). */
Test(upload, the_size_limit_is_said_as_it_is_set)
{
	size_t n = (1 << 20) + 4096, written = 0, i;
	char *body = malloc(n + 1024), p1[128];
	struct upload u;
	int len;

	cr_assert_not_null(body);
	len = snprintf(body, 1024,
	               "%s--" B "\r\nContent-Disposition: form-data; name=\"file\"; "
	               "filename=\"big.jsonl\"\r\n\r\n",
	               part("purpose", NULL, "batch", p1, 128));
	for (i = 0; i < n; i++)
		body[len + i] = i % 64 == 63 ? '\n' : 'x';
	cr_assert_eq(upload_init(&u, CT, 1 << 20, 100000, count_write, &written), 0);
	cr_assert_eq(upload_feed(&u, body, (size_t)len + n), -EINVAL);
	cr_assert_eq(u.status, 413);
	cr_assert(strstr(u.err, "larger than 1 MiB"), "%s", u.err);
	free(body);
}

/* The route adds "nothing was kept" once; the form's own words do not say it too. */
Test(upload, a_full_disk_is_said_once)
{
	char body[2048];
	struct upload u;
	struct sink s = {.fail = -ENOSPC};

	form(body, sizeof(body), "purpose first");
	cr_assert_eq(run(&u, &s, body, 512, 1000, 10), -EINVAL);
	cr_assert_eq(u.status, 507);
	cr_assert_null(strstr(u.err, "nothing was kept"), "%s", u.err);
}

/* A file's name is shown by llmq list and status: bounded, and never an escape sequence. */
Test(upload, a_file_name_is_bounded_and_cleaned)
{
	char body[4096], name[300], p1[128], p2[1024];
	struct upload u;
	struct sink s = {0};

	memset(name, 'n', 256);
	name[256] = '\0';
	snprintf(body, sizeof(body), "%s%s--" B "--\r\n", part("purpose", NULL, "batch", p1, 128),
	         part("file", name, file_text, p2, sizeof(p2)));
	cr_assert_eq(run(&u, &s, body, 512, 1000, 10), -EINVAL);
	cr_assert_eq(u.status, 400);
	cr_assert(strstr(u.err, "256 bytes") && strstr(u.err, "255"), "%s", u.err);

	snprintf(body, sizeof(body), "%s%s--" B "--\r\n", part("purpose", NULL, "batch", p1, 128),
	         part("file", "ev\x1b]0;PWNED\x07\x1b[2J.jsonl", file_text, p2, sizeof(p2)));
	s.len = 0;
	cr_assert_eq(run(&u, &s, body, 512, 1000, 10), 0, "%s", u.err);
	cr_assert_str_eq(u.filename, "ev?]0;PWNED??[2J.jsonl");
}
