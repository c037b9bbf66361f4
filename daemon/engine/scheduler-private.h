/*
 * scheduler-private.h - the scheduler's state, shared by the files of its
 * parts: scheduler.c (the object, the pump, its timers, snapshots),
 * sched-lanes.c (a lane's queue, gate, setup and pause), sched-flights.c
 * (batch jobs in flight), sched-tickets.c (interactive calls at the gate),
 * sched-answers.c (what an answer says), sched-fleet.c and
 * sched-fleet-mirror.c (the same lanes when their gate is the fleet's, in
 * Redis). Nothing else includes it.
 */
#ifndef LLMQ_SCHEDULER_PRIVATE_H
#define LLMQ_SCHEDULER_PRIVATE_H

#include "fleet/fleet.h"
#include "upstream/hop.h"
#include "gate/ledger.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "store/writer.h"

#include <sys/queue.h>

struct lane;
struct fleet_ask;
struct fleet_settles;
struct redisReply;

/* The fleet's lease of a launch: its id, and whose clock its mark is on. */
struct sched_lease {
	char id[96]; /* "": no fleet */
	int shared;  /* granted by the shared gate: the mark is Redis's */
};

struct flight {
	struct lane *lane;
	struct store_job job;
	int64_t attempt_id;
	int64_t charged;
	struct gate_mark mark;
	struct sched_lease lease;
	struct up_transfer *t;
	uint64_t pump;           /* the pump that launched it */
	struct ledger_hold hold; /* its user's budgets hold its estimate */
	int transit;             /* picked, its launch's record on its way (sched-launch.c) */
	LIST_ENTRY(flight) link;
};

struct sched_ticket {
	struct lane *lane;
	struct sched_call_info info; /* its strings belong to the owner */
	int64_t enqueued;            /* monotonic */
	int64_t enqueued_wall;
	int64_t granted; /* monotonic; 0 while waiting */
	struct gate_mark mark;
	struct sched_lease lease;
	uint64_t id;             /* the fleet: its claim while it waits */
	struct fleet_ask *asked; /* the fleet's grant being asked for it */
	struct ledger_hold hold; /* granted: its user's budgets hold its cost */
	struct event *deadline;
	TAILQ_ENTRY(sched_ticket) link;
	LIST_ENTRY(sched_ticket) flying; /* granted, while the fleet counts it */
};

/* How a lane's gate is kept. */
enum lane_mode {
	LANE_ALONE,       /* no fleet: the lane's own gate, as ever */
	LANE_STARTING,    /* the fleet's first connect is under way: nothing launches */
	LANE_SHARED,      /* the gate is the fleet's, in Redis; l->gate mirrors it */
	LANE_FALLBACK,    /* Redis away: the own gate with 1/N of the limits */
	LANE_RECONCILING, /* Redis back: the launches in flight are being handed over */
};

/* Users take turns at a lane: the batch of each that was served last. */
#define SCHED_TURNS 256
struct sched_turn {
	int64_t uid; /* -2: none */
	char batch[STORE_ID_LEN];
};

struct lane {
	struct scheduler *s;
	const struct lane_config *cfg;
	struct gate gate;
	struct gate_limits lim; /* the lane's: configured, or set live (llmq set) */
	char *key;
	struct event *timer;
	int64_t avg_latency_ms;
	int64_t last_uid;                     /* round-robin: the user a batch job went for last */
	struct sched_turn turns[SCHED_TURNS]; /* and each user's batch, by uid */
	int64_t last_call_uid;                /* the user a call went for last */
	int64_t budget_wake;                  /* wall ms a budget that held jobs back resets */
	struct lane_stats stats;
	int queued;     /* its queue may hold ready jobs: looking costs SQL (sched_next_job) */
	int none_ready; /* the last look found none, nothing passed over */
	int recording;  /* its launches handed to the writer, not yet back */
	int64_t refused_until;       /* a launch's record was refused: no pick before (mono ms) */
	LIST_HEAD(, flight) flights; /* those in transit first */
	TAILQ_HEAD(, sched_ticket) waiting;
	int n_waiting;
	int64_t waiting_tokens;
	int64_t window_phase; /* where the provider's windows start, ms into a wall second */
	int64_t paused_at;    /* wall ms an operator paused it (llmq pause); 0: not */
	int64_t paused_by;    /* and who: a uid, -1 when unknown */
	/* The fleet (sched-fleet.c, sched-fleet-mirror.c). */
	enum lane_mode mode;
	int asks;                               /* grants asked, not answered yet */
	uint64_t ask_gen;                       /* asks of an earlier spell do not count */
	int64_t wait_until[GATE_CLASSES];       /* the shared gate said to wait (mono) */
	enum gate_block wait_why[GATE_CLASSES]; /* and why */
	int ask_n;                              /* launches a batch's next ask wants */
	int own[GATE_CLASSES];                  /* this host's launches in flight */
	uint64_t leases;                        /* made, for their ids */
	char epoch[32];                         /* of the shared state last seen */
	int64_t heard;                          /* when it was last seen (mono) */
	int peeking;                            /* a look at it is in flight */
	struct fleet_settles *settles;          /* answers to send, at the turn's end */
	LIST_HEAD(, sched_ticket) flying;       /* granted calls, for reconciling */
};

/* A pump's launches and their transaction (sched_launches_begin). */
enum launch_group {
	LAUNCH_NONE,    /* no pump running */
	LAUNCH_WANTED,  /* to share one transaction, begun at the first launch */
	LAUNCH_GROUPED, /* that transaction is open */
	LAUNCH_ALONE,   /* it could not begin: each launch is its own */
};

/* A running batch's held jobs first..last (ids; other batches' ids between
 * are untouched) that its ingest could not let go: tried again each second. */
struct sched_stray {
	struct sched_stray *next;
	char batch_id[32];
	int64_t first, last;
	int done; /* let go, by the expiry item that tried */
};

struct scheduler {
	struct llmqd *d;
	struct upstream *up;
	struct event *pump;
	struct event *expiry; /* batches whose completion window ended */
	struct writeback *wb;
	struct writer *writer;           /* the writeback's: launches are recorded there too */
	struct sched_expiry {            /* the once-a-second expiry, on the writer */
		struct writer_item item; /* first: the item is the expiry */
		struct scheduler *s;
		int64_t now, jobs;
		struct sched_stray *strays; /* the item's while busy */
		int busy;                   /* the writer's until its done() */
	} expire;
	struct sched_stray *strays; /* held jobs their ingest could not let go */
	struct launch_item *group;  /* the pump's launches for the writer */
	uint64_t pumps;
	enum launch_group launching;
	struct lane lanes[CONFIG_MAX_LANES];
	int n_lanes;
	uint64_t rng;
	int stopping;
	char id[HOP_ID_LEN + 1]; /* this llmqd, in the hop header of what it sends */
	struct fleet *fleet;     /* NULL without LLMQ_REDIS_URL */
	uint64_t tickets;        /* made, for their ids */
	struct ledger *ledger;   /* users' budgets and shares */
};

enum launch_result {
	LAUNCHED,
	MUST_WAIT,  /* the gate holds the lane back */
	SLOTS_FULL, /* the class holds all the slots it may */
	NOTHING,    /* no work of that class is ready */
};

/* What the answer's JSON body says: usage and error. */
struct answer {
	json_object *root;
	int64_t prompt, completion, total, cached;
	const char *code, *message;
	int64_t retry_after_ms; /* -1: none asked for */
	struct gate_feedback fb;
};

/* scheduler.c: the scheduler's object, its pump and timers. */
double sched_rand01(struct scheduler *s);
/* Look for work on lane l at at (monotonic ms). */
void sched_arm(struct lane *l, int64_t at, int64_t now);
/* Look for work on every lane on the next loop turn, their queues as they
 * were (sched_kick: they may have new jobs). */
void sched_pump_soon(struct scheduler *s);
/* Jobs may have become ready on every lane: their queues are worth a look. */
void sched_queues_changed(struct scheduler *s);
/* The launches of one pump share one transaction; lane only (NULL: all). */
void sched_pump(struct scheduler *s, struct lane *only);

/* sched-lanes.c: a lane's queue, gate, setup and pause. */
int sched_lane_idx(const struct lane *l);
/* The slot of uid's last batch on lane l. */
struct sched_turn *sched_turn(struct lane *l, int64_t uid);
/* The lane's next ready job, users in turn, their budgets and shares
 * judged (store_next_ready_pick); its budget's reset arms the lane when
 * budgets hold every user back. */
int sched_next_job(struct lane *l, int64_t wall, struct store_job *ret);
/* The lane's earliest wake (wall ms) after nothing was ready: the next retry
 * due, or a budget that held jobs back resetting; INT64_MAX: none. */
int64_t sched_next_wake(struct lane *l, int64_t wall);
/* Count a launch of this host's (the fleet's leases are reconciled from them). */
void sched_own(struct lane *l, enum gate_class cls, int delta);
/* The retry policy of the lane's config. */
void sched_lane_policy(const struct lane_config *c, struct retry_policy *p);
/* A learned short window due for probation goes on it. */
void sched_probation(struct lane *l, int64_t now);
void sched_on_probation(struct lane *l);
/* The window a lane starts with: pinned by the config, else learned before. */
void sched_lane_start_window(struct lane *l, int64_t now);
/* What gate_settle() changed, told and kept. */
void sched_tell(struct lane *l, const struct gate_answer *ga, const struct gate_news *n,
                const char *error, int64_t now);
/* An answer and its decision into the lane's gate (or the fleet's), as one step. */
void sched_lane_settle(struct lane *l, struct gate_answer *ga, const struct sched_lease *lease,
                       const char *error);
/* The lane's limits: the configured ones (and how its window is learned). */
void sched_lane_limits(const struct lane_config *c, struct gate_limits *ret);
/* A lane an operator paused stays paused across restarts. */
void sched_restore_pause(struct lane *l);

/* sched-flights.c: batch jobs in flight. */
void sched_flight_free(struct flight *f);
/* A launch recorded and granted: off it goes. */
void sched_flight_send(struct lane *l, struct flight *f, int64_t wall);
void sched_flight_turn(struct lane *l, const struct flight *f);
/* The lane's next batch job, if its own gate grants it. */
enum launch_result sched_flight_launch(struct lane *l);

/* sched-launch.c: launches recorded before they go. */
/* Record f's job as started on the loop; -ESTALE when it is no longer
 * queued (cancelled). */
int sched_record_job(struct lane *l, struct flight *f, int64_t wall);
/* Whether launches are recorded by the writer thread (else on the loop). */
int sched_launch_deferred(const struct scheduler *s);
/* A launch picked and granted (f->charged reserved in the gate; f->mark and
 * f->lease set after this, before the pump ends): its record goes to the
 * writer with the pump's others, and it is sent from there; until then it
 * is in transit on its lane. -ENOMEM: nothing was taken (f is the caller's). */
int sched_launch_defer(struct lane *l, struct flight *f, int64_t wall);
/* The ready query's floor (store_pick): the highest id of batch_id's jobs in
 * transit on lane ud, 0 when none. */
int64_t sched_launch_floor(void *ud, const char *batch_id);
/* Start f's job, its launch granted with f->mark and f->lease: record it,
 * send it. Returns 0, -ESTALE when the job was taken meanwhile (cancelled),
 * or another -errno when the database would not record it. f is the
 * scheduler's (or freed) either way. */
int sched_start_job(struct lane *l, struct flight *f, int64_t now, int64_t wall);
/* The same around launches made elsewhere (a grant's answer): begin returns
 * whether the caller owns the group (0 within another's); the owner's end
 * commits, or takes them back. */
int sched_launches_begin(struct scheduler *s);
void sched_launches_end(struct scheduler *s, int owner);
/* Stopping: a group not yet handed over goes now (its done() sees stopping). */
void sched_launches_stop(struct scheduler *s);

/* sched-tickets.c: interactive calls at the gate. */
void sched_ticket_free(struct sched_ticket *t);
/* Out of the lane's queue (granted, refused or gone). */
void sched_ticket_unqueue(struct sched_ticket *t);
/* The lane's next waiting call, if its own gate grants it. */
enum launch_result sched_ticket_launch(struct lane *l);
/* Grant the waiting call t with mark and lease: its owner starts it. */
void sched_start_call(struct lane *l, struct sched_ticket *t, const struct gate_mark *mark,
                      const struct sched_lease *lease, int64_t now);
/* Counted and recorded as refused with code (the caller is told by its owner). */
void sched_ticket_refuse(struct sched_ticket *t, const char *code, int64_t retry_after_ms);
/* The waiting call that goes next: users in turn, their budgets and shares
 * judged; calls a budget refuses are answered on the way. NULL: none may. */
struct sched_ticket *sched_next_call(struct lane *l, int64_t now);
/* Whether a granted call may still launch (the fleet's grant came later): 1;
 * 0 when its budget holds it (it waits again); -1 when refused (answered). */
int sched_call_budget_ok(struct lane *l, struct sched_ticket *t, int64_t now);

/* sched-answers.c: what an answer says. */
/* Parse and classify an answer into a and in, counted in the lane's stats. */
enum retry_verdict sched_answer_settle(struct lane *l, enum gate_class cls, int64_t charged,
                                       const struct up_response *resp,
                                       const struct price_usage *streamed, struct answer *a,
                                       struct retry_input *in);
/* A verdict as the stats count it. */
enum stat_outcome sched_answer_outcome(enum retry_verdict v);
/* The answer and its decision d, to the lane's gate. */
void sched_answer_apply(struct lane *l, enum gate_class cls, const struct gate_mark *mark,
                        const struct sched_lease *lease, int64_t charged, const struct answer *a,
                        const struct retry_input *in, const struct up_response *resp,
                        const struct retry_decision *d, const char *error);
/* What the answer cost at the prices of now: nano-dollars, -1 when model has none. */
int64_t sched_cost(const struct scheduler *s, const char *model, const struct answer *a);

/* Arguments of a call: keys, the time, the limits, then what it is about. */
#define FLEET_ARGS_FIXED 32
/* The most answers one settle carries. */
#define FLEET_SETTLE_MAX 32

/* The call's fixed part: the share's keys, the time (Redis's own), the limits. */
struct fleet_argv {
	const char *v[FLEET_ARGS_FIXED + 21 * FLEET_SETTLE_MAX];
	char keys[3][96];
	char num[FLEET_ARGS_FIXED + 20 * FLEET_SETTLE_MAX][32];
	int n, nums;
};

/* sched-fleet.c: grants, leases and settles. */
/* A call's next argument: a number, formatted; a string, as it is. */
const char *sched_fleet_arg_num(struct fleet_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sched_fleet_arg(struct fleet_argv *a, const char *s);
/* with_state: the answer carries the shared state (else only when the mirror is old). */
void sched_fleet_argv_init(struct fleet_argv *a, const struct lane *l, int with_state);
/* How long a lease of the lane's outlives its launch's timeouts. */
int64_t sched_fleet_deadline_ms(const struct lane *l);
/* Element i of an answer, as a number (0 when it is not one). */
double sched_fleet_num(const struct redisReply *r, size_t i);
/* Whether an answer is a list of at least min elements. */
int sched_fleet_reply_ok(const struct redisReply *r, size_t min);
/* The answers gathered for the lane go to the shared gate, as one call. */
void sched_fleet_settles_send(struct lane *l);
/* The lane's turn at the pump while its gate is the fleet's (not alone, not
 * falling back): ask the shared gate, once at a time. */
void sched_fleet_pump(struct lane *l);
/* A lease for a launch made by the lane's own gate (falling back). */
void sched_fleet_lease_alone(struct lane *l, struct sched_lease *ret);
/* An answer for the shared gate (sent with the loop turn's others); 0 when
 * it goes there, -errno when the lane's own gate must take it. */
int sched_fleet_settle(struct lane *l, const struct gate_answer *ga,
                       const struct sched_lease *lease, const char *error);
/* The launch's slot (and with refund, its cost) back: a launch taken back. */
void sched_fleet_release(struct lane *l, enum gate_class cls, int64_t cost,
                         const struct sched_lease *lease, int refund);
/* A waiting call left (refused, gone, stopping): forget its ask. */
void sched_fleet_forget(struct sched_ticket *t);
/* The loop turn's answers go to the shared gate, one call per lane. */
void sched_fleet_after_turn(struct scheduler *s);

/* sched-fleet-mirror.c: the fleet started and stopped, Redis coming and going. */
int sched_fleet_new(struct scheduler *s);
void sched_fleet_free(struct scheduler *s);
/* Stopping: what was sent goes out now. */
void sched_fleet_flush(struct scheduler *s);
/* The lane's limits now: 1/N of them while falling back. */
void sched_fleet_limits(const struct lane *l, struct gate_limits *ret);
/* An answer's tail, from element from: the shared state into the lane's
 * gate. 1 when Redis lost the state (its epoch changed). */
int sched_fleet_mirror(struct lane *l, const struct redisReply *r, size_t from);
/* An error answer from the library: this lane gates alone until the next connect. */
void sched_fleet_broken(struct lane *l, const char *what, const struct redisReply *r);
/* Hand the lane's launches in flight over as leases; nothing is asked until done. */
void sched_fleet_reconcile(struct lane *l);
/* Once a second: a look at the shared gate of each lane that asked nothing lately. */
void sched_fleet_tick(struct scheduler *s);

#endif
