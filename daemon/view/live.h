/*
 * live.h - what the live page shows, kept and put together: every lane's
 * last hour (samples.h), read from the lanes' counters and the store's
 * job counts on a 10-second timer; and the page's JSON for one caller (the
 * status op's lanes and batches with each lane's hour, the batches' ETAs,
 * the last errors and today's usage per user). Lane figures are for
 * everyone; batches, errors and usage follow the ownership rules (access.h):
 * a user's own, everything for root and the admin group, nothing for a
 * caller nobody can tell. Nothing it reads costs more with a deep queue:
 * the store's job counts, never a row per job. http/route-page.c serves it.
 */
#ifndef LLMQ_LIVE_H
#define LLMQ_LIVE_H

#include <stdint.h>
#include <json-c/json.h>

#include "llmqd.h"

struct live;

/* Start counting every lane's hour from now. */
int live_new(struct llmqd *d, struct live **ret);
void live_free(struct live *l);

/*
 * The page's JSON for the caller uid (-1: a caller nobody can tell, or
 * anonymous: the lanes only). 0 with *ret, or -errno (a store error) with
 * *ret_what saying what could not be done ("read the last errors").
 */
int live_json(struct live *l, int64_t uid, json_object **ret, const char **ret_what);

#endif
