/*
 * cmd-cancel.c - "cancel": queued jobs of a batch are cancelled at once; jobs
 * in flight finish (their answers are kept), then the batch is cancelled.
 */
#include "cmd.h"
#include "log.h"
#include "protocol.h"
#include "store.h"
#include "timeutil.h"

#include <errno.h>

static void cmd_cancel_exec(struct cmd_ctx *ctx)
{
	const char *id = cmd_get_string(ctx->req, "batch");
	int64_t n = 0;
	json_object *b = NULL, *o;
	int r;

	if (cmd_check_batch_id(ctx, id) < 0)
		return;
	r = store_batch_cancel(ctx->d->store, id, time_wall_ms(), &n);
	if (r == -ENOENT) {
		ipc_reply(ctx->client, proto_error(ERR_NOT_FOUND, "no such batch (see llmq list)"));
		return;
	}
	if (r == 0)
		r = store_batch_get(ctx->d->store, id, &b);
	if (r < 0) {
		cmd_store_error(ctx, "cancel", r);
		return;
	}
	log_info("batch %s: cancelled by uid %d, %lld queued jobs dropped", id,
	         (int)ipc_client_uid(ctx->client), (long long)n);
	o = proto_ok();
	if (!o) {
		json_object_put(b);
		return;
	}
	json_object_object_add(o, "cancelled", json_object_new_int64(n));
	json_object_object_add(o, "batch", b);
	ipc_reply(ctx->client, o);
}

const struct cmd_entry cmd_cancel_entry = {
    .name = OP_CANCEL,
    .usage = "{\"batch\": ID}",
    .exec = cmd_cancel_exec,
};
