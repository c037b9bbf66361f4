/*
 * ledger.c - users' spending, holds and shares (see ledger.h). One entry
 * per uid ever seen since start (or spending this month before it), in an
 * open-addressed table that only grows: an entry forgotten while its
 * try's record is still on its way to the database would undercount.
 * The name service is asked at most once a minute per user, and only
 * while [user] or [group] sections exist.
 */
#include "gate/ledger.h"
#include "store/store.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEDGER_RESOLVE_TTL_MS 60000
#define LEDGER_GROUPS_MAX 256
#define LEDGER_FIRST_SLOTS 64

struct ledger_entry {
	int used;
	int64_t uid;
	char name[BUDGET_NAME_LEN];
	struct budget_user b;
	int64_t resolved_at; /* mono; 0: not yet */
	uint64_t gen;        /* the configuration's, when resolved */
	struct budget_use use;
	int64_t counted[BUDGET_KINDS]; /* the periods spent[] is for (their starts) */
	struct budget_meter meter[CONFIG_MAX_LANES];
	struct budget_verdict blocked;
};

struct ledger {
	struct store *st;
	const struct config *cfg;
	int n_lanes;
	struct ledger_entry *e;
	size_t slots, n;
	uint64_t gen;
	int loaded;                  /* spent was read from the store */
	struct budget_period period; /* the day and month now */
	struct budget_meter lane[CONFIG_MAX_LANES];
};

static struct ledger_entry *ledger_find(struct ledger *lg, int64_t uid)
{
	size_t i;

	if (!lg->slots)
		return NULL;
	for (i = (size_t)((uint64_t)uid * 0x9e3779b97f4a7c15ull) & (lg->slots - 1); lg->e[i].used;
	     i = (i + 1) & (lg->slots - 1))
		if (lg->e[i].uid == uid)
			return &lg->e[i];
	return NULL;
}

static int ledger_grow(struct ledger *lg)
{
	size_t slots = lg->slots ? lg->slots * 2 : LEDGER_FIRST_SLOTS, i, k;
	struct ledger_entry *e = calloc(slots, sizeof(*e));

	if (!e)
		return -ENOMEM;
	for (i = 0; i < lg->slots; i++) {
		if (!lg->e[i].used)
			continue;
		for (k = (size_t)((uint64_t)lg->e[i].uid * 0x9e3779b97f4a7c15ull) & (slots - 1);
		     e[k].used; k = (k + 1) & (slots - 1))
			;
		e[k] = lg->e[i];
	}
	free(lg->e);
	lg->e = e;
	lg->slots = slots;
	return 0;
}

/* The day and month of wall: the ledger's, moved on (or back) when wall left them. */
static const struct budget_period *ledger_period(struct ledger *lg, int64_t wall)
{
	struct budget_period p;

	if (!budget_period_holds(&lg->period, wall) && budget_period_at(wall, &p) == 0)
		lg->period = p;
	return &lg->period;
}

/* The entry's spent[] counted in the ledger's periods: a new one starts at nothing. */
static void ledger_roll(struct ledger *lg, struct ledger_entry *e)
{
	int k;

	for (k = 0; k < BUDGET_KINDS; k++) {
		if (e->counted[k] == lg->period.starts[k])
			continue;
		e->counted[k] = lg->period.starts[k];
		e->use.spent[k] = 0;
	}
}

/* uid's entry, made when new (spent nothing in the periods now). */
static struct ledger_entry *ledger_get(struct ledger *lg, int64_t uid)
{
	struct ledger_entry *e = ledger_find(lg, uid);
	size_t i;
	int k;

	if (e)
		return e;
	if ((lg->n + 1) * 2 > lg->slots && ledger_grow(lg) < 0)
		return NULL;
	for (i = (size_t)((uint64_t)uid * 0x9e3779b97f4a7c15ull) & (lg->slots - 1); lg->e[i].used;
	     i = (i + 1) & (lg->slots - 1))
		;
	e = &lg->e[i];
	memset(e, 0, sizeof(*e));
	e->used = 1;
	e->uid = uid;
	budget_resolve(&lg->cfg->budgets, NULL, NULL, 0, &e->b); /* none until resolved */
	for (k = 0; k < BUDGET_KINDS; k++)
		e->counted[k] = lg->period.starts[k];
	lg->n++;
	return e;
}

/* The user's name and groups from the name service, and their limits. A
 * user whose groups cannot be read keeps the limits resolved before. */
static void ledger_resolve(struct ledger *lg, struct ledger_entry *e, int64_t mono)
{
	static char names[LEDGER_GROUPS_MAX][BUDGET_NAME_LEN];
	const char *list[LEDGER_GROUPS_MAX];
	char pwbuf[4096], grbuf[4096];
	struct passwd pw, *found = NULL;
	struct group gr, *g = NULL;
	gid_t *gids = NULL, *more;
	int n = 64, i, k = 0;

	if (e->resolved_at && e->gen == lg->gen && mono - e->resolved_at < LEDGER_RESOLVE_TTL_MS)
		return;
	if (getpwuid_r((uid_t)e->uid, &pw, pwbuf, sizeof(pwbuf), &found) != 0 || !found) {
		e->name[0] = '\0';
		budget_resolve(&lg->cfg->budgets, NULL, NULL, 0, &e->b);
		goto out;
	}
	/* As many groups as the user has (getgrouplist says how many when short). */
	for (;;) {
		more = realloc(gids, (size_t)n * sizeof(*gids));
		if (!more)
			goto fail;
		gids = more;
		if (getgrouplist(found->pw_name, found->pw_gid, gids, &n) >= 0)
			break;
		if (n <= 0)
			goto fail;
	}
	for (i = 0; i < n && k < LEDGER_GROUPS_MAX; i++) {
		/* A name no section can have (too long) is passed over, not cut. */
		if (getgrgid_r(gids[i], &gr, grbuf, sizeof(grbuf), &g) != 0 || !g ||
		    strlen(g->gr_name) >= BUDGET_NAME_LEN)
			continue;
		snprintf(names[k], sizeof(names[k]), "%s", g->gr_name);
		list[k] = names[k];
		k++;
	}
	snprintf(e->name, sizeof(e->name), "%s", found->pw_name);
	budget_resolve(&lg->cfg->budgets, e->name, list, k, &e->b);
out:
	e->resolved_at = mono ? mono : 1;
	e->gen = lg->gen;
fail:
	free(gids);
}

static int ledger_load_one(void *userdata, int64_t uid, int64_t tokens_day, int64_t nusd_month)
{
	struct ledger *lg = userdata;
	struct ledger_entry *e = ledger_get(lg, uid);

	if (!e)
		return -ENOMEM;
	ledger_roll(lg, e);
	e->use.spent[BUDGET_DAILY_TOKENS] = tokens_day;
	e->use.spent[BUDGET_MONTHLY_USD] = nusd_month;
	return 0;
}

/* What everyone spent in the periods of wall, as usage_daily says. */
static int ledger_load(struct ledger *lg, int64_t wall)
{
	const struct budget_period *p = ledger_period(lg, wall);
	size_t i;
	int r;

	for (i = 0; i < lg->slots; i++)
		if (lg->e[i].used) {
			ledger_roll(lg, &lg->e[i]);
			lg->e[i].use.spent[BUDGET_DAILY_TOKENS] = 0;
			lg->e[i].use.spent[BUDGET_MONTHLY_USD] = 0;
		}
	r = store_budget_spent(lg->st, p->day, p->month_first, p->month_next, ledger_load_one, lg);
	lg->loaded = r == 0;
	return r;
}

int ledger_new(struct store *st, const struct config *cfg, int n_lanes, int64_t wall,
               struct ledger **ret)
{
	struct ledger *lg = calloc(1, sizeof(*lg));

	if (!lg)
		return -ENOMEM;
	lg->st = st;
	lg->cfg = cfg;
	lg->n_lanes = n_lanes;
	lg->gen = 1;
	if (budget_period_at(wall, &lg->period) < 0) {
		free(lg);
		return -EINVAL;
	}
	ledger_load(lg, wall); /* a failure is retried by ledger_tick */
	*ret = lg;
	return 0;
}

void ledger_free(struct ledger *lg)
{
	if (!lg)
		return;
	free(lg->e);
	free(lg);
}

void ledger_reload(struct ledger *lg)
{
	lg->gen++;
}

int ledger_tick(struct ledger *lg, int64_t wall)
{
	int64_t day = lg->period.starts[BUDGET_DAILY_TOKENS];
	int r;

	/* The clock went back past midnight: what was spent then is the store's. */
	if (lg->loaded && wall < day)
		lg->loaded = 0;
	if (lg->loaded)
		return 0;
	r = ledger_load(lg, wall);
	return r < 0 ? r : 1;
}

int ledger_configured(const struct ledger *lg)
{
	return lg->cfg->budgets.n > 0;
}

/* What a launch of tokens of model may cost, in each budget's unit. */
static void ledger_need(const struct ledger *lg, const char *model, int64_t tokens,
                        int64_t need[BUDGET_KINDS])
{
	need[BUDGET_DAILY_TOKENS] = tokens;
	need[BUDGET_MONTHLY_USD] =
	    budget_cost_bound(price_find(&lg->cfg->prices, model ? model : ""), tokens);
}

/* uid's entry, its limits resolved and its figures in the periods of wall. */
static struct ledger_entry *ledger_user_at(struct ledger *lg, int64_t uid, int64_t wall,
                                           int64_t mono)
{
	struct ledger_entry *e;

	ledger_period(lg, wall);
	e = ledger_get(lg, uid);
	if (!e)
		return NULL;
	ledger_roll(lg, e);
	if (ledger_configured(lg))
		ledger_resolve(lg, e, mono);
	else
		budget_resolve(&lg->cfg->budgets, NULL, NULL, 0, &e->b);
	return e;
}

enum ledger_go ledger_judge(struct ledger *lg, int64_t uid, int lane, const char *model,
                            int64_t tokens, int64_t wall, int64_t mono, struct budget_verdict *ret)
{
	struct budget_verdict v = {.fit = BUDGET_FITS};
	struct ledger_entry *e;
	int64_t need[BUDGET_KINDS];
	int k;

	if (ret)
		*ret = v;
	if (!ledger_configured(lg) || uid < 0 || !(e = ledger_user_at(lg, uid, wall, mono)))
		return LEDGER_GO;
	ledger_need(lg, model, tokens, need);
	for (k = 0; k < BUDGET_KINDS; k++)
		if (e->b.lim.allowed[k] != BUDGET_UNSET)
			break;
	if (k < BUDGET_KINDS && !lg->loaded) {
		/* What they spent is not known yet: they wait for the store. */
		v = (struct budget_verdict){.fit = BUDGET_HELD,
		                            .kind = (enum budget_kind)k,
		                            .held = e->use.held[k],
		                            .allowed = e->b.lim.allowed[k],
		                            .need = need[k],
		                            .resets_at = lg->period.ends[k]};
	} else if (k < BUDGET_KINDS) {
		budget_check(&e->b.lim, &e->use, need, &lg->period, &v);
	}
	if (ret)
		*ret = v;
	if (v.fit != BUDGET_FITS) {
		e->blocked = v;
		return LEDGER_NO;
	}
	if (lane >= 0 && lane < lg->n_lanes &&
	    budget_over_share(e->b.lim.tpm_share, budget_meter_read(&e->meter[lane], mono),
	                      budget_meter_read(&lg->lane[lane], mono)))
		return LEDGER_LATER;
	return LEDGER_GO;
}

void ledger_hold(struct ledger *lg, int64_t uid, int lane, const char *model, int64_t tokens,
                 int64_t started, int64_t wall, int64_t mono, struct ledger_hold *ret)
{
	struct budget_period other;
	const struct budget_period *p;
	struct ledger_entry *e;
	int k;

	memset(ret, 0, sizeof(*ret));
	ret->uid = uid;
	ret->lane = lane;
	if (lane >= 0 && lane < lg->n_lanes)
		budget_meter_add(&lg->lane[lane], (double)tokens, mono);
	if (uid < 0 || !(e = ledger_user_at(lg, uid, wall, mono)))
		return;
	e->blocked.fit = BUDGET_FITS;
	if (lane >= 0 && lane < lg->n_lanes)
		budget_meter_add(&e->meter[lane], (double)tokens, mono);
	/* A call is counted on the day it came, which may be yesterday's. */
	p = &lg->period;
	if (!budget_period_holds(p, started) && budget_period_at(started, &other) == 0)
		p = &other;
	for (k = 0; k < BUDGET_KINDS; k++)
		ret->starts[k] = p->starts[k];
	if (ledger_configured(lg))
		ledger_need(lg, model, tokens, ret->need);
	for (k = 0; k < BUDGET_KINDS; k++)
		e->use.held[k] += ret->need[k];
	ret->held = 1;
}

void ledger_settle(struct ledger *lg, struct ledger_hold *h, int64_t tokens, int64_t nusd,
                   int64_t wall)
{
	const int64_t spent[BUDGET_KINDS] = {tokens, nusd};
	struct ledger_entry *e;
	int k;

	if (!h->held)
		return;
	h->held = 0;
	if (!(e = ledger_find(lg, h->uid)))
		return;
	ledger_period(lg, wall);
	ledger_roll(lg, e);
	for (k = 0; k < BUDGET_KINDS; k++) {
		e->use.held[k] -= h->need[k];
		if (e->use.held[k] < 0)
			e->use.held[k] = 0;
		/* As usage_daily counts it: in the period its try started in. */
		if (spent[k] > 0 && h->starts[k] == e->counted[k])
			e->use.spent[k] += spent[k];
	}
	if (e->blocked.fit == BUDGET_HELD)
		e->blocked.fit = BUDGET_FITS; /* worth a look again */
}

/* The entry as a reader sees it; 1 when a budget or share limits the user. */
static int ledger_view(struct ledger *lg, struct ledger_entry *e, int64_t wall,
                       struct ledger_user *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->uid = e->uid;
	snprintf(ret->name, sizeof(ret->name), "%s", e->name);
	ret->b = e->b;
	ret->use = e->use;
	ret->period = lg->period;
	ret->blocked = e->blocked;
	/* A wait that is over is none (the next look says whether a new one began). */
	if ((ret->blocked.fit == BUDGET_HELD && e->use.held[ret->blocked.kind] <= 0) ||
	    (ret->blocked.fit != BUDGET_HELD && ret->blocked.resets_at <= wall))
		ret->blocked.fit = BUDGET_FITS;
	return budget_limits_any(&e->b.lim);
}

int ledger_user(struct ledger *lg, int64_t uid, int64_t wall, int64_t mono, struct ledger_user *ret)
{
	struct ledger_entry *e = uid >= 0 ? ledger_user_at(lg, uid, wall, mono) : NULL;

	if (!e) {
		memset(ret, 0, sizeof(*ret));
		ret->uid = uid;
		budget_resolve(&lg->cfg->budgets, NULL, NULL, 0, &ret->b);
		ret->period = lg->period;
		return 0;
	}
	return ledger_view(lg, e, wall, ret);
}

int ledger_each(struct ledger *lg, int64_t wall, int64_t mono, ledger_user_cb cb, void *userdata)
{
	struct ledger_user u;
	size_t i;
	int r;

	if (!ledger_configured(lg))
		return 0;
	ledger_period(lg, wall);
	for (i = 0; i < lg->slots; i++) {
		if (!lg->e[i].used)
			continue;
		ledger_roll(lg, &lg->e[i]);
		ledger_resolve(lg, &lg->e[i], mono);
		if (!ledger_view(lg, &lg->e[i], wall, &u))
			continue;
		r = cb(userdata, &u);
		if (r < 0)
			return r;
	}
	return 0;
}
