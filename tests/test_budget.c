/*
 * Budgets: the pure arithmetic of budget.c table by table (periods with
 * an injected clock and time zone, fits, precedence of sections, figures
 * read exactly, the share meter), and ledger.c over a real database: holds
 * given back on every path, spent counted as usage_daily counts it, periods
 * rolling over, and a restart that holds nothing.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gate/budget.h"
#include "gate/ledger.h"
#include "store/store.h"

/* ---- periods --------------------------------------------------------------- */

/* Strings in arrays, not pointers: each case runs in a process of its own,
 * which gets the case's bytes. */
struct period_case {
	char tz[24];
	int64_t wall;
	char day[11], month_first[11], month_next[11];
	int64_t day_start, day_end, month_start, month_end;
	char what[80];
};

/* The expected figures were worked out with Python's zoneinfo. */
static struct period_case periods[] = {
    {"UTC", 1796040000000, "2026-11-30", "2026-11-01", "2026-12-01", 1795996800000, 1796083200000,
     1793491200000, 1796083200000, "noon, UTC"},
    {"UTC", 1709251199999, "2024-02-29", "2024-02-01", "2024-03-01", 1709164800000, 1709251200000,
     1706745600000, 1709251200000, "the last millisecond of a leap day and of its month"},
    {"UTC", 1709251200000, "2024-03-01", "2024-03-01", "2024-04-01", 1709251200000, 1709337600000,
     1709251200000, 1711929600000, "the first millisecond of the next day and month"},
    {"UTC", 1798758000000, "2026-12-31", "2026-12-01", "2027-01-01", 1798675200000, 1798761600000,
     1796083200000, 1798761600000, "the year's last hour: the month ends with the year"},
    {"Europe/Berlin", 1774778400000, "2026-03-29", "2026-03-01", "2026-04-01", 1774738800000,
     1774821600000, 1772319600000, 1774994400000, "the day summer time starts has 23 hours"},
    {"Europe/Berlin", 1792926000000, "2026-10-25", "2026-10-01", "2026-11-01", 1792879200000,
     1792969200000, 1790805600000, 1793487600000, "the day it ends has 25 hours"},
    {"America/New_York", 1796007600000, "2026-11-29", "2026-11-01", "2026-12-01", 1795928400000,
     1796014800000, 1793505600000, 1796101200000, "22:00 local is tomorrow in UTC"},
    {"Asia/Kathmandu", 1767204900000, "2026-01-01", "2026-01-01", "2026-02-01", 1767204900000,
     1767291300000, 1767204900000, 1769883300000, "midnight at +05:45"},
    {"LQT-10:00:30", 1796083200000 - 10 * 3600000 - 30000, "2026-12-01", "2026-12-01", "2027-01-01",
     1796083200000 - 10 * 3600000 - 30000, 1796083200000 + 14 * 3600000 - 30000,
     1796083200000 - 10 * 3600000 - 30000, 1798761600000 - 10 * 3600000 - 30000,
     "a POSIX zone with seconds (how the tests bring a midnight near)"},
};

ParameterizedTestParameters(budget, periods)
{
	return cr_make_param_array(struct period_case, periods,
	                           sizeof(periods) / sizeof(periods[0]));
}

ParameterizedTest(const struct period_case *c, budget, periods)
{
	struct budget_period p;

	cr_assert_eq(setenv("TZ", c->tz, 1), 0);
	tzset();
	cr_assert_eq(budget_period_at(c->wall, &p), 0, "%s", c->what);
	cr_expect_str_eq(p.day, c->day, "%s", c->what);
	cr_expect_str_eq(p.month_first, c->month_first, "%s", c->what);
	cr_expect_str_eq(p.month_next, c->month_next, "%s", c->what);
	cr_expect_eq(p.starts[BUDGET_DAILY_TOKENS], c->day_start, "%s: day from %lld", c->what,
	             (long long)p.starts[BUDGET_DAILY_TOKENS]);
	cr_expect_eq(p.ends[BUDGET_DAILY_TOKENS], c->day_end, "%s: day to %lld", c->what,
	             (long long)p.ends[BUDGET_DAILY_TOKENS]);
	cr_expect_eq(p.starts[BUDGET_MONTHLY_USD], c->month_start, "%s: month from %lld", c->what,
	             (long long)p.starts[BUDGET_MONTHLY_USD]);
	cr_expect_eq(p.ends[BUDGET_MONTHLY_USD], c->month_end, "%s: month to %lld", c->what,
	             (long long)p.ends[BUDGET_MONTHLY_USD]);
	cr_expect(budget_period_holds(&p, c->wall), "%s", c->what);
	cr_expect(!budget_period_holds(&p, c->day_end), "%s: its end is the next day's", c->what);
}

/* ---- fits -------------------------------------------------------------------- */

struct fit_case {
	int64_t daily, monthly; /* -1: unset */
	int64_t spent_t, held_t, need_t;
	int64_t spent_u, held_u, need_u;
	enum budget_fit fit;
	enum budget_kind kind;
	char what[80];
};

#define U BUDGET_UNSET
static struct fit_case fits[] = {
    {U, U, 5000, 0, 100, 0, 0, 0, BUDGET_FITS, 0, "no budget: anything fits"},
    {100, U, 0, 0, 100, 0, 0, 0, BUDGET_FITS, 0, "exactly the whole budget fits"},
    {100, U, 40, 0, 60, 0, 0, 0, BUDGET_FITS, 0, "exactly what is left fits"},
    {100, U, 41, 0, 60, 0, 0, 0, BUDGET_SPENT, BUDGET_DAILY_TOKENS, "one token more waits"},
    {100, U, 0, 50, 60, 0, 0, 0, BUDGET_HELD, BUDGET_DAILY_TOKENS,
     "what flies holds it: it fits once those end"},
    {100, U, 50, 10, 60, 0, 0, 0, BUDGET_SPENT, BUDGET_DAILY_TOKENS,
     "spent alone leaves too little: the reset, not the flights"},
    {100, U, 0, 0, 101, 0, 0, 0, BUDGET_NEVER, BUDGET_DAILY_TOKENS, "more than all of it"},
    {0, U, 0, 0, 1, 0, 0, 0, BUDGET_NEVER, BUDGET_DAILY_TOKENS, "a budget of nothing"},
    {U, 1000000000, 0, 0, 0, 999999000, 0, 1000, BUDGET_FITS, 0, "the last nano-dollars fit"},
    {U, 1000000000, 0, 0, 0, 999999000, 0, 1001, BUDGET_SPENT, BUDGET_MONTHLY_USD,
     "one nano-dollar more waits for the month"},
    {U, 1000000000, 0, 0, 0, 1000000000, 0, 0, BUDGET_FITS, 0,
     "a model without a price costs nothing, even with the money spent"},
    {100, 1000, 100, 0, 1, 0, 900, 200, BUDGET_SPENT, BUDGET_DAILY_TOKENS,
     "the worst budget speaks: spent beats held"},
    {100, 1000, 100, 0, 1, 1000, 0, 1, BUDGET_SPENT, BUDGET_MONTHLY_USD,
     "both spent: the one that resets last"},
    {100, 1000, 0, 0, 200, 1000, 0, 1, BUDGET_NEVER, BUDGET_DAILY_TOKENS, "never beats spent"},
};
#undef U

ParameterizedTestParameters(budget, fits)
{
	return cr_make_param_array(struct fit_case, fits, sizeof(fits) / sizeof(fits[0]));
}

ParameterizedTest(const struct fit_case *c, budget, fits)
{
	struct budget_limits lim = {.tpm_share = 1, .allowed = {c->daily, c->monthly}};
	struct budget_use use = {{c->spent_t, c->spent_u}, {c->held_t, c->held_u}};
	const int64_t need[BUDGET_KINDS] = {c->need_t, c->need_u};
	struct budget_period p;
	struct budget_verdict v;

	cr_assert_eq(setenv("TZ", "UTC", 1), 0);
	tzset();
	cr_assert_eq(budget_period_at(1794744000000, &p), 0); /* mid-November */
	cr_expect_eq(budget_check(&lim, &use, need, &p, &v), c->fit, "%s: fit %d", c->what, v.fit);
	cr_expect_eq(v.fit, c->fit, "%s", c->what);
	if (c->fit == BUDGET_FITS)
		return;
	cr_expect_eq(v.kind, c->kind, "%s: kind %d", c->what, v.kind);
	cr_expect_eq(v.allowed, c->kind == BUDGET_DAILY_TOKENS ? c->daily : c->monthly, "%s",
	             c->what);
	cr_expect_eq(v.need, c->kind == BUDGET_DAILY_TOKENS ? c->need_t : c->need_u, "%s", c->what);
	cr_expect_eq(v.resets_at, p.ends[c->kind], "%s", c->what);
}

/* What a refusal says: who, which budget, the figures, and when it resets. */
Test(budget, a_verdict_says_who_which_budget_the_figures_and_when)
{
	struct budget_verdict v = {.fit = BUDGET_SPENT,
	                           .kind = BUDGET_DAILY_TOKENS,
	                           .spent = 9800,
	                           .held = 300,
	                           .allowed = 10000,
	                           .need = 500,
	                           .resets_at = 1796083200000};
	char buf[512];

	cr_assert_eq(setenv("TZ", "UTC", 1), 0);
	tzset();
	budget_describe(&v, "alice", buf, sizeof(buf));
	cr_expect(strstr(buf, "alice's daily_tokens budget: 9800 of 10000 tokens used today"), "%s",
	          buf);
	cr_expect(strstr(buf, "300 more held by requests in flight"), "%s", buf);
	cr_expect(strstr(buf, "may use 500 tokens"), "%s", buf);
	cr_expect(strstr(buf, "resets at 2026-12-01 00:00"), "%s", buf);
	v = (struct budget_verdict){.fit = BUDGET_SPENT,
	                            .kind = BUDGET_MONTHLY_USD,
	                            .spent = 50000000000,
	                            .allowed = 50000000000,
	                            .need = 1200000,
	                            .resets_at = 1798761600000};
	budget_describe(&v, "bob", buf, sizeof(buf));
	cr_expect(strstr(buf, "bob's monthly_usd budget: $50 of $50 used this month"), "%s", buf);
	cr_expect(strstr(buf, "may use $0.0012;"), "%s", buf);
	cr_expect(strstr(buf, "resets at 2027-01-01 00:00"), "%s", buf);
	cr_expect_null(strstr(buf, "held"), "nothing in flight, nothing said of it: %s", buf);
	v.fit = BUDGET_NEVER;
	budget_describe(&v, "bob", buf, sizeof(buf));
	cr_expect(strstr(buf, "can never run"), "%s", buf);
}

/* ---- sections and precedence ---------------------------------------------- */

struct set_case {
	char key[16], value[32];
	int ok;
	double share;
	int64_t daily, monthly;
};

#define U BUDGET_UNSET
static struct set_case sets[] = {
    {"tpm_share", "0.5", 1, 0.5, U, U},
    {"tpm_share", "0", 1, 0, U, U},
    {"tpm_share", "1", 1, 1, U, U},
    {"tpm_share", "1.5", 0, U, U, U},
    {"tpm_share", "-0.1", 0, U, U, U},
    {"tpm_share", "nan", 0, U, U, U},
    {"tpm_share", "", 0, U, U, U},
    {"daily_tokens", "100", 1, U, 100, U},
    {"daily_tokens", "0", 1, U, 0, U},
    {"daily_tokens", "1000000000000000", 1, U, 1000000000000000, U},
    {"daily_tokens", "1000000000000001", 0, U, U, U},
    {"daily_tokens", "99999999999999999999", 0, U, U, U},
    {"daily_tokens", "-1", 0, U, U, U},
    {"daily_tokens", "1e5", 0, U, U, U},
    {"monthly_usd", "50", 1, U, U, 50000000000},
    {"monthly_usd", "12.50", 1, U, U, 12500000000},
    {"monthly_usd", "$3", 1, U, U, 3000000000},
    {"monthly_usd", "0.000000001", 1, U, U, 1},
    {"monthly_usd", "1000000000", 1, U, U, 1000000000000000000},
    {"monthly_usd", "1000000001", 0, U, U, U},
    {"monthly_usd", "0.0000000001", 0, U, U, U},
    {"monthly_usd", "1.", 0, U, U, U},
    {"monthly_usd", ".5", 0, U, U, U},
    {"monthly_usd", "5 USD", 0, U, U, U},
    {"daily_budget", "5", 0, U, U, U},
};
#undef U

ParameterizedTestParameters(budget, figures_are_read_exactly)
{
	return cr_make_param_array(struct set_case, sets, sizeof(sets) / sizeof(sets[0]));
}

ParameterizedTest(const struct set_case *c, budget, figures_are_read_exactly)
{
	static struct budget_table t;
	char why[256] = "";
	int r;

	memset(&t, 0, sizeof(t));
	r = budget_table_set(&t, 0, "alice", c->key, c->value, why, sizeof(why));
	cr_assert_eq(r == 0, c->ok, "%s = \"%s\": %d %s", c->key, c->value, r, why);
	if (!c->ok) {
		cr_expect(why[0], "a refusal says what to change");
		return;
	}
	cr_expect_eq(t.n, 1);
	cr_expect(fabs(t.s[0].lim.tpm_share - c->share) < 1e-12, "%s: share %g", c->value,
	          t.s[0].lim.tpm_share);
	cr_expect_eq(t.s[0].lim.allowed[BUDGET_DAILY_TOKENS], c->daily);
	cr_expect_eq(t.s[0].lim.allowed[BUDGET_MONTHLY_USD], c->monthly, "%s: %lld", c->value,
	             (long long)t.s[0].lim.allowed[BUDGET_MONTHLY_USD]);
}

Test(budget, a_name_too_long_and_too_many_sections_are_refused)
{
	static struct budget_table t;
	char why[256], name[128];
	int i;

	memset(name, 'x', 100);
	name[100] = '\0';
	cr_expect_eq(budget_table_set(&t, 1, name, "daily_tokens", "5", why, sizeof(why)), -EINVAL);
	for (i = 0; i < BUDGET_SECTIONS_MAX; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		cr_assert_eq(budget_table_set(&t, 0, name, "daily_tokens", "5", why, sizeof(why)),
		             0);
	}
	cr_expect_eq(budget_table_set(&t, 0, "one-more", "daily_tokens", "5", why, sizeof(why)),
	             -E2BIG);
	cr_expect(strstr(why, "256"), "%s", why);
	cr_expect_eq(budget_table_set(&t, 0, "u3", "monthly_usd", "1", why, sizeof(why)), 0,
	             "a section met again is the same section");
}

struct resolve_case {
	char user[16]; /* "": one the name service does not know */
	char groups[2][16];
	double share;
	int64_t daily, monthly;
	char daily_from[24], monthly_from[24];
	char what[96];
};

#define U BUDGET_UNSET
static struct resolve_case resolves[] = {
    {"alice",
     {"staff", "all"},
     0.5,
     1000,
     50000000000,
     "[group staff]",
     "[group all]",
     "her own share, then key by key the first group in the file that sets it"},
    {"alice",
     {"all", "staff"},
     0.5,
     1000,
     50000000000,
     "[group staff]",
     "[group all]",
     "the file's order decides, not the order of her groups"},
    {"bob",
     {"all", ""},
     1,
     10,
     50000000000,
     "[user bob]",
     "[group all]",
     "a user's own section wins over a group's, key by key"},
    {"dave", {"all", ""}, 1, 5000, 50000000000, "[group all]", "[group all]", "a group alone"},
    {"carol", {"nobody", ""}, 1, U, U, "", "", "no section of hers: no budget"},
    {"", {"all", ""}, 1, U, U, "", "", "a user the name service does not know"},
};
#undef U

ParameterizedTestParameters(budget, sections_take_precedence)
{
	return cr_make_param_array(struct resolve_case, resolves,
	                           sizeof(resolves) / sizeof(resolves[0]));
}

ParameterizedTest(const struct resolve_case *c, budget, sections_take_precedence)
{
	static struct budget_table t;
	const char *groups[2] = {c->groups[0], c->groups[1]};
	struct budget_user u;
	char why[256];
	int n = 0;

	memset(&t, 0, sizeof(t));
	cr_assert_eq(budget_table_set(&t, 1, "staff", "daily_tokens", "1000", why, sizeof(why)), 0);
	cr_assert_eq(budget_table_set(&t, 1, "all", "daily_tokens", "5000", why, sizeof(why)), 0);
	cr_assert_eq(budget_table_set(&t, 1, "all", "monthly_usd", "50", why, sizeof(why)), 0);
	cr_assert_eq(budget_table_set(&t, 0, "alice", "tpm_share", "0.5", why, sizeof(why)), 0);
	cr_assert_eq(budget_table_set(&t, 0, "bob", "daily_tokens", "10", why, sizeof(why)), 0);
	while (n < 2 && c->groups[n][0])
		n++;
	if (c->user[0])
		budget_resolve(&t, c->user, groups, n, &u);
	else
		budget_resolve(&t, NULL, NULL, 0, &u);
	cr_expect(fabs(u.lim.tpm_share - c->share) < 1e-12, "%s", c->what);
	cr_expect_eq(u.lim.allowed[BUDGET_DAILY_TOKENS], c->daily, "%s", c->what);
	cr_expect_eq(u.lim.allowed[BUDGET_MONTHLY_USD], c->monthly, "%s", c->what);
	cr_expect_str_eq(u.from[BUDGET_DAILY_TOKENS], c->daily_from, "%s", c->what);
	cr_expect_str_eq(u.from[BUDGET_MONTHLY_USD], c->monthly_from, "%s", c->what);
}

/* ---- shares and prices ------------------------------------------------------ */

Test(budget, the_share_meter_decays_as_the_gates_does)
{
	struct budget_meter m = {0};

	budget_meter_add(&m, 600, 1000);
	cr_expect_eq(budget_meter_read(&m, 1000), 600);
	/* One time constant later, 600 / e. */
	cr_expect(fabs(budget_meter_read(&m, 61000) - 600 / M_E) < 1e-9, "%g",
	          budget_meter_read(&m, 61000));
	budget_meter_add(&m, 100, 61000);
	cr_expect(fabs(budget_meter_read(&m, 61000) - (600 / M_E + 100)) < 1e-9);
	cr_expect_eq(budget_meter_read(&m, 500), budget_meter_read(&m, 61000),
	             "an earlier clock reads the level as it stands");
}

struct share_case {
	double share, mine, lane;
	int over;
	char what[80];
};

static struct share_case shares[] = {
    {0.5, 60, 100, 1, "more than half of the lane"},
    {0.5, 50, 100, 0, "exactly half is within"},
    {0.5, 100, 100, 1, "alone on the lane: over (it goes when nobody else may)"},
    {1, 100, 100, 0, "a share of 1 is the whole lane"},
    {0.5, 0, 0, 0, "an idle lane holds nobody over"},
    {0, 1, 1000, 1, "a share of 0 yields to anyone"},
};

ParameterizedTestParameters(budget, shares)
{
	return cr_make_param_array(struct share_case, shares, sizeof(shares) / sizeof(shares[0]));
}

ParameterizedTest(const struct share_case *c, budget, shares)
{
	cr_expect_eq(budget_over_share(c->share, c->mine, c->lane), c->over, "%s", c->what);
}

Test(budget, a_launch_may_cost_its_tokens_at_the_dearest_rate)
{
	struct price_table t = {0};
	char why[256];

	cr_assert_eq(price_table_add(&t, "gpt-4o-mini", "0.15 0.075 0.60", why, sizeof(why)), 0);
	cr_assert_eq(price_table_add(&t, "embed", "0.02 0", why, sizeof(why)), 0);
	/* 1000 tokens at $0.60 per 1M: $0.0006, 600000 nano-dollars. */
	cr_expect_eq(budget_cost_bound(price_find(&t, "gpt-4o-mini"), 1000), 600000);
	cr_expect_eq(budget_cost_bound(price_find(&t, "embed"), 1000), 20000, "input is dearest");
	cr_expect_eq(budget_cost_bound(NULL, 1000), 0, "no price, no cost");
}

/* ---- the ledger, over a real database -------------------------------------- */

static char dir[] = "/tmp/llmq-test-budget-XXXXXX";
static char path[256];
static struct store *st;
static struct config cfg;

/* Noon on 2026-11-30, UTC; the day ends 12 hours later. */
#define NOON 1796040000000LL
#define MIDNIGHT 1796083200000LL

static void setup(void)
{
	char why[256];

	cr_assert_eq(setenv("TZ", "UTC", 1), 0);
	tzset();
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/llmq.db", dir);
	cr_assert_eq(store_open(path, &st), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.n_lanes = 2;
	cr_assert_eq(
	    price_table_add(&cfg.prices, "gpt-4o-mini", "0.15 0.075 0.60", why, sizeof(why)), 0);
	cr_assert_eq(
	    budget_table_set(&cfg.budgets, 0, "root", "daily_tokens", "1000", why, sizeof(why)), 0);
	cr_assert_eq(
	    budget_table_set(&cfg.budgets, 0, "root", "monthly_usd", "0.001", why, sizeof(why)), 0);
}

static void teardown(void)
{
	char cmd[300];

	store_free(st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* A try as the triggers count it: through usage_try, as an attempt's end does. */
static void usage_row(int64_t started, int64_t uid, int64_t tokens, int64_t nusd)
{
	char sql[512];
	sqlite3 *db;

	snprintf(sql, sizeof(sql),
	         "INSERT INTO usage_try VALUES (%lld, %lld, 'batch', 'openai', 'gpt-4o-mini', "
	         "%lld, %lld, 0, 0, %lld, 0, 0)",
	         (long long)started, (long long)uid, (long long)tokens, (long long)tokens,
	         (long long)nusd);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
}

static struct ledger_user user0(struct ledger *lg, int64_t wall)
{
	struct ledger_user u;

	cr_assert_eq(ledger_user(lg, 0, wall, 1, &u), 1, "root has a budget");
	return u;
}

TestSuite(ledger, .init = setup, .fini = teardown);

Test(ledger, a_hold_is_given_back_once_and_what_was_spent_counts)
{
	struct ledger *lg;
	struct ledger_hold h, h2;
	struct budget_verdict v;

	cr_assert_eq(ledger_new(st, &cfg, 2, NOON, &lg), 0);
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 600, NOON, 1, &v), LEDGER_GO);
	ledger_hold(lg, 0, 0, "gpt-4o-mini", 600, NOON, NOON, 1, &h);
	cr_expect_eq(user0(lg, NOON).use.held[BUDGET_DAILY_TOKENS], 600);
	cr_expect_eq(user0(lg, NOON).use.held[BUDGET_MONTHLY_USD], 360000,
	             "600 tokens at $0.60/1M: $0.00036");
	/* Another 600 would fit once the first gave back what it did not use. */
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 600, NOON, 1, &v), LEDGER_NO);
	cr_expect_eq(v.fit, BUDGET_HELD);
	cr_expect_eq(user0(lg, NOON).blocked.fit, BUDGET_HELD, "status says what holds them");
	ledger_settle(lg, &h, 300, 180, NOON + 1);
	ledger_settle(lg, &h, 300, 180, NOON + 2); /* again: nothing more */
	cr_expect_eq(user0(lg, NOON).use.held[BUDGET_DAILY_TOKENS], 0);
	cr_expect_eq(user0(lg, NOON).use.spent[BUDGET_DAILY_TOKENS], 300);
	cr_expect_eq(user0(lg, NOON).use.spent[BUDGET_MONTHLY_USD], 180);
	cr_expect_eq(user0(lg, NOON).blocked.fit, BUDGET_FITS, "nothing holds them now");
	/* Exactly what is left fits; one more token waits for midnight. */
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 700, NOON, 1, &v), LEDGER_GO);
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 701, NOON, 1, &v), LEDGER_NO);
	cr_expect_eq(v.fit, BUDGET_SPENT);
	cr_expect_eq(v.resets_at, MIDNIGHT);
	/* A launch taken back (nothing sent) and a caller gone (nothing known)
	 * give back all they held, and spend nothing. */
	ledger_hold(lg, 0, 0, "gpt-4o-mini", 500, NOON, NOON, 1, &h);
	ledger_hold(lg, 0, 1, "gpt-4o-mini", 200, NOON, NOON, 1, &h2);
	ledger_settle(lg, &h, 0, 0, NOON);
	ledger_settle(lg, &h2, -1, -1, NOON);
	cr_expect_eq(user0(lg, NOON).use.held[BUDGET_DAILY_TOKENS], 0);
	cr_expect_eq(user0(lg, NOON).use.spent[BUDGET_DAILY_TOKENS], 300);
	/* Midnight: a new day, nothing spent in it; the month goes on. */
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 1000, MIDNIGHT, 1, &v), LEDGER_GO);
	cr_expect_eq(user0(lg, MIDNIGHT).use.spent[BUDGET_DAILY_TOKENS], 0);
	cr_expect_eq(user0(lg, MIDNIGHT).use.spent[BUDGET_MONTHLY_USD], 0,
	             "December is a new month too");
	ledger_free(lg);
}

Test(ledger, a_try_counts_in_the_day_it_started_as_usage_daily_does)
{
	struct ledger *lg;
	struct ledger_hold h;

	cr_assert_eq(ledger_new(st, &cfg, 2, NOON, &lg), 0);
	/* A call that came at 23:59:59 and was answered after midnight. */
	ledger_hold(lg, 0, 0, "gpt-4o-mini", 400, MIDNIGHT - 1000, MIDNIGHT + 500, 1, &h);
	ledger_settle(lg, &h, 400, 240, MIDNIGHT + 2000);
	cr_expect_eq(user0(lg, MIDNIGHT + 2000).use.spent[BUDGET_DAILY_TOKENS], 0,
	             "yesterday's, not today's");
	cr_expect_eq(user0(lg, MIDNIGHT + 2000).use.held[BUDGET_DAILY_TOKENS], 0);
	ledger_free(lg);
}

Test(ledger, a_restart_reads_what_was_spent_and_holds_nothing)
{
	struct ledger *lg;
	struct ledger_hold h;
	struct budget_verdict v;

	usage_row(NOON - 3600000, 0, 600, 360);
	usage_row(NOON - 86400000, 0, 999, 1);  /* yesterday: the month's, not the day's */
	usage_row(NOON - 3600000, 4242, 50, 0); /* another user */
	cr_assert_eq(ledger_new(st, &cfg, 2, NOON, &lg), 0);
	cr_expect_eq(user0(lg, NOON).use.spent[BUDGET_DAILY_TOKENS], 600);
	cr_expect_eq(user0(lg, NOON).use.spent[BUDGET_MONTHLY_USD], 361);
	/* A launch in flight when llmqd was killed. */
	ledger_hold(lg, 0, 0, "gpt-4o-mini", 300, NOON, NOON, 1, &h);
	ledger_free(lg);
	/* Started again: nothing is held, and exactly what is left fits. */
	cr_assert_eq(ledger_new(st, &cfg, 2, NOON, &lg), 0);
	cr_expect_eq(user0(lg, NOON).use.held[BUDGET_DAILY_TOKENS], 0);
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 400, NOON, 1, &v), LEDGER_GO);
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 401, NOON, 1, &v), LEDGER_NO);
	ledger_free(lg);
}

Test(ledger, a_user_over_their_share_goes_when_nobody_else_may)
{
	struct ledger *lg;
	struct ledger_hold h;
	char why[256];

	cr_assert_eq(
	    budget_table_set(&cfg.budgets, 0, "root", "tpm_share", "0.5", why, sizeof(why)), 0);
	cr_assert_eq(ledger_new(st, &cfg, 2, NOON, &lg), 0);
	ledger_hold(lg, 0, 0, "gpt-4o-mini", 100, NOON, NOON, 1000, &h);
	ledger_settle(lg, &h, 100, 60, NOON);
	ledger_hold(lg, 4242, 0, "gpt-4o-mini", 80, NOON, NOON, 1000, &h);
	/* Root launched 100 of the lane's 180: more than half. */
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 10, NOON, 1000, NULL), LEDGER_LATER);
	cr_expect_eq(ledger_judge(lg, 0, 1, "gpt-4o-mini", 10, NOON, 1000, NULL), LEDGER_GO,
	             "the other lane is another share");
	cr_expect_eq(ledger_judge(lg, 4242, 0, "gpt-4o-mini", 10, NOON, 1000, NULL), LEDGER_GO,
	             "no share set: the whole lane");
	/* More of the other user's: root is within half again. */
	ledger_hold(lg, 4242, 0, "gpt-4o-mini", 40, NOON, NOON, 1000, &h);
	cr_expect_eq(ledger_judge(lg, 0, 0, "gpt-4o-mini", 10, NOON, 1000, NULL), LEDGER_GO);
	ledger_free(lg);
}
