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

/*
 * Listen on fd when >= 0 (socket activation), else bind path (removing a
 * stale socket, refusing when another daemon answers on it): mode 0600, or
 * 0660 with group unless that is (gid_t)-1.
 */
int ipc_new(struct event_base *base, int fd, const char *path, gid_t group, int max_clients,
            ipc_request_fn on_request, void *userdata, struct ipc **ret);
void ipc_free(struct ipc *ipc);
int ipc_clients(const struct ipc *ipc);

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

/* Read the next n raw lines into h, then go back to requests. */
void ipc_expect_lines(struct ipc_client *c, int64_t n, const struct ipc_line_handler *h, void *ud);

#endif
