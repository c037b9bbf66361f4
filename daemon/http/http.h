/*
 * http.h - the HTTP face: an OpenAI-compatible HTTP/1.1 listener on
 * the daemon's loop (httpserv.c), on loopback TCP and/or a Unix socket. Owns the
 * listeners, the limits and the router (http.c). Each route family lives in
 * its own file and registers through its table (route.h): route-proxy.c
 * (chat, completions, embeddings, responses), route-files.c and
 * route-batches.c (the Batch API), route-page.c (the live page),
 * route-status.c (models, health, readiness and metrics); what they answer
 * with is reply.c's, who calls is caller.c's.
 */
#ifndef LLMQ_HTTP_H
#define LLMQ_HTTP_H

#include <stdint.h>

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

#endif
