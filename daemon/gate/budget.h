/*
 * budget.h - what one user may spend, as pure arithmetic: the limits the
 * [user NAME] and [group NAME] sections of llmqd.conf give a user, the
 * periods budgets are counted over (llmqd's local day and month, as
 * usage_daily counts them), whether a launch fits what is left, and the
 * decaying meter of a user's share of a lane's tokens. No I/O, no logging:
 * the clock is an argument, and the time zone is TZ's, as localtime(3)
 * reads it. What each user spent and holds is kept by ledger.c.
 */
#ifndef LLMQ_BUDGET_H
#define LLMQ_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "gate/price.h"

#define BUDGET_SECTIONS_MAX 256
#define BUDGET_NAME_LEN 64
/* The most a budget may be: 10^15 tokens a day, a billion dollars a month. */
#define BUDGET_TOKENS_MAX 1000000000000000LL
#define BUDGET_NUSD_MAX 1000000000000000000LL
/* How long a user's share meter remembers (as the gate's class meter). */
#define BUDGET_SHARE_TAU_MS 60000

/* The budgets counted over a period. */
enum budget_kind {
	BUDGET_DAILY_TOKENS, /* tokens the answers reported, per local day */
	BUDGET_MONTHLY_USD,  /* their cost (nano-dollars), per local month */
	BUDGET_KINDS,
};

/* A limit nobody set. */
#define BUDGET_UNSET (-1)

struct budget_limits {
	double tpm_share;              /* 0..1 of a lane's tokens while others wait; < 0 unset */
	int64_t allowed[BUDGET_KINDS]; /* tokens, nano-dollars; BUDGET_UNSET: none */
};

/* One [user NAME] or [group NAME] section, as the file gives it. */
struct budget_section {
	char name[BUDGET_NAME_LEN];
	int group;
	struct budget_limits lim;
};

struct budget_table {
	struct budget_section s[BUDGET_SECTIONS_MAX];
	int n;
};

/* "daily_tokens", "monthly_usd" */
const char *budget_kind_name(enum budget_kind k);

/*
 * Set key = value in the section [user NAME] (group 0) or [group NAME]
 * (group 1) of t, adding the section at its first key: tpm_share (0..1),
 * daily_tokens (a count), monthly_usd (dollars, up to nine decimals).
 * -EINVAL (an unknown key, a bad or out-of-range figure, a name too long)
 * or -E2BIG (too many sections), with why saying what to change.
 */
int budget_table_set(struct budget_table *t, int group, const char *name, const char *key,
                     const char *value, char *why, size_t len);

/* A user's limits, and which section gave each ("[user alice]", "[group
 * staff]", "" when none). */
struct budget_user {
	struct budget_limits lim; /* tpm_share 1 when unset */
	char share_from[BUDGET_NAME_LEN + 10];
	char from[BUDGET_KINDS][BUDGET_NAME_LEN + 10];
};

/*
 * The limits of user, a member of groups[0..n-1]: key by key, their own
 * [user] section's, else that of the first [group] section in the file's
 * order, among the user's groups, that sets the key. The first, not the
 * most generous: the file's order is the operator's, written from the
 * particular to the general, and a user added to one more group never
 * finds their budget grown by it.
 */
void budget_resolve(const struct budget_table *t, const char *user, const char *const *groups,
                    int n, struct budget_user *ret);

/* Whether any budget (daily_tokens, monthly_usd) or share limits the user. */
int budget_limits_any(const struct budget_limits *lim);

/* The periods that hold wall_ms, in llmqd's local time. */
struct budget_period {
	int64_t starts[BUDGET_KINDS]; /* wall ms: the local day's midnight, the month's first */
	int64_t ends[BUDGET_KINDS];   /* the next ones: when the budgets reset */
	char day[11];                 /* "YYYY-MM-DD", as usage_daily names days */
	char month_first[11];         /* the month's first day, and the next month's */
	char month_next[11];
};
int budget_period_at(int64_t wall_ms, struct budget_period *ret);
/* Whether wall_ms is in p's day. */
int budget_period_holds(const struct budget_period *p, int64_t wall_ms);

/* What a user spent in the periods, and holds for tries in flight. */
struct budget_use {
	int64_t spent[BUDGET_KINDS];
	int64_t held[BUDGET_KINDS];
};

enum budget_fit {
	BUDGET_FITS,
	BUDGET_HELD,  /* it fits once tries in flight end and give back their estimates */
	BUDGET_SPENT, /* it fits after the budget resets */
	BUDGET_NEVER, /* it costs more than the whole budget */
};

struct budget_verdict {
	enum budget_fit fit;
	enum budget_kind kind; /* the budget that says so (fit != BUDGET_FITS) */
	int64_t spent, held, allowed, need;
	int64_t resets_at; /* wall ms: the period's end */
};

/*
 * Whether a launch that may use need[] (its estimate: tokens, and their cost
 * at most) fits: spent + held + need within what is allowed, for every
 * budget set. The verdict is the worst budget's (NEVER, SPENT, HELD), of
 * equals the one that resets last.
 */
enum budget_fit budget_check(const struct budget_limits *lim, const struct budget_use *use,
                             const int64_t need[BUDGET_KINDS], const struct budget_period *p,
                             struct budget_verdict *ret);

/* What a verdict means, for a person: "alice's daily_tokens budget: 9800 of
 * 10000 tokens used today, 300 held by requests in flight; this request may
 * use 500; it resets at 2026-11-30 00:00 (llmqd's local time)". */
void budget_describe(const struct budget_verdict *v, const char *user, char *buf, size_t len);

/* The most tokens may cost at price p: all at the dearest of its rates (0
 * without a price: the model costs nothing, as usage counts it). */
int64_t budget_cost_bound(const struct price *p, int64_t tokens);

/* A decaying sum of tokens launched (time constant BUDGET_SHARE_TAU_MS). */
struct budget_meter {
	double level;
	int64_t at;
};
double budget_meter_read(const struct budget_meter *m, int64_t now);
void budget_meter_add(struct budget_meter *m, double tokens, int64_t now);

/*
 * Whether a user whose meter reads mine holds more than share of a lane
 * whose meter (all its users, the same decay) reads lane. A share of 1 or
 * more is never exceeded; an idle lane holds nobody over.
 */
int budget_over_share(double share, double mine, double lane);

#endif
