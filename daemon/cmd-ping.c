/*
 * cmd-ping.c - "ping": the daemon's version, uptime and queue depth.
 */
#include "cmd.h"
#include "protocol.h"
#include "scheduler.h"
#include "store.h"
#include "timeutil.h"

static void cmd_ping_exec(struct cmd_ctx *ctx)
{
	int64_t jobs = 0, tokens = 0;
	json_object *o;
	int r;

	r = store_backlog(ctx->d->store, NULL, &jobs, &tokens);
	if (r < 0) {
		cmd_store_error(ctx, "ping", r);
		return;
	}
	o = proto_ok();
	if (!o)
		return;
	json_object_object_add(o, "version", json_object_new_string(LLMQ_VERSION));
	json_object_object_add(o, "protocol", json_object_new_int(LLMQ_PROTO_VERSION));
	json_object_object_add(o, "uptime_ms",
	                       json_object_new_int64(time_mono_ms() - ctx->d->started_mono));
	json_object_object_add(o, "queue_depth", json_object_new_int64(jobs));
	json_object_object_add(o, "queued_tokens", json_object_new_int64(tokens));
	json_object_object_add(o, "in_flight", json_object_new_int(sched_in_flight(ctx->d->sched)));
	json_object_object_add(o, "lanes", json_object_new_int(ctx->d->cfg->n_lanes));
	ipc_reply(ctx->client, o);
}

const struct cmd_entry cmd_ping_entry = {
    .name = OP_PING,
    .usage = "{}",
    .exec = cmd_ping_exec,
};
