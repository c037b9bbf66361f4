/*
 * cmd.c - the op table and the dispatcher.
 */
#include "cmd.h"
#include "log.h"
#include "protocol.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct cmd_entry *const cmd_table[] = {
    &cmd_ping_entry,
    &cmd_submit_entry,
    &cmd_status_entry,
    &cmd_list_entry,
    &cmd_cancel_entry,
    &cmd_results_entry,
    NULL,
};

void cmd_dispatch(struct ipc_client *c, json_object *req, void *userdata)
{
	struct cmd_ctx ctx = {.d = userdata, .client = c, .req = req};
	const struct cmd_entry *const *e;
	json_object *err;
	const char *op = NULL;
	char msg[256];

	err = proto_check_request(req, &op);
	if (err) {
		ipc_reply(c, err);
		return;
	}
	for (e = cmd_table; *e; e++) {
		if (strcmp((*e)->name, op) == 0) {
			log_debug("uid %d: %s", (int)ipc_client_uid(c), op);
			(*e)->exec(&ctx);
			return;
		}
	}
	snprintf(msg, sizeof(msg),
	         "unknown op \"%.64s\"; known: ping, submit, status, list, cancel, results", op);
	ipc_reply(c, proto_error(ERR_UNKNOWN_OP, msg));
}

const char *cmd_get_string(json_object *req, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int64_t cmd_get_int(json_object *req, const char *key, int64_t dflt)
{
	json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_int))
		return dflt;
	return json_object_get_int64(v);
}

void cmd_store_error(struct cmd_ctx *ctx, const char *what, int r)
{
	char msg[512];

	if (r == -ENOSPC) {
		snprintf(msg, sizeof(msg),
		         "%s: the disk holding the database is full; nothing was changed. "
		         "Free space there and try again",
		         what);
		log_err("%s: disk full (%s)", what, store_errmsg(ctx->d->store));
	} else {
		snprintf(msg, sizeof(msg), "%s: database error (%s); see llmqd's log", what,
		         strerror(-r));
		log_err("%s: %s: %s", what, strerror(-r), store_errmsg(ctx->d->store));
	}
	ipc_reply(ctx->client, proto_error(r == -ENOSPC ? ERR_STORAGE : ERR_INTERNAL, msg));
}

int cmd_check_batch_id(struct cmd_ctx *ctx, const char *id)
{
	if (!id) {
		ipc_reply(ctx->client,
		          proto_error(ERR_BAD_REQUEST, "missing \"batch\" (a batch id)"));
		return -EINVAL;
	}
	if (!proto_valid_batch_id(id)) {
		ipc_reply(ctx->client,
		          proto_error(ERR_NOT_FOUND, "no such batch; batch ids look like "
		                                     "b_0123456789abcdef (see llmq list)"));
		return -EINVAL;
	}
	return 0;
}
