/*
 * cmd-status.c - "status": with "batch", that batch in detail and its ETA;
 * without, every lane's gate and the recent batches.
 */
#include "admission.h"
#include "cmd.h"
#include "protocol.h"
#include "scheduler.h"
#include "store.h"
#include "timeutil.h"

#include <errno.h>
#include <string.h>

/* The batch is done when its lanes have run everything queued up to its last job. */
static int batch_eta(struct cmd_ctx *ctx, const char *id, int64_t *ret_ms)
{
	const struct config *cfg = ctx->d->cfg;
	int64_t jobs, tokens, lat, eta = 0, now = time_mono_ms(), t;
	struct gate *g;
	int i, r;

	for (i = 0; i < cfg->n_lanes; i++) {
		r = store_backlog_upto(ctx->d->store, cfg->lanes[i].name, id, &jobs, &tokens);
		if (r < 0)
			return r;
		g = sched_lane_gate(ctx->d->sched, cfg->lanes[i].name, &lat);
		t = admission_drain_ms(g, lat, jobs, tokens, now);
		if (t > eta)
			eta = t;
	}
	*ret_ms = eta;
	return 0;
}

static void cmd_status_exec(struct cmd_ctx *ctx)
{
	const char *id = cmd_get_string(ctx->req, "batch");
	json_object *o, *b = NULL, *lanes = NULL, *state;
	int64_t eta = 0;
	int r;

	if (id) {
		if (cmd_check_batch_id(ctx, id) < 0)
			return;
		r = store_batch_get(ctx->d->store, id, &b);
		if (r == -ENOENT) {
			ipc_reply(ctx->client,
			          proto_error(ERR_NOT_FOUND, "no such batch (see llmq list)"));
			return;
		}
		if (r == 0 && json_object_object_get_ex(b, "state", &state) &&
		    (strcmp(json_object_get_string(state), "in_progress") == 0 ||
		     strcmp(json_object_get_string(state), "cancelling") == 0))
			r = batch_eta(ctx, id, &eta);
		if (r == 0)
			json_object_object_add(b, "eta_ms", json_object_new_int64(eta));
	} else {
		r = sched_lanes_json(ctx->d->sched, &lanes);
		if (r == 0)
			r = store_batch_list(ctx->d->store, 20, &b);
	}
	if (r < 0) {
		json_object_put(b);
		json_object_put(lanes);
		cmd_store_error(ctx, "status", r);
		return;
	}
	o = proto_ok();
	if (!o) {
		json_object_put(b);
		json_object_put(lanes);
		return;
	}
	if (id) {
		json_object_object_add(o, "batch", b);
	} else {
		json_object_object_add(o, "lanes", lanes);
		json_object_object_add(o, "batches", b);
	}
	ipc_reply(ctx->client, o);
}

const struct cmd_entry cmd_status_entry = {
    .name = OP_STATUS,
    .usage = "{\"batch\": ID} or {}",
    .exec = cmd_status_exec,
};
