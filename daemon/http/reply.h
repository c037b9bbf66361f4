/*
 * reply.h - how the HTTP face's routes answer: OpenAI's error shape, a JSON
 * object, and a store error. Below every route file and the router; it
 * knows no route.
 */
#ifndef LLMQ_HTTP_REPLY_H
#define LLMQ_HTTP_REPLY_H

#include <json-c/json.h>

#include "http/httpserv.h"

struct llmqd;

/* Answer in OpenAI's error shape {"error": {"message", "type", "param", "code"}}. */
void http_error(struct hreq *req, int status, const char *type, const char *code, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
/* Answer with a JSON object (taken). */
void http_json(struct hreq *req, int status, json_object *o);
/* A store error, answered: 503 with Retry-After while another program holds the lock. */
void http_store_error(struct llmqd *d, struct hreq *req, const char *what, int r);

#endif
