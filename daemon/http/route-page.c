/*
 * route-page.c - the live page: GET / and its files (page.h: compiled into
 * llmqd, served under a Content-Security-Policy that lets the page load
 * nothing but them and talk to nothing but llmqd), and GET /v1/llmq/live,
 * the JSON it polls (live.c). Anyone who may reach the HTTP face gets the
 * page and the lanes' figures, as /metrics gives them; batches, errors and
 * usage are the caller's own (all of them for root and the admin group),
 * and none for a caller llmqd cannot tell.
 */
#include "http/caller.h"
#include "http/route.h"
#include "llmqd.h"
#include "http/reply.h"
#include "view/live.h"
#include "http/page.h"

#include <string.h>

#define PAGE_LIVE_PATH "/v1/llmq/live"
/* The page's own files and llmqd's JSON; nothing inline, nothing from elsewhere. */
#define PAGE_CSP                                                                                   \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                \
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct page_asset *http_page_find(const char *path)
{
	size_t i;

	for (i = 0; i < page_assets_count; i++)
		if (strcmp(page_assets[i].path, path) == 0)
			return &page_assets[i];
	return NULL;
}

static void http_page_serve(struct hreq *req, const struct page_asset *a)
{
	hreq_add_header(req, "Content-Type", a->type);
	hreq_add_header(req, "Content-Security-Policy", PAGE_CSP);
	hreq_add_header(req, "X-Content-Type-Options", "nosniff");
	hreq_add_header(req, "Referrer-Policy", "no-referrer");
	/* Asked again at each load: a new llmqd may bring a new page. */
	hreq_add_header(req, "Cache-Control", "no-cache");
	hreq_reply(req, 200, a->data, a->len);
}

static void http_page_live(struct llmqd *d, struct hreq *req)
{
	const char *what = "";
	json_object *o = NULL;
	int64_t uid;
	int r;

	/* A caller llmqd cannot tell (or an anonymous one) sees the lanes alone. */
	if (http_caller(d, req, 1, &uid) < 0)
		uid = -1;
	r = live_json(d->live, uid, &o, &what);
	if (r < 0) {
		http_store_error(d, req, what, r);
		return;
	}
	hreq_add_header(req, "Cache-Control", "no-store");
	hreq_add_header(req, "X-Content-Type-Options", "nosniff");
	http_json(req, 200, o);
}

/* The page's files and its JSON: any method, the route refusing all but GET. */
static int http_page_match(const char *path)
{
	return http_page_find(path) || strcmp(path, PAGE_LIVE_PATH) == 0;
}

static void http_page_route(struct llmqd *d, struct hreq *req, const char *path)
{
	const struct page_asset *a = http_page_find(path);
	int get = strcmp(hreq_method(req), "GET") == 0;

	if (!get)
		http_error(req, 405, "invalid_request_error", NULL,
		           "%.200s takes GET only (the live page and its figures)", path);
	else if (a)
		http_page_serve(req, a);
	else
		http_page_live(d, req);
}

const struct http_route route_page[] = {
    {.match = http_page_match, .handle = http_page_route},
    {0},
};
