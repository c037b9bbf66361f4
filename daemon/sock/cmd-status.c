/*
 * cmd-status.c - "status": with "batch", that batch in detail, its ETA and
 * what it waits for (a paused or unreachable lane, its own retries'
 * backoff, a lane that is gone); without, every lane's gate (read from
 * snapshots) and the recent batches.
 */
#include "gate/admission.h"
#include "sock/cmd.h"
#include "fleet/fleet.h"
#include "service/access.h"
#include "engine/health.h"
#include "gate/lane.h"
#include "gate/ledger.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#define STATUS_MAX_LANES 64

/* What keeps a batch waiting on one of its lanes, in rising order of doubt. */
enum status_wait {
	STATUS_WAIT_NONE,
	STATUS_WAIT_BACKOFF,       /* its queued requests are tried again after errors, later */
	STATUS_WAIT_RATE_LIMITED,  /* the lane is paused: a 429, or the provider says none left */
	STATUS_WAIT_OUT_OF_CREDIT, /* insufficient_quota: paused, one request now and then */
	STATUS_WAIT_BUDGET,        /* its owner's budget is spent until it resets */
	STATUS_WAIT_UNREACHABLE,   /* the circuit breaker is open: the end is unknown */
	STATUS_WAIT_BUDGET_NEVER,  /* its next request is more than its owner's whole budget */
	STATUS_WAIT_PAUSED,        /* an operator paused the batch or its lane */
	STATUS_WAIT_NO_LANE,       /* no lane of that name is configured */
};

static const char *const status_wait_names[] = {
    [STATUS_WAIT_NONE] = "none",
    [STATUS_WAIT_BACKOFF] = "backoff",
    [STATUS_WAIT_RATE_LIMITED] = "rate_limited",
    [STATUS_WAIT_OUT_OF_CREDIT] = "out_of_credit",
    [STATUS_WAIT_BUDGET] = "budget",
    [STATUS_WAIT_UNREACHABLE] = "unreachable",
    [STATUS_WAIT_BUDGET_NEVER] = "budget",
    [STATUS_WAIT_PAUSED] = "paused",
    [STATUS_WAIT_NO_LANE] = "no_lane",
};

struct status_wait_info {
	enum status_wait kind;
	char lane[72];
	char message[512];
	int64_t until; /* wall ms it is expected to end (next probe when unreachable); 0: unknown */
};

/* Whose end nobody can tell: the ETA is then unknown too. */
static int status_wait_open_ended(const struct status_wait_info *w)
{
	return w->kind >= STATUS_WAIT_UNREACHABLE;
}

/* Keep the wait that holds the batch longest: open-ended first, then the latest. */
static void status_wait_keep(struct status_wait_info *best, const struct status_wait_info *w)
{
	int rw = w->kind == STATUS_WAIT_NONE ? 0 : status_wait_open_ended(w) ? 2 : 1;
	int rb = best->kind == STATUS_WAIT_NONE ? 0 : status_wait_open_ended(best) ? 2 : 1;

	if (rw > rb || (rw == rb && rw > 0 && w->until > best->until))
		*best = *w;
}

/* Why the batch's jobs on this lane cannot go now, if they cannot. */
static void status_lane_wait(const struct lane_snapshot *snap, const struct store_batch_lane *bl,
                             int64_t now, int64_t wall, struct status_wait_info *ret)
{
	const struct gate *g = &snap->gate;

	snprintf(ret->lane, sizeof(ret->lane), "%s", snap->cfg->name);
	if (snap->paused_at) {
		ret->kind = STATUS_WAIT_PAUSED;
		snprintf(ret->message, sizeof(ret->message),
		         "paused by an operator (llmq resume %.63s)", snap->cfg->name);
	} else if (snap->unreachable || (g->paused_until > now && g->probe)) {
		ret->kind = snap->unreachable ? STATUS_WAIT_UNREACHABLE : STATUS_WAIT_OUT_OF_CREDIT;
		ret->until = g->paused_until > now ? wall + (g->paused_until - now) : 0;
		snprintf(ret->message, sizeof(ret->message), "%s", g->pause_reason);
	} else if (g->paused_until > now) {
		ret->kind = STATUS_WAIT_RATE_LIMITED;
		ret->until = wall + (g->paused_until - now);
		snprintf(ret->message, sizeof(ret->message), "%s", g->pause_reason);
	} else if (bl->first_not_before > wall) {
		ret->kind = STATUS_WAIT_BACKOFF;
		ret->until = bl->first_not_before;
		snprintf(ret->message, sizeof(ret->message),
		         "its requests are tried again after errors");
	}
}

/*
 * The batch is done when its lanes have run everything queued up to its
 * last job, and not before its last retry may go; a paused lane's pause is
 * counted (admission_drain_ms). *ret_wait says what holds it longest.
 * from_counts: the lanes from job_counts, without their retries' times.
 */
static int status_batch_eta(struct llmqd *d, const char *batch_id, int from_counts, int64_t *ret_ms,
                            struct status_wait_info *ret_wait)
{
	struct store_batch_lane bl[STATUS_MAX_LANES];
	struct lane_snapshot snap;
	struct status_wait_info w;
	int64_t jobs, tokens, eta = 0, now = time_mono_ms(), wall = time_wall_ms(), t;
	const char *name;
	int i, k, n, r;

	memset(ret_wait, 0, sizeof(*ret_wait));
	r = from_counts ? store_batch_lane_counts(d->store, batch_id, bl, STATUS_MAX_LANES, &n)
	                : store_batch_lanes(d->store, batch_id, bl, STATUS_MAX_LANES, &n);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		memset(&w, 0, sizeof(w));
		name = bl[i].lane[0] == '~' ? bl[i].lane + 1 : bl[i].lane; /* held: let go soon */
		k = sched_lane_index(d->sched, name);
		if (k < 0 || sched_lane_snapshot(d->sched, k, now, &snap) < 0) {
			w.kind = STATUS_WAIT_NO_LANE;
			snprintf(w.lane, sizeof(w.lane), "%.71s", name);
			snprintf(
			    w.message, sizeof(w.message),
			    "no lane of that name is configured; its requests wait until one is");
			status_wait_keep(ret_wait, &w);
			continue;
		}
		r = store_backlog_upto(d->store, snap.cfg->name, batch_id, &jobs, &tokens);
		if (r < 0)
			return r;
		t = admission_drain_ms(&snap.gate, snap.avg_latency_ms, jobs, tokens, now);
		if (bl[i].last_not_before - wall > t)
			t = bl[i].last_not_before - wall;
		if (t > eta)
			eta = t;
		status_lane_wait(&snap, &bl[i], now, wall, &w);
		status_wait_keep(ret_wait, &w);
	}
	*ret_ms = eta;
	return 0;
}

/* {"lane", "reason", "message", "until", "in_ms"}, or NULL when nothing holds it. */
static json_object *status_wait_json(const struct status_wait_info *w, int64_t wall)
{
	json_object *o;

	if (w->kind == STATUS_WAIT_NONE || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "lane", json_object_new_string(w->lane));
	json_object_object_add(o, "reason", json_object_new_string(status_wait_names[w->kind]));
	json_object_object_add(o, "message", json_object_new_string(w->message));
	json_object_object_add(o, "until", w->until ? json_object_new_int64(w->until) : NULL);
	json_object_object_add(
	    o, "in_ms",
	    w->until ? json_object_new_int64(w->until > wall ? w->until - wall : 0) : NULL);
	return o;
}

/*
 * Its owner's budgets hold the batch's queued requests back (ledger.c said
 * so at the ready query's last look): until the budget resets, or until
 * their requests in flight end.
 */
static void status_budget_wait(struct llmqd *d, json_object *batch, int64_t *eta,
                               struct status_wait_info *wait)
{
	int64_t wall = time_wall_ms(), uid;
	struct status_wait_info w = {0};
	struct ledger_user u;
	json_object *v;

	if (!json_object_object_get_ex(batch, "uid", &v) || !v ||
	    (uid = json_object_get_int64(v)) < 0 ||
	    !json_object_object_get_ex(batch, "counts", &v) ||
	    !json_object_object_get_ex(v, "queued", &v) || json_object_get_int64(v) <= 0 ||
	    !ledger_user(sched_ledger(d->sched), uid, wall, time_mono_ms(), &u) ||
	    u.blocked.fit == BUDGET_FITS)
		return;
	w.kind = u.blocked.fit == BUDGET_NEVER ? STATUS_WAIT_BUDGET_NEVER : STATUS_WAIT_BUDGET;
	w.until = u.blocked.fit == BUDGET_SPENT ? u.blocked.resets_at : 0;
	budget_describe(&u.blocked, u.name[0] ? u.name : "its owner", w.message, sizeof(w.message));
	status_wait_keep(wait, &w);
	if (w.until && w.until - wall > *eta)
		*eta = w.until - wall;
}

int cmd_status_batch_eta(struct llmqd *d, const char *batch_id, int from_counts, json_object *batch)
{
	struct status_wait_info wait = {0};
	json_object *state;
	const char *st = NULL;
	int64_t eta = 0;
	int r = 0;

	if (json_object_object_get_ex(batch, "state", &state) &&
	    (st = json_object_get_string(state)) &&
	    (strcmp(st, "in_progress") == 0 || strcmp(st, "cancelling") == 0))
		r = status_batch_eta(d, batch_id, from_counts, &eta, &wait);
	if (r < 0)
		return r;
	if (st && strcmp(st, "in_progress") == 0)
		status_budget_wait(d, batch, &eta, &wait);
	/* Its own pause holds it whatever its lanes do. */
	if (json_object_object_get_ex(batch, "paused_at", &state) && state &&
	    strcmp(st ? st : "", "in_progress") == 0) {
		wait.kind = STATUS_WAIT_PAUSED;
		wait.lane[0] = '\0';
		wait.until = 0;
		snprintf(wait.message, sizeof(wait.message),
		         "the batch is paused by an operator (llmq resume %.20s)", batch_id);
	}
	json_object_object_add(batch, "eta_ms", json_object_new_int64(eta));
	/* While a lane cannot serve it at all, eta_ms is only a lower bound. */
	json_object_object_add(batch, "eta_known",
	                       json_object_new_boolean(!status_wait_open_ended(&wait)));
	json_object_object_add(batch, "waiting", status_wait_json(&wait, time_wall_ms()));
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

/* The lane in the fleet: how its gate is kept, with whom; NULL without a fleet. */
static json_object *lane_fleet_json(const struct lane_snapshot *l)
{
	json_object *o;

	if (!l->fleet_mode || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "mode", json_object_new_string(l->fleet_mode));
	json_object_object_add(o, "share", json_object_new_string(l->share));
	add_i64(o, "hosts", l->fleet_hosts);
	add_i64(o, "in_flight_here", l->in_flight_here);
	return o;
}

/* The fleet's Redis: where (never its password), up or down since, why. */
static json_object *fleet_json(const struct llmqd *d)
{
	struct fleet_stats st;
	json_object *o;

	if (sched_fleet_stats(d->sched, &st) < 0 || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "redis", json_object_new_string(st.up ? "up" : "down"));
	json_object_object_add(o, "url", json_object_new_string(st.url));
	json_object_object_add(o, "host_id", json_object_new_string(st.host_id));
	add_i64(o, "since", st.since_wall * 1000);
	json_object_object_add(o, "error", st.up ? NULL : json_object_new_string(st.error));
	add_i64(o, "fallbacks", (int64_t)st.fallbacks);
	add_i64(o, "grants", (int64_t)st.grants);
	json_object_object_add(o, "grant_rtt_p50_us",
	                       st.rtt_p50_us >= 0 ? json_object_new_int64(st.rtt_p50_us) : NULL);
	json_object_object_add(o, "grant_rtt_p99_us",
	                       st.rtt_p99_us >= 0 ? json_object_new_int64(st.rtt_p99_us) : NULL);
	return o;
}

/* {"at", "uid", "user"} while an operator holds the lane paused, else NULL. */
static json_object *status_operator_pause(const struct lane_snapshot *l)
{
	struct passwd pw, *found = NULL;
	json_object *o;
	char buf[1024];

	if (!l->paused_at || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "at", json_object_new_int64(l->paused_at));
	json_object_object_add(o, "uid",
	                       l->paused_by >= 0 ? json_object_new_int64(l->paused_by) : NULL);
	if (l->paused_by >= 0 &&
	    getpwuid_r((uid_t)l->paused_by, &pw, buf, sizeof(buf), &found) == 0 && found)
		json_object_object_add(o, "user", json_object_new_string(found->pw_name));
	return o;
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
	                                              : l->window_learned  ? "learned"
	                                              : l->probation_since ? "probation"
	                                                                   : "default"));
	json_object_object_add(o, "window_probation_since",
	                       l->probation_since ? json_object_new_int64(l->probation_since)
	                                          : NULL);
	json_object_object_add(o, "window_learned_at",
	                       l->window_learned ? json_object_new_int64(l->window_learned_at)
	                                         : NULL);
	json_object_object_add(o, "unreachable", json_object_new_boolean(l->unreachable));
	json_object_object_add(o, "probing", json_object_new_boolean(g->probe));
	json_object_object_add(o, "pause_reason",
	                       g->paused_until > now ? json_object_new_string(g->pause_reason)
	                                             : NULL);
	json_object_object_add(o, "paused_by_operator", status_operator_pause(l));
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
	/* Without a fleet, status is as it ever was. */
	if (l->fleet_mode)
		json_object_object_add(o, "fleet", lane_fleet_json(l));
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

/* One budget of a user: what is used, held, allowed, and when it resets. */
static json_object *status_budget_kind(const struct ledger_user *u, enum budget_kind k)
{
	json_object *o;
	double usd = 1e-9;

	if (u->b.lim.allowed[k] == BUDGET_UNSET || !(o = json_object_new_object()))
		return NULL;
	if (k == BUDGET_DAILY_TOKENS) {
		add_i64(o, "used", u->use.spent[k]);
		add_i64(o, "held", u->use.held[k]);
		add_i64(o, "allowed", u->b.lim.allowed[k]);
	} else {
		/* Dollars to read, nano-dollars to add up. */
		json_object_object_add(o, "used", json_object_new_double(u->use.spent[k] * usd));
		json_object_object_add(o, "held", json_object_new_double(u->use.held[k] * usd));
		json_object_object_add(o, "allowed",
		                       json_object_new_double(u->b.lim.allowed[k] * usd));
		add_i64(o, "used_nusd", u->use.spent[k]);
		add_i64(o, "held_nusd", u->use.held[k]);
		add_i64(o, "allowed_nusd", u->b.lim.allowed[k]);
	}
	add_i64(o, "period_start", u->period.starts[k]);
	add_i64(o, "resets_at", u->period.ends[k]);
	json_object_object_add(o, "from", json_object_new_string(u->b.from[k]));
	return o;
}

/* A user's budgets, and what they hold back now (null: nothing). */
static json_object *status_budget_json(const struct ledger_user *u)
{
	static const char *const fits[] = {"fits", "held", "spent", "never"};
	json_object *o = json_object_new_object(), *w = NULL;
	char msg[512];
	int k;

	if (!o)
		return NULL;
	add_i64(o, "uid", u->uid);
	json_object_object_add(o, "user", u->name[0] ? json_object_new_string(u->name) : NULL);
	json_object_object_add(o, "tpm_share",
	                       u->b.lim.tpm_share < 1 ? json_object_new_double(u->b.lim.tpm_share)
	                                              : NULL);
	for (k = 0; k < BUDGET_KINDS; k++)
		json_object_object_add(o, budget_kind_name((enum budget_kind)k),
		                       status_budget_kind(u, (enum budget_kind)k));
	if (u->blocked.fit != BUDGET_FITS && (w = json_object_new_object())) {
		json_object_object_add(w, "budget",
		                       json_object_new_string(budget_kind_name(u->blocked.kind)));
		json_object_object_add(w, "reason", json_object_new_string(fits[u->blocked.fit]));
		json_object_object_add(w, "until",
		                       u->blocked.fit == BUDGET_SPENT
		                           ? json_object_new_int64(u->blocked.resets_at)
		                           : NULL);
		budget_describe(&u->blocked, u->name[0] ? u->name : "this user", msg, sizeof(msg));
		json_object_object_add(w, "message", json_object_new_string(msg));
	}
	json_object_object_add(o, "waiting", w);
	return o;
}

struct status_budgets {
	json_object *arr;
	int64_t scope;
};

static int status_budget_add(void *userdata, const struct ledger_user *u)
{
	struct status_budgets *b = userdata;
	json_object *o;

	if (!access_may_see(b->scope, u->uid))
		return 0;
	o = status_budget_json(u);
	if (!o || json_object_array_add(b->arr, o) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	return 0;
}

/* The budgets of the users the caller may see: an admin everyone's seen,
 * a user their own. */
static int status_budgets(struct cmd_ctx *ctx, json_object **ret)
{
	struct ledger *lg = sched_ledger(ctx->d->sched);
	struct status_budgets b = {json_object_new_array(), ctx->scope};
	int64_t wall = time_wall_ms(), mono = time_mono_ms();
	struct ledger_user u;
	int r = 0;

	if (!b.arr)
		return -ENOMEM;
	if (ctx->scope == ACCESS_ALL)
		r = ledger_each(lg, wall, mono, status_budget_add, &b);
	else if (ctx->scope >= 0 && ledger_user(lg, ctx->scope, wall, mono, &u))
		r = status_budget_add(&b, &u);
	if (r < 0) {
		json_object_put(b.arr);
		return r;
	}
	*ret = b.arr;
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
	} else if (health_disk(d, why, sizeof(why))) {
		json_object_object_add(o, "ok", json_object_new_boolean(0));
		json_object_object_add(o, "problem", json_object_new_string(why));
		json_object_object_add(o, "refusing_batches", json_object_new_boolean(1));
	}
	if (d->disk_free >= 0)
		json_object_object_add(o, "disk_free_bytes", json_object_new_int64(d->disk_free));
	return o;
}

static enum cmd_retval cmd_status_exec(struct cmd_ctx *ctx)
{
	struct store_batch_filter recent = {.limit = 20, .uid = ctx->scope};
	json_object *lanes = NULL, *list = NULL, *fleet, *budgets = NULL;
	int64_t bytes;
	int r;

	if (ctx->batch) {
		r = cmd_status_batch_eta(ctx->d, ctx->batch_id, 0, ctx->batch);
		if (r < 0)
			return cmd_store_error(ctx, "status", r);
		cmd_ok(ctx);
		cmd_add(ctx, "batch", json_object_get(ctx->batch));
		return CMD_REPLY;
	}
	r = lanes_json(ctx, &lanes);
	if (r == 0)
		r = store_batch_list(ctx->d->store, &recent, &list);
	if (r == 0)
		r = status_budgets(ctx, &budgets);
	if (r < 0) {
		json_object_put(lanes);
		json_object_put(list);
		return cmd_store_error(ctx, "status", r);
	}
	cmd_ok(ctx);
	cmd_add(ctx, "lanes", lanes);
	cmd_add(ctx, "batches", list);
	cmd_add(ctx, "budgets", budgets);
	if (store_db_bytes(ctx->d->store, &bytes) == 0)
		cmd_add(ctx, "database_bytes", json_object_new_int64(bytes));
	cmd_add(ctx, "retention_s", json_object_new_int64(ctx->d->cfg->retention_ms / 1000));
	cmd_add(ctx, "database", database_json(ctx->d));
	fleet = fleet_json(ctx->d);
	if (fleet)
		cmd_add(ctx, "fleet", fleet);
	return CMD_REPLY;
}

const struct cmd_entry cmd_status_entry = {
    .name = OP_STATUS,
    .usage = "{\"batch\": ID} or {}",
    .flags = CMD_F_BATCH_OPTIONAL,
    .exec = cmd_status_exec,
};
