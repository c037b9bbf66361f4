/*
 * sse.c - see sse.h.
 *
 * Lines end in LF, a CR before it dropped; the "data: " of a line that
 * carries usage is always followed by the whole JSON object on that line
 * (as the providers send it), so one line is parsed at a time, and only
 * when it names "usage".
 */
#include "http/sse.h"

#include "protocol.h"

#include <stdlib.h>
#include <string.h>

/* Past this, the buffer of a line is freed once the line ended. */
#define SSE_KEEP_CAP (64 * 1024)

void sse_scan_init(struct sse_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->used = -1;
	s->usage = PRICE_USAGE_NONE;
}

void sse_scan_clear(struct sse_scan *s)
{
	if (!s)
		return;
	free(s->line);
	s->line = NULL;
	s->len = s->cap = 0;
	s->skip = 0;
}

int64_t sse_line_usage_parts(const char *line, size_t len, struct price_usage *ret)
{
	json_object *o = NULL, *u = NULL, *r, *v;
	char err[64];

	*ret = PRICE_USAGE_NONE;
	if (len < 7 || strncmp(line, "data: {", 7) != 0 || !memmem(line, len, "\"usage\"", 7))
		return -1;
	if (proto_parse_object(line + 6, len - 6, &o, err, sizeof(err)) < 0)
		return -1;
	if (!json_object_object_get_ex(o, "usage", &u) || !json_object_is_type(u, json_type_object))
		u = json_object_object_get_ex(o, "response", &r) &&
		            json_object_object_get_ex(r, "usage", &v) &&
		            json_object_is_type(v, json_type_object)
		        ? v
		        : NULL;
	/* The total as the stream said it: only a line that says it counts. */
	if (u && json_object_object_get_ex(u, "total_tokens", &v) &&
	    json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
		price_usage_read(u, ret);
	json_object_put(o);
	if (ret->total < 0)
		*ret = PRICE_USAGE_NONE;
	return ret->total;
}

int64_t sse_line_usage(const char *line, size_t len)
{
	struct price_usage u;

	return sse_line_usage_parts(line, len, &u);
}

/* n more bytes of the current line; past SSE_LINE_MAX the line is skipped. */
static void sse_scan_add(struct sse_scan *s, const char *p, size_t n)
{
	size_t cap;
	char *line;

	if (s->skip || n == 0)
		return; /* an empty line may have no buffer yet */
	if (s->len + n > SSE_LINE_MAX) {
		s->skip = 1;
		return;
	}
	if (s->len + n > s->cap) {
		cap = s->cap ? s->cap : 256;
		while (cap < s->len + n)
			cap *= 2;
		line = realloc(s->line, cap);
		if (!line) {
			s->skip = 1; /* the usage of one line is lost, not the stream */
			return;
		}
		s->line = line;
		s->cap = cap;
	}
	memcpy(s->line + s->len, p, n);
	s->len += n;
}

void sse_scan_feed(struct sse_scan *s, const char *data, size_t len)
{
	struct price_usage u;
	const char *nl;
	size_t n, ll;
	int64_t total;

	while (len > 0) {
		nl = memchr(data, '\n', len);
		n = nl ? (size_t)(nl - data) : len;
		sse_scan_add(s, data, n);
		if (!nl)
			return;
		if (!s->skip) {
			ll = s->len && s->line[s->len - 1] == '\r' ? s->len - 1 : s->len;
			total = s->len ? sse_line_usage_parts(s->line, ll, &u) : -1;
			if (total >= 0) {
				s->used = total;
				s->usage = u;
			}
		}
		s->len = 0;
		s->skip = 0;
		if (s->cap > SSE_KEEP_CAP)
			sse_scan_clear(
			    s); /* a long line's buffer is not kept for the stream's life */
		data = nl + 1;
		len -= n + 1;
	}
}
