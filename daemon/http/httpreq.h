/*
 * httpreq.h - a streaming HTTP/1.1 request reader (RFC 9112), for requests
 * whose bodies must not be held whole (an upload of 200 MB): bytes are fed
 * as they arrive, the head is handed on once complete, and the body -
 * Content-Length or chunked - is handed on piece by piece, decoded. Requests
 * on one connection follow each other (pipelining): a feed reports where
 * one request ended. Pure: no I/O, no allocation.
 *
 * libevent 2.1's evhttp reads every body whole before its handler runs and
 * has no hook in between; this reader is what a route that streams its
 * upload sits on.
 */
#ifndef LLMQ_HTTPREQ_H
#define LLMQ_HTTPREQ_H

#include <stddef.h>
#include <stdint.h>

#define HTTPREQ_MAX_HEAD (64 * 1024) /* request line and headers */
#define HTTPREQ_MAX_HEADERS 64

struct httpreq_header {
	const char *name, *value; /* into the reader's head buffer; valid in on_head */
};

struct httpreq_head {
	const char *method, *target; /* target: an absolute form's path alone */
	int minor;                   /* HTTP/1.<minor> */
	int64_t length;              /* Content-Length, or -1 (chunked, or no body) */
	int chunked;                 /* Transfer-Encoding: chunked */
	int expect_continue;         /* Expect: 100-continue */
	int close;                   /* Connection: close, or HTTP/1.0 without keep-alive */
	struct httpreq_header headers[HTTPREQ_MAX_HEADERS];
	int n_headers;
};

/* Each returns 0, or < 0 to stop the reader with that error. */
struct httpreq_cb {
	int (*on_head)(void *ud, const struct httpreq_head *head);
	int (*on_body)(void *ud, const char *data, size_t len);
	int (*on_end)(void *ud);
};

struct httpreq {
	int state;
	char head[HTTPREQ_MAX_HEAD];
	size_t hlen;
	int64_t left;   /* body bytes left: of the Content-Length, or of the chunk */
	char line[256]; /* a chunk-size line, or a trailer line */
	size_t llen;
	size_t tlen; /* bytes of the trailer section so far: bounded as the head is */
	int status;  /* the HTTP status an error deserves (400, 413, 431, 501) */
	char err[160];
	const struct httpreq_cb *cb;
	void *ud;
};

void httpreq_init(struct httpreq *r, const struct httpreq_cb *cb, void *ud);

/*
 * The next len bytes of the connection. Returns how many were used: len, or
 * fewer when a request ended within them (the rest belongs to the next;
 * httpreq_init again and feed it), or < 0 on an error (r->status and
 * r->err say which) or a callback's error.
 */
long httpreq_feed(struct httpreq *r, const char *data, size_t len);

/* The value of header name in head (case-insensitive), or NULL. */
const char *httpreq_header(const struct httpreq_head *head, const char *name);

#endif
