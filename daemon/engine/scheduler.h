/*
 * scheduler.h - drains the queue and gates interactive calls through the
 * lanes' gates. Pulls the next ready job of a lane from the store only when
 * the lane's gate can grant a launch (thousands of queued jobs never live in
 * memory), starts it on the upstream, and turns each answer into a stored
 * outcome, a gate update and perhaps a retry. Interactive calls (the HTTP
 * face) wait in a per-lane queue in memory, go ahead of batch jobs, and are
 * started by their owner when granted. Arms one timer per lane for the
 * earliest moment its gate can grant; never polls.
 */
#ifndef LLMQ_SCHEDULER_H
#define LLMQ_SCHEDULER_H

#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>

#include "gate/budget.h"
#include "gate/gate.h"
#include "llmqd.h"
#include "gate/price.h"
#include "gate/retry.h"
#include "engine/stats.h"
#include "upstream/upstream.h"

struct scheduler;

int sched_new(struct llmqd *d, struct scheduler **ret);
void sched_free(struct scheduler *s);

/* Look for work on every lane on the next loop turn: their queues may have
 * new jobs (whatever adds or lets go of jobs calls it; a lane whose queue
 * was found empty is not read again until then). */
void sched_kick(struct scheduler *s);

/*
 * A running batch's held jobs first..last that its ingest could not let go
 * (the release refused for good): tried again with the once-a-second
 * expiry until the database takes it. -ENOMEM (then llmqd's next start
 * lets them go).
 */
int sched_release_later(struct scheduler *s, const char *batch_id, int64_t first, int64_t last);

/* The work of one loop turn, done after its callbacks: write the outcomes. */
void sched_after_turn(struct scheduler *s);

/* Stop launching; abort transfers in flight and requeue their jobs. */
void sched_stop(struct scheduler *s);

int sched_in_flight(const struct scheduler *s);

/* The lanes' configuration changed in place (a reload): apply the new limits
 * to the live gates and load the keys again; transfers in flight go on. */
int sched_reload(struct scheduler *s);
/* 0 while the database refuses outcomes (they are kept and retried). */
int sched_store_writable(const struct scheduler *s);
struct upstream *sched_upstream(struct scheduler *s);
/* This llmqd's instance id, made at start: what it sends upstream carries it (hop.h). */
const char *sched_instance_id(const struct scheduler *s);

/* A lane as it stands, copied: readers never touch the live gate. */
struct lane_snapshot {
	const struct lane_config *cfg;
	struct gate gate; /* brought up to the snapshot's time */
	int has_key;
	int64_t avg_latency_ms;
	int calls_waiting; /* interactive calls queued at the gate */
	int64_t calls_waiting_tokens;
	struct lane_stats stats;
	int window_learned;        /* gate.window came from a 429 (now or before a restart) */
	int64_t window_learned_at; /* wall ms */
	int64_t probation_since;   /* wall ms: the minute tried again after a learned window */
	int unreachable;           /* the circuit breaker is open: probing */
	int64_t unreachable_since; /* wall ms: the first of the tries that reached no upstream */
	int64_t no_credit_since;   /* wall ms: insufficient_quota since; 0: the key has credit */
	int64_t paused_at;         /* wall ms an operator paused it; 0: not paused so */
	int64_t paused_by;         /* the uid that did (-1: unknown) */
	struct gate_limits lim;    /* the lane's (gate.lim is this host's share while it gates
	                            * alone, in a fleet) */
	/* The fleet: NULL without one; "shared" (gate is the key's, in Redis; gate mirrors
	 * it), "alone" (Redis away: 1/N of the limits), "starting", "reconciling". */
	const char *fleet_mode;
	const char *share;  /* the key's name in the fleet */
	int fleet_hosts;    /* hosts sharing it at the last heartbeat */
	int in_flight_here; /* of the gate's in flight, this host's */
};

int sched_n_lanes(const struct scheduler *s);
/* Lane i (0..n-1) at now; returns -ENOENT past the last. */
int sched_lane_snapshot(const struct scheduler *s, int i, int64_t now, struct lane_snapshot *ret);
/* The index of the lane called name, or -ENOENT. */
int sched_lane_index(const struct scheduler *s, const char *name);

/*
 * Steering by an operator (llmq pause, resume, set). Pause lane i (at: wall
 * ms; by: who) or resume it (at 0): paused, it launches nothing, its flights
 * finish, calls waiting keep their place until their wait ends, new calls
 * are refused. The caller keeps it in the store.
 */
void sched_lane_pause(struct scheduler *s, int i, int64_t at, int64_t by);
/* Lane i's live limits, as a reload sets them, until the next reload. */
void sched_lane_set_limits(struct scheduler *s, int i, const struct gate_limits *lim);

/*
 * Interactive calls. A ticket is a call's place at its lane's gate. Once
 * granted, the gate has reserved the call's cost and a concurrency slot,
 * and grant() starts the transfer; the owner reports how it ended with
 * sched_call_done() (which records it), or gives a waiting ticket back with
 * sched_call_cancel().
 */
struct sched_ticket;

/* A call its user's budget refuses: the verdict, and what it means for a person. */
struct sched_budget_refusal {
	struct budget_verdict v;
	char message[512];
};

struct sched_call_info {
	const char *lane;     /* lane name */
	const char *endpoint; /* e.g. /v1/chat/completions */
	const char *model;
	const char *call_id;
	int try_no; /* 1 for the first try */
	int stream;
	int64_t uid; /* -1: unknown */
	int64_t cost;
	int64_t max_wait_ms;     /* refuse when the gate cannot grant within it */
	void (*grant)(void *ud); /* launch now */
	void (*refuse)(void *ud, int64_t retry_after_ms); /* the wait budget ran out */
	/* The user's budget turned out spent while it waited (their calls in
	 * flight spent it). */
	void (*over_budget)(void *ud, const struct sched_budget_refusal *why);
	void *ud;
	const char *request_body; /* recorded when the operator asks; may be NULL */
};

/*
 * Queue a call at its lane's gate. Returns 0 (grant or refuse is called
 * later, never from inside this call); -EAGAIN with *ret_retry_after_ms
 * when the gate cannot grant within max_wait_ms; -E2BIG when the call costs
 * more than the lane's whole budget per minute and can never run; -EDQUOT
 * with *ret_budget when the user's budget is spent (or smaller than the
 * call) - each recorded as refused; -EBUSY when an operator paused the lane.
 */
int sched_call_enqueue(struct scheduler *s, const struct sched_call_info *info,
                       struct sched_ticket **ret, int64_t *ret_retry_after_ms,
                       struct sched_budget_refusal *ret_budget);

/* The caller left before the grant: drop the ticket, record it aborted. */
void sched_call_cancel(struct scheduler *s, struct sched_ticket *t);

/*
 * A granted call ended. resp as the upstream answered (its body may be
 * empty for a relayed stream); streamed the usage a stream reported (NULL:
 * take it from resp's body, or unknown). Updates the gate (feedback,
 * pauses), records the try and frees t. When may_retry (nothing reached the
 * caller yet) and the answer is worth another try that can start before
 * deadline (monotonic ms), *ret_retry_in_ms is the wait before enqueueing
 * it again; else -1 and this answer is final.
 */
enum retry_verdict sched_call_done(struct scheduler *s, struct sched_ticket *t,
                                   const struct up_response *resp,
                                   const struct price_usage *streamed, int may_retry,
                                   int64_t deadline, const char *response_body,
                                   int64_t *ret_retry_in_ms);

/* The fleet's connection and its figures; -ENOENT without LLMQ_REDIS_URL. */
struct fleet_stats;
int sched_fleet_stats(const struct scheduler *s, struct fleet_stats *ret);

/* The writer thread outcomes and launches are written by (store/writer.h),
 * for other writes of the loop's; NULL when they are written on the loop. */
struct writer *sched_writer(struct scheduler *s);

/* Users' budgets and shares (ledger.h). */
struct ledger *sched_ledger(struct scheduler *s);

/* The API key of lane i (NULL: none). */
const char *sched_lane_key(const struct scheduler *s, int i);

#endif
