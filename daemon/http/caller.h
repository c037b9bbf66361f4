/*
 * caller.h - who calls the HTTP face, and what they own: the caller's uid
 * as the server identified it (httpserv.c, http.c), refused in OpenAI's
 * shape when it cannot be told, and the ownership rule of Files and
 * Batches. Below every route file; it knows no route.
 */
#ifndef LLMQ_HTTP_CALLER_H
#define LLMQ_HTTP_CALLER_H

#include <stdint.h>
#include <json-c/json.h>

#include "http/httpserv.h"

struct llmqd;

/*
 * Who is calling: the peer's uid on the Unix-socket listener and on loopback
 * TCP (the kernel says who owns the other end); the user a token of the
 * tokens file names. 0 with the uid (-1: anonymous, only where the operator
 * set http_anonymous and owner is 0: a caller never owns Files or Batches
 * anonymously); -EACCES (401) when nobody can be told, -EPERM (403) for a
 * user outside the sockets' group. http_refuse_caller() answers either.
 */
int http_caller(struct llmqd *d, struct hreq *req, int owner, int64_t *ret_uid);
void http_refuse_caller(struct hreq *req, int r);
/* Whether a caller (uid, -1 anonymous) may see what owner has. */
int http_owns(int64_t caller, int64_t owner);
/* Batch id (store_batch_brief) if uid may see it: 0, or -ENOENT as for an unknown id. */
int http_owned_batch(struct llmqd *d, const char *id, int64_t uid, json_object **ret);

#endif
