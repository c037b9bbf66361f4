/*
 * sse.h - the usage a streamed answer (server-sent events) reports, read
 * from its bytes as they are relayed: chat's "usage", or the responses
 * API's "response.usage", in a "data: {...}" line. The bytes come in pieces
 * of any size; the line being received is kept, up to SSE_LINE_MAX (a
 * longer line is relayed, not read). Pure: no I/O; relaying is the
 * caller's.
 */
#ifndef LLMQ_SSE_H
#define LLMQ_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "gate/price.h"

#define SSE_LINE_MAX (1024 * 1024)

struct sse_scan {
	char *line; /* the line being received, without its LF */
	size_t len, cap;
	int skip;                 /* the current line is too long (or memory ran out): not read */
	int64_t used;             /* total_tokens of the last usage the stream reported; -1 none */
	struct price_usage usage; /* all of that usage (what its cost is worked out from) */
};

void sse_scan_init(struct sse_scan *s);
/* The next len bytes of the stream. */
void sse_scan_feed(struct sse_scan *s, const char *data, size_t len);
/* Frees what s holds; s may be fed again after sse_scan_init. */
void sse_scan_clear(struct sse_scan *s);

/* The total_tokens one line (without its line end) reports, or -1. */
int64_t sse_line_usage(const char *line, size_t len);
/* The same, with the rest of the usage into ret (PRICE_USAGE_NONE when none). */
int64_t sse_line_usage_parts(const char *line, size_t len, struct price_usage *ret);

#endif
