/*
 * unixsock.h - listening on a Unix socket path, for both faces (the llmq
 * socket and the HTTP face's socket): refuses a path that is not a socket,
 * refuses one another daemon answers on, removes a stale one, and refuses a
 * directory that another user owns or may write (logging why: -EPERM).
 */
#ifndef LLMQ_UNIXSOCK_H
#define LLMQ_UNIXSOCK_H

#include <sys/types.h>

/* A nonblocking, close-on-exec listening socket bound at path with mode,
 * and group gid unless it is (gid_t)-1. */
int unixsock_listen(const char *path, mode_t mode, gid_t gid, int *ret_fd);

#endif
