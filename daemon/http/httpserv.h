/*
 * httpserv.h - the HTTP face's server: its listeners, its connections and
 * their bounds, requests read with httpreq (a body whole, up to a route's
 * limit, or streamed to the route as it arrives), and answers (whole, or
 * chunked with back-pressure).
 *
 * It replaces libevent 2.1's evhttp, which reads every body whole before a
 * handler runs and has no hook between accept and the first request: an
 * upload of 200 MB must be streamed, and a user must not be able to hold
 * every connection.
 *
 * Bounds: at most max_conns connections; at most max_per_uid of them per
 * user, known at accept on the Unix socket (SO_PEERCRED) and on loopback TCP
 * (the route's peer(): the kernel's owner of the peer socket), else at the
 * first request's head (identify(): whose token it is); connections not
 * known at accept have a cap and a head deadline of their own;
 * a request's head and body must arrive within timeout_ms of the previous
 * answer (a streamed body: within timeout_ms of its previous piece); an
 * answer that does not move for timeout_ms drops the connection.
 *
 * Ownership: the server owns each struct hreq. A route answers it exactly
 * once (hreq_reply, or hreq_start ... hreq_end); after that call the
 * request is gone. If the caller leaves first, the gone callback runs and
 * the request is freed after it.
 */
#ifndef LLMQ_HTTPSERV_H
#define LLMQ_HTTPSERV_H

#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <event2/event.h>

struct hserv;
struct hreq;
struct evbuffer;

struct hserv_limits {
	int max_conns;
	int max_per_uid;
	int64_t timeout_ms;
	/* Connections whose caller is not known at accept (TCP from elsewhere):
	 * a cap of their own, and a shorter deadline for their first request's
	 * head, so that they can never take the identified users' slots. */
	int max_unidentified;
	int64_t unidentified_timeout_ms;
};

/* identify(): a caller known, who may not use llmqd (not -EPERM: that is -1). */
#define HSERV_FORBIDDEN ((int64_t)-EKEYREJECTED)

struct hserv_routes {
	/* Who is at the other end of a TCP connection just accepted: a uid, or
	 * -1 when that cannot be known (may be NULL). */
	int64_t (*peer)(void *ud, int fd);
	/*
	 * Who sends this request (TCP): a uid, -1 (anonymous), or -EACCES (401)
	 * or HSERV_FORBIDDEN (403) when it must be refused. Unix-socket callers
	 * are known.
	 */
	int64_t (*identify)(void *ud, struct hreq *req);
	/*
	 * A request's head arrived: the route either answers at once, or asks
	 * for the body with hreq_read_body() or hreq_stream_body().
	 */
	void (*request)(void *ud, struct hreq *req);
};

int hserv_new(struct event_base *base, const struct hserv_limits *lim,
              const struct hserv_routes *routes, void *ud, struct hserv **ret);
void hserv_free(struct hserv *s);
/* Serve on a listening socket (taken). */
int hserv_listen(struct hserv *s, int fd);
int hserv_connections(const struct hserv *s);

/* The request. Strings are valid until it is answered. */
const char *hreq_method(const struct hreq *r);
const char *hreq_path(const struct hreq *r);  /* the target up to '?' */
const char *hreq_query(const struct hreq *r); /* after '?', or "" */
const char *hreq_header(const struct hreq *r, const char *name);
int64_t hreq_uid(const struct hreq *r); /* the caller, -1 when anonymous */
/* The body's Content-Length, or -1 (chunked, or none). */
int64_t hreq_content_length(const struct hreq *r);
/* The owner of a TCP connection's other end, known at accept; -1: not known. */
int64_t hreq_peer_uid(const struct hreq *r);
int hreq_on_unix(const struct hreq *r);
/* A query parameter's value, percent-decoded: its length, or -ENOENT. */
int hreq_param(const struct hreq *r, const char *name, char *buf, size_t len);

/* The whole body (up to max bytes, else a 413 answers it): done(ud, req, body). */
typedef void (*hreq_body_cb)(void *ud, struct hreq *req, struct evbuffer *body);
void hreq_read_body(struct hreq *r, size_t max, hreq_body_cb done, void *ud);

/*
 * The body piece by piece: data() for each, end() once it is complete.
 * data() returning < 0 stops reading: the route answers (or has answered)
 * and the connection closes after that answer.
 */
struct hreq_sink {
	int (*data)(void *ud, struct hreq *req, const char *p, size_t len);
	void (*end)(void *ud, struct hreq *req);
};
void hreq_stream_body(struct hreq *r, const struct hreq_sink *sink, void *ud);

/* The caller left before the answer was complete (the request is freed after). */
void hreq_on_gone(struct hreq *r, void (*gone)(void *ud), void *ud);
/* The answer's unsent bytes fell below HSERV_OUT_LOW (for a paused producer). */
void hreq_on_drain(struct hreq *r, void (*drain)(void *ud), void *ud);
#define HSERV_OUT_LOW (64 * 1024)

void hreq_add_header(struct hreq *r, const char *name, const char *value);
/* The whole answer: body (may be NULL) of len bytes. */
void hreq_reply(struct hreq *r, int status, const void *body, size_t len);
/* The whole answer from an evbuffer (drained). */
void hreq_reply_buf(struct hreq *r, int status, struct evbuffer *body);
/* A chunked answer: start, chunks, end. chunk returns the unsent bytes. */
void hreq_start(struct hreq *r, int status);
size_t hreq_chunk(struct hreq *r, const void *data, size_t len);
void hreq_end(struct hreq *r);
/*
 * A chunked answer that cannot be finished (its source failed): the
 * connection closes without the last chunk, so that the caller sees an
 * error, never a body that looks whole (an HTTP/1.0 one, whose end is the
 * connection's, is reset).
 */
void hreq_abort(struct hreq *r);

#endif
