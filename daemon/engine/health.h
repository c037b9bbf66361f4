/*
 * health.h - what is wrong with the daemon's database right now, checked
 * once a second from the loop: another program holding its lock (writes
 * wait in memory), or its file deleted or replaced under the daemon (new
 * work refused, since nothing stored now would survive a restart), or its
 * filesystem below the free-space floor (new uploads and batches refused,
 * so that what is stored can still be read, cancelled and deleted). Logs each
 * change once; status, /healthz and the submit path read the same verdict.
 */
#ifndef LLMQ_HEALTH_H
#define LLMQ_HEALTH_H

#include <stddef.h>

#include "llmqd.h"

/* Look again (from a timer); logs what changed. */
void health_check(struct llmqd *d);

/*
 * 0 when the database is fine; else 1 with what is wrong and what to do in
 * msg. Also returns 1 for a locked database; *ret_refuse says whether new
 * work must be refused (the file is gone) or only waits (a lock).
 */
int health_db(const struct llmqd *d, char *msg, size_t len, int *ret_refuse);

/*
 * 1 when the database's filesystem has less free space than disk_min_free_mb
 * (looked at once a second, not per request), with what that refuses and
 * what to do in msg: new uploads and batches are refused; reads, cancels
 * and deletes go on. Else 0.
 */
int health_disk(const struct llmqd *d, char *msg, size_t len);

#endif
