/*
 * httpreq.c - see httpreq.h.
 *
 * What RFC 9112 lets a server refuse, it refuses, since a request that two
 * parsers would read differently is how requests are smuggled: a header
 * folded over lines, whitespace before a header's colon, Transfer-Encoding
 * together with Content-Length, two different Content-Lengths, a transfer
 * coding other than chunked (or chunked not last, in one line or over
 * several), chunked in HTTP/1.0, no Host or two. Every line of the framing
 * (the head, chunk-size lines, trailers) ends in CRLF and holds no control
 * byte but HTAB: a NUL, a bare CR or a bare LF is refused at the byte,
 * before anything is parsed, since parsers that stop at a NUL or end lines
 * at a bare LF would each see a different request.
 */
#include "http/httpreq.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
	R_HEAD,
	R_BODY,       /* Content-Length bytes */
	R_CHUNK_SIZE, /* a chunk-size line */
	R_CHUNK_DATA,
	R_CHUNK_END, /* the CRLF after a chunk's data */
	R_TRAILER,   /* trailer lines, up to the empty one */
	R_DONE,
	R_FAILED,
};

static long fail(struct httpreq *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static long fail(struct httpreq *r, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	r->status = status;
	r->state = R_FAILED;
	return -EINVAL;
}

void httpreq_init(struct httpreq *r, const struct httpreq_cb *cb, void *ud)
{
	/* Not the head buffer: its pages stay untouched until a head needs them. */
	r->hlen = 0;
	r->left = 0;
	r->llen = 0;
	r->tlen = 0;
	r->status = 0;
	r->err[0] = '\0';
	r->cb = cb;
	r->ud = ud;
	r->state = R_HEAD;
}

const char *httpreq_header(const struct httpreq_head *head, const char *name)
{
	int i;

	for (i = 0; i < head->n_headers; i++)
		if (strcasecmp(head->headers[i].name, name) == 0)
			return head->headers[i].value;
	return NULL;
}

/* NULL, or why byte c, after prev, cannot be in a line of the framing. */
static const char *line_byte_bad(char prev, char c)
{
	if (prev == '\r' && c != '\n')
		return "a CR not followed by LF";
	if (c == '\n' && prev != '\r')
		return "an LF not preceded by CR";
	if (((unsigned char)c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
		return "a control byte";
	return NULL;
}

static int token_char(int c)
{
	return c && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c));
}

/* Whether the comma-separated list value holds the token tok. */
static int list_has(const char *value, const char *tok)
{
	size_t n = strlen(tok);
	const char *p = value;

	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (strncasecmp(p, tok, n) == 0 && (p[n] == '\0' || strchr(" \t,;", p[n])))
			return 1;
		p = strchr(p, ',');
	}
	return 0;
}

static int parse_length(const char *v, int64_t *ret)
{
	int64_t n = 0;

	if (!*v)
		return -1;
	for (; *v; v++) {
		if (!isdigit((unsigned char)*v) || n > (INT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*v - '0');
	}
	*ret = n;
	return 0;
}

/*
 * The Transfer-Encoding lines of h, as one list (RFC 9110 5.3): chunked
 * must be the last coding, else the body's length cannot be known and the
 * request is refused (RFC 9112 6.3); chunked twice is refused; another
 * coding before it is not supported here.
 */
static long transfer_codings(struct httpreq *r, const struct httpreq_head *h)
{
	const char *p, *other = NULL;
	size_t n, last_n = 0;
	const char *last = NULL;
	int i, chunked = 0;

	for (i = 0; i < h->n_headers; i++) {
		if (strcasecmp(h->headers[i].name, "Transfer-Encoding") != 0)
			continue;
		for (p = h->headers[i].value; *p; p += n) {
			p += strspn(p, " \t,");
			n = strcspn(p, " \t,;");
			if (n == 0)
				break;
			last = p;
			last_n = n;
			if (n == 7 && strncasecmp(p, "chunked", 7) == 0)
				chunked++;
			else if (!other)
				other = p;
			n += strcspn(p + n, ","); /* its parameters */
		}
	}
	if (!last || last_n != 7 || strncasecmp(last, "chunked", 7) != 0)
		return fail(r, 400,
		            "Transfer-Encoding whose last coding is not chunked: the body's length "
		            "cannot be known");
	if (chunked > 1)
		return fail(r, 400, "chunked applied more than once");
	if (other)
		return fail(r, 501, "transfer coding \"%.*s\" is not supported (chunked is)",
		            (int)strcspn(other, " \t,;"), other);
	return 0;
}

/* The head is in r->head, NUL-terminated, its lines ending in CRLF. */
static long parse_head(struct httpreq *r, struct httpreq_head *h)
{
	char *line = r->head, *next, *sp, *v, *end;
	const char *te, *conn;
	int64_t len;
	long e;
	int i, hosts;

	memset(h, 0, sizeof(*h));
	h->length = -1;
	next = strstr(line, "\r\n");
	if (!next)
		return fail(r, 400, "malformed request line");
	*next = '\0';
	next += 2;
	/* METHOD SP target SP HTTP/1.x */
	sp = strchr(line, ' ');
	if (!sp || sp == line)
		return fail(r, 400, "malformed request line");
	*sp = '\0';
	h->method = line;
	for (v = line; *v; v++)
		if (!token_char((unsigned char)*v))
			return fail(r, 400, "malformed method");
	h->target = sp + 1;
	sp = strchr(sp + 1, ' ');
	if (!sp || sp == h->target || strncmp(sp + 1, "HTTP/1.", 7) != 0 ||
	    !isdigit((unsigned char)sp[8]) || sp[9] != '\0')
		return fail(r, 400, "malformed request line (HTTP/1.x expected)");
	*sp = '\0';
	h->minor = sp[8] - '0';
	if (strchr(h->target, '\t'))
		return fail(r, 400, "whitespace in the request target");
	/* The absolute form (RFC 9112 3.2.2), as a proxy would send it: its path. */
	if (strncasecmp(h->target, "http://", 7) == 0 ||
	    strncasecmp(h->target, "https://", 8) == 0) {
		v = strstr(h->target, "://") + 3;
		end = v + strcspn(v, "/?");
		if (end == v)
			return fail(r, 400, "an absolute request target without a host");
		if (*end == '/') {
			h->target = end;
		} else { /* "http://host" or "http://host?q": the path is "/" */
			*--v = '/';
			memmove(v + 1, end, strlen(end) + 1);
			h->target = v;
		}
	}
	for (line = next; *line; line = next) {
		next = strstr(line, "\r\n");
		if (!next)
			return fail(r, 400, "malformed header line");
		*next = '\0';
		next += 2;
		if (*line == ' ' || *line == '\t')
			return fail(r, 400, "a header folded over lines");
		v = strchr(line, ':');
		if (!v || v == line)
			return fail(r, 400, "malformed header line");
		*v++ = '\0';
		for (end = line; *end; end++)
			if (!token_char((unsigned char)*end))
				return fail(r, 400,
				            "malformed header name (whitespace before ':'?)");
		while (*v == ' ' || *v == '\t')
			v++;
		end = v + strlen(v);
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (h->n_headers == HTTPREQ_MAX_HEADERS)
			return fail(r, 431, "more than %d headers", HTTPREQ_MAX_HEADERS);
		h->headers[h->n_headers].name = line;
		h->headers[h->n_headers].value = v;
		h->n_headers++;
	}
	for (i = 0; i < h->n_headers; i++) {
		if (strcasecmp(h->headers[i].name, "Content-Length") != 0)
			continue;
		if (parse_length(h->headers[i].value, &len) < 0)
			return fail(r, 400, "malformed Content-Length");
		if (h->length >= 0 && h->length != len)
			return fail(r, 400, "two different Content-Lengths");
		h->length = len;
	}
	te = httpreq_header(h, "Transfer-Encoding");
	if (te) {
		if (h->length >= 0)
			return fail(r, 400, "both Transfer-Encoding and Content-Length");
		if (h->minor == 0)
			return fail(r, 400, "Transfer-Encoding in HTTP/1.0");
		if ((e = transfer_codings(r, h)) < 0)
			return e;
		h->chunked = 1;
	}
	/* RFC 9112 3.2: one Host in every HTTP/1.1 request, never two. */
	for (i = 0, hosts = 0; i < h->n_headers; i++)
		hosts += strcasecmp(h->headers[i].name, "Host") == 0;
	if (hosts > 1)
		return fail(r, 400, "%d Host headers; a request has one", hosts);
	if (hosts == 0 && h->minor >= 1)
		return fail(r, 400, "no Host header; an HTTP/1.1 request has one");
	v = (char *)httpreq_header(h, "Expect");
	h->expect_continue = v && strcasecmp(v, "100-continue") == 0;
	conn = httpreq_header(h, "Connection");
	h->close = (conn && list_has(conn, "close")) ||
	           (h->minor == 0 && !(conn && list_has(conn, "keep-alive")));
	return 0;
}

static long end_request(struct httpreq *r)
{
	int e = r->cb->on_end(r->ud);

	r->state = e < 0 ? R_FAILED : R_DONE;
	return e < 0 ? e : 0;
}

/*
 * A line (chunk size or trailer) into r->line: 1 once its CRLF came, -1 when
 * too long, -2 (r->err says why) for a byte no line may hold.
 */
static int take_line(struct httpreq *r, char c, const char *what)
{
	const char *bad = line_byte_bad(r->llen ? r->line[r->llen - 1] : 0, c);

	if (bad) {
		fail(r, 400, "%s (0x%02x) in %s", bad, (unsigned char)c, what);
		return -2;
	}
	if (r->llen + 1 >= sizeof(r->line))
		return -1;
	r->line[r->llen++] = c;
	if (r->llen >= 2 && r->line[r->llen - 2] == '\r' && c == '\n') {
		r->line[r->llen - 2] = '\0';
		r->llen = 0;
		return 1;
	}
	return 0;
}

static long chunk_size(struct httpreq *r)
{
	char *p = r->line;
	int64_t n = 0;

	if (!isxdigit((unsigned char)*p))
		return fail(r, 400, "malformed chunk size");
	for (; isxdigit((unsigned char)*p); p++) {
		if (n > (INT64_MAX >> 4))
			return fail(r, 413, "chunk size too large");
		n = n * 16 + (isdigit((unsigned char)*p) ? *p - '0' : (tolower(*p) - 'a' + 10));
	}
	if (*p && *p != ';' && *p != ' ' && *p != '\t')
		return fail(r, 400, "malformed chunk size");
	r->left = n;
	r->state = n == 0 ? R_TRAILER : R_CHUNK_DATA;
	return 0;
}

long httpreq_feed(struct httpreq *r, const char *data, size_t len)
{
	struct httpreq_head h;
	const char *bad;
	size_t i = 0, n;
	long e;

	while (i < len && r->state != R_DONE) {
		switch (r->state) {
		case R_FAILED:
			return -EINVAL;
		case R_HEAD:
			/* Empty lines before a request line are skipped (RFC 9112 2.2). */
			if (r->hlen == 0 && (data[i] == '\r' || data[i] == '\n')) {
				i++;
				break;
			}
			if (r->hlen + 1 >= sizeof(r->head))
				return fail(r, 431, "request head larger than %d bytes",
				            HTTPREQ_MAX_HEAD);
			bad = line_byte_bad(r->hlen ? r->head[r->hlen - 1] : 0, data[i]);
			if (bad)
				return fail(r, 400, "%s (0x%02x) in the request head", bad,
				            (unsigned char)data[i]);
			r->head[r->hlen++] = data[i++];
			if (r->hlen < 4 || memcmp(r->head + r->hlen - 4, "\r\n\r\n", 4) != 0)
				break;
			r->head[r->hlen - 2] = '\0';
			if ((e = parse_head(r, &h)) < 0)
				return e;
			if ((e = r->cb->on_head(r->ud, &h)) < 0) {
				r->state = R_FAILED;
				return e;
			}
			if (h.chunked) {
				r->state = R_CHUNK_SIZE;
			} else if (h.length > 0) {
				r->left = h.length;
				r->state = R_BODY;
			} else if ((e = end_request(r)) < 0) {
				return e;
			}
			break;
		case R_BODY:
		case R_CHUNK_DATA:
			n = len - i < (uint64_t)r->left ? len - i : (size_t)r->left;
			if ((e = r->cb->on_body(r->ud, data + i, n)) < 0) {
				r->state = R_FAILED;
				return e;
			}
			i += n;
			r->left -= (int64_t)n;
			if (r->left > 0)
				break;
			if (r->state == R_CHUNK_DATA)
				r->state = R_CHUNK_END;
			else if ((e = end_request(r)) < 0)
				return e;
			break;
		case R_CHUNK_END:
			e = take_line(r, data[i++], "the line after a chunk");
			if (e == -2)
				return -EINVAL;
			if (e < 0 || (e == 1 && r->line[0] != '\0'))
				return fail(r, 400, "chunk data longer than its size");
			if (e == 1)
				r->state = R_CHUNK_SIZE;
			break;
		case R_CHUNK_SIZE:
			e = take_line(r, data[i++], "a chunk-size line");
			if (e == -2)
				return -EINVAL;
			if (e < 0)
				return fail(r, 400, "chunk-size line too long");
			if (e == 1 && (e = chunk_size(r)) < 0)
				return e;
			break;
		case R_TRAILER:
			/* The trailer section is bounded as the head is. */
			if (++r->tlen > HTTPREQ_MAX_HEAD)
				return fail(r, 431, "trailer section larger than %d bytes",
				            HTTPREQ_MAX_HEAD);
			e = take_line(r, data[i++], "a trailer line");
			if (e == -2)
				return -EINVAL;
			if (e < 0)
				return fail(r, 431, "trailer line too long");
			if (e == 1 && r->line[0] == '\0' && (e = end_request(r)) < 0)
				return e;
			break;
		}
	}
	return r->state == R_FAILED ? -EINVAL : (long)i;
}
