/*
 * live.c - every lane's last hour, sampled on a timer, and the live page's
 * JSON (see live.h). The page's lanes and batches are the status op's
 * (cmd_execute, as the socket gives them), with what the page adds to them.
 */
#include "view/live.h"
#include "service/access.h"
#include "sock/cmd.h"
#include "log.h"
#include "protocol.h"
#include "view/samples.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

#define LIVE_TICK_LATE_MS 5 /* the timer fires this long after a period's end */
#define LIVE_BATCHES 20     /* unfinished batches shown, besides the newest */
#define LIVE_ERRORS 20
#define LIVE_ERRORS_SCAN 1000 /* tries with an error looked at, of each class */
#define LIVE_ERRORS_SINCE_MS (60 * 60 * 1000)
#define LIVE_USERS 200 /* today's users, most tokens first */
#define LIVE_NAMES 64  /* user names remembered */
#define LIVE_NAMES_TTL_MS 60000
#define LIVE_ACTIVE "[\"validating\",\"in_progress\",\"cancelling\"]"

struct live_name {
	int64_t uid;
	int64_t at;    /* mono ms; 0: empty */
	char name[64]; /* "" when the uid has none */
};

struct live {
	struct llmqd *d;
	struct event *timer;
	struct samples *lanes; /* one per lane, as the scheduler numbers them */
	int n_lanes;
	struct samples_point points[SAMPLES_KEPT + 1]; /* one lane's hour, being written out */
	struct store_usage users[LIVE_USERS];          /* being written out */
	struct live_name names[LIVE_NAMES];
	struct store_error errors[LIVE_ERRORS]; /* being written out */
};

/* A lane's counters and levels now; the lane's snapshot into snap. */
static int live_reading(struct live *l, int i, int64_t now, struct lane_snapshot *snap,
                        struct samples_reading *ret)
{
	const struct lane_stats *st;
	const struct gate *g;
	int64_t jobs = 0, tokens = 0, running;
	int c, r;

	r = sched_lane_snapshot(l->d->sched, i, now, snap);
	if (r < 0)
		return r;
	g = &snap->gate;
	st = &snap->stats;
	*ret = (struct samples_reading){
	    .requests = (uint64_t)g->seq_requests,
	    .in_flight = g->in_flight,
	    .tpm_limit = gate_effective_tpm(g),
	    .rpm_limit = (int64_t)floor(gate_requests_per_ms(g) * 60000.0 + 1e-6),
	};
	for (c = 0; c < GATE_CLASSES; c++) {
		ret->tokens_launched += st->tokens_charged[c];
		ret->tokens_used += st->tokens_used[c];
		ret->r429 += st->upstream_429[c];
	}
	/* The counts hold the running jobs too: those are in flight. */
	r = store_backlog(l->d->store, snap->cfg->name, &jobs, &tokens);
	running = g->class_in_flight[GATE_BATCH];
	ret->queued = (jobs > running ? jobs - running : 0) + snap->calls_waiting;
	return r;
}

static void live_arm(struct live *l, int64_t now)
{
	int64_t next = (now / SAMPLES_PERIOD_MS + 1) * SAMPLES_PERIOD_MS + LIVE_TICK_LATE_MS;
	struct timeval tv;

	time_to_timeval(next - now, &tv);
	if (evtimer_add(l->timer, &tv) < 0)
		log_err("live page: cannot arm the sampling timer; the lanes' charts stop here");
}

static void live_tick(evutil_socket_t fd, short what, void *arg)
{
	struct live *l = arg;
	struct samples_reading r;
	struct lane_snapshot snap;
	struct samples_time now = {time_mono_ms(), time_wall_ms()};
	int i, rc;

	for (i = 0; i < l->n_lanes; i++) {
		rc = live_reading(l, i, now.mono_ms, &snap, &r);
		if (rc == -ENOENT)
			continue;
		if (rc < 0) {
			/* The queue's length was not read: it stays as it was. */
			log_debug("live page: lane %s: cannot read its queue: %s", snap.cfg->name,
			          store_errmsg(l->d->store));
			r.queued = l->lanes[i].last.queued;
		}
		samples_record(&l->lanes[i], &now, &r);
	}
	live_arm(l, now.mono_ms);
}

int live_new(struct llmqd *d, struct live **ret)
{
	struct samples_time now = {time_mono_ms(), time_wall_ms()};
	struct samples_reading r;
	struct lane_snapshot snap;
	struct live *l;
	int i, rc = -ENOMEM;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->d = d;
	l->n_lanes = sched_n_lanes(d->sched);
	l->lanes = calloc((size_t)(l->n_lanes > 0 ? l->n_lanes : 1), sizeof(*l->lanes));
	l->timer = evtimer_new(d->base, live_tick, l);
	if (!l->lanes || !l->timer)
		goto fail;
	for (i = 0; i < l->n_lanes; i++) {
		/* A queue that cannot be read now counts as empty until the next tick. */
		rc = live_reading(l, i, now.mono_ms, &snap, &r);
		if (rc == -ENOENT)
			goto fail;
		samples_init(&l->lanes[i], &now, &r);
	}
	live_arm(l, now.mono_ms);
	*ret = l;
	return 0;
fail:
	live_free(l);
	return rc;
}

void live_free(struct live *l)
{
	if (!l)
		return;
	if (l->timer)
		event_free(l->timer);
	free(l->lanes);
	free(l);
}

/* uid's name, remembered a minute; NULL when it has none. */
static const char *live_name(struct live *l, int64_t uid, int64_t now)
{
	struct live_name *n = &l->names[(uint64_t)uid % LIVE_NAMES];
	struct passwd pw, *found = NULL;
	char buf[1024];

	if (uid < 0)
		return NULL;
	if (!n->at || n->uid != uid || now - n->at >= LIVE_NAMES_TTL_MS) {
		n->uid = uid;
		n->at = now ? now : 1;
		n->name[0] = '\0';
		if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &found) == 0 && found)
			snprintf(n->name, sizeof(n->name), "%s", found->pw_name);
	}
	return n->name[0] ? n->name : NULL;
}

static void live_add_i64(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

/* A wall time, or null for 0 (never). */
static void live_add_time(json_object *o, const char *k, int64_t wall_ms)
{
	json_object_object_add(o, k, wall_ms ? json_object_new_int64(wall_ms) : NULL);
}

static void live_add_user(struct live *l, json_object *o, const char *k, int64_t uid, int64_t now)
{
	const char *name = live_name(l, uid, now);

	json_object_object_add(o, k, name ? json_object_new_string(name) : NULL);
}

/* What the hour's periods add up to. */
static json_object *live_totals(const struct samples_point *pt, int n)
{
	int64_t launched = 0, used = 0, req = 0, r429 = 0;
	json_object *o = json_object_new_object();
	int i;

	if (!o)
		return NULL;
	for (i = 0; i < n; i++) {
		launched += pt[i].tokens_launched;
		used += pt[i].tokens_used;
		req += pt[i].requests;
		r429 += pt[i].r429;
	}
	live_add_i64(o, "tokens_launched", launched);
	live_add_i64(o, "tokens_used", used);
	live_add_i64(o, "requests", req);
	live_add_i64(o, "r429", r429);
	return o;
}

/* The hour of points pt[0..n-1] as columns: {"t": [...], "tokens_per_min": [...], ...}. */
static json_object *live_history(const struct samples_point *pt, int n)
{
	static const char *const cols[] = {
	    "t",         "tokens_per_min", "used_per_min", "requests_per_min", "r429_per_min",
	    "in_flight", "queued",         "tpm_limit",    "rpm_limit"};
	enum { NCOLS = sizeof(cols) / sizeof(cols[0]) };
	json_object *h = json_object_new_object(), *a[NCOLS];
	int64_t v[NCOLS];
	int i, k, ok = h != NULL;

	for (k = 0; k < NCOLS; k++) {
		a[k] = json_object_new_array_ext(n);
		ok &= a[k] != NULL;
	}
	for (i = 0; ok && i < n; i++) {
		v[0] = pt[i].wall_ms;
		v[1] = pt[i].tokens_per_min;
		v[2] = pt[i].used_per_min;
		v[3] = pt[i].requests_per_min;
		v[4] = pt[i].r429_per_min;
		v[5] = pt[i].in_flight;
		v[6] = pt[i].queued;
		v[7] = pt[i].tpm_limit;
		v[8] = pt[i].rpm_limit;
		for (k = 0; k < NCOLS; k++)
			ok &= json_object_array_add(a[k], json_object_new_int64(v[k])) == 0;
	}
	if (!ok) {
		for (k = 0; k < NCOLS; k++)
			json_object_put(a[k]);
		json_object_put(h);
		return NULL;
	}
	for (k = 0; k < NCOLS; k++)
		json_object_object_add(h, cols[k], a[k]);
	json_object_object_add(h, "last_provisional",
	                       json_object_new_boolean(n > 0 && pt[n - 1].provisional));
	json_object_object_add(h, "totals", live_totals(pt, n));
	return h;
}

/* What the page adds to a lane of the status op: its hour, its queue, its times. */
static int live_lane(struct live *l, json_object *lane, const struct samples_time *now)
{
	struct samples_reading r;
	struct lane_snapshot snap;
	json_object *v, *h;
	const struct gate *g;
	int i, n, rc;

	if (!json_object_object_get_ex(lane, "name", &v) ||
	    (i = sched_lane_index(l->d->sched, json_object_get_string(v))) < 0 || i >= l->n_lanes)
		return 0;
	rc = live_reading(l, i, now->mono_ms, &snap, &r);
	if (rc < 0)
		return rc;
	g = &snap.gate;
	n = samples_series(&l->lanes[i], now, &r, l->points, SAMPLES_KEPT + 1);
	h = live_history(l->points, n);
	if (!h)
		return -ENOMEM;
	json_object_object_add(lane, "history", h);
	live_add_i64(lane, "queued", r.queued);
	live_add_i64(lane, "effective_rpm", r.rpm_limit);
	live_add_time(lane, "paused_until",
	              g->paused_until > now->mono_ms ? now->wall_ms + g->paused_until - now->mono_ms
	                                             : 0);
	live_add_time(lane, "unreachable_since", snap.unreachable ? snap.unreachable_since : 0);
	live_add_time(lane, "out_of_credit_since", snap.no_credit_since);
	return 0;
}

static const char *live_str(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && v ? json_object_get_string(v) : NULL;
}

static int64_t live_int(json_object *o, const char *k, int64_t dflt)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && v ? json_object_get_int64(v) : dflt;
}

static int live_same_id(json_object *a, json_object *b)
{
	const char *x = live_str(a, "id"), *y = live_str(b, "id");

	return x && y && strcmp(x, y) == 0;
}

/*
 * The batches: those unfinished first (however old), then the status op's
 * newest; each unfinished one with its ETA from the counts, and each with
 * its owner's name.
 */
static int live_batches(struct live *l, json_object *reply, int64_t scope, int64_t now)
{
	struct store_batch_filter f = {
	    .limit = LIVE_BATCHES, .uid = scope, .states_json = LIVE_ACTIVE};
	json_object *active = NULL, *recent, *all, *b, *o;
	size_t i, k, n;
	int r, seen;

	if (!json_object_object_get_ex(reply, "batches", &recent) ||
	    !json_object_is_type(recent, json_type_array))
		return -EINVAL;
	r = store_batch_list(l->d->store, &f, &active);
	if (r < 0)
		return r;
	all = json_object_new_array();
	if (!all) {
		json_object_put(active);
		return -ENOMEM;
	}
	n = json_object_array_length(active);
	for (i = 0; i < n; i++)
		json_object_array_add(all, json_object_get(json_object_array_get_idx(active, i)));
	for (i = 0; i < json_object_array_length(recent); i++) {
		b = json_object_array_get_idx(recent, i);
		for (k = 0, seen = 0; k < n && !seen; k++)
			seen = live_same_id(json_object_array_get_idx(active, k), b);
		if (!seen)
			json_object_array_add(all, json_object_get(b));
	}
	json_object_put(active);
	for (i = 0; r == 0 && i < json_object_array_length(all); i++) {
		o = json_object_array_get_idx(all, i);
		if (live_str(o, "id"))
			r = cmd_status_batch_eta(l->d, live_str(o, "id"), 1, o);
		live_add_user(l, o, "user", live_int(o, "uid", -1), now);
	}
	if (r < 0) {
		json_object_put(all);
		return r;
	}
	json_object_object_add(reply, "batches", all);
	return 0;
}

static int live_errors(struct live *l, int64_t scope, int64_t now_wall, int64_t now,
                       json_object **ret)
{
	struct store_error *e = l->errors;
	json_object *arr, *o;
	int i, n = 0, r;

	arr = json_object_new_array();
	if (!arr)
		return -ENOMEM;
	r = scope == ACCESS_NONE
	        ? 0
	        : store_recent_errors(l->d->store, scope, now_wall - LIVE_ERRORS_SINCE_MS,
	                              LIVE_ERRORS_SCAN, e, LIVE_ERRORS, &n);
	for (i = 0; r == 0 && i < n; i++) {
		o = json_object_new_object();
		if (!o || json_object_array_add(arr, o) < 0) {
			json_object_put(o);
			r = -ENOMEM;
			break;
		}
		live_add_i64(o, "at", e[i].at);
		json_object_object_add(o, "class", json_object_new_string(e[i].class_name));
		json_object_object_add(o, "lane", json_object_new_string(e[i].lane));
		json_object_object_add(o, "model", json_object_new_string(e[i].model));
		json_object_object_add(o, "status_code",
		                       e[i].status_code ? json_object_new_int(e[i].status_code)
		                                        : NULL);
		json_object_object_add(o, "code", json_object_new_string(e[i].code));
		json_object_object_add(o, "message", json_object_new_string(e[i].message));
		json_object_object_add(
		    o, "batch", e[i].batch_id[0] ? json_object_new_string(e[i].batch_id) : NULL);
		json_object_object_add(o, "custom_id",
		                       e[i].custom_id[0] ? json_object_new_string(e[i].custom_id)
		                                         : NULL);
		json_object_object_add(o, "uid",
		                       e[i].uid >= 0 ? json_object_new_int64(e[i].uid) : NULL);
		live_add_user(l, o, "user", e[i].uid, now);
	}
	if (r < 0) {
		json_object_put(arr);
		return r;
	}
	*ret = arr;
	return 0;
}

/* The local day of wall_ms: its midnight, and its name ("YYYY-MM-DD") into day. */
static int64_t live_day(int64_t wall_ms, char day[static 11])
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm) || strftime(day, 11, "%Y-%m-%d", &tm) != 10)
		return -EINVAL;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	t = mktime(&tm);
	return t == (time_t)-1 ? -EINVAL : (int64_t)t * 1000;
}

/* Today's tries per user (usage_daily: as many rows as users, whatever the day held). */
static int live_usage(struct live *l, int64_t scope, int64_t now, int64_t now_wall,
                      json_object **ret)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array(), *u;
	int64_t since;
	char day[11];
	int i, n = 0, r = -ENOMEM;

	if (!o || !arr)
		goto fail;
	since = live_day(now_wall, day);
	r = since < 0              ? (int)since
	    : scope == ACCESS_NONE ? 0
	                           : store_usage_day(l->d->store, day, l->users, LIVE_USERS, &n);
	if (r < 0)
		goto fail;
	r = -ENOMEM;
	for (i = 0; i < n; i++) {
		if (!access_may_see(scope, l->users[i].uid))
			continue;
		u = json_object_new_object();
		if (!u || json_object_array_add(arr, u) < 0) {
			json_object_put(u);
			goto fail;
		}
		json_object_object_add(
		    u, "uid", l->users[i].uid >= 0 ? json_object_new_int64(l->users[i].uid) : NULL);
		live_add_user(l, u, "user", l->users[i].uid, now);
		live_add_i64(u, "requests", l->users[i].requests);
		live_add_i64(u, "tokens", l->users[i].tokens);
		live_add_i64(u, "failed", l->users[i].failed);
		live_add_i64(u, "rate_limited", l->users[i].rate_limited);
		/* A cost where some of the tokens had a price; null where none had. */
		json_object_object_add(
		    u, "cost_usd",
		    l->users[i].tokens > l->users[i].unpriced_tokens || l->users[i].cost_nusd > 0
		        ? json_object_new_double((double)l->users[i].cost_nusd / 1e9)
		        : NULL);
	}
	json_object_object_add(o, "day", json_object_new_string(day));
	live_add_i64(o, "since", since);
	json_object_object_add(o, "users", arr);
	*ret = o;
	return 0;
fail:
	json_object_put(o);
	json_object_put(arr);
	return r;
}

/* Who the page is for, and what they see. */
static json_object *live_viewer(struct live *l, int64_t uid, int64_t scope, int64_t now)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "uid", uid >= 0 ? json_object_new_int64(uid) : NULL);
	live_add_user(l, o, "user", uid, now);
	json_object_object_add(o, "sees",
	                       json_object_new_string(scope == ACCESS_ALL    ? "all"
	                                              : scope == ACCESS_NONE ? "lanes"
	                                                                     : "own"));
	return o;
}

int live_json(struct live *l, int64_t uid, json_object **ret, const char **ret_what)
{
	struct cmd_ctx ctx = {.d = l->d, .uid = uid >= 0 ? (uid_t)uid : (uid_t)-1};
	struct samples_time now = {time_mono_ms(), time_wall_ms()};
	json_object *o = NULL, *lanes, *v = NULL;
	size_t i;
	int r = -ENOMEM;

	*ret_what = "build the page's figures";
	ctx.req = json_object_new_object();
	if (!ctx.req)
		return -ENOMEM;
	json_object_object_add(ctx.req, "v", json_object_new_int(LLMQ_PROTO_VERSION));
	json_object_object_add(ctx.req, "op", json_object_new_string(OP_STATUS));
	cmd_execute(&ctx);
	o = ctx.reply;
	ctx.reply = NULL;
	if (!json_object_object_get_ex(o, "ok", &v) || !json_object_get_boolean(v) ||
	    !json_object_object_get_ex(o, "lanes", &lanes) ||
	    !json_object_is_type(lanes, json_type_array)) {
		*ret_what = "read the lanes and batches (as llmq status does)";
		r = -EIO;
		goto out;
	}
	*ret_what = "read the lanes' queues";
	for (i = 0, r = 0; r == 0 && i < json_object_array_length(lanes); i++)
		r = live_lane(l, json_object_array_get_idx(lanes, i), &now);
	if (r == 0) {
		*ret_what = "read the batches";
		r = live_batches(l, o, ctx.scope, now.mono_ms);
	}
	if (r == 0) {
		*ret_what = "read the last errors";
		r = live_errors(l, ctx.scope, now.wall_ms, now.mono_ms, &v);
	}
	if (r < 0)
		goto out;
	json_object_object_add(o, "errors", v);
	*ret_what = "read today's usage";
	r = live_usage(l, ctx.scope, now.mono_ms, now.wall_ms, &v);
	if (r < 0)
		goto out;
	json_object_object_add(o, "usage", v);
	r = -ENOMEM;
	*ret_what = "build the page's figures";
	if (!(v = live_viewer(l, uid, ctx.scope, now.mono_ms)))
		goto out;
	json_object_object_add(o, "viewer", v);
	live_add_i64(o, "now", now.wall_ms);
	live_add_i64(o, "period_ms", SAMPLES_PERIOD_MS);
	*ret = o;
	o = NULL;
	r = 0;
out:
	json_object_put(o);
	cmd_ctx_clear(&ctx);
	json_object_put(ctx.req);
	return r;
}
