/*
 * fuzz_h1resp.c - the reader of an upstream's HTTP/1.1 answers
 * (daemon/upstream/h1resp.c), fed an answer's bytes as the builtin client
 * feeds them: what is not taken is kept and offered again with the next
 * piece, and a body callback may ask to stop (a relay's pause).
 *
 * Beyond not crashing: the answer fed whole and fed in random pieces with
 * random pauses gives the same head lines, the same body bytes, the same
 * end (finished, failed, or waiting for more) and takes the same bytes;
 * a finished answer framed by a length has exactly that many body bytes;
 * a kept-alive connection never had a body that ran to its end.
 */
#include "fuzz.h"

#include "upstream/h1resp.h"

struct run {
	struct fuzz_log head, body;
	struct fuzz_rng *rng; /* NULL: never pause */
};

static void on_header(void *ud, const char *line, size_t n)
{
	struct run *r = ud;

	FUZZ_ASSERT(!memchr(line, '\n', n) && !memchr(line, '\r', n), "a line end in a line");
	fuzz_log_add(&r->head, line, n);
	fuzz_log_add(&r->head, "\n", 1);
}

static int on_body(void *ud, const char *data, size_t n)
{
	struct run *r = ud;

	FUZZ_ASSERT(n > 0, "an empty body piece");
	fuzz_log_add(&r->body, data, n);
	return r->rng && (fuzz_rng_next(r->rng) & 3) == 0;
}

static const struct h1resp_cb cb = {.header = on_header, .body = on_body};

/* Feeds data as the client does; the transcript and the parser's end. */
static void feed(const uint8_t *data, size_t size, struct fuzz_rng *rng, struct run *r,
                 struct h1resp *p, size_t *taken)
{
	char *in = malloc(size + 1);
	size_t at = 0, len = 0, piece;
	ssize_t k;

	FUZZ_ASSERT(in, "out of memory");
	h1resp_init(p);
	r->rng = rng;
	*taken = 0;
	while (p->state != H1_ERROR && p->state != H1_DONE) {
		piece = at < size ? (rng ? fuzz_piece(rng, size - at) : size - at) : 0;
		memcpy(in + len, data + at, piece);
		len += piece;
		at += piece;
		do {
			k = h1resp_feed(p, in, len, &cb, r);
			if (k < 0)
				break;
			FUZZ_ASSERT((size_t)k <= len, "took %zd of %zu", k, len);
			memmove(in, in + k, len - (size_t)k);
			len -= (size_t)k;
			*taken += (size_t)k;
		} while (k > 0 && len > 0 && p->state != H1_DONE); /* a pause: go on */
		if (k < 0 || at == size)
			break;
	}
	if (p->state != H1_ERROR && p->state != H1_DONE)
		(void)h1resp_eof(p);
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole = {0}, pieces = {0};
	struct h1resp pw, pp;
	struct fuzz_rng rng;
	size_t tw, tp;

	feed(data, size, NULL, &whole, &pw, &tw);
	fuzz_rng_seed(&rng, data, size);
	feed(data, size, &rng, &pieces, &pp, &tp);
	FUZZ_ASSERT(pw.state == pp.state, "ends %d whole, %d in pieces", pw.state, pp.state);
	FUZZ_ASSERT(whole.head.len == pieces.head.len &&
	                (!whole.head.len || !memcmp(whole.head.p, pieces.head.p, whole.head.len)),
	            "head lines differ");
	FUZZ_ASSERT(whole.body.len == pieces.body.len &&
	                (!whole.body.len || !memcmp(whole.body.p, pieces.body.p, whole.body.len)),
	            "bodies differ: %zu and %zu bytes", whole.body.len, pieces.body.len);
	if (pw.state == H1_DONE) {
		FUZZ_ASSERT(tw == tp, "took %zu whole, %zu in pieces", tw, tp);
		FUZZ_ASSERT(pw.status >= 200 && pw.status <= 599, "status %d", pw.status);
		FUZZ_ASSERT(pw.keep_alive == pp.keep_alive, "keep-alive differs");
		if (pw.length >= 0 && !pw.chunked && pw.status != 204 && pw.status != 304)
			FUZZ_ASSERT(whole.body.len == (size_t)pw.length,
			            "%zu body bytes for a length of %lld", whole.body.len,
			            (long long)pw.length);
		if (pw.keep_alive)
			FUZZ_ASSERT(pw.length >= 0 || pw.chunked || pw.status == 204 ||
			                pw.status == 304,
			            "a connection kept after a body to its end");
	}
	FUZZ_ASSERT(pw.head_seen <= H1_HEAD_MAX, "a head of %zu bytes", pw.head_seen);
	fuzz_log_free(&whole.head);
	fuzz_log_free(&whole.body);
	fuzz_log_free(&pieces.head);
	fuzz_log_free(&pieces.body);
	return 0;
}
