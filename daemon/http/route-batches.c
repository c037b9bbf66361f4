/*
 * route-batches.c - the Batches API's routes: GET /v1/batches, GET
 * /v1/batches/{id}, POST /v1/batches/{id}/cancel, and POST /v1/batches
 * handed to route-batches-create.c; the hosted API's batch object, made
 * from the store's view of a batch.
 */
#include "http/caller.h"
#include "http/reply.h"
#include "http/route-batches.h"
#include "http/route.h"
#include "llmqd.h"
#include "log.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_REQUEST_MAX (64 * 1024) /* the body of POST /v1/batches */
#define BATCHES_LIST_MAX 100

int64_t route_batches_int(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_int64(v) : 0;
}

const char *route_batches_str(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : NULL;
}

static void put_secs(json_object *o, const char *key, int64_t ms)
{
	json_object_object_add(o, key, ms > 0 ? json_object_new_int64(ms / 1000) : NULL);
}

static void put_id(json_object *o, const char *key, const char *prefix, const char *id, int on)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%s%s", prefix, id);
	json_object_object_add(o, key, on ? json_object_new_string(buf) : NULL);
}

static void window_text(int64_t ms, char *buf, size_t len)
{
	if (ms % 3600000 == 0)
		snprintf(buf, len, "%lldh", (long long)(ms / 3600000));
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%llds", (long long)(ms / 1000));
	else
		snprintf(buf, len, "%lldms", (long long)ms);
}

/* The hosted API's batch object, from the store's view of batch b. */
static json_object *batch_object(json_object *b)
{
	json_object *o = json_object_new_object(), *rc = json_object_new_object(), *counts = NULL,
	            *v, *errs;
	const char *state = route_batches_str(b, "state"), *id = route_batches_str(b, "id"),
	           *status;
	int64_t created = route_batches_int(b, "created_at"),
	        finished = route_batches_int(b, "finished_at"),
	        expired = route_batches_int(b, "expired_at"), ok, failed, cancelled;
	int done;
	char w[32];

	if (!o || !rc || !state || !id) {
		json_object_put(o);
		json_object_put(rc);
		return NULL;
	}
	json_object_object_get_ex(b, "counts", &counts);
	ok = route_batches_int(counts, "succeeded");
	failed = route_batches_int(counts, "failed");
	cancelled = route_batches_int(counts, "cancelled");
	if (strcmp(state, "completed") == 0)
		status = expired ? "expired" : "completed";
	else
		status = state; /* in_progress, cancelling, cancelled, failed: the same words */
	done = strcmp(state, "completed") == 0 || strcmp(state, "cancelled") == 0;
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "object", json_object_new_string("batch"));
	v = json_object_object_get_ex(b, "endpoint", &v) && v ? json_object_get(v) : NULL;
	json_object_object_add(o, "endpoint",
	                       v ? v : json_object_new_string("/v1/chat/completions"));
	errs = NULL;
	if (json_object_object_get_ex(b, "errors", &v) && v) {
		errs = json_object_new_object();
		if (errs) {
			json_object_object_add(errs, "object", json_object_new_string("list"));
			json_object_object_add(errs, "data", json_object_get(v));
		}
	}
	json_object_object_add(o, "errors", errs);
	v = json_object_object_get_ex(b, "input_file_id", &v) && v ? json_object_get(v) : NULL;
	json_object_object_add(o, "input_file_id", v ? v : json_object_new_string(""));
	window_text(route_batches_int(b, "window_ms"), w, sizeof(w));
	json_object_object_add(o, "completion_window", json_object_new_string(w));
	json_object_object_add(o, "status", json_object_new_string(status));
	put_id(o, "output_file_id", "file-output-", id, done && ok > 0);
	put_id(o, "error_file_id", "file-errors-", id, done && failed + cancelled > 0);
	put_secs(o, "created_at", created);
	put_secs(o, "in_progress_at", strcmp(state, "failed") ? created : 0);
	put_secs(o, "expires_at", created + route_batches_int(b, "window_ms"));
	put_secs(o, "finalizing_at", done ? finished : 0);
	put_secs(o, "completed_at", strcmp(status, "completed") == 0 ? finished : 0);
	put_secs(o, "failed_at", strcmp(state, "failed") == 0 ? finished : 0);
	put_secs(o, "expired_at", expired);
	put_secs(o, "cancelling_at", route_batches_int(b, "cancelling_at"));
	put_secs(o, "cancelled_at", strcmp(state, "cancelled") == 0 ? finished : 0);
	json_object_object_add(rc, "total", json_object_new_int64(route_batches_int(b, "total")));
	json_object_object_add(rc, "completed", json_object_new_int64(ok));
	json_object_object_add(rc, "failed", json_object_new_int64(failed));
	json_object_object_add(o, "request_counts", rc);
	v = json_object_object_get_ex(b, "metadata", &v) && v ? json_object_get(v) : NULL;
	json_object_object_add(o, "metadata", v);
	return o;
}

/* Answer with batch id as it is now. */
void route_batches_reply(struct llmqd *d, struct hreq *req, const char *id)
{
	json_object *b = NULL;
	int r = store_batch_brief(d->store, id, &b);

	if (r < 0) {
		http_store_error(d, req, "read the batch", r);
		return;
	}
	http_json(req, 200, batch_object(b));
	json_object_put(b);
}

/* ---- GET /v1/batches, GET /v1/batches/{id}, POST .../cancel ---- */

static void batches_list(struct llmqd *d, struct hreq *req, int64_t uid)
{
	json_object *arr = NULL, *o, *data, *b;
	char v[64], after[64] = "";
	int limit = 20, n, i, r;

	if (hreq_param(req, "limit", v, sizeof(v)) >= 0) {
		limit = atoi(v);
		if (limit < 1 || limit > BATCHES_LIST_MAX) {
			http_error(req, 400, "invalid_request_error", "invalid_limit",
			           "limit must be 1..%d", BATCHES_LIST_MAX);
			return;
		}
	}
	hreq_param(req, "after", after, sizeof(after));
	r = store_batch_page(d->store, uid, after[0] ? after : NULL, limit + 1, &arr);
	if (r < 0) {
		http_store_error(d, req, "list the batches", r);
		return;
	}
	n = (int)json_object_array_length(arr);
	o = json_object_new_object();
	data = json_object_new_array();
	if (!o || !data) {
		json_object_put(o);
		json_object_put(data);
		json_object_put(arr);
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	for (i = 0; i < n && i < limit; i++) {
		b = batch_object(json_object_array_get_idx(arr, (size_t)i));
		if (b)
			json_object_array_add(data, b);
	}
	json_object_object_add(o, "object", json_object_new_string("list"));
	json_object_object_add(o, "data", data);
	b = n ? json_object_array_get_idx(arr, 0) : NULL;
	json_object_object_add(o, "first_id",
	                       b ? json_object_new_string(route_batches_str(b, "id")) : NULL);
	b = n ? json_object_array_get_idx(arr, (size_t)(n > limit ? limit : n) - 1) : NULL;
	json_object_object_add(o, "last_id",
	                       b ? json_object_new_string(route_batches_str(b, "id")) : NULL);
	json_object_object_add(o, "has_more", json_object_new_boolean(n > limit));
	json_object_put(arr);
	http_json(req, 200, o);
}

static void batch_cancel(struct llmqd *d, struct hreq *req, const char *id, json_object *b)
{
	const char *state = route_batches_str(b, "state");
	int64_t n = 0;
	int r;

	if (strcmp(state, "cancelling") == 0 || strcmp(state, "cancelled") == 0) {
		http_json(req, 200, batch_object(b));
		return;
	}
	if (strcmp(state, "in_progress") != 0) {
		http_error(req, 409, "invalid_request_error", "batch_not_cancellable",
		           "batch %s is %s; only a batch in progress can be cancelled", id,
		           route_batches_str(b, "expired_at") ? "expired" : state);
		return;
	}
	r = store_batch_cancel(d->store, id, time_wall_ms(), &n);
	if (r < 0) {
		http_store_error(d, req, "cancel the batch", r);
		return;
	}
	log_info("batch %s: cancelled over HTTP, %lld queued jobs dropped", id, (long long)n);
	route_batches_reply(d, req, id);
}

static void batches_route(struct llmqd *d, struct hreq *req, const char *path)
{
	const char *m = hreq_method(req), *rest;
	json_object *b = NULL;
	char id[64];
	int64_t uid;
	size_t n;
	int r;

	r = http_caller(d, req, 1, &uid);
	if (r < 0) {
		http_refuse_caller(req, r);
		return;
	}
	if (strcmp(path, "/v1/batches") == 0) {
		if (strcmp(m, "POST") == 0)
			hreq_read_body(req, BATCH_REQUEST_MAX, route_batches_create, d);
		else if (strcmp(m, "GET") == 0)
			batches_list(d, req, uid);
		else
			http_error(req, 405, "invalid_request_error", NULL,
			           "/v1/batches takes POST (create) and GET (list)");
		return;
	}
	rest = path + 12;
	n = strcspn(rest, "/");
	if (n == 0 || n >= sizeof(id)) {
		http_error(req, 404, "invalid_request_error", "not_found", "no such batch");
		return;
	}
	memcpy(id, rest, n);
	id[n] = '\0';
	rest += n;
	r = http_owned_batch(d, id, uid, &b);
	if (r == -ENOENT) {
		http_error(req, 404, "invalid_request_error", "not_found",
		           "no batch %s among yours; GET /v1/batches lists them", id);
		return;
	}
	if (r < 0) {
		http_store_error(d, req, "read the batch", r);
		return;
	}
	if (*rest == '\0' && strcmp(m, "GET") == 0)
		http_json(req, 200, batch_object(b));
	else if (strcmp(rest, "/cancel") == 0 && strcmp(m, "POST") == 0)
		batch_cancel(d, req, id, b);
	else
		http_error(req, 405, "invalid_request_error", NULL,
		           "/v1/batches/{id} takes GET; /v1/batches/{id}/cancel takes POST");
	json_object_put(b);
}

const struct http_route route_batches[] = {
    {.path = "/v1/batches", .tree = 1, .handle = batches_route},
    {0},
};
