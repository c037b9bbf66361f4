/*
 * cmd-cancel.c - "cancel": queued jobs of a batch are cancelled at once; jobs
 * in flight finish (their answers are kept), then the batch is cancelled.
 */
#include "sock/cmd.h"
#include "log.h"
#include "protocol.h"
#include "store/store.h"
#include "timeutil.h"

static enum cmd_retval cmd_cancel_exec(struct cmd_ctx *ctx)
{
	json_object *b = NULL;
	int64_t n = 0;
	int r;

	r = store_batch_cancel(ctx->d->store, ctx->batch_id, time_wall_ms(), &n);
	if (r == 0)
		r = store_batch_get(ctx->d->store, ctx->batch_id, &b);
	if (r < 0)
		return cmd_store_error(ctx, "cancel", r);
	log_info("batch %s: cancelled by uid %d, %lld queued jobs dropped", ctx->batch_id,
	         (int)ctx->uid, (long long)n);
	cmd_ok(ctx);
	cmd_add(ctx, "cancelled", json_object_new_int64(n));
	cmd_add(ctx, "batch", b);
	return CMD_REPLY;
}

const struct cmd_entry cmd_cancel_entry = {
    .name = OP_CANCEL,
    .usage = "{\"batch\": ID}",
    .flags = CMD_F_BATCH,
    .exec = cmd_cancel_exec,
};
