/*
 * upstream.h - HTTP transfers to the providers, driven by the daemon's
 * libevent loop: plain http to an address by llmqd's own HTTP/1.1 client
 * (upstream-h1.c), everything else (https, names, proxies) by the libcurl
 * multi interface (upstream.c); both behave the same to the caller. Owns
 * the connections, the curl handles and the answers' buffers until the
 * done callback returns; knows nothing of jobs, lanes or the store. Every
 * request it sends carries the hop header (hop.h) with the daemon's
 * instance id appended.
 */
#ifndef LLMQ_UPSTREAM_H
#define LLMQ_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

struct upstream;
struct up_transfer;
struct up_headers;
struct up_response;

/* Called once per transfer that was started, unless it was aborted. */
typedef void (*up_done_fn)(void *userdata, const struct up_response *resp);

/*
 * A relayed answer: head() is called once, before the first byte of the
 * body, with the status and headers; it returns 1 to have the body passed
 * to data() as it arrives, 0 to have it buffered as usual (an error answer
 * is read whole). data() returns 0, UP_PAUSE to have the transfer paused
 * once this chunk is taken (until upstream_resume()), or < 0 to abort it.
 */
#define UP_PAUSE 1
struct up_stream {
	int (*head)(void *userdata, int status, const struct up_headers *h);
	int (*data)(void *userdata, const char *data, size_t len);
};

struct up_request {
	const char *url;
	const char *api_key; /* NULL: no Authorization header */
	const char *via;     /* the hop header the request came with; NULL: llmqd's own */
	int get;             /* a GET without a body; else a POST of body */
	const char *body;    /* must live until the done callback */
	size_t body_len;
	long connect_timeout_ms;
	long timeout_ms;
	up_done_fn done;
	const struct up_stream *stream; /* NULL: buffer the whole answer */
	void *userdata;
};

#define UP_HDR_LEN 96

/* The headers llmq acts on; empty strings where absent. */
struct up_headers {
	char request_id[UP_HDR_LEN];
	char content_type[UP_HDR_LEN];
	char processing_ms[UP_HDR_LEN];
	char retry_after[UP_HDR_LEN];
	char retry_after_ms[UP_HDR_LEN];
	char should_retry[UP_HDR_LEN];
	char limit_tokens[UP_HDR_LEN];
	char remaining_tokens[UP_HDR_LEN];
	char reset_tokens[UP_HDR_LEN];
	char limit_requests[UP_HDR_LEN];
	char remaining_requests[UP_HDR_LEN];
	char reset_requests[UP_HDR_LEN];
};

/*
 * One header line of an answer (n bytes, its CRLF included or not) into h:
 * the headers above are kept, trimmed (a value longer than UP_HDR_LEN - 1
 * bytes, or with a control byte, as absent); a status line ("HTTP/...")
 * starts a new block. Pure: what libcurl's header
 * callback calls, and what the fuzzers feed.
 */
void upstream_header_line(struct up_headers *h, const char *line, size_t n);

struct up_response {
	int status;          /* HTTP status, 0 when no answer came */
	int transport_error; /* nonzero: the CURLcode */
	const char *error;   /* curl's message for a transport error */
	int too_big;         /* the answer passed the 64 MiB cap (it came, and is billed) */
	const char *body;    /* NUL-terminated; may contain NULs before body_len */
	char **body_owner;   /* a done() that keeps the body takes *body_owner and sets it
	                      * to NULL (then it frees it); NULL when there is none */
	size_t body_len;
	struct up_headers hdr;
	int64_t latency_ms;
	int sends; /* times the request went out: > 1 when libcurl resent it on a
	            * new connection after a reused one died */
};

/* id: the daemon's instance id, appended to every request's hop header. */
int upstream_new(struct event_base *base, const char *id, struct upstream **ret);
void upstream_free(struct upstream *up);

/*
 * Whether plain http to an address goes by llmqd's own HTTP/1.1 client (1,
 * the default) or by curl (0) like everything else. Never the own client
 * while a proxy is set for curl in the environment.
 */
void upstream_use_builtin(struct upstream *up, int on);

/*
 * How long the own client keeps a connection idle before closing it (ms;
 * 0 or less: 118 s, under the 120 s servers commonly keep one). Closed
 * then whether or not a call comes for its address.
 */
void upstream_set_idle_limit(struct upstream *up, int64_t ms);

int upstream_start(struct upstream *up, const struct up_request *req, struct up_transfer **ret);
/* Stop a transfer without calling its done callback. */
void upstream_abort(struct upstream *up, struct up_transfer *t);
int upstream_in_flight(const struct upstream *up);
/* New connections made to upstreams since the start: by llmqd's own client
 * (builtin) and by curl. */
void upstream_connects(const struct upstream *up, uint64_t *ret_builtin, uint64_t *ret_curl);
/* Go on with a transfer whose data() asked for a pause. */
void upstream_resume(struct upstream *up, struct up_transfer *t);

#endif
