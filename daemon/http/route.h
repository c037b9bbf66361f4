/*
 * route.h - how a route file registers with the router (http.c): it exports
 * one table of struct http_route, ended by an entry without a handler. The
 * router walks the tables in the order http.c lists them and hands the
 * request to the first route whose path and method match; a path a route
 * serves under other methods is answered 405, any other path 404. A route
 * file includes this, reply.h and caller.h, never http.h.
 */
#ifndef LLMQ_HTTP_ROUTE_H
#define LLMQ_HTTP_ROUTE_H

struct llmqd;
struct hreq;

struct http_route {
	/* "GET", "POST", ... (GET also takes HEAD); NULL: any, the handler answers the rest. */
	const char *method;
	/* The path served; with tree set, every path under path + "/" too. */
	const char *path;
	int tree;
	/* Instead of path: whether the route serves this one. */
	int (*match)(const char *path);
	/* Answers req, now or later (hreq_read_body, hreq_stream_body). */
	void (*handle)(struct llmqd *d, struct hreq *req, const char *path);
};

/* route-proxy.c: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses. */
extern const struct http_route route_proxy[];
/* route-files.c: /v1/files and under it. */
extern const struct http_route route_files[];
/* route-batches.c: /v1/batches and under it. */
extern const struct http_route route_batches[];
/* route-page.c: the live page's files, and /v1/llmq/live. */
extern const struct http_route route_page[];
/* route-status.c: GET /v1/models, /metrics, /healthz, /readyz. */
extern const struct http_route route_status[];

#endif
