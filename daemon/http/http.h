/*
 * http.h - the HTTP face: an OpenAI-compatible HTTP/1.1 listener on
 * the daemon's loop (httpserv.c), on loopback TCP and/or a Unix socket. Owns the
 * listeners, the routing table and the limits (the answers: reply.c, the
 * caller: caller.c);
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

/* Connections open on the HTTP face. */
int http_connections(const struct http *h);

/* The proxied routes (http-proxy.c): body is the request's, whole. */
void http_proxy_handle(struct llmqd *d, struct hreq *req, const char *path, struct evbuffer *body);
/*
 * The Files and Batches routes (http-files.c, http-batches.c): 1 when path
 * is theirs (and req is being answered), 0 when not.
 */
int http_files_route(struct llmqd *d, struct hreq *req, const char *path);
int http_batches_route(struct llmqd *d, struct hreq *req, const char *path);
/* The live page, its files and its JSON (http-page.c): the same. */
int http_page_route(struct llmqd *d, struct hreq *req, const char *path);

#endif
