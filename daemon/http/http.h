/*
 * http.h - the HTTP face: an OpenAI-compatible HTTP/1.1 listener on
 * the daemon's loop (httpserv.c), on loopback TCP and/or a Unix socket. Owns the
 * listeners, the routing table, the limits and the OpenAI-shaped errors;
 * each route family lives in its own file (http-proxy.c: chat, completions,
 * embeddings, responses; http-files.c, http-batches.c: the Batch API;
 * http-page.c: the live page; models, health, readiness and metrics here).
 */
#ifndef LLMQ_HTTP_H
#define LLMQ_HTTP_H

#include <stdint.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "http/httpserv.h"
#include "llmqd.h"
#include "service/sd.h"

struct http;

/*
 * Listen on cfg->http_addr (unless "off") and cfg->http_socket (if set), or
 * on the sockets systemd passed for the HTTP face instead (either may be).
 */
int http_new(struct llmqd *d, const struct sd_sockets *passed, struct http **ret);
void http_free(struct http *h);
/* The bound TCP address ("127.0.0.1:PORT"), or "" when off. */
const char *http_bound_addr(const struct http *h);
/* The TCP listener's address, or NULL when there is none. */
struct sockaddr_storage;
const struct sockaddr_storage *http_tcp_listener(const struct http *h);

/*
 * Who is calling: the peer's uid on the Unix-socket listener and on loopback
 * TCP (the kernel says who owns the other end); the user a token of the
 * tokens file names. 0 with the uid (-1: anonymous, only where the operator
 * set http_anonymous and owner is 0: a caller never owns Files or Batches
 * anonymously); -EACCES (401) when nobody can be told, -EPERM (403) for a
 * user outside the sockets' group. http_refuse_caller() answers either.
 */
int http_caller(struct http *h, struct hreq *req, int owner, int64_t *ret_uid);
void http_refuse_caller(struct hreq *req, int r);
/* Connections open on the HTTP face. */
int http_connections(const struct http *h);

/* Answer in OpenAI's error shape {"error": {"message", "type", "param", "code"}}. */
void http_error(struct hreq *req, int status, const char *type, const char *code, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
/* Answer with a JSON object (taken). */
void http_json(struct hreq *req, int status, json_object *o);

/* The proxied routes (http-proxy.c): body is the request's, whole. */
void http_proxy_handle(struct llmqd *d, struct hreq *req, const char *path, struct evbuffer *body);
/* Whether a caller (uid, -1 anonymous) may see what owner has. */
int http_owns(int64_t caller, int64_t owner);
/* A store error, answered: 503 with Retry-After while another program holds the lock. */
void http_store_error(struct llmqd *d, struct hreq *req, const char *what, int r);
/* Batch id (store_batch_brief) if uid may see it: 0, or -ENOENT as for an unknown id. */
int http_owned_batch(struct llmqd *d, const char *id, int64_t uid, json_object **ret);
/*
 * The Files and Batches routes (http-files.c, http-batches.c): 1 when path
 * is theirs (and req is being answered), 0 when not.
 */
int http_files_route(struct llmqd *d, struct hreq *req, const char *path);
int http_batches_route(struct llmqd *d, struct hreq *req, const char *path);
/* The live page, its files and its JSON (http-page.c): the same. */
int http_page_route(struct llmqd *d, struct hreq *req, const char *path);

#endif
