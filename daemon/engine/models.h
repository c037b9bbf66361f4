/*
 * models.h - what GET /v1/models lists: the models the lanes route, from
 * each lane's upstream's own GET /v1/models. A lane's list is asked for with
 * the lane's key on the loop (libcurl multi: never a blocking call) at
 * start, hourly, and on need when the lane has none yet, and kept; a lane
 * whose upstream has not given one (an error, a timeout, not a list) shows
 * its model patterns instead. Owns its own transfers, apart from the
 * scheduler's, so that they are never counted as calls in flight. The HTTP
 * route that answers with the list lives in http/route-status.c.
 */
#ifndef LLMQ_MODELS_H
#define LLMQ_MODELS_H

#include <json-c/json.h>

#include "llmqd.h"

/* How often a lane's list is asked for again. */
#define MODELS_REFRESH_MS (3600 * 1000)
/* A lane without a list is asked again on need, at most this often. */
#define MODELS_RETRY_MS (60 * 1000)
/* The longest a fetch may take. */
#define MODELS_TIMEOUT_MS (10 * 1000)
/* The longest a caller waits for the fetches under way before it is answered. */
#define MODELS_WAIT_MS (5 * 1000)
/* Models kept per lane, and the largest answer read. */
#define MODELS_MAX 4096
#define MODELS_BODY_MAX (4u << 20)

struct models;
struct models_wait;

/* Starts asking every lane's upstream (d->sched must exist). */
int models_new(struct llmqd *d, struct models **ret);
void models_free(struct models *m);

/* Ask every upstream again (a reload may have changed keys or URLs). */
void models_refresh(struct models *m);

/*
 * The list the lanes route, in OpenAI's shape {"object": "list", "data":
 * [...]}, given to done (which takes it; NULL when out of memory): at once
 * when no lane is waiting for its first list, else once those fetches end
 * (at most MODELS_WAIT_MS). Returns the wait, for models_cancel() should the
 * caller leave first, or NULL when done was called already.
 */
struct models_wait *models_get(struct models *m, void (*done)(void *ud, json_object *list),
                               void *ud);
/* The caller left: done will not be called. */
void models_cancel(struct models_wait *w);

#endif
