/*
 * budget.c - users' limits, periods, fits and share meters (see budget.h).
 * Pure: what a user spent is the caller's to say.
 */
#include "gate/budget.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *budget_kind_name(enum budget_kind k)
{
	return k == BUDGET_DAILY_TOKENS ? "daily_tokens" : "monthly_usd";
}

static void budget_unset(struct budget_limits *l)
{
	int k;

	l->tpm_share = BUDGET_UNSET;
	for (k = 0; k < BUDGET_KINDS; k++)
		l->allowed[k] = BUDGET_UNSET;
}

/* A count of tokens, all digits, up to max. */
static int budget_parse_count(const char *v, int64_t max, int64_t *ret)
{
	int64_t n = 0;
	const char *p;

	if (!*v)
		return -EINVAL;
	for (p = v; *p; p++) {
		if (*p < '0' || *p > '9' || n > (max - (*p - '0')) / 10)
			return -EINVAL;
		n = n * 10 + (*p - '0');
	}
	*ret = n;
	return 0;
}

/* Dollars with up to nine decimals, read exactly as nano-dollars. */
static int budget_parse_usd(const char *v, int64_t *ret)
{
	int64_t whole = 0, frac = 0;
	const char *p = v;
	int digits = 0;

	if (*p == '$')
		p++;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > (BUDGET_NUSD_MAX / 1000000000 - (*p - '0')) / 10)
			return -EINVAL;
		whole = whole * 10 + (*p - '0');
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (++digits > 9)
				return -EINVAL;
			frac = frac * 10 + (*p - '0');
		}
		if (digits == 0)
			return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	for (; digits < 9; digits++)
		frac *= 10;
	*ret = whole * 1000000000 + frac;
	return 0;
}

static int budget_parse_share(const char *v, double *ret)
{
	char *end;
	double d;

	if (!*v || (*v != '.' && (*v < '0' || *v > '9')))
		return -EINVAL;
	d = strtod(v, &end);
	if (*end || !isfinite(d) || d < 0 || d > 1)
		return -EINVAL;
	*ret = d;
	return 0;
}

int budget_table_set(struct budget_table *t, int group, const char *name, const char *key,
                     const char *value, char *why, size_t len)
{
	struct budget_section *sec = NULL;
	int i, r;

	if (!*name || strlen(name) >= BUDGET_NAME_LEN) {
		snprintf(why, len, "a %s name of 1 to %d characters", group ? "group" : "user",
		         BUDGET_NAME_LEN - 1);
		return -EINVAL;
	}
	for (i = 0; i < t->n; i++)
		if (t->s[i].group == group && strcmp(t->s[i].name, name) == 0)
			sec = &t->s[i];
	if (!sec) {
		if (t->n == BUDGET_SECTIONS_MAX) {
			snprintf(why, len, "more than %d [user] and [group] sections",
			         BUDGET_SECTIONS_MAX);
			return -E2BIG;
		}
		sec = &t->s[t->n++];
		memset(sec, 0, sizeof(*sec));
		snprintf(sec->name, sizeof(sec->name), "%s", name);
		sec->group = group;
		budget_unset(&sec->lim);
	}
	if (strcmp(key, "tpm_share") == 0) {
		r = budget_parse_share(value, &sec->lim.tpm_share);
		if (r < 0)
			snprintf(why, len,
			         "expected a share of a lane's tokens from 0 to 1, "
			         "such as 0.5");
	} else if (strcmp(key, "daily_tokens") == 0) {
		r = budget_parse_count(value, BUDGET_TOKENS_MAX,
		                       &sec->lim.allowed[BUDGET_DAILY_TOKENS]);
		if (r < 0)
			snprintf(why, len,
			         "expected a number of tokens from 0 to 10^15, digits "
			         "alone");
	} else if (strcmp(key, "monthly_usd") == 0) {
		r = budget_parse_usd(value, &sec->lim.allowed[BUDGET_MONTHLY_USD]);
		if (r < 0)
			snprintf(why, len,
			         "expected dollars from 0 to 10^9 with up to nine "
			         "decimals, such as 50 or 12.50");
	} else {
		snprintf(why, len,
		         "unknown key; a [%s] section takes tpm_share, daily_tokens "
		         "and monthly_usd",
		         group ? "group NAME" : "user NAME");
		r = -EINVAL;
	}
	return r;
}

/* Take what sec sets and ret does not have yet. */
static void budget_take(struct budget_user *ret, const struct budget_section *sec, int *have_share,
                        int have[BUDGET_KINDS])
{
	int k;

	if (!*have_share && sec->lim.tpm_share >= 0) {
		ret->lim.tpm_share = sec->lim.tpm_share;
		snprintf(ret->share_from, sizeof(ret->share_from), "[%s %s]",
		         sec->group ? "group" : "user", sec->name);
		*have_share = 1;
	}
	for (k = 0; k < BUDGET_KINDS; k++) {
		if (have[k] || sec->lim.allowed[k] == BUDGET_UNSET)
			continue;
		ret->lim.allowed[k] = sec->lim.allowed[k];
		snprintf(ret->from[k], sizeof(ret->from[k]), "[%s %s]",
		         sec->group ? "group" : "user", sec->name);
		have[k] = 1;
	}
}

void budget_resolve(const struct budget_table *t, const char *user, const char *const *groups,
                    int n, struct budget_user *ret)
{
	int have[BUDGET_KINDS] = {0}, have_share = 0, i, g;

	memset(ret, 0, sizeof(*ret));
	budget_unset(&ret->lim);
	for (i = 0; user && i < t->n; i++)
		if (!t->s[i].group && strcmp(t->s[i].name, user) == 0)
			budget_take(ret, &t->s[i], &have_share, have);
	for (i = 0; i < t->n; i++) {
		if (!t->s[i].group)
			continue;
		for (g = 0; g < n; g++)
			if (groups[g] && strcmp(groups[g], t->s[i].name) == 0)
				break;
		if (g < n)
			budget_take(ret, &t->s[i], &have_share, have);
	}
	if (!have_share)
		ret->lim.tpm_share = 1;
}

int budget_limits_any(const struct budget_limits *lim)
{
	int k;

	for (k = 0; k < BUDGET_KINDS; k++)
		if (lim->allowed[k] != BUDGET_UNSET)
			return 1;
	return lim->tpm_share >= 0 && lim->tpm_share < 1;
}

/* tm's date at midnight, local time, in wall ms; -EINVAL when it has none. */
static int64_t budget_midnight(struct tm tm)
{
	time_t t;

	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	t = mktime(&tm);
	return t == (time_t)-1 ? -EINVAL : (int64_t)t * 1000;
}

static int budget_date(int64_t wall_ms, char day[static 11])
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	if (!localtime_r(&t, &tm) || strftime(day, 11, "%Y-%m-%d", &tm) != 10)
		return -EINVAL;
	return 0;
}

int budget_period_at(int64_t wall_ms, struct budget_period *ret)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm, d;
	int64_t v[4];
	int i;

	if (wall_ms < 0 || !localtime_r(&t, &tm))
		return -EINVAL;
	d = tm;
	v[0] = budget_midnight(d);
	d.tm_mday++;
	v[1] = budget_midnight(d);
	d = tm;
	d.tm_mday = 1;
	v[2] = budget_midnight(d);
	d.tm_mon++;
	v[3] = budget_midnight(d);
	for (i = 0; i < 4; i++)
		if (v[i] < 0)
			return -EINVAL;
	ret->starts[BUDGET_DAILY_TOKENS] = v[0];
	ret->ends[BUDGET_DAILY_TOKENS] = v[1];
	ret->starts[BUDGET_MONTHLY_USD] = v[2];
	ret->ends[BUDGET_MONTHLY_USD] = v[3];
	if (budget_date(wall_ms, ret->day) < 0 || budget_date(v[2], ret->month_first) < 0 ||
	    budget_date(v[3], ret->month_next) < 0)
		return -EINVAL;
	return 0;
}

int budget_period_holds(const struct budget_period *p, int64_t wall_ms)
{
	return wall_ms >= p->starts[BUDGET_DAILY_TOKENS] && wall_ms < p->ends[BUDGET_DAILY_TOKENS];
}

/* How bad a verdict is, for keeping the worst. */
static int budget_rank(enum budget_fit f)
{
	return f == BUDGET_NEVER ? 3 : f == BUDGET_SPENT ? 2 : f == BUDGET_HELD ? 1 : 0;
}

enum budget_fit budget_check(const struct budget_limits *lim, const struct budget_use *use,
                             const int64_t need[BUDGET_KINDS], const struct budget_period *p,
                             struct budget_verdict *ret)
{
	struct budget_verdict v;
	int k;

	memset(ret, 0, sizeof(*ret));
	ret->fit = BUDGET_FITS;
	for (k = 0; k < BUDGET_KINDS; k++) {
		int64_t allowed = lim->allowed[k], spent = use->spent[k], held = use->held[k];

		if (allowed == BUDGET_UNSET)
			continue;
		v = (struct budget_verdict){
		    .kind = (enum budget_kind)k,
		    .spent = spent,
		    .held = held,
		    .allowed = allowed,
		    .need = need[k],
		    .resets_at = p->ends[k],
		};
		/* Figures are within 10^18 each: their sums do not overflow. */
		if (need[k] > allowed)
			v.fit = BUDGET_NEVER;
		else if (spent + need[k] > allowed)
			v.fit = BUDGET_SPENT;
		else if (spent + held + need[k] > allowed)
			v.fit = BUDGET_HELD;
		else
			v.fit = BUDGET_FITS;
		if (budget_rank(v.fit) > budget_rank(ret->fit) ||
		    (v.fit != BUDGET_FITS && v.fit == ret->fit && v.resets_at > ret->resets_at))
			*ret = v;
	}
	return ret->fit;
}

/* A figure of kind in its unit: tokens, or dollars from nano-dollars. */
static void budget_figure(enum budget_kind k, int64_t v, char *buf, size_t len)
{
	if (k == BUDGET_DAILY_TOKENS) {
		snprintf(buf, len, "%lld", (long long)v);
		return;
	}
	price_format_usd(v, buf + 1, len - 1);
	buf[0] = '$';
}

void budget_describe(const struct budget_verdict *v, const char *user, char *buf, size_t len)
{
	char spent[48], held[48], allowed[48], need[48], at[32], inflight[96] = "";
	const char *unit = v->kind == BUDGET_DAILY_TOKENS ? " tokens" : "";
	const char *when = v->kind == BUDGET_DAILY_TOKENS ? "today" : "this month";
	time_t t = (time_t)(v->resets_at / 1000);
	struct tm tm;

	budget_figure(v->kind, v->spent, spent, sizeof(spent));
	budget_figure(v->kind, v->held, held, sizeof(held));
	budget_figure(v->kind, v->allowed, allowed, sizeof(allowed));
	budget_figure(v->kind, v->need, need, sizeof(need));
	if (!localtime_r(&t, &tm) || !strftime(at, sizeof(at), "%Y-%m-%d %H:%M", &tm))
		snprintf(at, sizeof(at), "the next period");
	if (v->held > 0)
		snprintf(inflight, sizeof(inflight), ", %s more held by requests in flight", held);
	if (v->fit == BUDGET_NEVER)
		snprintf(buf, len,
		         "%s's %s budget is %s%s, and this request may use %s%s: it can never "
		         "run within it; lower its max_tokens (or the prompt), or ask the operator "
		         "to raise the budget",
		         user, budget_kind_name(v->kind), allowed, unit, need, unit);
	else if (v->fit == BUDGET_HELD)
		snprintf(buf, len,
		         "%s's %s budget: %s of %s%s used %s%s; this request may use %s%s: it "
		         "goes when those end",
		         user, budget_kind_name(v->kind), spent, allowed, unit, when, inflight,
		         need, unit);
	else
		snprintf(buf, len,
		         "%s's %s budget: %s of %s%s used %s%s; this request may use %s%s; the "
		         "budget resets at %s (llmqd's local time)",
		         user, budget_kind_name(v->kind), spent, allowed, unit, when, inflight,
		         need, unit, at);
}

int64_t budget_cost_bound(const struct price *p, int64_t tokens)
{
	struct price_usage in = {tokens, 0, 0, tokens}, out = {0, 0, tokens, tokens};
	int64_t a, b;

	if (!p || tokens <= 0)
		return 0;
	a = price_cost(p, &in);
	b = price_cost(p, &out);
	return a > b ? a : b;
}

double budget_meter_read(const struct budget_meter *m, int64_t now)
{
	if (now <= m->at)
		return m->level;
	return m->level * exp(-(double)(now - m->at) / BUDGET_SHARE_TAU_MS);
}

void budget_meter_add(struct budget_meter *m, double tokens, int64_t now)
{
	m->level = budget_meter_read(m, now) + tokens;
	if (now > m->at)
		m->at = now;
}

int budget_over_share(double share, double mine, double lane)
{
	if (share >= 1 || lane <= 0)
		return 0;
	return mine > share * lane;
}
