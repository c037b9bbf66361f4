/*
 * ipc.h - the Unix socket server: accepts clients, frames newline-delimited
 * JSON, enforces the connection and line limits, and hands each request to
 * one callback. Knows nothing of what requests mean (that is cmd.c).
 */
#ifndef LLMQ_IPC_H
#define LLMQ_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <event2/event.h>
#include <json-c/json.h>

struct ipc;
struct ipc_client;

typedef void (*ipc_request_fn)(struct ipc_client *c, json_object *req, void *userdata);

/* Receives the raw lines that follow a request (a submit's input). */
struct ipc_line_handler {
	/* One line without its newline; too_long set (and line NULL) for a line
	 * past LLMQ_MAX_LINE, whose bytes are skipped. Return < 0 to stop reading. */
	int (*line)(void *ud, const char *line, size_t len, int too_long);
	/* All expected lines arrived: reply now. */
	void (*end)(void *ud);
	/* The client went away first: release ud, reply to no one. */
	void (*abort)(void *ud);
};

struct ipc_limits {
	int max_clients;     /* connections at once, all users */
	int max_per_uid;     /* connections at once, one user */
	int64_t deadline_ms; /* for a whole request (from the last answer), for a submit's
	                      * lines (from its header), for output that does not move */
};

/* What the limits did, since the start (for metrics). */
struct ipc_stats {
	uint64_t refused;       /* connections refused: too many, overall or per user */
	uint64_t stalls;        /* times a client's requests waited for its output to drain */
	uint64_t idle_expired;  /* connections closed: no whole request within the deadline */
	uint64_t lines_expired; /* submits dropped: lines not all in within the deadline */
};

/*
 * Listen on fd when >= 0 (socket activation), else bind path (removing a
 * stale socket, refusing when another daemon answers on it): mode 0600, or
 * 0660 with group unless that is (gid_t)-1.
 */
int ipc_new(struct event_base *base, int fd, const char *path, gid_t group,
            const struct ipc_limits *lim, ipc_request_fn on_request, void *userdata,
            struct ipc **ret);
void ipc_free(struct ipc *ipc);
int ipc_clients(const struct ipc *ipc);
void ipc_stats(const struct ipc *ipc, struct ipc_stats *ret);
/* How many submits uid is sending right now (connections receiving lines). */
int ipc_receiving(const struct ipc *ipc, uid_t uid);
struct ipc *ipc_of(const struct ipc_client *c);

/* Send one answer line; takes ownership of reply. */
void ipc_reply(struct ipc_client *c, json_object *reply);
/* Send bytes as they are (a results page's lines). */
void ipc_reply_raw(struct ipc_client *c, const char *data, size_t len);
/* Send and empty an evbuffer. */
struct evbuffer;
void ipc_reply_buffer(struct ipc_client *c, struct evbuffer *buf);
/* Close the connection once everything queued is written. */
void ipc_close_after_reply(struct ipc_client *c);

uid_t ipc_client_uid(const struct ipc_client *c);
pid_t ipc_client_pid(const struct ipc_client *c);

/*
 * The daemon owes c an answer it cannot give yet (its database is locked):
 * c's next requests wait meanwhile and its request deadline is off; if c
 * goes away first, gone(ud) is called. ipc_await_end() before answering.
 */
void ipc_await(struct ipc_client *c, void (*gone)(void *), void *ud);
void ipc_await_end(struct ipc_client *c);

/* Read the next n raw lines into h, then go back to requests. */
void ipc_expect_lines(struct ipc_client *c, int64_t n, const struct ipc_line_handler *h, void *ud);

#endif
