/*
 * fleet.h - several llmqd on one API key: the lanes' gates share their state
 * in Redis. This module owns the connection to that Redis (hiredis' async API
 * on llmqd's own libevent loop: no thread, no blocking call), its connect and
 * command timeouts (hiredis 0.14 has neither), reconnecting with backoff, the
 * heartbeat that tells how many hosts share each key, and loading the Lua
 * library (daemon/fleet/fleet.lua, compiled in) whose functions are the shared gate.
 * What the gate decides stays in gate/ (gate.c, gate-provider.c, gate-grant.c); the scheduler asks
 * through here.
 */
#ifndef LLMQ_FLEET_H
#define LLMQ_FLEET_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#define FLEET_DEFAULT_PORT 6379
#define FLEET_MAX_DB 9999
#define FLEET_DEFAULT_TIMEOUT_MS 100
#define FLEET_HEARTBEAT_MS 1000
/* A host that missed this many heartbeats no longer counts. */
#define FLEET_HOST_TTL_MS 3500
#define FLEET_BACKOFF_FIRST_MS 250
#define FLEET_BACKOFF_MAX_MS 5000
#define FLEET_MAX_SHARES 16

/* The fleet's settings ([fleet] in llmqd.conf, LLMQ_REDIS_URL, --redis). */
struct fleet_config {
	char redis_url[1024];          /* "": no fleet, llmqd gates alone */
	char redis_password_file[512]; /* a path, or a systemd credential's name */
	int64_t redis_timeout_ms;      /* connect and command timeout */
	char host_id[65];              /* "": HOSTNAME-PID-RANDOM, made at start */
};

/* Where the Redis is, from its URL. */
struct fleet_addr {
	int is_unix;
	char path[108]; /* the Unix socket */
	char host[256]; /* an IPv6 literal without its brackets */
	int port;
	int db;
	char user[128];     /* "": the default user (an ACL user since Redis 6) */
	char password[256]; /* "": none; never shown */
};

/*
 * Parse url (redis://[user:password@]host[:port][/db] or
 * unix:///path/to/redis.sock[?db=N]) with libcurl's URL API. -EINVAL with
 * why saying what is wrong and what is expected (never echoing the URL).
 */
int fleet_url_parse(const char *url, struct fleet_addr *ret, char *why, size_t whylen);

/* The address as it may be shown: scheme, host or socket, port, db; no user, no password. */
const char *fleet_url_show(const struct fleet_addr *a, char *buf, size_t len);

/*
 * The password in file (its first line): a path, or a bare name for a
 * systemd credential in $CREDENTIALS_DIRECTORY. *ret stays NULL for "".
 * -ENOKEY for a credential's name without $CREDENTIALS_DIRECTORY, -ENODATA
 * for an empty file, or the error of open/read.
 */
int fleet_read_password(const char *file, char **ret);

/* The Lua library (daemon/fleet/fleet.lua, compiled in) and its name, llmq_HASH. */
extern const char fleet_lua[];
extern const char fleet_lua_lib[];

/* The library's functions. */
enum fleet_fn {
	FLEET_FN_NONE,      /* not a function: the connection's own commands */
	FLEET_FN_BEAT,      /* a host is alive; how many share each key */
	FLEET_FN_GRANT,     /* launches of a lane, or how long to wait */
	FLEET_FN_SETTLE,    /* a launch's answer: its lease, usage, the provider's figures */
	FLEET_FN_RECONCILE, /* a host back: its launches in flight as leases */
	FLEET_FN_STATE,     /* the shared gate as it stands (expired leases swept) */
	FLEET_FN__COUNT,
};

struct fleet;
struct redisReply;

/* A call's answer: reply (which may be an error reply), or NULL and err
 * saying why there is none (a timeout, Redis gone). */
typedef void fleet_reply_fn(void *ud, struct redisReply *reply, const char *err);
/* The fleet came up (1: connected, the library loaded) or went down (0). */
typedef void fleet_state_fn(void *ud, int up);

/* Bounds of the grant round trip histogram, in seconds. */
#define FLEET_RTT_BUCKETS 12
extern const double fleet_rtt_le[FLEET_RTT_BUCKETS];
#define FLEET_RTT_RING 4096

struct fleet_stats {
	int up;
	uint64_t fallbacks; /* times the lanes fell back to gating alone */
	int64_t since_wall; /* unix seconds: up or down since */
	char error[1024];   /* why it is down */
	char url[320];      /* where, as it may be shown */
	char host_id[65];
	uint64_t grants;                    /* grant round trips measured */
	double rtt_sum;                     /* seconds */
	uint64_t rtt_le[FLEET_RTT_BUCKETS]; /* not cumulative */
	int64_t rtt_p50_us, rtt_p99_us;     /* of the last FLEET_RTT_RING; -1: none */
};

/*
 * A fleet for cfg (redis_url set), serving the lanes' shares (their keys in
 * Redis; repeats are one). Reads the password; -errno with err saying why.
 * Nothing is sent before fleet_start(). hiredis writes with write(2): the
 * process must ignore SIGPIPE (llmqd does).
 */
int fleet_new(struct event_base *base, const struct fleet_config *cfg, const char *const *shares,
              int n_shares, struct fleet **ret, char *err, size_t errlen);
/* Connect; cb hears each coming up and going down, and a first failure
 * (never from inside fleet_call). */
void fleet_start(struct fleet *f, fleet_state_fn *cb, void *ud);
/* Send what is queued now, without waiting for answers (at exit). */
void fleet_flush(struct fleet *f);
/* Drop the connection; callers' callbacks are not called any more. */
void fleet_free(struct fleet *f);

int fleet_up(const struct fleet *f);
/* Hosts alive that share share, at the last heartbeat (>= 1). */
int fleet_hosts(const struct fleet *f, const char *share);
const char *fleet_host_id(const struct fleet *f);
void fleet_stats(const struct fleet *f, struct fleet_stats *ret);

/*
 * FCALL the library's function fn with argv (its numkeys, keys and
 * arguments; argvlen may be NULL for strings). 0: cb is called later, once,
 * with the answer or why there is none (after redis_timeout at the most);
 * -ENOTCONN while the fleet is not up (cb is not called).
 */
int fleet_call(struct fleet *f, enum fleet_fn fn, int argc, const char **argv,
               const size_t *argvlen, fleet_reply_fn *cb, void *ud);

#endif
