/*
 * ledger.h - what each user spent of their budgets and holds for tries in
 * flight, and their share of each lane's tokens (budget.h's arithmetic on
 * llmqd's own figures).
 *
 * Spent is what usage_daily says for the period: read from the store at
 * start, then kept in memory by the same figures every try's end records
 * there (its tokens used and its cost, counted in the day and month its try
 * started in, as the triggers count them). Held is the estimates of the
 * tries in flight: a launch holds its estimate (ledger_hold), and its end
 * gives it back (ledger_settle) wherever the gate's slot is given back.
 * Nothing held survives a restart, so nothing held can leak past one;
 * and a hold lives in the flight or ticket it belongs to, freed on every
 * path. Users' limits come from the configuration's [user] and [group]
 * sections, resolved through the name service once a minute per user and
 * at each reload.
 */
#ifndef LLMQ_LEDGER_H
#define LLMQ_LEDGER_H

#include <stdint.h>

#include "gate/budget.h"
#include "service/config.h"

struct ledger;
struct store;

int ledger_new(struct store *st, const struct config *cfg, int n_lanes, int64_t wall,
               struct ledger **ret);
void ledger_free(struct ledger *lg);
/* The configuration was reloaded: limits are resolved again at their next use. */
void ledger_reload(struct ledger *lg);
/* Once a second: what was spent is read from the store, if it could not be
 * yet: 1 when it was now, 0 when it had been, -errno while it cannot (users
 * with a budget wait meanwhile). */
int ledger_tick(struct ledger *lg, int64_t wall);

/* A launch's hold: what its try may spend, until it ends. */
struct ledger_hold {
	int64_t uid;
	int lane;
	int64_t need[BUDGET_KINDS];
	int64_t starts[BUDGET_KINDS]; /* the periods its try is counted in */
	int held;                     /* 0 once settled */
};

enum ledger_go {
	LEDGER_GO,
	LEDGER_LATER, /* over the user's tpm_share of the lane: when nobody else may go */
	LEDGER_NO,    /* a budget says no (the verdict says which, and until when) */
};

/*
 * Whether uid may launch, on lane, a try of model that may use tokens, now
 * (wall and monotonic ms). ret (may be NULL): the budgets' verdict.
 */
enum ledger_go ledger_judge(struct ledger *lg, int64_t uid, int lane, const char *model,
                            int64_t tokens, int64_t wall, int64_t mono, struct budget_verdict *ret);
/* A launch: hold its estimate; started is the wall ms its try's record says
 * it started (what usage_daily counts it by). */
void ledger_hold(struct ledger *lg, int64_t uid, int lane, const char *model, int64_t tokens,
                 int64_t started, int64_t wall, int64_t mono, struct ledger_hold *ret);
/* Its try ended: the hold back, and what it spent as its record says
 * (tokens used, cost in nano-dollars; < 0: nothing known). Once: settling
 * a settled hold does nothing. */
void ledger_settle(struct ledger *lg, struct ledger_hold *h, int64_t tokens, int64_t nusd,
                   int64_t wall);

/* A user's budgets now. */
struct ledger_user {
	int64_t uid;
	char name[BUDGET_NAME_LEN]; /* "" when the name service knows none */
	struct budget_user b;
	struct budget_use use;
	struct budget_period period;
	/* fit != BUDGET_FITS: their launches wait for this (until resets_at, or
	 * for their tries in flight to end) */
	struct budget_verdict blocked;
};
/* uid's budgets: 1, or 0 when none limits them (ret filled either way). */
int ledger_user(struct ledger *lg, int64_t uid, int64_t wall, int64_t mono,
                struct ledger_user *ret);
/* Each user seen whose budgets limit them, in no order; a < 0 return of cb stops. */
typedef int (*ledger_user_cb)(void *userdata, const struct ledger_user *u);
int ledger_each(struct ledger *lg, int64_t wall, int64_t mono, ledger_user_cb cb, void *userdata);
/* Whether any [user] or [group] section is configured. */
int ledger_configured(const struct ledger *lg);

#endif
