/*
 * scheduler.h - drains the queue through the lanes' gates. Pulls the next
 * ready job of a lane from the store only when the lane's gate can grant a
 * launch (thousands of queued jobs never live in memory), starts it on the
 * upstream, and turns each answer into a stored outcome, a gate update and
 * perhaps a retry. Arms one timer per lane for the earliest moment its gate
 * can grant; never polls.
 */
#ifndef LLMQ_SCHEDULER_H
#define LLMQ_SCHEDULER_H

#include <stdint.h>
#include <json-c/json.h>

#include "gate.h"
#include "llmqd.h"

struct scheduler;

int sched_new(struct llmqd *d, struct scheduler **ret);
void sched_free(struct scheduler *s);

/* Look for work on every lane on the next loop turn. */
void sched_kick(struct scheduler *s);

/* Stop launching; abort transfers in flight and requeue their jobs. */
void sched_stop(struct scheduler *s);

int sched_in_flight(const struct scheduler *s);

/* The gate and mean latency of a lane, for the admission guard and status. */
struct gate *sched_lane_gate(struct scheduler *s, const char *lane, int64_t *ret_avg_latency_ms);

/* Per lane: in flight / cap, buckets, pause, counters, projected drain. */
int sched_lanes_json(struct scheduler *s, json_object **ret);

#endif
