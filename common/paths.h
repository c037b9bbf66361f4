/*
 * paths.h - where llmqd listens and keeps its database, found the same way by
 * the daemon and the client. Reads the environment; does no I/O beyond that.
 */
#ifndef LLMQ_PATHS_H
#define LLMQ_PATHS_H

#include <stddef.h>
#include <sys/types.h>

/* The system-wide socket a root daemon (or the systemd unit) listens on. */
#define LLMQ_SYSTEM_SOCKET "/run/llmq/llmq.sock"
/* The user the system service runs as (systemd/llmqd.service: User=). */
#define LLMQ_SERVICE_USER "llmq"

/*
 * Default socket path: $LLMQ_SOCKET, else $RUNTIME_DIRECTORY/llmq.sock (under
 * systemd), else /run/llmq/llmq.sock for root, else
 * $XDG_RUNTIME_DIR/llmq/llmq.sock, else /tmp/llmq-$UID/llmq.sock.
 * Returns 0, or -ENAMETOOLONG.
 */
int paths_socket(char *buf, size_t len);

/*
 * Default database path: $LLMQ_DB, else $STATE_DIRECTORY/llmq.db, else
 * /var/lib/llmq/llmq.db for root, else $XDG_STATE_HOME/llmq/llmq.db, else
 * ~/.local/state/llmq/llmq.db.
 */
int paths_db(char *buf, size_t len);

/* Create the parent directories of path (mode 0700), like mkdir -p. */
int paths_mkparent(const char *path);

/*
 * Whether the directory holding path is safe for a socket: a real directory
 * (not a symlink), owned by one of the n uids in owners, and writable by no
 * one else (its group and others have no write bit). Returns 0, or -EPERM
 * with the reason in why (and -errno when it cannot be looked at).
 */
int paths_check_parent(const char *path, const uid_t *owners, int n, char *why, size_t len);

#endif
