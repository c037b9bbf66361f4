/*
 * h1resp.h - an HTTP/1.1 answer read as it arrives: the status line, the
 * header lines (1xx answers passed over), and a body framed by its
 * Content-Length, by chunks, or by the end of the connection. Pure: bytes
 * in, callbacks out, no I/O and no allocation; what the builtin upstream
 * client (upstream-h1.c) reads its answers with, and what a fuzzer feeds.
 * Strict where an answer could be read two ways (two lengths, a length
 * beside chunks, folded header lines): such an answer is an error, never a
 * guess.
 */
#ifndef LLMQ_H1RESP_H
#define LLMQ_H1RESP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H1_HEAD_MAX (300u << 10) /* status line and headers together, as curl's */

enum h1_state {
	H1_STATUS,     /* the status line */
	H1_HEADERS,    /* header lines up to the empty one */
	H1_BODY_LEN,   /* Content-Length bytes left */
	H1_CHUNK_SIZE, /* a chunk's size line */
	H1_CHUNK_DATA, /* a chunk's bytes left */
	H1_CHUNK_END,  /* the CRLF after a chunk's bytes */
	H1_TRAILERS,   /* trailer lines after the last chunk, up to the empty one */
	H1_BODY_EOF,   /* the body runs to the end of the connection */
	H1_DONE,
	H1_ERROR,
};

struct h1resp_cb {
	/* Each line of the final answer's head, the status line first, without
	 * its line end. */
	void (*header)(void *ud, const char *line, size_t n);
	/* Body bytes: returns 0 to go on, 1 to stop once these are taken (the
	 * feed returns what it took so far), < 0 to fail the answer. */
	int (*body)(void *ud, const char *data, size_t n);
};

struct h1resp {
	enum h1_state state;
	int status;       /* the final answer's status */
	int keep_alive;   /* the connection may carry another request after this answer */
	int64_t length;   /* Content-Length, -1 when none */
	int chunked;      /* Transfer-Encoding: chunked */
	int interim;      /* reading a 1xx answer's head, passed over */
	uint64_t left;    /* bytes left of the body or of this chunk */
	size_t head_seen; /* bytes of head read, 1xx heads included */
	const char *error;
};

void h1resp_init(struct h1resp *p);

/*
 * Takes what it can of buf[0..n): whole lines of the head, body bytes as
 * they come. Returns the bytes taken; the caller keeps the rest (a line not
 * yet ended) and offers it again with more. Returns -1 with p->error set on
 * an answer that is not HTTP/1.x or is too large a head, or when body()
 * failed. Stops at H1_DONE: bytes after the answer are not taken.
 */
ssize_t h1resp_feed(struct h1resp *p, const char *buf, size_t n, const struct h1resp_cb *cb,
                    void *ud);

/* The connection ended: 0 if that ends the answer (a body to the end of the
 * connection), else -1 with p->error set. */
int h1resp_eof(struct h1resp *p);

#endif
