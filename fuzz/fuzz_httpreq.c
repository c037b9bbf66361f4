/*
 * fuzz_httpreq.c - the HTTP/1.1 request reader (daemon/http/httpreq.c), fed a
 * connection's bytes: pipelined requests, read one after the other as
 * httpserv.c reads them (the reader initialised again where a request
 * ended).
 *
 * Beyond not crashing: the bytes fed in one piece and in random pieces give
 * the same transcript (each head, each body byte, where each request ended,
 * the error and its status); a head has only what RFC 9112 lets through (no
 * control byte in a name or a value, no whitespace around a value, at most
 * one framing); a body by Content-Length has exactly that many bytes; and a
 * request that failed says why with a status among 400, 413, 431 and 501.
 */
#include "fuzz.h"

#include "http/httpreq.h"

#include <strings.h>

struct feed {
	struct fuzz_log log;
	int ended;        /* the current request ended */
	int64_t length;   /* of the current request's body, -1 when not by length */
	int64_t received; /* of its body */
};

static int token_char(int c)
{
	return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static int on_head(void *ud, const struct httpreq_head *h)
{
	struct feed *f = ud;
	const char *p;
	int i;

	FUZZ_ASSERT(!(h->chunked && h->length >= 0), "both framings");
	FUZZ_ASSERT(h->length >= -1, "length %lld", (long long)h->length);
	FUZZ_ASSERT(h->minor >= 0 && h->minor <= 9, "minor %d", h->minor);
	FUZZ_ASSERT(*h->method && *h->target, "an empty method or target");
	for (p = h->method; *p; p++)
		FUZZ_ASSERT(token_char((unsigned char)*p), "method byte 0x%02x", (unsigned char)*p);
	for (p = h->target; *p; p++)
		FUZZ_ASSERT((unsigned char)*p > 0x20 && *p != 0x7f, "target byte 0x%02x",
		            (unsigned char)*p);
	fuzz_log_strs(&f->log, ' ', (const char *const[]){"head", h->method, h->target}, 3);
	fuzz_log_printf(&f->log, "1.%d len=%lld chunked=%d expect=%d close=%d n=%d\n", h->minor,
	                (long long)h->length, h->chunked, h->expect_continue, h->close,
	                h->n_headers);
	for (i = 0; i < h->n_headers; i++) {
		const char *v = h->headers[i].value;
		size_t n = strlen(v);

		FUZZ_ASSERT(*h->headers[i].name, "an empty header name");
		for (p = h->headers[i].name; *p; p++)
			FUZZ_ASSERT(token_char((unsigned char)*p), "header name byte 0x%02x",
			            (unsigned char)*p);
		for (p = v; *p; p++)
			FUZZ_ASSERT((unsigned char)*p >= 0x20 ? *p != 0x7f : *p == '\t',
			            "header value byte 0x%02x", (unsigned char)*p);
		FUZZ_ASSERT(
		    n == 0 || (v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' && v[n - 1] != '\t'),
		    "a value not trimmed: \"%s\"", v);
		fuzz_log_strs(&f->log, '\n', (const char *const[]){h->headers[i].name, v}, 2);
	}
	FUZZ_ASSERT(httpreq_header(h, "Transfer-Encoding") == NULL || h->chunked,
	            "a Transfer-Encoding that is not chunked went through");
	f->length = h->length;
	f->received = 0;
	return 0;
}

static int on_body(void *ud, const char *data, size_t len)
{
	struct feed *f = ud;

	/* Piece boundaries differ between the feeds: log the bytes, not the calls. */
	FUZZ_ASSERT(len > 0, "an empty body piece");
	f->received += (int64_t)len;
	FUZZ_ASSERT(f->length < 0 || f->received <= f->length, "%lld body bytes of %lld",
	            (long long)f->received, (long long)f->length);
	fuzz_log_add(&f->log, data, len);
	return 0;
}

static int on_end(void *ud)
{
	struct feed *f = ud;

	FUZZ_ASSERT(f->length < 0 || f->received == f->length, "%lld body bytes of %lld",
	            (long long)f->received, (long long)f->length);
	f->ended = 1;
	return 0;
}

static const struct httpreq_cb cb = {on_head, on_body, on_end};

/* The connection's bytes in pieces (one piece when rng is NULL), as httpserv reads them. */
static void feed_all(struct httpreq *r, const uint8_t *data, size_t size, struct fuzz_rng *rng,
                     struct feed *f)
{
	size_t at = 0, end, piece;
	long n;

	httpreq_init(r, &cb, f);
	while (at < size) {
		piece = rng ? fuzz_piece(rng, size - at) : size - at;
		for (end = at + piece; at < end;) {
			f->ended = 0;
			n = httpreq_feed(r, (const char *)data + at, end - at);
			if (n < 0) {
				FUZZ_ASSERT(r->status == 400 || r->status == 413 ||
				                r->status == 431 || r->status == 501,
				            "status %d", r->status);
				FUZZ_ASSERT(r->err[0], "an error without a reason");
				fuzz_log_printf(&f->log, "error %d %s\n", r->status, r->err);
				return;
			}
			FUZZ_ASSERT((size_t)n <= end - at, "used %ld of %zu", n, end - at);
			FUZZ_ASSERT((size_t)n == end - at || f->ended, "stopped early: %ld of %zu",
			            n, end - at);
			at += (size_t)n;
			if (f->ended) {
				fuzz_log_printf(&f->log, "end at %zu\n", at);
				httpreq_init(r, &cb, f);
			}
		}
	}
	fuzz_log_printf(&f->log, "eof hlen=%zu\n", r->hlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct httpreq r; /* 64 KiB of head buffer */
	struct feed whole = {0}, pieces = {0};
	struct fuzz_rng rng;

	feed_all(&r, data, size, NULL, &whole);
	fuzz_rng_seed(&rng, data, size);
	feed_all(&r, data, size, &rng, &pieces);
	fuzz_log_same(&whole.log, &pieces.log, "httpreq");
	fuzz_log_free(&whole.log);
	fuzz_log_free(&pieces.log);
	return 0;
}
