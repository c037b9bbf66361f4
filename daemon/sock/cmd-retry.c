/*
 * cmd-retry.c - "retry" with "failed": the failed requests of a completed
 * batch are queued again, each as a new attempt (the earlier ones stay in
 * attempts, and the retries count afresh against retry_max_attempts); the
 * batch is in progress again, its completion window running from now.
 * Root and the admin group alone; logged with who did it.
 */
#include "sock/cmd.h"
#include "log.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static enum cmd_retval cmd_retry_exec(struct cmd_ctx *ctx)
{
	json_object *v = NULL, *b = NULL;
	const char *state = "";
	int64_t jobs = 0;
	char who[128], msg[256];
	int r;

	if (!json_object_object_get_ex(ctx->req, "failed", &v) || !json_object_get_boolean(v))
		return cmd_error(
		    ctx, ERR_BAD_REQUEST,
		    "say which requests: {\"failed\": true} (llmq retry BATCH --failed)");
	r = store_batch_retry_failed(ctx->d->store, ctx->batch_id, time_wall_ms(), &jobs);
	if (r == -EBUSY) {
		if (json_object_object_get_ex(ctx->batch, "state", &v))
			state = json_object_get_string(v);
		snprintf(msg, sizeof(msg),
		         "batch %s is %s: only a completed batch's failed requests are queued "
		         "again%s",
		         ctx->batch_id, state,
		         strcmp(state, "in_progress") == 0 || strcmp(state, "cancelling") == 0
		             ? "; wait for it to finish (llmq wait)"
		             : "");
		return cmd_error(ctx, ERR_BAD_REQUEST, msg);
	}
	if (r == 0)
		r = store_batch_get(ctx->d->store, ctx->batch_id, &b);
	if (r < 0)
		return cmd_store_error(ctx, "retry", r);
	if (jobs > 0) {
		log_info("batch %s: %lld failed requests queued again by %s", ctx->batch_id,
		         (long long)jobs, cmd_who(ctx, who, sizeof(who)));
		sched_kick(ctx->d->sched);
	}
	cmd_ok(ctx);
	cmd_add(ctx, "retried", json_object_new_int64(jobs));
	cmd_add(ctx, "batch", b);
	return CMD_REPLY;
}

const struct cmd_entry cmd_retry_entry = {
    .name = OP_RETRY,
    .usage = "{\"batch\": ID, \"failed\": true}",
    .flags = CMD_F_BATCH | CMD_F_ADMIN,
    .exec = cmd_retry_exec,
};
