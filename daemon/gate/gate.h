/*
 * gate.h - the rate gate of one lane. Pure: the clock is an argument, no I/O,
 * no randomness of its own (callers pass the jitter draw).
 *
 * It holds concurrency (transfers in flight), stagger (time between two
 * launches), and two continuously refilling buckets, tokens/min and
 * requests/min, each at limit x (1 - headroom). A launch reserves the job's
 * estimated cost; gate_done() reconciles it with the usage the answer
 * reports; gate_observe() brings the local view to what the provider's
 * x-ratelimit-* headers say; gate_pause() stops launches until a time.
 *
 * The provider's window. A provider like OpenAI refills a bucket that holds
 * a whole minute of budget and says in every answer how much is left. While
 * the lane takes the provider to enforce its limits over that minute, the
 * gate spends what the provider's latest answers say its bucket holds (less
 * the headroom, less what was launched since): before the first answer, and
 * again after an idle spell, it paces. A 429 that comes although the
 * provider's headers said there was room shows that the provider enforces a
 * shorter window: the lane then counts its budget in fixed one-second
 * windows of its own, aligned to the provider's when a 429's retry-after
 * tells where they end (at most a second's budget in each; none in a
 * window's last GATE_WINDOW_TAIL_MS, so that nothing lands in the next), and
 * no longer follows the provider's figures up.
 */
#ifndef LLMQ_GATE_H
#define LLMQ_GATE_H

#include <stdint.h>

#define GATE_NEVER INT64_MAX
/* Refill a bucket keeps beyond its burst, for launches the loop makes late. */
#define GATE_SLACK_MS 20

/*
 * Two classes share a lane: batch (stored jobs) and interactive (a caller
 * waits on an open connection). The interactive reserve is a share of the
 * lane's concurrency and of one second of its budget that batch launches
 * do not take while callers have been seen in the last GATE_RESERVE_IDLE_MS;
 * interactive launches may use all of the lane. A lane nobody calls gives
 * the whole of it to its batches: a caller arriving then takes the next
 * launch (callers go first), as soon as a slot and its cost are there. When both
 * classes wait, interactive goes first while its share of the tokens
 * launched over the last minute stays within 1 - reserve, so a batch keeps
 * at least the reserve's share too.
 */
enum gate_class {
	GATE_BATCH,
	GATE_INTERACTIVE,
	GATE_CLASSES,
};

/* How the provider enforces its per-minute limits (config: provider_window). */
enum gate_window {
	GATE_WINDOW_AUTO,   /* minute until a 429 teaches otherwise */
	GATE_WINDOW_MINUTE, /* a bucket of a minute's budget: spend what it holds */
	GATE_WINDOW_SECOND, /* shorter windows: pace, bursts of at most a second */
};

/* The fixed windows of GATE_WINDOW_SECOND. */
#define GATE_WINDOW_MS 1000
#define GATE_WINDOW_LEAD_MS 10 /* launches start this long after a window's boundary */
#define GATE_WINDOW_TAIL_MS 25 /* and stop this long before the next */

/* The refill not counted between a launch and the provider's figure for it:
 * the transit, and the two clocks' milliseconds. */
#define GATE_TRANSIT_MS 10

/* How long the provider's latest figure is believed without a new answer. */
#define GATE_PROVIDER_FRESH_MS 10000

/* The budget the reserve keeps back, as time at the lane's effective rate. */
#define GATE_POCKET_MS 1000
/* The reserve is kept while callers have been seen this recently; a lane
 * without callers lets batch jobs use all of it (work-conserving). */
#define GATE_RESERVE_IDLE_MS 60000
/* How long the class share meter remembers. */
#define GATE_SHARE_TAU_MS 60000

/* The circuit breaker: after GATE_BREAKER_TRIP tries in a row reached no
 * upstream, the lane pauses, then probes with one request, doubling the pause. */
#define GATE_BREAKER_TRIP 3
#define GATE_BREAKER_FIRST_MS 1000
#define GATE_BREAKER_MAX_MS 60000

/*
 * The fleet (gate_grant). A launch that finds every slot taken is told to
 * come back when the oldest launch in flight is due to end, at the lanes'
 * average latency, within these bounds. An interactive call that must wait
 * claims the next launch for itself until it is due, and this much after.
 */
#define GATE_SLOT_WAIT_MIN_MS 5
#define GATE_SLOT_WAIT_MAX_MS 1000
#define GATE_SLOT_WAIT_UNKNOWN_MS 100
#define GATE_CLAIM_GRACE_MS 50
#define GATE_GRANT_MAX 32
/* Hosts' batches take turns: one told to wait keeps its place until its
 * wait is over and this much more. */
#define GATE_TURNS 32
#define GATE_TURN_GRACE_MS 100
#define GATE_HOST_MAX 64

/* A host's place among those whose batches wait (the fleet). */
struct gate_turn {
	char host[GATE_HOST_MAX + 1];
	int64_t until; /* past it, the host is taken not to be waiting any more */
};

struct gate_limits {
	int max_concurrency;        /* >= 1 */
	int64_t stagger_ms;         /* minimum time between launches; 0 = off */
	double stagger_jitter;      /* up to this fraction of stagger_ms is added, 0 = exact */
	int64_t tpm;                /* tokens per minute; 0 = no limit */
	int64_t rpm;                /* requests per minute; 0 = no limit */
	double headroom;            /* fraction of each limit left unused, 0..0.9 */
	int64_t burst_ms;           /* bucket capacity, as time at the effective rate */
	double interactive_reserve; /* 0..0.9, see enum gate_class */
	int stagger_interactive;    /* interactive launches wait for (and set) the stagger
	                             * too; by default the stagger spaces batch launches only */
	int provider_window;        /* enum gate_window: AUTO learns from 429s, others pin */
	int64_t probation_ms;       /* a learned window is tried as a minute again after this
	                             * long without a 429 that confirms it; 0: never */
};

/* What the provider said about the key's budget; -1 where a header was absent. */
struct gate_feedback {
	int64_t limit_tokens, remaining_tokens, reset_tokens_ms;
	int64_t limit_requests, remaining_requests, reset_requests_ms;
};

struct gate {
	struct gate_limits lim;
	int in_flight;
	int class_in_flight[GATE_CLASSES];
	double share[GATE_CLASSES]; /* tokens launched, decaying with GATE_SHARE_TAU_MS */
	int64_t share_at;
	int64_t caller_seen_at; /* when a caller last waited or launched */
	int callers_seen;       /* ever */
	int64_t next_launch;    /* earliest next launch the stagger allows */
	double tok, req;        /* bucket levels; may go below 0 (debt) */
	int64_t refilled_at;
	int64_t paused_until;
	char pause_reason[96];
	int64_t seq_tokens;   /* tokens reserved by all launches so far */
	int64_t seq_requests; /* launches so far */
	int64_t seq_refunds;  /* tokens given back by answers so far (estimate - usage) */
	int64_t provider_tpm; /* limits the provider reported; 0 = none seen */
	int64_t provider_rpm;
	int window; /* GATE_WINDOW_MINUTE or GATE_WINDOW_SECOND */
	int probe;  /* at most one transfer in flight (a probe of the upstream) */
	/* The provider's bucket as its answers report it (window minute). */
	double prov_tok_bucket, prov_req_bucket; /* its size less the headroom; 0: unknown */
	double prov_tok_cap, prov_req_cap;       /* of that, what the allowance lets us hold */
	int64_t prov_seen_at;                    /* when an answer last said; 0: never */
	int64_t prov_mark_tokens;                /* the launch that answer was for */
	int64_t win_end;                         /* GATE_WINDOW_SECOND: the current window's end */
	/* How much of the provider's bucket may be spent at once, as time at the
	 * rate: it starts at one window and doubles with each round of answers
	 * that confirm it, up to the whole bucket (a slow start). */
	int64_t allow_ms;
	int64_t allow_mark; /* launches after this one confirm the allowance */
	/* What answers taught (gate_settle): the breaker, the credit, the window. */
	int faults;              /* tries in a row that reached no upstream */
	int64_t fault_since;     /* the first of them */
	int64_t breaker_ms;      /* the breaker's current pause; 0 while closed */
	int64_t no_credit_since; /* insufficient_quota since; 0: the key has credit */
	int learned;             /* the short window came from a 429 */
	int64_t learned_at;
	int64_t confirmed_at;    /* the last 429 that confirmed the short window */
	int64_t probation_since; /* the minute tried again after a learned window; 0: not */
	int64_t lat_ms;          /* answers' time from launch, averaged (the fleet's slot wait) */
	/* The fleet: an interactive call waiting on some host claims the next
	 * launch until claim_until (batch launches wait while calls go first). */
	int64_t claim_until;
	uint64_t claim;
	/* The fleet: the hosts whose batches were told to wait, first told first;
	 * the first goes before any other host's batch. */
	struct gate_turn turns[GATE_TURNS];
	int n_turns;
};

/* Why gate_when() said no. */
enum gate_block {
	GATE_OK,
	GATE_CONCURRENCY,
	GATE_STAGGER,
	GATE_PAUSED,
	GATE_REQUESTS,
	GATE_TOKENS,
	GATE_CLAIMED, /* the fleet: a waiting interactive call goes first */
	GATE_TURN,    /* the fleet: another host's batch waited first */
};

void gate_init(struct gate *g, const struct gate_limits *lim, int64_t now);
/* New limits for a live gate (a reload): in-flight counts and debts are kept. */
void gate_set_limits(struct gate *g, const struct gate_limits *lim, int64_t now);

/* Effective budgets per minute after headroom (0 = unlimited). */
double gate_tokens_per_ms(const struct gate *g);
double gate_requests_per_ms(const struct gate *g);
int64_t gate_effective_tpm(const struct gate *g);
double gate_token_capacity(const struct gate *g);

/* Bring the buckets up to now (for a copy read as a snapshot). */
void gate_refill(struct gate *g, int64_t now);

/* Slots a batch may hold while callers are about: the concurrency less the
 * interactive reserve, >= 1. */
int gate_batch_slots(const struct gate *g);
/* Whether the reserve is kept from batch launches now (callers seen lately). */
int gate_reserve_held(const struct gate *g, int64_t now);

/*
 * The earliest time >= now at which a job of class cls costing cost tokens
 * may launch; GATE_NEVER while the class is at its concurrency cap (a finish
 * frees it). ret_why may be NULL.
 */
int64_t gate_when(struct gate *g, enum gate_class cls, int64_t cost, int64_t now,
                  enum gate_block *ret_why);

/* Which class goes first when both have work ready. */
enum gate_class gate_first_class(struct gate *g, int64_t now);

/* Where the launch sequence stood right after one launch. */
struct gate_mark {
	int64_t tokens;
	int64_t requests;
	int64_t refunds; /* tokens given back by answers up to the launch */
	int64_t at;      /* when it launched */
	int room;        /* the provider's own figures (fresh) made room for this launch */
};

/* A launch's answer succeeded: it confirms the allowance it was made under. */
void gate_confirm(struct gate *g, const struct gate_mark *mark);

/* Follow a provider that enforces a shorter window from now on. */
void gate_set_window(struct gate *g, int window, int64_t now);
/* The provider's window ends at boundary (from a 429's retry-after): align ours. */
void gate_align_window(struct gate *g, int64_t boundary, int64_t now);

/* Record a launch at now; jitter01 is a uniform draw in [0,1). ret_mark is
 * handed back to gate_observe() with the launch's answer. */
void gate_launch(struct gate *g, enum gate_class cls, int64_t cost, int64_t now, double jitter01,
                 struct gate_mark *ret_mark);

/* A transfer ended: free its slot, reconcile charged with used (-1: unknown). */
void gate_done(struct gate *g, enum gate_class cls, int64_t charged, int64_t used, int64_t now);

/* Fold in the provider's headers from the answer to the launch marked mark. */
void gate_observe(struct gate *g, const struct gate_feedback *fb, const struct gate_mark *mark,
                  int64_t now);

/* Requests the upstream got beyond those launched (resends): charge them. */
void gate_charge(struct gate *g, int64_t tokens, int64_t requests, int64_t now);

/* No launches before until. A later pause extends, an earlier one does not shorten. */
void gate_pause(struct gate *g, int64_t until, const char *reason);

/* The provider said the budget is exhausted (429): empty the buckets. */
void gate_drain(struct gate *g, int64_t now);

/* What an answer says of its lane (retry.h's decision, for gate_settle). */
enum gate_event {
	GATE_EV_ANSWERED,    /* the upstream answered */
	GATE_EV_UNREACHABLE, /* no answer: refused, DNS, TLS, timeout, a broken connection */
	GATE_EV_RATE_LIMITED,
	GATE_EV_QUOTA,
	GATE_EV_NONE, /* no answer came to say: a launch taken back, a caller who left */
};

/* One launch's answer, all that the gate takes from it. */
struct gate_answer {
	enum gate_class cls;
	int64_t charged; /* the launch's estimate */
	int64_t used;    /* what it spent (retry_spent()): the usage, 0 for a request not
	                  * processed, -1 unknown (the estimate stays charged) */
	int succeeded;   /* 2xx: it confirms the allowance the launch was made under */
	int64_t resends; /* sends beyond the first that the upstream saw */
	int done;        /* its slot is given back here (0: given back already) */
	int observe;     /* mark is of this gate's clock: take fb (and confirm) */
	struct gate_mark mark;
	struct gate_feedback fb;
	enum gate_event event;
	int64_t pause_ms;       /* the lane's pause the decision asks for */
	int learn;              /* a 429 although the provider's headers said there was room */
	int64_t retry_after_ms; /* -1: none */
};

/* What gate_settle() changed that is worth telling (the log, lane_state). */
struct gate_news {
	int breaker_open;    /* GATE_BREAKER_TRIP tries in a row reached no upstream */
	int resumed;         /* probing or unreachable, and an answer came */
	int no_credit;       /* insufficient_quota, and the lane was not probing yet */
	int rate_limited;    /* paused for a 429 */
	int learned;         /* the short window was learned now */
	int probation_ended; /* ...after the minute had been tried again */
	int aligned;         /* the windows were aligned to the provider's */
};

/*
 * An answer, as one step: the provider's figures (gate_observe), the
 * allowance it confirms, the slot and the refund (gate_done), resends
 * charged, and what it says of the lane: the breaker after unreachable
 * tries, no credit, a 429's pause and what it teaches of the window.
 */
void gate_settle(struct gate *g, const struct gate_answer *a, int64_t now, struct gate_news *ret);

/* A learned window unconfirmed for lim.probation_ms: the minute is tried
 * again (on probation). 1 when that happened now. */
int gate_probation(struct gate *g, int64_t now);

/* The fleet's grant: n launches of one cost, or how long to wait. */
struct gate_ask {
	enum gate_class cls;
	int64_t cost; /* of each */
	int n;        /* 1..GATE_GRANT_MAX */
	double jitter01;
	uint64_t claim;    /* an interactive call's id, claiming the next launch while it waits */
	int64_t oldest_at; /* when the oldest launch in flight went; GATE_NEVER: none known */
	const char *host;  /* a batch's host, for its turn; NULL: no turns */
};

struct gate_grant {
	int granted; /* 0..n, in order */
	struct gate_mark marks[GATE_GRANT_MAX];
	int64_t wait_ms; /* granted < n: the wait before the next may go */
	enum gate_block why;
	int probation; /* gate_probation() happened in it */
};

/*
 * What one atomic step of the fleet's shared gate decides (daemon/fleet/fleet.lua
 * is its form in Redis, table-tested against this): probation, then launch
 * after launch while gate_when() allows, all-or-nothing for each over the
 * tokens, the requests and a slot. A wait for a slot is the oldest launch's
 * expected end (lat_ms); an interactive call told to wait claims the next
 * launch, and drops its claim when granted. Hosts' batches take turns: one
 * told to wait keeps its place (GATE_TURN_GRACE_MS past its wait), and while
 * another host holds the first place, a batch waits for it (GATE_TURN): the
 * key's launches go round the hosts that want them.
 */
void gate_grant(struct gate *g, const struct gate_ask *ask, int64_t now, struct gate_grant *ret);

/* A launch made elsewhere joins the gate (a host back from gating alone):
 * its slot taken, its cost charged. */
void gate_adopt(struct gate *g, enum gate_class cls, int64_t cost, int64_t now);

/*
 * The state as numbers, in one order that daemon/fleet/fleet.lua keeps too:
 * GATE_FIELDS of them, named by gate_field_names[]; gate_field_is_time[i]
 * says which are times (0 stands for never in them).
 */
#define GATE_FIELDS 39
extern const char *const gate_field_names[GATE_FIELDS];
extern const unsigned char gate_field_is_time[GATE_FIELDS];
void gate_pack(const struct gate *g, double out[GATE_FIELDS]);
void gate_unpack(struct gate *g, const double in[GATE_FIELDS]);

#endif
