/*
 * cmd-list.c - "list": the most recent batches, newest first.
 */
#include "cmd.h"
#include "protocol.h"
#include "store.h"

static enum cmd_retval cmd_list_exec(struct cmd_ctx *ctx)
{
	int64_t limit = cmd_get_int(ctx->req, "limit", 50);
	json_object *arr = NULL;
	int r;

	if (limit < 1 || limit > 10000)
		return cmd_error(ctx, ERR_BAD_REQUEST, "\"limit\" must be 1..10000");
	r = store_batch_list(ctx->d->store, (int)limit, ctx->scope, &arr);
	if (r < 0)
		return cmd_store_error(ctx, "list", r);
	cmd_ok(ctx);
	cmd_add(ctx, "batches", arr);
	return CMD_REPLY;
}

const struct cmd_entry cmd_list_entry = {
    .name = OP_LIST,
    .usage = "{\"limit\": N}",
    .exec = cmd_list_exec,
};
