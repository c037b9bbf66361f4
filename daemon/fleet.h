/*
 * fleet.h - several llmqd on one API key: the lanes' gates share their state
 * in Redis. This module owns the connection to that Redis (hiredis' async API
 * on llmqd's own libevent loop: no thread, no blocking call), its connect and
 * command timeouts (hiredis 0.14 has neither), reconnecting with backoff, the
 * heartbeat that tells how many hosts share each key, and loading the Lua
 * library (daemon/fleet.lua, compiled in) whose functions are the shared gate.
 * What the gate decides stays in gate.c; the scheduler asks through here.
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

#endif
