/*
 * llmqd.h - the daemon's parts, wired together by main.c (or a test).
 * Each module owns its own state; this struct only holds them.
 */
#ifndef LLMQ_LLMQD_H
#define LLMQ_LLMQD_H

#include <stdint.h>
#include <sys/types.h>
#include <event2/event.h>

#include "service/config.h"

struct store;
struct ipc;
struct scheduler;
struct http;
struct files;
struct models;
struct live;

/* Why a submit or a call was refused, for the metrics. */
enum llmqd_refusal {
	REFUSAL_RATE_LIMITED, /* admission: BATCH_RATE_LIMITED */
	REFUSAL_INVALID,      /* a malformed batch or request */
	REFUSAL_TOO_LARGE,    /* past a size limit */
	REFUSAL_BUSY,         /* too many connections or submits at once */
	REFUSAL_GATE_WAIT,    /* an interactive call the gate could not serve in time */
	REFUSAL_LOOP,         /* a call that came back to this llmqd (hop.h) */
	REFUSAL_BUDGET,       /* an interactive call over its user's budget */
	REFUSAL__COUNT,
};

static inline const char *llmqd_refusal_name(int r)
{
	static const char *const names[REFUSAL__COUNT] = {
	    "rate_limited", "invalid", "too_large", "busy", "gate_wait", "loop", "budget",
	};

	return r >= 0 && r < REFUSAL__COUNT ? names[r] : "unknown";
}

struct llmqd {
	struct event_base *base;
	const struct config *cfg;
	struct store *store;
	struct ipc *ipc;
	struct scheduler *sched;
	struct http *http;
	char http_addr[128];   /* its TCP listener's address as bound, "" without one */
	struct files *files;   /* uploaded files' bytes */
	struct models *models; /* the upstreams' model lists */
	struct live *live;     /* the lanes' last hour, for the live page */
	gid_t socket_gid;      /* the group of the sockets, (gid_t)-1 for none (mode 0600) */
	int64_t started_mono;
	int ingests;             /* submits being received */
	int64_t db_locked_since; /* health.c: another program's lock, wall ms; 0: none */
	int db_gone;             /* health.c: -ENOENT or -ESTALE once the file went */
	int64_t disk_free;       /* health.c: bytes free on the database's filesystem; -1 unknown */
	int disk_low;            /* health.c: disk_free is below disk_min_free_mb */
	uint64_t refusals[REFUSAL__COUNT];
};

#endif
