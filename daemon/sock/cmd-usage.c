/*
 * cmd-usage.c - "usage": requests, tokens, cost, 429s and failures of both
 * classes (batch attempts, interactive calls) over a span, summed by user,
 * model, lane, class and day as asked, from the usage the store keeps per
 * day of llmqd's time zone (usage_daily) for the whole days within the
 * span, and per quarter hour (usage_quarters) for the rest: what a report
 * costs is the days and quarters it covers, whatever the queue holds. The
 * span is widened to whole quarters.
 * The caller's days come with the request ("days": the starts of their local
 * days), so that a day is the caller's, whatever llmqd's time zone; without
 * them, days are UTC's. Root and the admin group see everyone's; the others
 * their own.
 */
#include "service/access.h"
#include "sock/cmd.h"
#include "gate/price.h"
#include "protocol.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define USAGE_QUARTER_MS (15 * 60 * 1000LL)
#define USAGE_DAY_MS (24 * 3600 * 1000LL)
#define USAGE_DEFAULT_SPAN_MS USAGE_DAY_MS
#define USAGE_MAX_PERIODS 4000 /* days in one report: ten years and more */
#define USAGE_MAX_ROWS 10000
#define USAGE_KEYS "user, model, lane, class, day"

struct usage_report {
	struct store_usage_query q;
	int64_t bounds[USAGE_MAX_PERIODS + 1]; /* period i is [bounds[i], bounds[i + 1]) */
	int n;                                 /* periods */
	json_object *rows, *unpriced;
	struct store_usage_row total;
	int truncated;
};

static int64_t usage_floor(int64_t t)
{
	return t / USAGE_QUARTER_MS * USAGE_QUARTER_MS;
}

/* "by": which keys the rows are summed by; -EINVAL with why. */
static int usage_by(json_object *req, struct store_usage_query *q, char *why, size_t len)
{
	json_object *a, *v;
	const char *k;
	size_t i;

	if (!json_object_object_get_ex(req, "by", &a) || !a)
		return 0;
	if (!json_object_is_type(a, json_type_array)) {
		snprintf(why, len, "\"by\" must be an array of keys: " USAGE_KEYS);
		return -EINVAL;
	}
	for (i = 0; i < json_object_array_length(a); i++) {
		v = json_object_array_get_idx(a, i);
		k = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (!strcmp(k, "user"))
			q->by_user = 1;
		else if (!strcmp(k, "model"))
			q->by_model = 1;
		else if (!strcmp(k, "lane"))
			q->by_lane = 1;
		else if (!strcmp(k, "class"))
			q->by_class = 1;
		else if (!strcmp(k, "day"))
			q->by_period = 1;
		else {
			snprintf(why, len, "\"by\": %.40s is not a key; the keys are " USAGE_KEYS,
			         json_object_to_json_string(v));
			return -EINVAL;
		}
	}
	return 0;
}

/* The periods: [since, until) alone, or cut at each day's start. */
static int usage_periods(json_object *req, int64_t since, int64_t until, struct usage_report *u,
                         char *why, size_t len)
{
	json_object *days = NULL, *v;
	int64_t t, next;
	size_t i, n = 0;

	u->bounds[0] = since;
	u->n = 0;
	if (u->q.by_period && json_object_object_get_ex(req, "days", &days) && days) {
		if (!json_object_is_type(days, json_type_array)) {
			snprintf(why, len,
			         "\"days\" must be an array of the days' starts (unix ms)");
			return -EINVAL;
		}
		n = json_object_array_length(days);
	}
	for (i = 0, t = since;; i++) {
		if (days) {
			v = json_object_array_get_idx(days, i);
			if (i < n && !json_object_is_type(v, json_type_int)) {
				snprintf(why, len, "\"days\" must hold unix ms");
				return -EINVAL;
			}
			next = i < n ? usage_floor(json_object_get_int64(v)) : until;
		} else {
			next = u->q.by_period ? (t / USAGE_DAY_MS + 1) * USAGE_DAY_MS : until;
		}
		if (next <= u->bounds[u->n])
			continue; /* a day that starts before the span or the last one */
		if (next > until)
			next = until;
		if (u->n == USAGE_MAX_PERIODS) {
			snprintf(why, len,
			         "more than %d days: ask for a shorter span, or not by day",
			         USAGE_MAX_PERIODS);
			return -E2BIG;
		}
		u->bounds[++u->n] = next;
		t = next;
		if (next == until)
			return 0;
	}
}

static void usage_add_i64(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

/* The figures of r into o; cost in dollars as exact decimal text. */
static void usage_figures(json_object *o, const struct store_usage_row *r)
{
	char usd[32];

	usage_add_i64(o, "requests", r->requests);
	usage_add_i64(o, "prompt_tokens", r->prompt_tokens);
	usage_add_i64(o, "cached_tokens", r->cached_tokens);
	usage_add_i64(o, "completion_tokens", r->completion_tokens);
	usage_add_i64(o, "total_tokens", r->tokens);
	price_format_usd(r->cost_nusd, usd, sizeof(usd));
	json_object_object_add(o, "cost_usd",
	                       json_object_new_double_s((double)r->cost_nusd / 1e9, usd));
	usage_add_i64(o, "cost_nusd", r->cost_nusd);
	usage_add_i64(o, "unpriced_tokens", r->unpriced_tokens);
	usage_add_i64(o, "rate_limited", r->rate_limited);
	usage_add_i64(o, "failed", r->failed);
}

/* A user by name: the uid where there is none, "anonymous" for -1. */
static json_object *usage_user(int64_t uid)
{
	struct passwd pw, *found = NULL;
	char buf[1024], num[24];

	if (uid < 0)
		return json_object_new_string("anonymous");
	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &found) == 0 && found)
		return json_object_new_string(found->pw_name);
	snprintf(num, sizeof(num), "%lld", (long long)uid);
	return json_object_new_string(num);
}

static int usage_row(void *userdata, const struct store_usage_row *r)
{
	struct usage_report *u = userdata;
	struct store_usage_row *t = &u->total;
	json_object *o;

	t->requests += r->requests;
	t->prompt_tokens += r->prompt_tokens;
	t->cached_tokens += r->cached_tokens;
	t->completion_tokens += r->completion_tokens;
	t->tokens += r->tokens;
	t->cost_nusd += r->cost_nusd;
	t->unpriced_tokens += r->unpriced_tokens;
	t->rate_limited += r->rate_limited;
	t->failed += r->failed;
	if (json_object_array_length(u->rows) >= USAGE_MAX_ROWS) {
		u->truncated = 1;
		return 0;
	}
	if (!(o = json_object_new_object()) || json_object_array_add(u->rows, o) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	if (u->q.by_period && r->period >= 0 && r->period < u->n) {
		usage_add_i64(o, "from", u->bounds[r->period]);
		usage_add_i64(o, "until", u->bounds[r->period + 1]);
	}
	if (u->q.by_user) {
		json_object_object_add(o, "uid",
		                       r->uid >= 0 ? json_object_new_int64(r->uid) : NULL);
		json_object_object_add(o, "user", usage_user(r->uid));
	}
	if (u->q.by_model)
		json_object_object_add(o, "model", json_object_new_string(r->model));
	if (u->q.by_lane)
		json_object_object_add(o, "lane", json_object_new_string(r->lane));
	if (u->q.by_class)
		json_object_object_add(o, "class", json_object_new_string(r->class_name));
	usage_figures(o, r);
	return 0;
}

static int usage_unpriced(void *userdata, const struct store_usage_row *r)
{
	struct usage_report *u = userdata;
	json_object *o = json_object_new_object();

	if (!o || json_object_array_add(u->unpriced, o) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	json_object_object_add(o, "model", json_object_new_string(r->model));
	usage_add_i64(o, "tokens", r->unpriced_tokens);
	return 0;
}

/*
 * llmqd's local midnight at or after t (up: 1) or at or before it (up: 0),
 * wall ms, and its day's name; -1 when the clock cannot say.
 */
static int64_t usage_midnight(int64_t t, int up, char day[static 11])
{
	time_t s = (time_t)(t / 1000), m;
	struct tm tm;

	if (!localtime_r(&s, &tm))
		return -1;
	if (up && (tm.tm_hour || tm.tm_min || tm.tm_sec || t % 1000))
		tm.tm_mday++;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	m = mktime(&tm);
	if (m == (time_t)-1 || !localtime_r(&m, &tm) || strftime(day, 11, "%Y-%m-%d", &tm) != 10)
		return -1;
	return (int64_t)m * 1000;
}

static int usage_piece(json_object *a, int period, const char *kind, json_object *from,
                       json_object *until)
{
	json_object *p = json_object_new_array_ext(4);

	if (!p || json_object_array_add(a, p) < 0) {
		json_object_put(p);
		json_object_put(from);
		json_object_put(until);
		return -ENOMEM;
	}
	json_object_array_add(p, json_object_new_int(period));
	json_object_array_add(p, json_object_new_string(kind));
	json_object_array_add(p, from);
	json_object_array_add(p, until);
	return 0;
}

/*
 * The pieces the store sums (store_usage_query): the whole days of llmqd's
 * time zone within a period from usage_daily (a row per day, not 96), the
 * quarters before and after them from usage_quarters. A caller's day in
 * llmqd's time zone is one row per user and model; in another, its 96
 * quarters.
 */
static json_object *usage_pieces_json(const struct usage_report *u)
{
	json_object *a = json_object_new_array();
	int64_t from, until, d0, d1;
	char day0[11], day1[11];
	int i, r = a ? 0 : -ENOMEM;

	for (i = 0; r == 0 && i < u->n; i++) {
		from = u->bounds[i];
		until = u->bounds[i + 1];
		d0 = usage_midnight(from, 1, day0);
		d1 = usage_midnight(until, 0, day1);
		if (d0 < 0 || d1 < 0 || d0 >= d1) {
			r = usage_piece(a, i, "q", json_object_new_int64(from),
			                json_object_new_int64(until));
			continue;
		}
		if (from < d0)
			r = usage_piece(a, i, "q", json_object_new_int64(from),
			                json_object_new_int64(d0));
		if (r == 0)
			r = usage_piece(a, i, "d", json_object_new_string(day0),
			                json_object_new_string(day1));
		if (r == 0 && d1 < until)
			r = usage_piece(a, i, "q", json_object_new_int64(d1),
			                json_object_new_int64(until));
	}
	if (r < 0) {
		json_object_put(a);
		return NULL;
	}
	return a;
}

static enum cmd_retval cmd_usage_exec(struct cmd_ctx *ctx)
{
	static struct usage_report u; /* the loop is one thread; the bounds are large */
	int64_t now = time_wall_ms(), since, until;
	json_object *pieces, *total;
	char why[256];
	int r;

	memset(&u, 0, sizeof(u));
	until = cmd_get_int(ctx->req, "until", now);
	since = cmd_get_int(ctx->req, "since", until - USAGE_DEFAULT_SPAN_MS);
	if (since < 0 || until <= since)
		return cmd_error(ctx, ERR_BAD_REQUEST,
		                 "\"since\" and \"until\" are unix ms, since before until");
	since = usage_floor(since);
	until = usage_floor(until + USAGE_QUARTER_MS - 1);
	if (usage_by(ctx->req, &u.q, why, sizeof(why)) < 0 ||
	    usage_periods(ctx->req, since, until, &u, why, sizeof(why)) < 0)
		return cmd_error(ctx, ERR_BAD_REQUEST, why);
	u.q.all = ctx->scope == ACCESS_ALL;
	u.q.uid = ctx->scope >= 0 ? ctx->scope : -1;
	if (ctx->scope == ACCESS_NONE)
		return cmd_error(ctx, ERR_BAD_REQUEST,
		                 "llmqd cannot tell who is asking, so has no usage to show");
	pieces = usage_pieces_json(&u);
	u.rows = json_object_new_array();
	u.unpriced = json_object_new_array();
	r = pieces && u.rows && u.unpriced ? 0 : -ENOMEM;
	u.q.pieces_json = pieces ? json_object_to_json_string_ext(pieces, 0) : NULL;
	if (r == 0)
		r = store_usage_report(ctx->d->store, &u.q, usage_row, &u);
	if (r == 0)
		r = store_usage_unpriced(ctx->d->store, &u.q, usage_unpriced, &u);
	json_object_put(pieces);
	total = r == 0 ? json_object_new_object() : NULL;
	if (r == 0 && !total)
		r = -ENOMEM;
	if (r < 0) {
		json_object_put(u.rows);
		json_object_put(u.unpriced);
		return cmd_store_error(ctx, "usage", r);
	}
	usage_figures(total, &u.total);
	cmd_ok(ctx);
	cmd_add(ctx, "since", json_object_new_int64(since));
	cmd_add(ctx, "until", json_object_new_int64(until));
	cmd_add(ctx, "sees", json_object_new_string(u.q.all ? "all" : "own"));
	cmd_add(ctx, "rows", u.rows);
	cmd_add(ctx, "truncated", json_object_new_boolean(u.truncated));
	cmd_add(ctx, "total", total);
	cmd_add(ctx, "unpriced", u.unpriced);
	return CMD_REPLY;
}

const struct cmd_entry cmd_usage_entry = {
    .name = OP_USAGE,
    .usage = "{\"since\": UNIX_MS, \"until\": UNIX_MS, \"by\": [" USAGE_KEYS
             "], \"days\": [UNIX_MS, ...]}",
    .exec = cmd_usage_exec,
};
