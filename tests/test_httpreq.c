/*
 * The streaming HTTP/1.1 request reader: the same request whatever the
 * pieces, Content-Length and chunked bodies decoded, pipelined requests
 * told apart, and what RFC 9112 lets a server refuse, refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http/httpreq.h"

struct got {
	char method[16], target[64], host[64];
	int chunked, expect, close, ends;
	int64_t length;
	char body[4096];
	size_t blen;
};

static int on_head(void *ud, const struct httpreq_head *h)
{
	struct got *g = ud;
	const char *host = httpreq_header(h, "host");

	snprintf(g->method, sizeof(g->method), "%s", h->method);
	snprintf(g->target, sizeof(g->target), "%s", h->target);
	snprintf(g->host, sizeof(g->host), "%s", host ? host : "");
	g->chunked = h->chunked;
	g->expect = h->expect_continue;
	g->close = h->close;
	g->length = h->length;
	return 0;
}

static int on_body(void *ud, const char *d, size_t len)
{
	struct got *g = ud;

	cr_assert_lt(g->blen + len, sizeof(g->body));
	memcpy(g->body + g->blen, d, len);
	g->blen += len;
	return 0;
}

static int on_end(void *ud)
{
	((struct got *)ud)->ends++;
	return 0;
}

static const struct httpreq_cb cb = {on_head, on_body, on_end};

/* Feed text in pieces of piece bytes; returns the bytes the request used. */
static long read_in_pieces(const char *text, size_t len, size_t piece, struct got *g,
                           struct httpreq *r)
{
	size_t i;
	long used = 0, n = 0;

	memset(g, 0, sizeof(*g));
	httpreq_init(r, &cb, g);
	for (i = 0; i < len && g->ends == 0; i += (size_t)n) {
		n = httpreq_feed(r, text + i, len - i < piece ? len - i : piece);
		if (n < 0)
			return n;
		used += n;
	}
	return used;
}

Test(httpreq, a_body_by_length_whatever_the_pieces)
{
	static const char req[] = "POST /v1/files HTTP/1.1\r\nHost: localhost\r\n"
	                          "Content-Length: 11\r\nExpect: 100-continue\r\n\r\nhello world"
	                          "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
	struct httpreq r;
	struct got g;
	size_t piece;
	long used;

	for (piece = 1; piece <= sizeof(req); piece++) {
		used = read_in_pieces(req, sizeof(req) - 1, piece, &g, &r);
		cr_assert_eq(used, (long)(strstr(req, "GET") - req), "pieces of %zu: %ld", piece,
		             used);
		cr_assert_str_eq(g.method, "POST");
		cr_assert_str_eq(g.target, "/v1/files");
		cr_assert_str_eq(g.host, "localhost");
		cr_assert_eq(g.length, 11);
		cr_assert_eq(g.expect, 1);
		cr_assert_eq(g.close, 0);
		cr_assert_eq(g.blen, 11);
		cr_assert_eq(memcmp(g.body, "hello world", 11), 0);
		/* The next request on the connection starts where this one ended. */
		used = read_in_pieces(req + used, sizeof(req) - 1 - (size_t)used, piece, &g, &r);
		cr_assert_gt(used, 0);
		cr_assert_str_eq(g.target, "/next");
		cr_assert_eq(g.ends, 1);
		cr_assert_eq(g.blen, 0);
	}
}

Test(httpreq, a_chunked_body_decoded_whatever_the_pieces)
{
	static const char req[] = "\r\nPOST /v1/files HTTP/1.1\r\nHost: a\r\n"
	                          "Transfer-Encoding: chunked\r\n"
	                          "Connection: close\r\n\r\n"
	                          "5;ext=1\r\nhello\r\n"
	                          "1\r\n \r\n"
	                          "A\r\n0123456789\r\n"
	                          "0\r\nX-Trailer: yes\r\n\r\n";
	struct httpreq r;
	struct got g;
	size_t piece;

	for (piece = 1; piece <= sizeof(req); piece++) {
		cr_assert_eq(read_in_pieces(req, sizeof(req) - 1, piece, &g, &r),
		             (long)sizeof(req) - 1, "pieces of %zu: %s", piece, r.err);
		cr_assert_eq(g.chunked, 1);
		cr_assert_eq(g.close, 1);
		cr_assert_eq(g.blen, 16);
		cr_assert_eq(memcmp(g.body, "hello 0123456789", 16), 0);
		cr_assert_eq(g.ends, 1);
	}
}

Test(httpreq, what_could_be_smuggled_is_refused)
{
	static const struct {
		const char *text;
		int status;
		const char *why;
	} bad[] = {
	    {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	     "both"},
	    {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400,
	     "two different"},
	    {"POST / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400, "folded"},
	    {"POST / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "whitespace before"},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "not supported"},
	    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0"},
	    {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
	     "chunk size"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400,
	     "longer than its size"},
	    /* Two Transfer-Encoding lines are one list: its last coding must be chunked. */
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	     "Transfer-Encoding: gzip\r\n\r\n",
	     400, "last coding is not chunked"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	     "Transfer-Encoding: identity\r\n\r\n",
	     400, "last coding is not chunked"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
	     "last coding is not chunked"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
	     "more than once"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
	     "Transfer-Encoding: chunked\r\n\r\n",
	     501, "\"gzip\" is not supported"},
	    /* RFC 9112 3.2: a Host, and one. */
	    {"GET / HTTP/1.1\r\n\r\n", 400, "no Host"},
	    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "2 Host headers"},
	    {"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400, "2 Host headers"},
	    {"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "without a host"},
	    {"GET / HTTP/2.0\r\n\r\n", 400, "HTTP/1.x"},
	    {"GET /\r\n\r\n", 400, "request line"},
	    {"GET /a\tb HTTP/1.1\r\n\r\n", 400, "whitespace in the request target"},
	};
	static char big[HTTPREQ_MAX_HEAD + 100];
	struct httpreq r;
	struct got g;
	size_t i, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_lt(read_in_pieces(bad[i].text, strlen(bad[i].text), 7, &g, &r), 0, "%s",
		             bad[i].text);
		cr_assert_eq(r.status, bad[i].status, "%s: %d", bad[i].text, r.status);
		cr_assert(strstr(r.err, bad[i].why), "%s: %s", bad[i].text, r.err);
	}
	/* A head past the bound: 431. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Pad: ");
	memset(big + n, 'a', sizeof(big) - n - 1);
	cr_assert_lt(read_in_pieces(big, sizeof(big) - 1, 4096, &g, &r), 0);
	cr_assert_eq(r.status, 431);
}

Test(httpreq, http_10_closes_unless_asked_to_keep_alive)
{
	struct httpreq r;
	struct got g;

	cr_assert_gt(read_in_pieces("GET / HTTP/1.0\r\n\r\n", 18, 100, &g, &r), 0);
	cr_assert_eq(g.close, 1);
	cr_assert_gt(
	    read_in_pieces("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 42, 100, &g, &r), 0);
	cr_assert_eq(g.close, 0);
}

/*
 * RFC 9112/9110: no NUL, no bare CR or LF, no control byte but HTAB in a
 * head. Each is refused at the byte, before the head is parsed, whatever
 * the pieces (a NUL once crashed the parser: strstr stopped at it).
 */
Test(httpreq, a_nul_or_a_control_byte_in_the_head_is_a_400)
{
#define RAW(s)                                                                                     \
	{                                                                                          \
		s, sizeof(s) - 1                                                                   \
	}
	static const struct {
		const char *text;
		size_t len;
	} bad[] = {
	    RAW("GET / HTTP/1.1\0\r\nHost: a\r\n\r\n"),
	    RAW("GET /\0x HTTP/1.1\r\nHost: a\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: \0\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\nX-B: smuggled\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n"),
	    RAW("GET / HTTP/1.1\r\nHost: a\x1b[2J\r\n\r\n"),
	};
#undef RAW
	struct httpreq r;
	struct got g;
	size_t i, piece;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (piece = 1; piece <= bad[i].len; piece++) {
			cr_assert_lt(read_in_pieces(bad[i].text, bad[i].len, piece, &g, &r), 0,
			             "request %zu, pieces of %zu", i, piece);
			cr_assert_eq(r.status, 400, "request %zu: %d", i, r.status);
			cr_assert(strstr(r.err, "control") || strstr(r.err, "CR"),
			          "request %zu: %s", i, r.err);
			cr_assert_eq(g.ends, 0);
		}
	}
	/* Refused at the byte: the end of the head need not come. */
	httpreq_init(&r, &cb, &g);
	cr_assert_lt(httpreq_feed(&r, "GET / HTTP/1.1\0", 15), 0);
	cr_assert_eq(r.status, 400);
}

Test(httpreq, a_tab_and_bytes_past_ascii_in_a_value_are_kept)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost:\tl\xc3\xa9on\t \r\n\r\n";
	struct httpreq r;
	struct got g;

	cr_assert_eq(read_in_pieces(req, sizeof(req) - 1, 3, &g, &r), (long)sizeof(req) - 1, "%s",
	             r.err);
	cr_assert_str_eq(g.host, "l\xc3\xa9on");
	cr_assert_eq(g.ends, 1);
}

/* The same rule in the lines of a chunked body: a parser that ended a line at
 * the bare LF, or stopped at the NUL, would read other chunks. */
Test(httpreq, a_nul_or_a_bare_lf_in_a_chunk_line_is_a_400)
{
#define RAW(s)                                                                                     \
	{                                                                                          \
		s, sizeof(s) - 1                                                                   \
	}
	static const struct {
		const char *text;
		size_t len;
	} bad[] = {
	    RAW("5\0\r\nhello\r\n0\r\n\r\n"),
	    RAW("5;x\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"),
	    RAW("5;x\rhello\r\n0\r\n\r\n"),
	    RAW("5\r\nhello\r\n0\r\nX-T: a\0b\r\n\r\n"),
	    RAW("5\r\nhello\r\n0\r\nX-T: a\nb\r\n\r\n"),
	};
#undef RAW
	static const char head[] =
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
	char text[256];
	struct httpreq r;
	struct got g;
	size_t i, len;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(text, head, sizeof(head) - 1);
		memcpy(text + sizeof(head) - 1, bad[i].text, bad[i].len);
		len = sizeof(head) - 1 + bad[i].len;
		cr_assert_lt(read_in_pieces(text, len, 5, &g, &r), 0, "chunks %zu", i);
		cr_assert_eq(r.status, 400, "chunks %zu: %d", i, r.status);
		cr_assert(strstr(r.err, "line"), "chunks %zu: %s", i, r.err);
		cr_assert_eq(g.ends, 0);
	}
}

/* An absolute-form target (RFC 9112 3.2.2) is read as its path; HTTP/1.0 needs no Host. */
Test(httpreq, an_absolute_target_is_its_path)
{
	static const struct {
		const char *text, *target;
	} ok[] = {
	    {"POST http://127.0.0.1:8411/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	     "/v1/chat/completions"},
	    {"GET HTTPS://llmq/v1/files?after=x HTTP/1.1\r\nHost: llmq\r\n\r\n",
	     "/v1/files?after=x"},
	    {"GET http://llmq HTTP/1.1\r\nHost: llmq\r\n\r\n", "/"},
	    {"GET http://llmq?a=1 HTTP/1.1\r\nHost: llmq\r\n\r\n", "/?a=1"},
	    {"GET /healthz HTTP/1.0\r\n\r\n", "/healthz"},
	};
	struct httpreq r;
	struct got g;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_gt(read_in_pieces(ok[i].text, strlen(ok[i].text), 3, &g, &r), 0, "%s: %s",
		             ok[i].text, r.err);
		cr_assert_str_eq(g.target, ok[i].target);
	}
}

/* The trailer section is bounded as the head is: 5.5 GB of trailers were read in 15 s. */
Test(httpreq, the_trailer_section_is_bounded)
{
	static const char head[] =
	    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "1\r\nx\r\n0\r\n";
	static const char line[] = "X-Trailer: 0123456789012345678901234567890123456789\r\n";
	struct httpreq r;
	struct got g;
	long n = 0;
	size_t sent = 0;

	memset(&g, 0, sizeof(g));
	httpreq_init(&r, &cb, &g);
	cr_assert_eq(httpreq_feed(&r, head, sizeof(head) - 1), (long)sizeof(head) - 1);
	while (sent < 10 * HTTPREQ_MAX_HEAD && (n = httpreq_feed(&r, line, sizeof(line) - 1)) > 0)
		sent += (size_t)n;
	cr_assert_lt(n, 0, "refused");
	cr_assert_eq(r.status, 431);
	cr_assert(strstr(r.err, "trailer section larger than 65536 bytes"), "%s", r.err);
	cr_assert_leq(sent, HTTPREQ_MAX_HEAD, "refused at the bound, not after: %zu", sent);
	cr_assert_eq(g.ends, 0);
}
