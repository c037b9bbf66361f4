/*
 * fuzz_sse.c - the usage scanner of a relayed stream (daemon/http/sse.c), fed
 * the bytes of an upstream's server-sent events.
 *
 * Beyond not crashing: the stream fed in one piece and in random pieces
 * ends with the same usage, and that is the usage of the last whole line
 * that reports one, read line by line from the whole stream (the
 * scanner's buffering against plain splitting); only a "data: {" line
 * reports usage.
 */
#include "fuzz.h"

#include "http/sse.h"

static int64_t scan(const uint8_t *data, size_t size, struct fuzz_rng *rng)
{
	struct sse_scan s;
	size_t at = 0, piece;
	int64_t used;

	sse_scan_init(&s);
	while (at < size) {
		piece = rng ? fuzz_piece(rng, size - at) : size - at;
		sse_scan_feed(&s, (const char *)data + at, piece);
		FUZZ_ASSERT(s.len <= SSE_LINE_MAX, "a line of %zu bytes kept", s.len);
		at += piece;
	}
	used = s.used;
	sse_scan_clear(&s);
	return used;
}

/* The same, line by line over the whole stream. */
static int64_t by_lines(const char *p, size_t size)
{
	const char *nl;
	size_t n, ll;
	int64_t used = -1, u;

	while ((nl = memchr(p, '\n', size))) {
		n = (size_t)(nl - p);
		ll = n && p[n - 1] == '\r' ? n - 1 : n;
		if (n <= SSE_LINE_MAX && (u = sse_line_usage(p, ll)) >= 0) {
			FUZZ_ASSERT(ll > 7 && memcmp(p, "data: {", 7) == 0, "usage from \"%.*s\"",
			            (int)ll, p);
			used = u;
		}
		p = nl + 1;
		size -= n + 1;
	}
	return used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_rng rng;
	int64_t whole, pieces, lines;

	whole = scan(data, size, NULL);
	fuzz_rng_seed(&rng, data, size);
	pieces = scan(data, size, &rng);
	lines = by_lines((const char *)data, size);
	FUZZ_ASSERT(whole == pieces, "usage %lld whole, %lld in pieces", (long long)whole,
	            (long long)pieces);
	FUZZ_ASSERT(whole == lines, "usage %lld scanned, %lld line by line", (long long)whole,
	            (long long)lines);
	return 0;
}
