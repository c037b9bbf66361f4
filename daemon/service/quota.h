/*
 * quota.h - what one user may keep in llmqd: the bytes of their uploaded
 * files (files_max_bytes_per_user) and the jobs they have queued or running
 * (queue_max_jobs_per_user). Each check reads a sum the store keeps cheap
 * (an index, job_counts) and, when the bound is passed, writes what the
 * user holds, the bound, and what to do. Both faces call the same checks
 * and only encode the answer. Does not log.
 */
#ifndef LLMQ_QUOTA_H
#define LLMQ_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "llmqd.h"

/*
 * May uid hold adding more bytes of uploads? 0; -EDQUOT with why in msg;
 * another -errno when the store cannot tell.
 */
int quota_files(struct llmqd *d, int64_t uid, int64_t adding, char *msg, size_t len);

/*
 * May uid queue adding more jobs? 0; -EDQUOT with why in msg, and
 * *ret_never set when the batch alone passes the bound (waiting cannot
 * help); another -errno when the store cannot tell.
 */
int quota_jobs(struct llmqd *d, int64_t uid, int64_t adding, int *ret_never, char *msg, size_t len);

#endif
