/*
 * fleet-private.h - what the fleet's files share and nobody else sees: the
 * connection's state (struct fleet), its commands in flight, and the calls
 * between the connection (fleet-conn.c), its commands (fleet-cmd.c) and the
 * fleet's life and heartbeat (fleet.c).
 */
#ifndef LLMQ_FLEET_PRIVATE_H
#define LLMQ_FLEET_PRIVATE_H

#include "fleet/fleet.h"

#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/async.h>

enum fleet_state {
	FLEET_DOWN,       /* no connection; a reconnect is due on f->retry */
	FLEET_RESOLVING,  /* looking the host's name up */
	FLEET_CONNECTING, /* connecting and handshaking (AUTH, SELECT, FUNCTION LOAD) */
	FLEET_UP,
};

struct fleet_cmd {
	char *buf; /* the command as sent, kept to send again once the library is back */
	int len;
	int64_t sent_us, deadline_us;
	enum fleet_fn fn;   /* FLEET_FN_NONE for the handshake's commands */
	int resent;         /* sent again already after "function not found" */
	fleet_reply_fn *cb; /* NULL: nobody waits for it */
	void *ud;
	TAILQ_ENTRY(fleet_cmd) link;
};

/* One name lookup; its callback may come after a drop, even after a new lookup. */
struct fleet_lookup {
	struct fleet *f; /* NULL once given up */
	struct evdns_getaddrinfo_request *q;
};

struct fleet {
	struct event_base *base;
	struct fleet_addr addr;
	char *password;
	int64_t timeout_ms;
	char host_id[65];
	char shown[320]; /* the URL as it may be shown */
	char shares[FLEET_MAX_SHARES][64];
	int n_shares;
	char fn_names[FLEET_FN__COUNT][64];
	enum fleet_state state;
	redisAsyncContext *ac;
	redisAsyncContext *dead; /* dropped, freed by f->teardown on the next turn */
	struct evdns_base *dns;
	struct fleet_lookup *lookup;
	int64_t connect_deadline_us;
	TAILQ_HEAD(, fleet_cmd) pending;
	struct event *timer;    /* the oldest command's deadline, or the lookup's */
	struct event *retry;    /* the next connect */
	struct event *teardown; /* frees f->dead */
	struct event *beat;     /* the heartbeat */
	int beating;            /* a heartbeat is in flight */
	int64_t backoff_ms;
	char broken[1024]; /* a send failed: dropped from the timer, for this */
	int in_reply;      /* inside hiredis' reply callback */
	int hosts[FLEET_MAX_SHARES];
	int was_up; /* ever up */
	int told;   /* the last state told to on_state: -1 none yet, 0 down, 1 up */
	int logged; /* the last drop was logged */
	int stopping;
	fleet_state_fn *on_state;
	void *state_ud;
	struct fleet_stats st;
	int64_t rtt_ring[FLEET_RTT_RING]; /* the last grants' round trips, us */
};

/* Monotonic microseconds. */
int64_t fleet_now_us(void);
/* Arm ev to fire in us (now, when negative). */
void fleet_arm_us(struct event *ev, int64_t us);
/* The timer follows the oldest command's deadline (or the lookup's). */
void fleet_arm(struct fleet *f);
void fleet_cmd_free(struct fleet_cmd *c);

/*
 * Drop the connection: what is in flight is answered with why, the context
 * freed on the next turn, a reconnect scheduled (fleet-conn.c).
 */
void fleet_drop(struct fleet *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Connect, or look the host's name up first; from FLEET_DOWN only. */
void fleet_connect(struct fleet *f);
/* A handshake's or a call's error reply, in words a user can act on. */
void fleet_explain(struct fleet *f, const char *what, const char *err, char *buf, size_t len);
/* An answer to AUTH, SELECT or FUNCTION LOAD: any error drops the connection. */
void fleet_handshake_cb(void *ud, struct redisReply *r, const char *err);

/* Queue a command made of argv; internal ones come before the fleet is up. */
int fleet_queue(struct fleet *f, int argc, const char **argv, const size_t *argvlen,
                enum fleet_fn fn, int64_t deadline_us, fleet_reply_fn *cb, void *ud);
/* FUNCTION LOAD the library, answered to cb. */
int fleet_load(struct fleet *f, int64_t deadline_us, fleet_reply_fn *cb);

/* The events' callbacks: a command's deadline, the next connect, the
 * dropped context's free, the heartbeat. */
void fleet_timer_cb(evutil_socket_t fd, short what, void *arg);
void fleet_retry_cb(evutil_socket_t fd, short what, void *arg);
void fleet_teardown_cb(evutil_socket_t fd, short what, void *arg);
void fleet_beat_cb(evutil_socket_t fd, short what, void *arg);

#endif
