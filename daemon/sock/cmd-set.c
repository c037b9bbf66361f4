/*
 * cmd-set.c - "set": a lane's live limits ("settings": {KEY: VALUE}, the
 * llmqd.conf keys max_concurrency, tpm_limit, rpm_limit, headroom and
 * stagger_seconds), read with the file's checks, all or none, and applied
 * to the lane's gate as a reload applies them. They last until the next
 * reload or restart, which set the file's again. Root and the admin group
 * alone; logged with who did it and what changed.
 */
#include "sock/cmd.h"
#include "service/config.h"
#include "log.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>

static const char *const set_keys[] = {
    "max_concurrency", "tpm_limit", "rpm_limit", "headroom", "stagger_seconds", NULL,
};

static int set_key_known(const char *key)
{
	int i;

	for (i = 0; set_keys[i]; i++)
		if (strcmp(set_keys[i], key) == 0)
			return 1;
	return 0;
}

/* The limits as people write them, for the log and the answer. */
static void set_describe(const struct gate_limits *l, char *buf, size_t len)
{
	snprintf(buf, len,
	         "max_concurrency %d, tpm_limit %lld, rpm_limit %lld, headroom %g, "
	         "stagger_seconds %g",
	         l->max_concurrency, (long long)l->tpm, (long long)l->rpm, l->headroom,
	         (double)l->stagger_ms / 1000.0);
}

static enum cmd_retval cmd_set_exec(struct cmd_ctx *ctx)
{
	const char *name = cmd_get_string(ctx->req, "lane");
	struct lane_snapshot snap;
	struct lane_config lane;
	json_object *settings = NULL;
	char err[512], was[256], now[256], who[128], where[96];
	int i;

	if (!name)
		return cmd_error(ctx, ERR_BAD_REQUEST, "missing \"lane\" (a lane's name)");
	i = sched_lane_index(ctx->d->sched, name);
	if (i < 0 || sched_lane_snapshot(ctx->d->sched, i, time_mono_ms(), &snap) < 0) {
		snprintf(err, sizeof(err), "no lane %.64s (llmq status lists the lanes)", name);
		return cmd_error(ctx, ERR_NOT_FOUND, err);
	}
	if (!json_object_object_get_ex(ctx->req, "settings", &settings) ||
	    !json_object_is_type(settings, json_type_object) ||
	    json_object_object_length(settings) == 0)
		return cmd_error(ctx, ERR_BAD_REQUEST,
		                 "missing \"settings\": {KEY: VALUE, ...} of max_concurrency, "
		                 "tpm_limit, rpm_limit, headroom, stagger_seconds");
	/* On a copy, all checked before any is applied: the live limits as they are. */
	lane = *snap.cfg;
	lane.limits = snap.lim; /* the lane's, not this host's share while it gates alone */
	json_object_object_foreach(settings, key, v)
	{
		if (!set_key_known(key)) {
			snprintf(err, sizeof(err),
			         "%.64s cannot be set live; the live limits are max_concurrency, "
			         "tpm_limit, rpm_limit, headroom and stagger_seconds (the others: "
			         "llmqd.conf, then a reload)",
			         key);
			return cmd_error(ctx, ERR_BAD_REQUEST, err);
		}
		snprintf(where, sizeof(where), "lane %.64s", name);
		if (config_lane_setting(&lane, key, json_object_get_string(v), where, err,
		                        sizeof(err)) < 0)
			return cmd_error(ctx, ERR_BAD_REQUEST, err);
	}
	set_describe(&snap.lim, was, sizeof(was));
	sched_lane_set_limits(ctx->d->sched, i, &lane.limits);
	sched_lane_snapshot(ctx->d->sched, i, time_mono_ms(), &snap);
	set_describe(&snap.lim, now, sizeof(now));
	log_info("lane %s: limits set by %s: %s (were %s) until the next reload", name,
	         cmd_who(ctx, who, sizeof(who)), now, was);
	cmd_ok(ctx);
	cmd_add(ctx, "lane", json_object_new_string(name));
	cmd_add(ctx, "max_concurrency", json_object_new_int(snap.gate.lim.max_concurrency));
	cmd_add(ctx, "tpm_limit", json_object_new_int64(snap.gate.lim.tpm));
	cmd_add(ctx, "rpm_limit", json_object_new_int64(snap.gate.lim.rpm));
	cmd_add(ctx, "headroom", json_object_new_double(snap.gate.lim.headroom));
	cmd_add(ctx, "stagger_ms", json_object_new_int64(snap.gate.lim.stagger_ms));
	cmd_add(ctx, "effective_tpm", json_object_new_int64(gate_effective_tpm(&snap.gate)));
	return CMD_REPLY;
}

const struct cmd_entry cmd_set_entry = {
    .name = OP_SET,
    .usage = "{\"lane\": NAME, \"settings\": {KEY: VALUE}}",
    .flags = CMD_F_ADMIN,
    .exec = cmd_set_exec,
};
