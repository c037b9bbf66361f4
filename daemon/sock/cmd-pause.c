/*
 * cmd-pause.c - "pause" and "resume": an operator stops a lane ("lane") or
 * a batch ("batch") from launching anything new, and lets it go again.
 * Requests in flight finish either way. A lane's pause is kept in the
 * store's lane_paused, a batch's in its row: both outlive a restart. Root
 * and the admin group alone; each is logged with who did it.
 */
#include "sock/cmd.h"
#include "log.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>

/* Lane names as one line: "a, b", for an answer about an unknown one. */
static void pause_lane_names(const struct cmd_ctx *ctx, char *buf, size_t len)
{
	struct lane_snapshot snap;
	size_t n = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; n < len && sched_lane_snapshot(ctx->d->sched, i, time_mono_ms(), &snap) == 0;
	     i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", snap.cfg->name);
}

static enum cmd_retval pause_lane(struct cmd_ctx *ctx, const char *name, int pause)
{
	struct lane_snapshot snap;
	int64_t now = time_wall_ms();
	char who[128], msg[512], names[256];
	int i, r, changed;

	i = sched_lane_index(ctx->d->sched, name);
	if (i < 0 || sched_lane_snapshot(ctx->d->sched, i, time_mono_ms(), &snap) < 0) {
		pause_lane_names(ctx, names, sizeof(names));
		snprintf(msg, sizeof(msg), "no lane %.64s; the lanes are: %s", name, names);
		return cmd_error(ctx, ERR_NOT_FOUND, msg);
	}
	changed = pause ? !snap.paused_at : snap.paused_at != 0;
	/* The store first: a pause it does not keep is not made. */
	r = store_lane_paused_set(ctx->d->store, name, pause ? now : 0, (int64_t)ctx->uid);
	if (r < 0)
		return cmd_store_error(ctx, pause ? "pause" : "resume", r);
	if (changed)
		sched_lane_pause(ctx->d->sched, i, pause ? now : 0, (int64_t)ctx->uid);
	cmd_who(ctx, who, sizeof(who));
	if (changed && pause)
		log_warn("lane %s: paused by %s: nothing new is sent upstream until llmq resume %s",
		         name, who, name);
	else if (changed)
		log_info("lane %s: resumed by %s", name, who);
	cmd_ok(ctx);
	cmd_add(ctx, "lane", json_object_new_string(name));
	cmd_add(ctx, "paused", json_object_new_boolean(pause));
	cmd_add(ctx, "changed", json_object_new_boolean(changed));
	cmd_add(ctx, "in_flight", json_object_new_int(snap.gate.in_flight));
	return CMD_REPLY;
}

static enum cmd_retval pause_batch(struct cmd_ctx *ctx, int pause)
{
	json_object *v = NULL, *b = NULL;
	const char *state = "";
	int64_t changed = 0;
	char who[128], msg[256];
	int r;

	if (json_object_object_get_ex(ctx->batch, "state", &v))
		state = json_object_get_string(v);
	if (pause && strcmp(state, "in_progress") != 0 && strcmp(state, "validating") != 0) {
		snprintf(msg, sizeof(msg), "batch %s is %s: only a batch in progress can be paused",
		         ctx->batch_id, state);
		return cmd_error(ctx, ERR_BAD_REQUEST, msg);
	}
	r = store_batch_pause(ctx->d->store, ctx->batch_id, pause ? time_wall_ms() : 0,
	                      (int64_t)ctx->uid, &changed);
	if (r == 0)
		r = store_batch_get(ctx->d->store, ctx->batch_id, &b);
	if (r < 0)
		return cmd_store_error(ctx, pause ? "pause" : "resume", r);
	cmd_who(ctx, who, sizeof(who));
	if (changed)
		log_info("batch %s: %s by %s", ctx->batch_id, pause ? "paused" : "resumed", who);
	if (changed && !pause)
		sched_kick(ctx->d->sched);
	cmd_ok(ctx);
	cmd_add(ctx, "batch", b);
	cmd_add(ctx, "paused", json_object_new_boolean(pause));
	cmd_add(ctx, "changed", json_object_new_boolean(changed > 0));
	return CMD_REPLY;
}

static enum cmd_retval pause_exec(struct cmd_ctx *ctx, int pause)
{
	const char *lane = cmd_get_string(ctx->req, "lane");

	if (ctx->batch && lane)
		return cmd_error(ctx, ERR_BAD_REQUEST, "name a lane or a batch, not both");
	if (ctx->batch)
		return pause_batch(ctx, pause);
	if (!lane)
		return cmd_error(ctx, ERR_BAD_REQUEST,
		                 "missing \"lane\" (a lane's name) or \"batch\" (a batch id)");
	return pause_lane(ctx, lane, pause);
}

static enum cmd_retval cmd_pause_exec(struct cmd_ctx *ctx)
{
	return pause_exec(ctx, 1);
}

static enum cmd_retval cmd_resume_exec(struct cmd_ctx *ctx)
{
	return pause_exec(ctx, 0);
}

const struct cmd_entry cmd_pause_entry = {
    .name = OP_PAUSE,
    .usage = "{\"lane\": NAME} or {\"batch\": ID}",
    .flags = CMD_F_BATCH_OPTIONAL | CMD_F_ADMIN,
    .exec = cmd_pause_exec,
};

const struct cmd_entry cmd_resume_entry = {
    .name = OP_RESUME,
    .usage = "{\"lane\": NAME} or {\"batch\": ID}",
    .flags = CMD_F_BATCH_OPTIONAL | CMD_F_ADMIN,
    .exec = cmd_resume_exec,
};
