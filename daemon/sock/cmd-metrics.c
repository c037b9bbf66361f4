/*
 * cmd-metrics.c - "metrics": the Prometheus exposition text (as GET /metrics
 * serves it), sent as raw bytes after a header {"ok", "bytes"}.
 */
#include "sock/cmd.h"
#include "view/metrics.h"
#include "protocol.h"

#include <errno.h>
#include <event2/buffer.h>

static enum cmd_retval cmd_metrics_exec(struct cmd_ctx *ctx)
{
	int r;

	ctx->raw = evbuffer_new();
	if (!ctx->raw)
		return cmd_store_error(ctx, "metrics", -ENOMEM);
	r = metrics_render(ctx->d, ctx->raw);
	if (r < 0) {
		evbuffer_free(ctx->raw);
		ctx->raw = NULL;
		return cmd_store_error(ctx, "metrics", r);
	}
	cmd_ok(ctx);
	cmd_add(ctx, "bytes", json_object_new_int64((int64_t)evbuffer_get_length(ctx->raw)));
	return CMD_REPLY;
}

const struct cmd_entry cmd_metrics_entry = {
    .name = OP_METRICS,
    .usage = "{}",
    .exec = cmd_metrics_exec,
};
