/*
 * paths.h - where llmqd listens and keeps its database, found the same way by
 * the daemon and the client. Reads the environment; does no I/O beyond that.
 */
#ifndef LLMQ_PATHS_H
#define LLMQ_PATHS_H

#include <stddef.h>

/* The system-wide socket a root daemon (or the systemd unit) listens on. */
#define LLMQ_SYSTEM_SOCKET "/run/llmq/llmq.sock"

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

#endif
