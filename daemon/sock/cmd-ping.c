/*
 * cmd-ping.c - "ping": the daemon's version, uptime, queue depth and where
 * its HTTP face listens.
 */
#include "sock/cmd.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

static enum cmd_retval cmd_ping_exec(struct cmd_ctx *ctx)
{
	int64_t jobs = 0, tokens = 0;
	int r;

	r = store_backlog(ctx->d->store, NULL, &jobs, &tokens);
	if (r < 0)
		return cmd_store_error(ctx, "ping", r);
	cmd_ok(ctx);
	cmd_add(ctx, "version", json_object_new_string(LLMQ_VERSION));
	cmd_add(ctx, "protocol", json_object_new_int(LLMQ_PROTO_VERSION));
	cmd_add(ctx, "uptime_ms", json_object_new_int64(time_mono_ms() - ctx->d->started_mono));
	cmd_add(ctx, "queue_depth", json_object_new_int64(jobs));
	cmd_add(ctx, "queued_tokens", json_object_new_int64(tokens));
	cmd_add(ctx, "in_flight", json_object_new_int(sched_in_flight(ctx->d->sched)));
	cmd_add(ctx, "lanes", json_object_new_int(ctx->d->cfg->n_lanes));
	cmd_add(ctx, "http", json_object_new_string(ctx->d->http_addr));
	if (ctx->d->cfg->http_socket[0])
		cmd_add(ctx, "http_socket", json_object_new_string(ctx->d->cfg->http_socket));
	return CMD_REPLY;
}

const struct cmd_entry cmd_ping_entry = {
    .name = OP_PING,
    .usage = "{}",
    .exec = cmd_ping_exec,
};
