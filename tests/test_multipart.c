/*
 * The streaming multipart/form-data parser: the same parts whatever the
 * pieces the body arrives in, delimiters split across reads, look-alikes in
 * the data, and each malformed body named.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http/multipart.h"

struct seen {
	char names[8][128], files[8][256];
	char data[8][4096];
	size_t len[8];
	int n, ended, limit;
};

static int begin(void *ud, const struct multipart_part *p)
{
	struct seen *s = ud;

	cr_assert_lt(s->n, 8);
	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", p->name);
	snprintf(s->files[s->n], sizeof(s->files[0]), "%s", p->filename);
	return 0;
}

static int data(void *ud, const char *d, size_t len)
{
	struct seen *s = ud;

	if (s->limit && s->len[s->n] + len > (size_t)s->limit)
		return -E2BIG; /* the caller's cap, e.g. 200 MB for a file */
	cr_assert_lt(s->len[s->n] + len, sizeof(s->data[0]));
	memcpy(s->data[s->n] + s->len[s->n], d, len);
	s->len[s->n] += len;
	return 0;
}

static int end(void *ud)
{
	struct seen *s = ud;

	s->n++;
	s->ended++;
	return 0;
}

static const struct multipart_cb cb = {begin, data, end};

#define B "----llmqTestBoundary7MA4YWxk"
#define B_SHORT "----llmqTestBoundary7MA4YWx" /* a look-alike: all but its last byte */
static const char body[] =
    "preamble to ignore\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"purpose\"\r\n\r\n"
    "batch\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
    "Content-Type: application/jsonl\r\n\r\n"
    "{\"custom_id\":\"a\"}\r\n{\"custom_id\":\"b\"}\n\r\n--" B_SHORT "Q not a delimiter\r\n-- " B
    "\r\n"
    "--" B "--\r\n"
    "epilogue";

static void parse_in_pieces(const char *text, size_t len, size_t piece, struct seen *s, int *ret)
{
	struct multipart mp;
	size_t i;
	int r = 0;

	memset(s, 0, sizeof(*s));
	multipart_init(&mp, B, &cb, s);
	for (i = 0; i < len && r == 0; i += piece)
		r = multipart_feed(&mp, text + i, len - i < piece ? len - i : piece);
	*ret = r ? r : multipart_finish(&mp);
}

static void check(const struct seen *s)
{
	static const char file[] =
	    "{\"custom_id\":\"a\"}\r\n{\"custom_id\":\"b\"}\n\r\n--" B_SHORT
	    "Q not a delimiter\r\n-- " B; /* the last CRLF is the delimiter's */

	cr_assert_eq(s->ended, 2);
	cr_assert_str_eq(s->names[0], "purpose");
	cr_assert_eq(s->len[0], 5);
	cr_assert_eq(memcmp(s->data[0], "batch", 5), 0);
	cr_assert_str_eq(s->names[1], "file");
	cr_assert_str_eq(s->files[1], "in.jsonl");
	cr_assert_eq(s->len[1], sizeof(file) - 1, "%zu", s->len[1]);
	cr_assert_eq(memcmp(s->data[1], file, sizeof(file) - 1), 0,
	             "the data, look-alikes included");
}

Test(multipart, the_same_parts_whatever_the_pieces)
{
	struct seen s;
	size_t piece;
	int r;

	for (piece = 1; piece <= sizeof(body); piece++) {
		parse_in_pieces(body, sizeof(body) - 1, piece, &s, &r);
		cr_assert_eq(r, 0, "pieces of %zu", piece);
		check(&s);
	}
}

Test(multipart, a_delimiter_split_at_every_point)
{
	struct multipart mp;
	struct seen s;
	size_t cut, n = sizeof(body) - 1;
	int r;

	for (cut = 0; cut <= n; cut++) {
		memset(&s, 0, sizeof(s));
		multipart_init(&mp, B, &cb, &s);
		r = multipart_feed(&mp, body, cut);
		if (r == 0)
			r = multipart_feed(&mp, body + cut, n - cut);
		cr_assert_eq(r, 0, "cut at %zu: %s", cut, mp.err);
		cr_assert_eq(multipart_finish(&mp), 0);
		check(&s);
	}
}

Test(multipart, malformed_bodies_are_named)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"--" B "\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nabc",
	     "closing delimiter"},
	    {"--" B "\r\nContent-Type: text/plain\r\n\r\nabc\r\n--" B "--",
	     "no Content-Disposition"},
	    {"--" B "\r\nContent-Disposition: attachment; name=\"f\"\r\n\r\nx\r\n--" B "--",
	     "not form-data"},
	    {"--" B "\r\n\r\nx\r\n--" B "--", "no headers"},
	    {"--" B "xx\r\n", "malformed delimiter"},
	    {"no delimiter at all", "closing delimiter"},
	};
	struct multipart mp;
	struct seen s;
	size_t i;
	int r;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&s, 0, sizeof(s));
		multipart_init(&mp, B, &cb, &s);
		r = multipart_feed(&mp, bad[i].text, strlen(bad[i].text));
		if (r == 0)
			r = multipart_finish(&mp);
		cr_assert_eq(r, -EINVAL, "%s", bad[i].text);
		cr_assert(strstr(mp.err, bad[i].why), "\"%s\": %s", bad[i].text, mp.err);
	}
}

Test(multipart, headers_and_parts_are_bounded_and_the_callers_cap_holds)
{
	static char big[MULTIPART_MAX_HEADERS + 200];
	struct multipart mp;
	struct seen s;
	size_t n;
	int r, i;

	/* A header block past the bound. */
	n = (size_t)snprintf(big, sizeof(big), "--" B "\r\nX-Pad: ");
	memset(big + n, 'a', MULTIPART_MAX_HEADERS);
	memset(&s, 0, sizeof(s));
	multipart_init(&mp, B, &cb, &s);
	cr_assert_eq(multipart_feed(&mp, big, n + MULTIPART_MAX_HEADERS), -EINVAL);
	cr_assert(strstr(mp.err, "headers are longer"), "%s", mp.err);
	/* Too many parts. */
	memset(&s, 0, sizeof(s));
	multipart_init(&mp, B, &cb, &s);
	r = multipart_feed(&mp, "--" B, strlen("--" B));
	for (i = 0; i <= MULTIPART_MAX_PARTS && r == 0; i++) {
		static const char part[] = "\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\n"
		                           "\r\n--" B;

		s.n = 0; /* the test keeps only the last */
		r = multipart_feed(&mp, part, sizeof(part) - 1);
	}
	cr_assert_eq(r, -EINVAL);
	cr_assert(strstr(mp.err, "more than"), "%s", mp.err);
	/* The caller's own cap (an oversized file) stops the parse with its error. */
	memset(&s, 0, sizeof(s));
	s.limit = 10;
	multipart_init(&mp, B, &cb, &s);
	cr_assert_eq(multipart_feed(&mp, body, sizeof(body) - 1), -E2BIG);
}

Test(multipart, the_boundary_from_the_content_type)
{
	char b[80];

	cr_assert_eq(multipart_boundary("multipart/form-data; boundary=" B, b, sizeof(b)), 0);
	cr_assert_str_eq(b, B);
	cr_assert_eq(multipart_boundary("multipart/form-data; charset=utf-8; boundary=\"a b:c\"", b,
	                                sizeof(b)),
	             0);
	cr_assert_str_eq(b, "a b:c");
	cr_assert_eq(multipart_boundary("application/json", b, sizeof(b)), -EINVAL);
	cr_assert_eq(multipart_boundary("multipart/form-data", b, sizeof(b)), -EINVAL);
	cr_assert_eq(multipart_boundary("multipart/form-data; boundary=", b, sizeof(b)), -EINVAL);
	cr_assert_eq(multipart_boundary("multipart/form-data; boundary=a\rb", b, sizeof(b)),
	             -EINVAL);
}
