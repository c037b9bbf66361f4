/*
 * metrics-usage.c - the families by user: usage by lane, class, user and
 * model, and each user's budgets.
 *
 * Usage comes from the store's totals (usage_totals: what `llmq usage`
 * counts, since the first try, restarts included), with the label sets
 * bounded: a model keeps its name among the first METRICS_MAX_MODELS seen,
 * later ones are named by the lane's pattern that routes them, else
 * "other"; a user keeps theirs among the first METRICS_MAX_USERS seen, later
 * ones are "other". Budgets come from the ledger, the users most spent
 * first.
 */
#include "view/metrics-private.h"
#include "gate/ledger.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <fnmatch.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX_MODELS 50
#define METRICS_MAX_USERS 200
#define METRICS_NAMES_TTL_MS 60000

/* A label's value, escaped as the exposition format wants it. */
static void put_label(struct metrics_out *o, const char *v)
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
	metrics_put(o, "%s", buf);
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

static void usage_labels_put(struct metrics_out *o, const struct usage_series *s)
{
	metrics_put(o, "{lane=\"");
	put_label(o, s->lane);
	metrics_put(o, "\",class=\"");
	put_label(o, s->cls);
	metrics_put(o, "\",user=\"");
	put_label(o, s->user);
	metrics_put(o, "\",model=\"");
	put_label(o, s->model);
	metrics_put(o, "\"");
}

/* The usage families, from the store's totals. */
int metrics_usage(struct llmqd *d, struct metrics_out *o)
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
	metrics_family(o, "llmq_usage_requests_total", "counter",
	               "Upstream tries by lane, class, user and model, since the database began.");
	for (i = 0; i < n; i++) {
		metrics_put(o, "llmq_usage_requests_total");
		usage_labels_put(o, &u->s[i]);
		metrics_put(o, "} %lld\n", (long long)u->s[i].requests);
	}
	metrics_family(
	    o, "llmq_usage_tokens_total", "counter",
	    "Tokens the answers reported, by lane, class, user, model and kind: input (not "
	    "cached), cached_input, output; the kinds add up to the total.");
	for (i = 0; i < n; i++) {
		static const char *const kinds[] = {"input", "cached_input", "output"};
		int64_t v[] = {u->s[i].input, u->s[i].cached, u->s[i].output};
		int k;

		for (k = 0; k < 3; k++) {
			metrics_put(o, "llmq_usage_tokens_total");
			usage_labels_put(o, &u->s[i]);
			metrics_put(o, ",kind=\"%s\"} %lld\n", kinds[k], (long long)v[k]);
		}
	}
	metrics_family(
	    o, "llmq_usage_cost_usd_total", "counter",
	    "What the tries cost in US dollars at the prices of the day, by lane, class, user "
	    "and model (models without a price cost nothing).");
	for (i = 0; i < n; i++) {
		metrics_put(o, "llmq_usage_cost_usd_total");
		usage_labels_put(o, &u->s[i]);
		metrics_put(o, "} %lld.%09lld\n", (long long)(u->s[i].cost_nusd / 1000000000),
		            (long long)(u->s[i].cost_nusd % 1000000000));
	}
	metrics_family(o, "llmq_usage_unpriced_tokens_total", "counter",
	               "Tokens of models the [prices] of llmqd.conf had no price for.");
	for (i = 0; i < n; i++) {
		metrics_put(o, "llmq_usage_unpriced_tokens_total");
		usage_labels_put(o, &u->s[i]);
		metrics_put(o, "} %lld\n", (long long)u->s[i].unpriced);
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
static void budget_put_value(struct metrics_out *o, int k, int64_t v)
{
	if (k == BUDGET_DAILY_TOKENS)
		metrics_put(o, "%lld\n", (long long)v);
	else
		metrics_put(o, "%lld.%09lld\n", (long long)(v / 1000000000),
		            (long long)(v % 1000000000));
}

/* Each user's budgets (ledger.c): what is spent, held and allowed in the
 * period, and the share spent, which alerts watch. */
int metrics_budgets(struct llmqd *d, struct metrics_out *o)
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
		metrics_family(o, names[f], "gauge", helps[f]);
		for (i = 0; i < b.n; i++) {
			const struct ledger_user *u = &b.u[i];

			if (u->name[0])
				snprintf(user, sizeof(user), "%s", u->name);
			else
				snprintf(user, sizeof(user), "%lld", (long long)u->uid);
			for (k = 0; k < BUDGET_KINDS; k++) {
				if (u->b.lim.allowed[k] == BUDGET_UNSET)
					continue;
				metrics_put(o, "%s{user=\"", names[f]);
				put_label(o, user);
				metrics_put(o, "\",budget=\"%s\"} ",
				            budget_kind_name((enum budget_kind)k));
				if (f == 0)
					budget_put_value(o, k, u->use.spent[k]);
				else if (f == 1)
					budget_put_value(o, k, u->use.held[k]);
				else if (f == 2)
					budget_put_value(o, k, u->b.lim.allowed[k]);
				else
					metrics_put(o, "%.6f\n", budget_ratio(u, k));
			}
		}
	}
out:
	free(b.u);
	return r;
}
