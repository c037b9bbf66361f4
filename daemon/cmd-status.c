/*
 * cmd-status.c - "status": with "batch", that batch in detail and its ETA;
 * without, every lane's gate (read from snapshots) and the recent batches.
 */
#include "admission.h"
#include "cmd.h"
#include "health.h"
#include "lane.h"
#include "protocol.h"
#include "scheduler.h"
#include "store.h"
#include "timeutil.h"

#include <errno.h>
#include <string.h>

/* The batch is done when its lanes have run everything queued up to its last job. */
static int batch_eta(struct cmd_ctx *ctx, int64_t *ret_ms)
{
	struct lane_snapshot snap;
	int64_t jobs, tokens, eta = 0, now = time_mono_ms(), t;
	int i, r;

	for (i = 0; sched_lane_snapshot(ctx->d->sched, i, now, &snap) == 0; i++) {
		r = store_backlog_upto(ctx->d->store, snap.cfg->name, ctx->batch_id, &jobs,
		                       &tokens);
		if (r < 0)
			return r;
		t = admission_drain_ms(&snap.gate, snap.avg_latency_ms, jobs, tokens, now);
		if (t > eta)
			eta = t;
	}
	*ret_ms = eta;
	return 0;
}

static void add_i64(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static uint64_t sum_outcome(const struct lane_stats *st, enum stat_outcome so)
{
	return st->requests[GATE_BATCH][so] + st->requests[GATE_INTERACTIVE][so];
}

static json_object *lane_json(const struct lane_snapshot *l, int64_t jobs, int64_t tokens,
                              int64_t now)
{
	const struct gate *g = &l->gate;
	json_object *o = json_object_new_object();
	char url[sizeof(l->cfg->base_url)];

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(l->cfg->name));
	json_object_object_add(
	    o, "base_url",
	    json_object_new_string(lane_redact_url(l->cfg->base_url, url, sizeof(url))));
	json_object_object_add(o, "has_key", json_object_new_boolean(l->has_key));
	add_i64(o, "in_flight", g->in_flight);
	add_i64(o, "in_flight_interactive", g->class_in_flight[GATE_INTERACTIVE]);
	add_i64(o, "calls_waiting", l->calls_waiting);
	add_i64(o, "max_concurrency", g->lim.max_concurrency);
	add_i64(o, "batch_slots", gate_batch_slots(g));
	add_i64(o, "stagger_ms", g->lim.stagger_ms);
	add_i64(o, "tpm_limit", g->lim.tpm);
	add_i64(o, "rpm_limit", g->lim.rpm);
	add_i64(o, "effective_tpm", gate_effective_tpm(g));
	add_i64(o, "tokens_available", (int64_t)g->tok);
	add_i64(o, "requests_available", (int64_t)g->req);
	add_i64(o, "paused_for_ms", g->paused_until > now ? g->paused_until - now : 0);
	json_object_object_add(
	    o, "window",
	    json_object_new_string(g->window == GATE_WINDOW_SECOND ? "second" : "minute"));
	json_object_object_add(o, "window_source",
	                       json_object_new_string(l->cfg->provider_window != GATE_WINDOW_AUTO
	                                                  ? "config"
	                                              : l->window_learned ? "learned"
	                                                                  : "default"));
	json_object_object_add(o, "window_learned_at",
	                       l->window_learned ? json_object_new_int64(l->window_learned_at)
	                                         : NULL);
	json_object_object_add(o, "unreachable", json_object_new_boolean(l->unreachable));
	json_object_object_add(o, "probing", json_object_new_boolean(g->probe));
	json_object_object_add(o, "pause_reason",
	                       g->paused_until > now ? json_object_new_string(g->pause_reason)
	                                             : NULL);
	add_i64(o, "queued_jobs", jobs);
	add_i64(o, "queued_tokens", tokens);
	add_i64(o, "drain_ms", admission_drain_ms(g, l->avg_latency_ms, jobs, tokens, now));
	add_i64(o, "avg_latency_ms", l->avg_latency_ms);
	add_i64(o, "launched", (int64_t)(g->seq_requests));
	add_i64(o, "succeeded", (int64_t)sum_outcome(&l->stats, SO_SUCCEEDED));
	add_i64(o, "failed", (int64_t)sum_outcome(&l->stats, SO_FAILED));
	add_i64(o, "retried", (int64_t)sum_outcome(&l->stats, SO_RETRY));
	add_i64(o, "rate_limited", (int64_t)sum_outcome(&l->stats, SO_RATE_LIMITED));
	add_i64(o, "interactive_calls",
	        (int64_t)l->stats.requests[GATE_INTERACTIVE][SO_SUCCEEDED] +
	            (int64_t)l->stats.requests[GATE_INTERACTIVE][SO_FAILED]);
	add_i64(o, "interactive_refused", (int64_t)l->stats.requests[GATE_INTERACTIVE][SO_REFUSED]);
	return o;
}

static int lanes_json(struct cmd_ctx *ctx, json_object **ret)
{
	struct lane_snapshot snap;
	int64_t now = time_mono_ms(), jobs, tokens;
	json_object *arr, *o;
	int i, r;

	arr = json_object_new_array();
	if (!arr)
		return -ENOMEM;
	for (i = 0; sched_lane_snapshot(ctx->d->sched, i, now, &snap) == 0; i++) {
		r = store_backlog(ctx->d->store, snap.cfg->name, &jobs, &tokens);
		if (r < 0) {
			json_object_put(arr);
			return r;
		}
		o = lane_json(&snap, jobs, tokens, now);
		if (!o) {
			json_object_put(arr);
			return -ENOMEM;
		}
		json_object_array_add(arr, o);
	}
	*ret = arr;
	return 0;
}

/* {"ok": true} or {"ok": false, "problem": what is wrong and what to do}. */
static json_object *database_json(const struct llmqd *d)
{
	json_object *o = json_object_new_object();
	char why[512];
	int refuse, bad = health_db(d, why, sizeof(why), &refuse);

	if (!o)
		return NULL;
	json_object_object_add(o, "ok", json_object_new_boolean(!bad));
	if (bad) {
		json_object_object_add(o, "problem", json_object_new_string(why));
		json_object_object_add(o, "refusing_batches", json_object_new_boolean(refuse));
	}
	return o;
}

static enum cmd_retval cmd_status_exec(struct cmd_ctx *ctx)
{
	struct store_batch_filter recent = {.limit = 20, .uid = ctx->scope};
	json_object *lanes = NULL, *list = NULL, *state;
	const char *st;
	int64_t eta = 0, bytes;
	int r;

	if (ctx->batch) {
		r = 0;
		if (json_object_object_get_ex(ctx->batch, "state", &state) &&
		    (st = json_object_get_string(state)) &&
		    (strcmp(st, "in_progress") == 0 || strcmp(st, "cancelling") == 0))
			r = batch_eta(ctx, &eta);
		if (r < 0)
			return cmd_store_error(ctx, "status", r);
		json_object_object_add(ctx->batch, "eta_ms", json_object_new_int64(eta));
		cmd_ok(ctx);
		cmd_add(ctx, "batch", json_object_get(ctx->batch));
		return CMD_REPLY;
	}
	r = lanes_json(ctx, &lanes);
	if (r == 0)
		r = store_batch_list(ctx->d->store, &recent, &list);
	if (r < 0) {
		json_object_put(lanes);
		return cmd_store_error(ctx, "status", r);
	}
	cmd_ok(ctx);
	cmd_add(ctx, "lanes", lanes);
	cmd_add(ctx, "batches", list);
	if (store_db_bytes(ctx->d->store, &bytes) == 0)
		cmd_add(ctx, "database_bytes", json_object_new_int64(bytes));
	cmd_add(ctx, "retention_s", json_object_new_int64(ctx->d->cfg->retention_ms / 1000));
	cmd_add(ctx, "database", database_json(ctx->d));
	return CMD_REPLY;
}

const struct cmd_entry cmd_status_entry = {
    .name = OP_STATUS,
    .usage = "{\"batch\": ID} or {}",
    .flags = CMD_F_BATCH_OPTIONAL,
    .exec = cmd_status_exec,
};
