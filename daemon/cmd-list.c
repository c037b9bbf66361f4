/*
 * cmd-list.c - "list": the most recent batches, newest first.
 */
#include "cmd.h"
#include "protocol.h"
#include "store.h"

static void cmd_list_exec(struct cmd_ctx *ctx)
{
	int64_t limit = cmd_get_int(ctx->req, "limit", 50);
	json_object *arr = NULL, *o;
	int r;

	if (limit < 1 || limit > 10000) {
		ipc_reply(ctx->client, proto_error(ERR_BAD_REQUEST, "\"limit\" must be 1..10000"));
		return;
	}
	r = store_batch_list(ctx->d->store, (int)limit, &arr);
	if (r < 0) {
		cmd_store_error(ctx, "list", r);
		return;
	}
	o = proto_ok();
	if (!o) {
		json_object_put(arr);
		return;
	}
	json_object_object_add(o, "batches", arr);
	ipc_reply(ctx->client, o);
}

const struct cmd_entry cmd_list_entry = {
    .name = OP_LIST,
    .usage = "{\"limit\": N}",
    .exec = cmd_list_exec,
};
