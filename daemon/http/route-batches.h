/*
 * route-batches.h - what the Batches API's two files share (route-batches.c:
 * the routes, the batch object, listing and cancelling;
 * route-batches-create.c: POST /v1/batches). Never included outside them.
 */
#ifndef LLMQ_HTTP_ROUTE_BATCHES_H
#define LLMQ_HTTP_ROUTE_BATCHES_H

#include <stdint.h>
#include <json-c/json.h>

struct llmqd;
struct hreq;
struct evbuffer;

/* A member of the store's JSON: its integer (0 when absent), its string (NULL). */
int64_t route_batches_int(json_object *o, const char *key);
const char *route_batches_str(json_object *o, const char *key);
/* Answer with batch id as it is now. */
void route_batches_reply(struct llmqd *d, struct hreq *req, const char *id);
/* POST /v1/batches, its body read whole (hreq_read_body's done; ud: the daemon). */
void route_batches_create(void *ud, struct hreq *req, struct evbuffer *body);

#endif
