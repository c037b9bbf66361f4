/*
 * multipart.c - see multipart.h.
 *
 * The body is scanned for the delimiter "\r\n--BOUNDARY". A boundary holds
 * no CR or LF (RFC 2046), so the delimiter's first byte occurs in it only
 * at its start: a partial match that fails restarts at the failing byte,
 * and the bytes it had matched are plain data again - they are the
 * delimiter's own prefix, handed on from the delimiter itself. The preamble
 * is scanned the same way, as if the body began with "\r\n", and dropped.
 */
#include "http/multipart.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum {
	MP_PREAMBLE, /* before the first delimiter: dropped */
	MP_AFTER,    /* just after a delimiter: "--" ends, "\r\n" starts a part */
	MP_HEADERS,  /* a part's headers, up to the empty line */
	MP_BODY,     /* a part's body, up to the next delimiter */
	MP_EPILOGUE, /* after the closing delimiter: dropped */
	MP_FAILED,
};

static int fail(struct multipart *mp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct multipart *mp, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mp->err, sizeof(mp->err), fmt, ap);
	va_end(ap);
	mp->state = MP_FAILED;
	return -EINVAL;
}

static int bchar(int c)
{
	return c && (isalnum(c) || strchr("'()+_,-./:=? ", c));
}

int multipart_boundary(const char *content_type, char *buf, size_t len)
{
	const char *p = content_type, *b, *end;
	size_t n;

	if (!p || strncasecmp(p, "multipart/form-data", 19) != 0)
		return -EINVAL;
	for (p += 19; (p = strchr(p, ';'));) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, "boundary=", 9) != 0)
			continue;
		b = p + 9;
		if (*b == '"') {
			end = strchr(++b, '"');
			if (!end)
				return -EINVAL;
		} else {
			end = b + strcspn(b, "; \t");
		}
		n = (size_t)(end - b);
		if (n == 0 || n > MULTIPART_MAX_BOUNDARY || n >= len || b[n - 1] == ' ')
			return -EINVAL;
		for (p = b; p < end; p++)
			if (!bchar((unsigned char)*p))
				return -EINVAL;
		memcpy(buf, b, n);
		buf[n] = '\0';
		return 0;
	}
	return -EINVAL;
}

void multipart_init(struct multipart *mp, const char *boundary, const struct multipart_cb *cb,
                    void *ud)
{
	size_t n = strlen(boundary);

	memset(mp, 0, sizeof(*mp));
	if (n > MULTIPART_MAX_BOUNDARY)
		n = MULTIPART_MAX_BOUNDARY;
	memcpy(mp->delim, "\r\n--", 4);
	memcpy(mp->delim + 4, boundary, n);
	mp->dlen = 4 + n;
	mp->cb = cb;
	mp->ud = ud;
	mp->state = MP_PREAMBLE;
	mp->match = 2; /* the body may begin with the delimiter, less its CRLF */
}

/* One parameter of a header value: name="value" or name=value. */
/* The parameter key of v into buf, cut to fit; returns its whole length. */
static size_t param(const char *v, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key), n, whole;
	const char *p = v, *end;

	buf[0] = '\0';
	while ((p = strchr(p, ';'))) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, key, klen) != 0 || p[klen] != '=')
			continue;
		p += klen + 1;
		if (*p == '"')
			end = strchr(++p, '"');
		else
			end = p + strcspn(p, "; \t");
		n = whole = end ? (size_t)(end - p) : strlen(p);
		if (n >= len)
			n = len - 1;
		memcpy(buf, p, n);
		buf[n] = '\0';
		return whole;
	}
	return 0;
}

/* The header block of a part (NUL-terminated, lines ending in CRLF). */
static int part_headers(struct multipart *mp)
{
	struct multipart_part part;
	char *line = mp->hdr, *next, *v;
	int disposition = 0;

	memset(&part, 0, sizeof(part));
	for (; *line; line = next) {
		next = strstr(line, "\r\n");
		if (!next)
			break;
		*next = '\0';
		next += 2;
		v = strchr(line, ':');
		if (!v)
			continue;
		*v++ = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		if (strcasecmp(line, "Content-Disposition") == 0) {
			if (strncasecmp(v, "form-data", 9) != 0)
				return fail(mp, "part %d is not form-data", mp->parts + 1);
			disposition = 1;
			param(v, "name", part.name, sizeof(part.name));
			part.filename_len =
			    param(v, "filename", part.filename, sizeof(part.filename));
		} else if (strcasecmp(line, "Content-Type") == 0) {
			snprintf(part.content_type, sizeof(part.content_type), "%s", v);
		}
	}
	if (!disposition || !part.name[0])
		return fail(mp, "part %d has no Content-Disposition name", mp->parts + 1);
	if (++mp->parts > MULTIPART_MAX_PARTS)
		return fail(mp, "more than %d parts", MULTIPART_MAX_PARTS);
	return mp->cb->part_begin(mp->ud, &part);
}

static int emit(struct multipart *mp, const char *p, size_t n)
{
	if (n == 0 || mp->state == MP_PREAMBLE)
		return 0;
	return mp->cb->part_data(mp->ud, p, n);
}

/*
 * Body (or preamble) bytes up to the end of a delimiter: returns how many
 * were used (all of them when no delimiter ended here), or < 0.
 */
static long scan(struct multipart *mp, const char *p, size_t n, int *ret_found)
{
	size_t i, run = 0;
	int r;

	*ret_found = 0;
	for (i = 0; i < n; i++) {
		if (p[i] == mp->delim[mp->match]) {
			if (mp->match == 0 && (r = emit(mp, p + run, i - run)) < 0)
				return r;
			run = i + 1;
			if (++mp->match == mp->dlen) {
				mp->match = 0;
				*ret_found = 1;
				return (long)(i + 1);
			}
			continue;
		}
		if (mp->match > 0) {
			/* Not a delimiter after all: what it matched was data. */
			if ((r = emit(mp, mp->delim, mp->match)) < 0)
				return r;
			mp->match = 0;
			if (p[i] == mp->delim[0]) {
				mp->match = 1;
				run = i + 1;
				continue;
			}
			run = i;
		}
	}
	if (mp->match == 0 && (r = emit(mp, p + run, n - run)) < 0)
		return r;
	return (long)n;
}

int multipart_feed(struct multipart *mp, const char *data, size_t len)
{
	size_t i = 0;
	long used;
	int found, r;

	while (i < len) {
		switch (mp->state) {
		case MP_FAILED:
			return -EINVAL;
		case MP_EPILOGUE:
			return 0;
		case MP_PREAMBLE:
		case MP_BODY:
			used = scan(mp, data + i, len - i, &found);
			if (used < 0) {
				mp->state = MP_FAILED;
				return (int)used;
			}
			i += (size_t)used;
			if (!found)
				break;
			if (mp->state == MP_BODY && (r = mp->cb->part_end(mp->ud)) < 0) {
				mp->state = MP_FAILED;
				return r;
			}
			mp->state = MP_AFTER;
			mp->after = 0;
			break;
		case MP_AFTER:
			/* "--" closes the body; "\r\n" (after optional blanks) opens a part. */
			if (mp->after == 0 && (data[i] == ' ' || data[i] == '\t')) {
				i++;
				break;
			}
			if (mp->after == 0 && (data[i] == '-' || data[i] == '\r')) {
				mp->after = (size_t)(unsigned char)data[i++];
				break;
			}
			if (mp->after == '-' && data[i] == '-') {
				mp->state = MP_EPILOGUE;
				return 0;
			}
			if (mp->after == '\r' && data[i] == '\n') {
				i++;
				mp->state = MP_HEADERS;
				mp->hlen = 0;
				break;
			}
			return fail(mp, "malformed delimiter line after part %d", mp->parts);
		case MP_HEADERS:
			if (mp->hlen + 1 >= sizeof(mp->hdr))
				return fail(mp, "part %d's headers are longer than %d bytes",
				            mp->parts + 1, MULTIPART_MAX_HEADERS);
			mp->hdr[mp->hlen++] = data[i++];
			if (mp->hlen == 2 && memcmp(mp->hdr, "\r\n", 2) == 0)
				return fail(mp, "part %d has no headers", mp->parts + 1);
			if (mp->hlen >= 4 && memcmp(mp->hdr + mp->hlen - 4, "\r\n\r\n", 4) == 0) {
				mp->hdr[mp->hlen - 2] = '\0';
				r = part_headers(mp);
				if (r < 0) {
					mp->state = MP_FAILED;
					return r;
				}
				mp->state = MP_BODY;
				mp->match = 0;
			}
			break;
		}
	}
	return mp->state == MP_FAILED ? -EINVAL : 0;
}

int multipart_finish(struct multipart *mp)
{
	if (mp->state == MP_EPILOGUE)
		return 0;
	if (mp->state != MP_FAILED)
		fail(mp, "the body ended before its closing delimiter (\"--BOUNDARY--\")");
	return -EINVAL;
}
