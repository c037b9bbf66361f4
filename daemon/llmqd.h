/*
 * llmqd.h - the daemon's parts, wired together by main.c (or a test).
 * Each module owns its own state; this struct only holds them.
 */
#ifndef LLMQ_LLMQD_H
#define LLMQ_LLMQD_H

#include <stdint.h>
#include <event2/event.h>

#include "config.h"

struct store;
struct ipc;
struct scheduler;

struct llmqd {
	struct event_base *base;
	const struct config *cfg;
	struct store *store;
	struct ipc *ipc;
	struct scheduler *sched;
	int64_t started_mono;
	int ingests; /* submits being received */
};

#endif
