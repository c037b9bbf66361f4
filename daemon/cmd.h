/*
 * cmd.h - the command table. Each op lives in its own daemon/cmd-<op>.c and
 * exports one struct cmd_entry; cmd.c holds the table and dispatches. An
 * unknown op gets an error reply, never a disconnect.
 */
#ifndef LLMQ_CMD_H
#define LLMQ_CMD_H

#include <json-c/json.h>

#include "ipc.h"
#include "llmqd.h"

struct cmd_ctx {
	struct llmqd *d;
	struct ipc_client *client;
	json_object *req;
};

struct cmd_entry {
	const char *name;
	const char *usage;
	/* Reply through ipc_reply() (now, or later for a submit). */
	void (*exec)(struct cmd_ctx *ctx);
};

extern const struct cmd_entry cmd_ping_entry;
extern const struct cmd_entry cmd_submit_entry;
extern const struct cmd_entry cmd_status_entry;
extern const struct cmd_entry cmd_list_entry;
extern const struct cmd_entry cmd_cancel_entry;
extern const struct cmd_entry cmd_results_entry;

/* The ipc_request_fn of the daemon; userdata is the struct llmqd. */
void cmd_dispatch(struct ipc_client *c, json_object *req, void *userdata);

/* Request helpers: a string or integer argument, or a default. */
const char *cmd_get_string(json_object *req, const char *key);
int64_t cmd_get_int(json_object *req, const char *key, int64_t dflt);

/* Reply with the error a store failure deserves, logging it once. */
void cmd_store_error(struct cmd_ctx *ctx, const char *what, int r);

/* Reply NOT_FOUND / BAD_REQUEST for a missing or malformed batch id; 0 if id is fine. */
int cmd_check_batch_id(struct cmd_ctx *ctx, const char *id);

#endif
