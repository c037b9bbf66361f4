/*
 * cmd.h - the command table. Each op lives in its own daemon/cmd-<op>.c and
 * exports one struct cmd_entry; cmd.c holds the table, resolves what every
 * command names (the batch) before the handler runs, and is the one place
 * that sends the answer. A handler fills ctx->reply and returns CMD_REPLY,
 * or returns CMD_WAIT when it has taken over the connection (a submit
 * receiving its lines) and will answer itself. An unknown op gets an error
 * reply, never a disconnect.
 *
 * cmd_execute() knows nothing of the socket: the socket face (cmd_dispatch)
 * and any other face encode the same results.
 */
#ifndef LLMQ_CMD_H
#define LLMQ_CMD_H

#include <sys/types.h>
#include <json-c/json.h>

#include "sock/ipc.h"
#include "llmqd.h"

struct evbuffer;

struct cmd_ctx {
	struct llmqd *d;
	struct ipc_client *client; /* NULL outside the socket face */
	uid_t uid;                 /* the caller; (uid_t)-1 when unknown */
	int64_t scope;             /* whose batches the caller sees (access.h) */
	json_object *req;
	const char *batch_id; /* resolved by the dispatcher (CMD_F_BATCH*) */
	json_object *batch;   /* that batch as the store has it; owned by ctx */
	json_object *reply;   /* the answer the handler built; owned by ctx */
	struct evbuffer *raw; /* bytes sent after the reply (result lines) */
	int close_after;      /* close the connection once the reply is written */
};

enum cmd_retval {
	CMD_REPLY, /* ctx->reply (and ctx->raw) are sent by the dispatcher */
	CMD_WAIT,  /* the handler answers later (it owns the connection) */
};

/* What the dispatcher resolves before the handler runs. */
#define CMD_F_BATCH 0x1          /* "batch" is required and must exist */
#define CMD_F_BATCH_OPTIONAL 0x2 /* "batch" may be absent; when given it must exist */
#define CMD_F_ADMIN 0x4          /* root, llmqd's user and admin_group's members alone */

struct cmd_entry {
	const char *name;
	const char *usage;
	int flags;
	enum cmd_retval (*exec)(struct cmd_ctx *ctx);
};

extern const struct cmd_entry cmd_ping_entry;
extern const struct cmd_entry cmd_submit_entry;
extern const struct cmd_entry cmd_status_entry;
extern const struct cmd_entry cmd_list_entry;
extern const struct cmd_entry cmd_cancel_entry;
extern const struct cmd_entry cmd_results_entry;
extern const struct cmd_entry cmd_metrics_entry;
extern const struct cmd_entry cmd_usage_entry;
extern const struct cmd_entry cmd_pause_entry;
extern const struct cmd_entry cmd_resume_entry;
extern const struct cmd_entry cmd_retry_entry;
extern const struct cmd_entry cmd_set_entry;

/*
 * A batch's ETA and what holds it, as "status BATCH" answers them, added to
 * batch (as the store gives it): eta_ms, eta_known, waiting. from_counts:
 * read from job_counts alone, never a row per job (for pages that ask about
 * many batches often); its requests' own backoff after errors is then not
 * seen.
 */
int cmd_status_batch_eta(struct llmqd *d, const char *batch_id, int from_counts,
                         json_object *batch);

/* The ipc_request_fn of the daemon; userdata is the struct llmqd. */
void cmd_dispatch(struct ipc_client *c, json_object *req, void *userdata);

/* Resolve and run one request; on CMD_REPLY, ctx->reply is never NULL. */
enum cmd_retval cmd_execute(struct cmd_ctx *ctx);
/* Release what cmd_execute left in ctx. */
void cmd_ctx_clear(struct cmd_ctx *ctx);

/* Request helpers: a string or integer argument, or a default. */
const char *cmd_get_string(json_object *req, const char *key);
int64_t cmd_get_int(json_object *req, const char *key, int64_t dflt);

/* Set the reply to an error; returns CMD_REPLY. */
enum cmd_retval cmd_error(struct cmd_ctx *ctx, const char *code, const char *msg);
/* The error a store failure deserves, logged once; returns CMD_REPLY. */
enum cmd_retval cmd_store_error(struct cmd_ctx *ctx, const char *what, int r);
/* Who asked, for the log: "alice (uid 1000)", or "uid 1000" without a name. */
const char *cmd_who(const struct cmd_ctx *ctx, char *buf, size_t len);

/* Set the reply to {"ok": true} (members are added to it); CMD_REPLY. */
enum cmd_retval cmd_ok(struct cmd_ctx *ctx);
/* Add a member to ctx->reply (v is released when there is no reply). */
void cmd_add(struct cmd_ctx *ctx, const char *key, json_object *v);

#endif
