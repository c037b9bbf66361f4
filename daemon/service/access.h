/*
 * access.h - who may see what. A batch belongs to the uid that submitted
 * it; root, llmqd's own user and the members of the admin group (config
 * admin_group, default llmq-admin) see all batches. Answers are cached per
 * uid for a minute, so a slow name service is asked at most that often.
 */
#ifndef LLMQ_ACCESS_H
#define LLMQ_ACCESS_H

#include <stdint.h>
#include <sys/types.h>

#include "service/config.h"

/* ACCESS_ALL for an admin; the uid itself otherwise; ACCESS_NONE for an unknown caller. */
#define ACCESS_ALL ((int64_t)-1)
#define ACCESS_NONE ((int64_t)-2)

int64_t access_scope(const struct config *cfg, uid_t uid, int64_t now_ms);

/*
 * 1 when uid may use llmqd at all: what the sockets' mode says (0660 with
 * socket_group, else 0600), for callers identified otherwise (loopback TCP):
 * root, llmqd's own user, and socket_group's members when it is set.
 */
int access_may_connect(const struct config *cfg, uid_t uid, int64_t now_ms);

/* 1 when a batch submitted by owner is visible in scope. */
int access_may_see(int64_t scope, int64_t owner);

#endif
