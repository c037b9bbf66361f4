/*
 * multipart.h - a streaming multipart/form-data parser (RFC 7578, RFC 2046
 * delimiters), for uploads that must never be held whole in memory: bytes
 * are fed as they arrive, in pieces of any size, and each part's body is
 * handed on as it is recognised. A delimiter split across two pieces is
 * held back (at most its own length) until it is known to be one. Pure: no
 * I/O, no allocation.
 */
#ifndef LLMQ_MULTIPART_H
#define LLMQ_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#define MULTIPART_MAX_BOUNDARY 70  /* RFC 2046 */
#define MULTIPART_MAX_HEADERS 8192 /* one part's header block */
#define MULTIPART_MAX_PARTS 16

struct multipart_part {
	char name[128];         /* Content-Disposition: form-data; name="..." */
	char filename[256];     /* its filename="...", "" when none (cut at 255 bytes) */
	size_t filename_len;    /* the filename's whole length, however long */
	char content_type[128]; /* "" when none */
};

/* Each callback returns 0, or < 0 to stop the parse with that error. */
struct multipart_cb {
	int (*part_begin)(void *ud, const struct multipart_part *part);
	int (*part_data)(void *ud, const char *data, size_t len);
	int (*part_end)(void *ud);
};

struct multipart {
	char delim[4 + MULTIPART_MAX_BOUNDARY + 1]; /* "\r\n--" boundary */
	size_t dlen;
	int state;
	size_t match; /* bytes of delim matched so far */
	size_t after; /* bytes seen after a delimiter: "--" or "\r\n" */
	char hdr[MULTIPART_MAX_HEADERS];
	size_t hlen;
	int parts;
	const struct multipart_cb *cb;
	void *ud;
	char err[160]; /* what was wrong, for the client */
};

/*
 * The boundary parameter of a Content-Type header (quoted or not), checked
 * against RFC 2046; 0, or -EINVAL when the type is not multipart/form-data
 * or has no valid boundary.
 */
int multipart_boundary(const char *content_type, char *buf, size_t len);

void multipart_init(struct multipart *mp, const char *boundary, const struct multipart_cb *cb,
                    void *ud);
/* The next len bytes of the body: 0, -EINVAL (mp->err says why), or a callback's error. */
int multipart_feed(struct multipart *mp, const char *data, size_t len);
/* The body ended: 0 when the closing delimiter was seen, else -EINVAL. */
int multipart_finish(struct multipart *mp);

#endif
