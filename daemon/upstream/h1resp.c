/*
 * h1resp.c - reads an HTTP/1.1 answer (RFC 9112) as its bytes come: a state
 * machine over whole lines for the head and the chunks' size lines, and
 * over byte counts for the body. A line ends with LF, a CR before it
 * dropped; a CR or NUL anywhere else in a line fails the answer.
 */
#include "upstream/h1resp.h"

#include <string.h>
#include <strings.h>

#define H1_CHUNK_LINE_MAX 4096 /* a chunk's size line, its extensions included */

void h1resp_init(struct h1resp *p)
{
	memset(p, 0, sizeof(*p));
	p->state = H1_STATUS;
	p->length = -1;
}

static ssize_t fail(struct h1resp *p, const char *why)
{
	p->state = H1_ERROR;
	p->error = why;
	return -1;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* A value without the spaces and tabs around it. */
static void trim(const char **v, size_t *n)
{
	while (*n > 0 && is_ws(**v)) {
		(*v)++;
		(*n)--;
	}
	while (*n > 0 && is_ws((*v)[*n - 1]))
		(*n)--;
}

static int token_is(const char *v, size_t n, const char *word)
{
	trim(&v, &n);
	return strlen(word) == n && strncasecmp(v, word, n) == 0;
}

/* "HTTP/1.x SSS reason" */
static int status_line(struct h1resp *p, const char *l, size_t n)
{
	int s;

	if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') || l[8] != ' ' ||
	    l[9] < '1' || l[9] > '5' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9' ||
	    (n > 12 && l[12] != ' '))
		return -1;
	s = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	p->interim = s < 200;
	if (!p->interim) {
		p->status = s;
		p->keep_alive = l[7] == '1'; /* an HTTP/1.0 connection is not kept */
	}
	return s;
}

static int content_length(struct h1resp *p, const char *v, size_t n)
{
	int64_t len = 0;
	size_t i;

	trim(&v, &n);
	if (n == 0 || n > 18)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		len = len * 10 + (v[i] - '0');
	}
	if (p->length >= 0 && p->length != len)
		return -1; /* two lengths: which one frames the body? */
	p->length = len;
	return 0;
}

/* Only "chunked", alone: no other coding was asked for (no TE sent). */
static int transfer_encoding(struct h1resp *p, const char *v, size_t n)
{
	if (p->chunked || !token_is(v, n, "chunked"))
		return -1;
	p->chunked = 1;
	return 0;
}

static void connection(struct h1resp *p, const char *v, size_t n)
{
	const char *comma;
	size_t k;

	while (n > 0) {
		comma = memchr(v, ',', n);
		k = comma ? (size_t)(comma - v) : n;
		if (token_is(v, k, "close"))
			p->keep_alive = 0;
		if (!comma)
			break;
		v = comma + 1;
		n -= k + 1;
	}
}

static int header_line(struct h1resp *p, const char *l, size_t n)
{
	const char *colon = memchr(l, ':', n), *v;
	size_t k, i, vn;

	if (is_ws(l[0]) || !colon || colon == l)
		return -1; /* a folded line, or no name */
	k = (size_t)(colon - l);
	for (i = 0; i < k; i++)
		if ((unsigned char)l[i] <= ' ' || l[i] == 0x7f)
			return -1;
	if (p->interim)
		return 0;
	v = colon + 1;
	vn = n - k - 1;
	if (k == 14 && strncasecmp(l, "content-length", k) == 0)
		return content_length(p, v, vn);
	if (k == 17 && strncasecmp(l, "transfer-encoding", k) == 0)
		return transfer_encoding(p, v, vn);
	if (k == 10 && strncasecmp(l, "connection", k) == 0)
		connection(p, v, vn);
	return 0;
}

/* The head is over: how is the body framed? */
static void head_end(struct h1resp *p)
{
	if (p->interim) {
		p->state = H1_STATUS;
		return;
	}
	if (p->status == 204 || p->status == 304) {
		p->state = H1_DONE;
	} else if (p->chunked) {
		if (p->length >= 0)
			p->keep_alive =
			    0; /* both: chunks frame it, the connection is not trusted */
		p->state = H1_CHUNK_SIZE;
	} else if (p->length >= 0) {
		p->left = (uint64_t)p->length;
		p->state = p->left ? H1_BODY_LEN : H1_DONE;
	} else {
		p->keep_alive = 0;
		p->state = H1_BODY_EOF;
	}
}

static int chunk_size(struct h1resp *p, const char *l, size_t n)
{
	uint64_t size = 0;
	size_t i = 0;
	int d;

	for (; i < n; i++) {
		char c = l[i];

		d = c >= '0' && c <= '9'   ? c - '0'
		    : c >= 'a' && c <= 'f' ? c - 'a' + 10
		    : c >= 'A' && c <= 'F' ? c - 'A' + 10
		                           : -1;
		if (d < 0)
			break;
		if (size >> 59)
			return -1;
		size = size * 16 + (uint64_t)d;
	}
	if (i == 0)
		return -1;
	while (i < n && is_ws(l[i]))
		i++;
	if (i < n && l[i] != ';')
		return -1;
	p->left = size;
	p->state = size ? H1_CHUNK_DATA : H1_TRAILERS;
	return 0;
}

/* One whole line of a head, a size line or a chunk's end, without its end. */
static ssize_t line(struct h1resp *p, const char *l, size_t n, const struct h1resp_cb *cb, void *ud)
{
	int s;

	if (memchr(l, '\r', n) || memchr(l, '\0', n))
		return fail(p, "the upstream's answer has a CR or NUL inside a line");
	switch (p->state) {
	case H1_STATUS:
		s = status_line(p, l, n);
		if (s < 0)
			return fail(
			    p, "the upstream's answer does not begin with an HTTP/1.x status line");
		if (s == 101)
			return fail(p,
			            "the upstream switched protocols, which llmqd did not ask for");
		if (!p->interim)
			cb->header(ud, l, n);
		p->state = H1_HEADERS;
		return 0;
	case H1_HEADERS:
		if (n == 0) {
			head_end(p);
			return 0;
		}
		if (header_line(p, l, n) < 0)
			return fail(
			    p, "the upstream's answer has a header that cannot be read one way "
			       "only (folded, nameless, two lengths or a transfer coding "
			       "other than chunked)");
		if (!p->interim)
			cb->header(ud, l, n);
		return 0;
	case H1_CHUNK_SIZE:
		if (chunk_size(p, l, n) < 0)
			return fail(p, "the upstream's answer has a bad chunk size");
		return 0;
	case H1_CHUNK_END:
		if (n != 0)
			return fail(p, "the upstream's chunk is longer than its size says");
		p->state = H1_CHUNK_SIZE;
		return 0;
	case H1_TRAILERS:
		if (n == 0)
			p->state = H1_DONE;
		else if (is_ws(l[0]) || !memchr(l, ':', n))
			return fail(p, "the upstream's answer has a bad trailer");
		return 0;
	default:
		return fail(p, "the answer's reader is lost");
	}
}

static int in_head(const struct h1resp *p)
{
	return p->state == H1_STATUS || p->state == H1_HEADERS || p->state == H1_TRAILERS;
}

ssize_t h1resp_feed(struct h1resp *p, const char *buf, size_t n, const struct h1resp_cb *cb,
                    void *ud)
{
	const char *nl;
	size_t at = 0, len, take;
	int r;

	while (at < n && p->state != H1_DONE) {
		switch (p->state) {
		case H1_BODY_LEN:
		case H1_CHUNK_DATA:
		case H1_BODY_EOF:
			take = n - at;
			if (p->state != H1_BODY_EOF && take > p->left)
				take = (size_t)p->left;
			if (p->state != H1_BODY_EOF) {
				p->left -= take;
				if (p->left == 0)
					p->state = p->state == H1_BODY_LEN ? H1_DONE : H1_CHUNK_END;
			}
			r = cb->body(ud, buf + at, take);
			at += take;
			if (r < 0)
				return fail(p, "the answer's reader stopped taking it");
			if (r > 0)
				return (ssize_t)at;
			break;
		case H1_ERROR:
			return -1;
		default:
			nl = memchr(buf + at, '\n', n - at);
			len = nl ? (size_t)(nl - (buf + at)) + 1 : n - at;
			if (in_head(p) && p->head_seen + len > H1_HEAD_MAX)
				return fail(p, "the upstream's answer has a head over 300 KiB");
			if (!in_head(p) && len > H1_CHUNK_LINE_MAX)
				return fail(
				    p, "the upstream's answer has a chunk size line over 4 KiB");
			if (!nl)
				return (ssize_t)at; /* the rest of the line is to come */
			if (in_head(p))
				p->head_seen += len;
			len--;
			if (len > 0 && buf[at + len - 1] == '\r')
				len--;
			if (line(p, buf + at, len, cb, ud) < 0)
				return -1;
			at = (size_t)(nl - buf) + 1;
			break;
		}
	}
	return (ssize_t)at;
}

int h1resp_eof(struct h1resp *p)
{
	if (p->state == H1_BODY_EOF)
		p->state = H1_DONE;
	if (p->state == H1_DONE)
		return 0;
	if (p->state != H1_ERROR)
		fail(p, p->state == H1_STATUS && p->head_seen == 0
		            ? "the upstream closed the connection without an answer"
		            : "the upstream closed the connection in the middle of its answer");
	return -1;
}
