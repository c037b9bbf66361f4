/*
 * metrics.c - the exposition text, one family at a time.
 *
 * Usage by user and model comes from the store's totals (usage_totals: what
 * `llmq usage` counts, since the first try, restarts included), with the
 * label sets bounded: a model keeps its name among the first
 * METRICS_MAX_MODELS seen, later ones are named by the lane's pattern that
 * routes them, else "other"; a user keeps theirs among the first
 * METRICS_MAX_USERS seen, later ones are "other".
 */
#include "view/metrics.h"
#include "fleet/fleet.h"
#include "view/health.h"
#include "sock/ipc.h"
#include "gate/ledger.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>

#define METRICS_MAX_MODELS 50
#define METRICS_MAX_USERS 200
#define METRICS_NAMES_TTL_MS 60000
#define METRICS_STATES 16

struct out {
	struct evbuffer *buf;
	int failed;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(o->buf, fmt, ap) < 0)
		o->failed = 1;
	va_end(ap);
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(struct out *o, const char *name, const char *lane, const char *cls,
                      const struct stats_histo *h)
{
	uint64_t cum = 0;
	int i;

	for (i = 0; i < STATS_BUCKETS; i++) {
		cum += h->le[i];
		put(o, "%s_bucket{lane=\"%s\",class=\"%s\",le=\"%g\"} %llu\n", name, lane, cls,
		    stats_bucket_le[i], (unsigned long long)cum);
	}
	put(o, "%s_bucket{lane=\"%s\",class=\"%s\",le=\"+Inf\"} %llu\n", name, lane, cls,
	    (unsigned long long)h->count);
	put(o, "%s_sum{lane=\"%s\",class=\"%s\"} %.6f\n", name, lane, cls, h->sum);
	put(o, "%s_count{lane=\"%s\",class=\"%s\"} %llu\n", name, lane, cls,
	    (unsigned long long)h->count);
}

/* Per lane and class, one counter taken from the stats by field offset. */
static void lane_counter(struct out *o, const struct lane_snapshot *snap, int n, const char *name,
                         const char *help, size_t off)
{
	int i, c;

	family(o, name, "counter", help);
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			put(o, "%s{lane=\"%s\",class=\"%s\"} %llu\n", name, snap[i].cfg->name,
			    stats_class_name(c),
			    (unsigned long long)((const uint64_t *)((const char *)&snap[i].stats +
			                                            off))[c]);
}

/* The fleet's families, when llmqd has one (LLMQ_REDIS_URL). */
static void fleet_metrics(struct out *o, struct llmqd *d, const struct lane_snapshot *snap, int n)
{
	struct fleet_stats st;
	uint64_t cum = 0;
	int i;

	if (sched_fleet_stats(d->sched, &st) < 0)
		return;
	family(o, "llmq_fleet_redis_up", "gauge",
	       "1 while the fleet's Redis answers (the lanes' gates are shared).");
	put(o, "llmq_fleet_redis_up %d\n", st.up);
	family(o, "llmq_fleet_fallbacks_total", "counter",
	       "Times the lanes fell back to gating alone (Redis unreachable, slow or refusing).");
	put(o, "llmq_fleet_fallbacks_total %llu\n", (unsigned long long)st.fallbacks);
	family(o, "llmq_fleet_hosts", "gauge",
	       "Hosts sharing the lane's key at the last heartbeat (this one included).");
	for (i = 0; i < n; i++)
		if (snap[i].fleet_mode)
			put(o, "llmq_fleet_hosts{lane=\"%s\",share=\"%s\"} %d\n", snap[i].cfg->name,
			    snap[i].share, snap[i].fleet_hosts);
	family(o, "llmq_fleet_lane_shared", "gauge",
	       "1 while the lane's gate is the fleet's; 0 while it gates alone.");
	for (i = 0; i < n; i++)
		if (snap[i].fleet_mode)
			put(o, "llmq_fleet_lane_shared{lane=\"%s\"} %d\n", snap[i].cfg->name,
			    strcmp(snap[i].fleet_mode, "shared") == 0);
	family(o, "llmq_fleet_grant_seconds", "histogram",
	       "Round trips of the grants asked of the fleet's Redis.");
	for (i = 0; i < FLEET_RTT_BUCKETS; i++) {
		cum += st.rtt_le[i];
		put(o, "llmq_fleet_grant_seconds_bucket{le=\"%g\"} %llu\n", fleet_rtt_le[i],
		    (unsigned long long)cum);
	}
	put(o, "llmq_fleet_grant_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)st.grants);
	put(o, "llmq_fleet_grant_seconds_sum %.6f\n", st.rtt_sum);
	put(o, "llmq_fleet_grant_seconds_count %llu\n", (unsigned long long)st.grants);
}

/* A label's value, escaped as the exposition format wants it. */
static void put_label(struct out *o, const char *v)
{
	char buf[512];
	size_t n = 0;

	for (; *v && n < sizeof(buf) - 3; v++) {
		if (*v == '\\' || *v == '"')
			buf[n++] = '\\';
		if (*v == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
			continue;
		}
		buf[n++] = *v;
	}
	buf[n] = '\0';
	put(o, "%s", buf);
}

/* One series of the usage families: its labels (as shown) and figures. */
struct usage_series {
	const char *lane, *cls; /* borrowed from the row copy it was made from */
	char user[64];
	char model[128];
	int64_t requests, input, cached, output, cost_nusd, unpriced;
};

struct usage_labels {
	struct llmqd *d;
	char models[METRICS_MAX_MODELS][128]; /* the first names seen: kept as they are */
	int n_models;
	int64_t users[METRICS_MAX_USERS]; /* the first uids seen */
	int n_users;
	struct store_usage_row *rows; /* copies: the series point into them */
	struct usage_series *s;
	size_t n, cap;
	int64_t now;
};

/* uid's name, remembered a minute: a scrape asks the name service little. */
static void usage_user_name(int64_t uid, int64_t now, char *buf, size_t len)
{
	static struct {
		int64_t uid, at;
		char name[64];
	} cache[256];
	struct passwd pw, *found = NULL;
	char tmp[1024];
	unsigned slot = (unsigned)((uint64_t)uid % 256);

	if (uid < 0) {
		snprintf(buf, len, "anonymous");
		return;
	}
	if (!cache[slot].at || cache[slot].uid != uid ||
	    now - cache[slot].at >= METRICS_NAMES_TTL_MS) {
		cache[slot].uid = uid;
		cache[slot].at = now ? now : 1;
		if (getpwuid_r((uid_t)uid, &pw, tmp, sizeof(tmp), &found) == 0 && found)
			snprintf(cache[slot].name, sizeof(cache[slot].name), "%s", found->pw_name);
		else
			snprintf(cache[slot].name, sizeof(cache[slot].name), "%lld",
			         (long long)uid);
	}
	snprintf(buf, len, "%s", cache[slot].name);
}

/* A model as its label: its name, its lane's pattern, or "other". */
static void usage_model_label(struct usage_labels *u, const char *lane, const char *model,
                              char *buf, size_t len)
{
	const struct config *cfg = u->d->cfg;
	int i, k;

	for (i = 0; i < u->n_models; i++)
		if (strcmp(u->models[i], model) == 0)
			break;
	if (i == u->n_models && u->n_models < METRICS_MAX_MODELS)
		snprintf(u->models[u->n_models++], sizeof(u->models[0]), "%s", model);
	if (i < u->n_models) {
		snprintf(buf, len, "%s", model);
		return;
	}
	for (i = 0; i < cfg->n_lanes; i++) {
		if (strcmp(cfg->lanes[i].name, lane) != 0)
			continue;
		for (k = 0; k < cfg->lanes[i].n_models; k++) {
			if (fnmatch(cfg->lanes[i].models[k], model, 0) == 0) {
				snprintf(buf, len, "%s", cfg->lanes[i].models[k]);
				return;
			}
		}
	}
	snprintf(buf, len, "other");
}

static void usage_user_label(struct usage_labels *u, int64_t uid, char *buf, size_t len)
{
	int i;

	for (i = 0; i < u->n_users && u->users[i] != uid; i++)
		;
	if (i == u->n_users && u->n_users < METRICS_MAX_USERS)
		u->users[u->n_users++] = uid;
	if (i < u->n_users)
		usage_user_name(uid, u->now, buf, len);
	else
		snprintf(buf, len, "other");
}

static int usage_collect(void *userdata, const struct store_usage_row *r)
{
	struct usage_labels *u = userdata;
	struct usage_series *s;
	void *p;

	if (u->n == u->cap) {
		u->cap = u->cap ? u->cap * 2 : 64;
		p = realloc(u->s, u->cap * sizeof(*u->s));
		if (!p)
			return -ENOMEM;
		u->s = p;
		p = realloc(u->rows, u->cap * sizeof(*u->rows));
		if (!p)
			return -ENOMEM;
		u->rows = p;
	}
	u->rows[u->n] = *r;
	s = &u->s[u->n];
	memset(s, 0, sizeof(*s));
	usage_user_label(u, r->uid, s->user, sizeof(s->user));
	usage_model_label(u, r->lane, r->model, s->model, sizeof(s->model));
	s->requests = r->requests;
	s->cached = r->cached_tokens;
	s->input = r->prompt_tokens - r->cached_tokens;
	s->output = r->completion_tokens;
	s->cost_nusd = r->cost_nusd;
	s->unpriced = r->unpriced_tokens;
	u->n++;
	return 0;
}

static int usage_series_cmp(const void *a, const void *b)
{
	const struct usage_series *x = a, *y = b;
	int c = strcmp(x->lane, y->lane);

	if (!c)
		c = strcmp(x->cls, y->cls);
	if (!c)
		c = strcmp(x->user, y->user);
	return c ? c : strcmp(x->model, y->model);
}

static void usage_labels_put(struct out *o, const struct usage_series *s)
{
	put(o, "{lane=\"");
	put_label(o, s->lane);
	put(o, "\",class=\"");
	put_label(o, s->cls);
	put(o, "\",user=\"");
	put_label(o, s->user);
	put(o, "\",model=\"");
	put_label(o, s->model);
	put(o, "\"");
}

/* The usage families, from the store's totals. */
static int metrics_usage(struct llmqd *d, struct out *o)
{
	struct usage_labels *u = calloc(1, sizeof(*u));
	struct usage_series *s;
	size_t i, n = 0;
	int r;

	if (!u)
		return -ENOMEM;
	u->d = d;
	u->now = time_mono_ms();
	r = store_usage_totals(d->store, usage_collect, u);
	if (r < 0)
		goto out;
	for (i = 0; i < u->n; i++) {
		u->s[i].lane = u->rows[i].lane;
		u->s[i].cls = u->rows[i].class_name;
	}
	if (u->n > 1) /* qsort() takes no NULL, which an empty database gives */
		qsort(u->s, u->n, sizeof(*u->s), usage_series_cmp);
	/* Rows that share their labels now are one series. */
	for (i = 0; i < u->n; i++) {
		s = &u->s[n];
		if (n > 0 && usage_series_cmp(&u->s[n - 1], &u->s[i]) == 0) {
			s = &u->s[n - 1];
			s->requests += u->s[i].requests;
			s->input += u->s[i].input;
			s->cached += u->s[i].cached;
			s->output += u->s[i].output;
			s->cost_nusd += u->s[i].cost_nusd;
			s->unpriced += u->s[i].unpriced;
			continue;
		}
		if (s != &u->s[i])
			*s = u->s[i];
		n++;
	}
	family(o, "llmq_usage_requests_total", "counter",
	       "Upstream tries by lane, class, user and model, since the database began.");
	for (i = 0; i < n; i++) {
		put(o, "llmq_usage_requests_total");
		usage_labels_put(o, &u->s[i]);
		put(o, "} %lld\n", (long long)u->s[i].requests);
	}
	family(o, "llmq_usage_tokens_total", "counter",
	       "Tokens the answers reported, by lane, class, user, model and kind: input (not "
	       "cached), cached_input, output; the kinds add up to the total.");
	for (i = 0; i < n; i++) {
		static const char *const kinds[] = {"input", "cached_input", "output"};
		int64_t v[] = {u->s[i].input, u->s[i].cached, u->s[i].output};
		int k;

		for (k = 0; k < 3; k++) {
			put(o, "llmq_usage_tokens_total");
			usage_labels_put(o, &u->s[i]);
			put(o, ",kind=\"%s\"} %lld\n", kinds[k], (long long)v[k]);
		}
	}
	family(o, "llmq_usage_cost_usd_total", "counter",
	       "What the tries cost in US dollars at the prices of the day, by lane, class, user "
	       "and model (models without a price cost nothing).");
	for (i = 0; i < n; i++) {
		put(o, "llmq_usage_cost_usd_total");
		usage_labels_put(o, &u->s[i]);
		put(o, "} %lld.%09lld\n", (long long)(u->s[i].cost_nusd / 1000000000),
		    (long long)(u->s[i].cost_nusd % 1000000000));
	}
	family(o, "llmq_usage_unpriced_tokens_total", "counter",
	       "Tokens of models the [prices] of llmqd.conf had no price for.");
	for (i = 0; i < n; i++) {
		put(o, "llmq_usage_unpriced_tokens_total");
		usage_labels_put(o, &u->s[i]);
		put(o, "} %lld\n", (long long)u->s[i].unpriced);
	}
out:
	free(u->s);
	free(u->rows);
	free(u);
	return r;
}

/* The users of the budget families: those most spent first, METRICS_MAX_USERS of them. */
struct budget_rows {
	struct ledger_user *u;
	size_t n, cap;
};

static double budget_ratio(const struct ledger_user *u, int k)
{
	int64_t allowed = u->b.lim.allowed[k];

	if (allowed == BUDGET_UNSET)
		return -1;
	return allowed > 0 ? (double)u->use.spent[k] / (double)allowed : 1;
}

static double budget_worst(const struct ledger_user *u)
{
	double a = budget_ratio(u, BUDGET_DAILY_TOKENS), b = budget_ratio(u, BUDGET_MONTHLY_USD);

	return a > b ? a : b;
}

static int budget_collect(void *userdata, const struct ledger_user *u)
{
	struct budget_rows *b = userdata;
	struct ledger_user *p;

	if (budget_worst(u) < 0)
		return 0; /* a share alone: nothing spent to show */
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		p = realloc(b->u, b->cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		b->u = p;
	}
	b->u[b->n++] = *u;
	return 0;
}

static int budget_cmp(const void *a, const void *b)
{
	double x = budget_worst(a), y = budget_worst(b);
	const struct ledger_user *p = a, *q = b;

	return x > y ? -1 : x < y ? 1 : p->uid < q->uid ? -1 : p->uid > q->uid;
}

/* One budget's figure in its unit: tokens, or dollars. */
static void budget_put_value(struct out *o, int k, int64_t v)
{
	if (k == BUDGET_DAILY_TOKENS)
		put(o, "%lld\n", (long long)v);
	else
		put(o, "%lld.%09lld\n", (long long)(v / 1000000000), (long long)(v % 1000000000));
}

/* Each user's budgets (ledger.c): what is spent, held and allowed in the
 * period, and the share spent, which alerts watch. */
static int metrics_budgets(struct llmqd *d, struct out *o)
{
	static const char *const names[] = {"llmq_budget_used", "llmq_budget_held",
	                                    "llmq_budget_allowed", "llmq_budget_used_ratio"};
	static const char *const helps[] = {
	    ("What each user spent of each budget in its period: daily_tokens in tokens since "
	     "llmqd's local midnight, monthly_usd in US dollars since the month's first."),
	    "What each user's requests in flight hold of each budget (their estimates).",
	    "Each user's budgets, as [user] and [group] sections of llmqd.conf set them.",
	    "What each user spent of each budget, as a share of it (1: all of it)."};
	struct budget_rows b = {0};
	char user[64];
	size_t i;
	int r, f, k;

	r = ledger_each(sched_ledger(d->sched), time_wall_ms(), time_mono_ms(), budget_collect, &b);
	if (r < 0)
		goto out;
	if (b.n > 1)
		qsort(b.u, b.n, sizeof(*b.u), budget_cmp);
	if (b.n > METRICS_MAX_USERS)
		b.n = METRICS_MAX_USERS;
	for (f = 0; f < 4; f++) {
		family(o, names[f], "gauge", helps[f]);
		for (i = 0; i < b.n; i++) {
			const struct ledger_user *u = &b.u[i];

			if (u->name[0])
				snprintf(user, sizeof(user), "%s", u->name);
			else
				snprintf(user, sizeof(user), "%lld", (long long)u->uid);
			for (k = 0; k < BUDGET_KINDS; k++) {
				if (u->b.lim.allowed[k] == BUDGET_UNSET)
					continue;
				put(o, "%s{user=\"", names[f]);
				put_label(o, user);
				put(o, "\",budget=\"%s\"} ", budget_kind_name((enum budget_kind)k));
				if (f == 0)
					budget_put_value(o, k, u->use.spent[k]);
				else if (f == 1)
					budget_put_value(o, k, u->use.held[k]);
				else if (f == 2)
					budget_put_value(o, k, u->b.lim.allowed[k]);
				else
					put(o, "%.6f\n", budget_ratio(u, k));
			}
		}
	}
out:
	free(b.u);
	return r;
}

int metrics_render(struct llmqd *d, struct evbuffer *buf)
{
	struct lane_snapshot snap[CONFIG_MAX_LANES];
	struct out o = {.buf = buf};
	struct ipc_stats is;
	int64_t now = time_mono_ms(), jobs[CONFIG_MAX_LANES], tokens, counts[METRICS_STATES],
	        paused;
	int n, i, c, so, r, n_states, refuse;
	char why[512];

	for (n_states = 0; proto_batch_states[n_states] && n_states < METRICS_STATES; n_states++)
		;

	for (n = 0; n < CONFIG_MAX_LANES && sched_lane_snapshot(d->sched, n, now, &snap[n]) == 0;
	     n++) {
		r = store_backlog(d->store, snap[n].cfg->name, &jobs[n], &tokens);
		if (r < 0)
			return r;
	}
	r = store_batch_states(d->store, proto_batch_states, n_states, counts);
	if (r == 0)
		r = store_batches_paused(d->store, &paused);
	if (r < 0)
		return r;

	family(&o, "llmq_build_info", "gauge", "llmqd's version.");
	put(&o, "llmq_build_info{version=\"%s\"} 1\n", LLMQ_VERSION);
	family(&o, "llmq_uptime_seconds", "gauge", "Seconds since llmqd started.");
	put(&o, "llmq_uptime_seconds %.3f\n", (double)(now - d->started_mono) / 1000.0);

	family(&o, "llmq_requests_total", "counter",
	       "Upstream tries by lane, class and outcome; refused: an interactive call the gate "
	       "could not serve within its wait, answered 429 without an upstream call.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			for (so = 0; so < SO__COUNT; so++)
				put(&o,
				    "llmq_requests_total{lane=\"%s\",class=\"%s\",outcome=\"%s\"} "
				    "%llu\n",
				    snap[i].cfg->name, stats_class_name(c), stats_outcome_name(so),
				    (unsigned long long)snap[i].stats.requests[c][so]);
	lane_counter(&o, snap, n, "llmq_upstream_429_total",
	             "Answers with HTTP 429 from the upstream.",
	             offsetof(struct lane_stats, upstream_429));
	family(&o, "llmq_retries_total", "counter", "Tries answered in a way that is tried again.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			put(&o, "llmq_retries_total{lane=\"%s\",class=\"%s\"} %llu\n",
			    snap[i].cfg->name, stats_class_name(c),
			    (unsigned long long)(snap[i].stats.requests[c][SO_RETRY] +
			                         snap[i].stats.requests[c][SO_RATE_LIMITED]));
	lane_counter(&o, snap, n, "llmq_tokens_charged_total",
	             "Tokens the gate reserved at launch (estimates).",
	             offsetof(struct lane_stats, tokens_charged));
	lane_counter(&o, snap, n, "llmq_tokens_used_total", "Tokens the answers reported as used.",
	             offsetof(struct lane_stats, tokens_used));

	family(&o, "llmq_in_flight", "gauge", "Transfers in flight.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			put(&o, "llmq_in_flight{lane=\"%s\",class=\"%s\"} %d\n", snap[i].cfg->name,
			    stats_class_name(c), snap[i].gate.class_in_flight[c]);
	family(&o, "llmq_queued", "gauge",
	       "Work waiting at the lane: batch jobs queued, calls waiting.");
	for (i = 0; i < n; i++) {
		int64_t q = jobs[i] - snap[i].gate.class_in_flight[GATE_BATCH];

		put(&o, "llmq_queued{lane=\"%s\",class=\"batch\"} %lld\n", snap[i].cfg->name,
		    (long long)(q > 0 ? q : 0));
		put(&o, "llmq_queued{lane=\"%s\",class=\"interactive\"} %d\n", snap[i].cfg->name,
		    snap[i].calls_waiting);
	}
	family(&o, "llmq_bucket_tokens", "gauge",
	       "Tokens the lane's bucket holds (negative: debt).");
	for (i = 0; i < n; i++)
		put(&o, "llmq_bucket_tokens{lane=\"%s\"} %.0f\n", snap[i].cfg->name,
		    snap[i].gate.tok);
	family(&o, "llmq_bucket_requests", "gauge", "Requests the lane's bucket holds.");
	for (i = 0; i < n; i++)
		put(&o, "llmq_bucket_requests{lane=\"%s\"} %.2f\n", snap[i].cfg->name,
		    snap[i].gate.req);
	family(&o, "llmq_effective_tokens_per_minute", "gauge",
	       "The lane's token budget after headroom (0: unlimited).");
	for (i = 0; i < n; i++)
		put(&o, "llmq_effective_tokens_per_minute{lane=\"%s\"} %lld\n", snap[i].cfg->name,
		    (long long)gate_effective_tpm(&snap[i].gate));
	family(&o, "llmq_effective_requests_per_minute", "gauge",
	       "The lane's request budget after headroom (0: unlimited).");
	for (i = 0; i < n; i++)
		put(&o, "llmq_effective_requests_per_minute{lane=\"%s\"} %lld\n", snap[i].cfg->name,
		    snap[i].gate.lim.rpm > 0
		        ? (long long)floor(gate_requests_per_ms(&snap[i].gate) * 60000.0 + 1e-6)
		        : 0LL);
	family(&o, "llmq_lane_max_concurrency", "gauge",
	       "Transfers the lane may have in flight at once (its live max_concurrency).");
	for (i = 0; i < n; i++)
		put(&o, "llmq_lane_max_concurrency{lane=\"%s\"} %d\n", snap[i].cfg->name,
		    snap[i].gate.lim.max_concurrency);
	family(&o, "llmq_lane_paused", "gauge",
	       "1 while the lane is paused (429, no credit, or by an operator).");
	for (i = 0; i < n; i++)
		put(&o, "llmq_lane_paused{lane=\"%s\"} %d\n", snap[i].cfg->name,
		    snap[i].gate.paused_until > now || snap[i].paused_at);
	family(&o, "llmq_lane_paused_by_operator", "gauge",
	       "1 while an operator holds the lane paused (llmq pause; llmq resume ends it).");
	for (i = 0; i < n; i++)
		put(&o, "llmq_lane_paused_by_operator{lane=\"%s\"} %d\n", snap[i].cfg->name,
		    snap[i].paused_at != 0);

	family(&o, "llmq_gate_wait_seconds", "histogram",
	       "Time from ready (or arrival) to launch at the gate.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			histogram(&o, "llmq_gate_wait_seconds", snap[i].cfg->name,
			          stats_class_name(c), &snap[i].stats.gate_wait[c]);
	family(&o, "llmq_upstream_latency_seconds", "histogram",
	       "Upstream latency of answered tries.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			histogram(&o, "llmq_upstream_latency_seconds", snap[i].cfg->name,
			          stats_class_name(c), &snap[i].stats.latency[c]);

	family(&o, "llmq_batches", "gauge", "Batches in the database by state.");
	for (i = 0; i < n_states; i++)
		put(&o, "llmq_batches{state=\"%s\"} %lld\n", proto_batch_states[i],
		    (long long)counts[i]);
	family(&o, "llmq_batches_paused", "gauge",
	       "Batches in progress an operator paused (llmq pause BATCH).");
	put(&o, "llmq_batches_paused %lld\n", (long long)paused);
	r = metrics_usage(d, &o);
	if (r == 0)
		r = metrics_budgets(d, &o);
	if (r < 0)
		return r;
	family(&o, "llmq_refusals_total", "counter", "Submits and calls refused, by reason.");
	for (i = 0; i < REFUSAL__COUNT; i++)
		put(&o, "llmq_refusals_total{reason=\"%s\"} %llu\n", llmqd_refusal_name(i),
		    (unsigned long long)d->refusals[i]);

	if (d->ipc) {
		ipc_stats(d->ipc, &is);
		family(&o, "llmq_socket_clients", "gauge", "Clients connected to the llmq socket.");
		put(&o, "llmq_socket_clients %d\n", ipc_clients(d->ipc));
		family(&o, "llmq_socket_refused_total", "counter",
		       "Socket connections refused: too many overall, or for one user.");
		put(&o, "llmq_socket_refused_total %llu\n", (unsigned long long)is.refused);
		family(&o, "llmq_socket_stalls_total", "counter",
		       "Times a client's requests waited for its unread answers to drain.");
		put(&o, "llmq_socket_stalls_total %llu\n", (unsigned long long)is.stalls);
		family(&o, "llmq_socket_deadline_closed_total", "counter",
		       "Socket clients closed at their deadline, by what was late.");
		put(&o, "llmq_socket_deadline_closed_total{what=\"request\"} %llu\n",
		    (unsigned long long)is.idle_expired);
		put(&o, "llmq_socket_deadline_closed_total{what=\"submit_lines\"} %llu\n",
		    (unsigned long long)is.lines_expired);
	}
	fleet_metrics(&o, d, snap, n);
	family(&o, "llmq_database_locked", "gauge",
	       "1 while another program holds the database's lock (writes wait in memory).");
	put(&o, "llmq_database_locked %d\n", d->db_locked_since != 0);
	family(&o, "llmq_database_refusing_writes", "gauge",
	       "1 while the database takes no writes (another program's lock, the file gone, "
	       "the disk full): outcomes wait in memory, /healthz says degraded.");
	put(&o, "llmq_database_refusing_writes %d\n", health_db(d, why, sizeof(why), &refuse));
	family(&o, "llmq_database_gone", "gauge",
	       "1 once the database file was deleted or replaced under llmqd (restart it).");
	put(&o, "llmq_database_gone %d\n", d->db_gone != 0);
	return o.failed ? -ENOMEM : 0;
}
