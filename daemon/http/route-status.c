/*
 * route-status.c - what llmqd says of itself over HTTP: GET /v1/models (what
 * the lanes route, models.c), /healthz (liveness), /readyz (can a lane
 * send) and /metrics.
 */
#include "http/reply.h"
#include "http/route.h"
#include "engine/models.h"
#include "engine/scheduler.h"
#include "fleet/fleet.h"
#include "llmqd.h"
#include "timeutil.h"
#include "engine/health.h"
#include "view/metrics.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <event2/buffer.h>

static void on_models(void *ud, json_object *list)
{
	struct hreq *req = ud;

	hreq_on_gone(req, NULL, NULL);
	if (!list) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	http_json(req, 200, list);
}

static void on_models_gone(void *ud)
{
	models_cancel(ud);
}

/* What the lanes route (models.c); it may wait for an upstream's first answer. */
static void route_models(struct llmqd *d, struct hreq *req, const char *path)
{
	struct models_wait *w = models_get(d->models, on_models, req);

	if (w)
		hreq_on_gone(req, on_models_gone, w);
}

/*
 * Liveness: 200 while the store takes writes and the loop turns (it does: it
 * answers), whatever the upstreams do (that is /readyz).
 */
static void route_healthz(struct llmqd *d, struct hreq *req, const char *path)
{
	json_object *o = json_object_new_object();
	char why[512];
	int refuse, ok = !health_db(d, why, sizeof(why), &refuse);

	if (o) {
		json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "degraded"));
		json_object_object_add(o, "store", json_object_new_string(ok ? "writable" : why));
		json_object_object_add(o, "in_flight",
		                       json_object_new_int(sched_in_flight(d->sched)));
	}
	http_json(req, ok ? 200 : 503, o);
}

/* Wall ms as "2025-01-31T12:00:00Z". */
static json_object *http_time(int64_t wall_ms)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;
	char buf[32];

	if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return NULL;
	return json_object_new_string(buf);
}

/*
 * What keeps a lane from sending now, into o: "ok" (returns 1), or
 * "unreachable" since when (its circuit breaker is open), "out_of_credit"
 * since when (insufficient_quota), "paused" until when (a 429), with the
 * gate's reason, or since when an operator paused it (llmq pause).
 */
static int http_lane_ready(const struct lane_snapshot *l, int64_t now, int64_t wall, json_object *o)
{
	const struct gate *g = &l->gate;
	int paused = g->paused_until > now;
	const char *state = l->paused_at         ? "paused"
	                    : l->unreachable     ? "unreachable"
	                    : l->no_credit_since ? "out_of_credit"
	                    : paused             ? "paused"
	                                         : "ok";

	json_object_object_add(o, "name", json_object_new_string(l->cfg->name));
	json_object_object_add(o, "state", json_object_new_string(state));
	if (l->fleet_mode)
		json_object_object_add(o, "fleet", json_object_new_string(l->fleet_mode));
	if (l->paused_at) {
		/* By an operator: until they resume it, whatever the upstream does. */
		json_object_object_add(o, "paused_since", http_time(l->paused_at));
		json_object_object_add(o, "reason",
		                       json_object_new_string("paused by an operator"));
		return 0;
	}
	if (l->unreachable)
		json_object_object_add(o, "unreachable_since", http_time(l->unreachable_since));
	if (l->no_credit_since)
		json_object_object_add(o, "out_of_credit_since", http_time(l->no_credit_since));
	if (paused) {
		json_object_object_add(o, "paused_until", http_time(wall + g->paused_until - now));
		json_object_object_add(o, "reason", json_object_new_string(g->pause_reason));
	}
	return strcmp(state, "ok") == 0;
}

/* 200 while at least one lane can send; each lane's state either way. */
static void route_readyz(struct llmqd *d, struct hreq *req, const char *path)
{
	json_object *o = json_object_new_object(), *lanes = json_object_new_array(), *l, *disk, *f;
	int64_t now = time_mono_ms(), wall = time_wall_ms();
	struct lane_snapshot snap;
	struct fleet_stats fs;
	char why[512];
	int i, ready = 0, low;

	if (!o || !lanes)
		goto fail;
	for (i = 0; sched_lane_snapshot(d->sched, i, now, &snap) == 0; i++) {
		l = json_object_new_object();
		if (!l || json_object_array_add(lanes, l) < 0) {
			json_object_put(l);
			goto fail;
		}
		ready |= http_lane_ready(&snap, now, wall, l);
	}
	/* Below the free-space floor new uploads and batches are refused. */
	disk = json_object_new_object();
	if (!disk)
		goto fail;
	low = health_disk(d, why, sizeof(why));
	json_object_object_add(disk, "state", json_object_new_string(low ? "low" : "ok"));
	if (d->disk_free >= 0)
		json_object_object_add(disk, "free_bytes", json_object_new_int64(d->disk_free));
	json_object_object_add(disk, "min_free_bytes",
	                       json_object_new_int64(d->cfg->disk_min_free_bytes));
	if (low) {
		ready = 0;
		json_object_object_add(disk, "reason", json_object_new_string(why));
	}
	json_object_object_add(o, "disk", disk);
	json_object_object_add(o, "status", json_object_new_string(ready ? "ready" : "not_ready"));
	json_object_object_add(o, "lanes", lanes);
	/* Without its Redis a lane still sends (alone, with its share): it is said, not failed. */
	if (sched_fleet_stats(d->sched, &fs) == 0 && (f = json_object_new_object())) {
		json_object_object_add(f, "redis", json_object_new_string(fs.up ? "up" : "down"));
		if (!fs.up)
			json_object_object_add(f, "error", json_object_new_string(fs.error));
		json_object_object_add(o, "fleet", f);
	}
	http_json(req, ready ? 200 : 503, o);
	return;
fail:
	json_object_put(o);
	json_object_put(lanes);
	http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
}

static void route_metrics(struct llmqd *d, struct hreq *req, const char *path)
{
	struct evbuffer *buf = evbuffer_new();
	int r = buf ? metrics_render(d, buf) : -ENOMEM;

	if (r < 0) {
		if (buf)
			evbuffer_free(buf);
		http_error(req, 500, "server_error", NULL, "cannot render the metrics: %s",
		           strerror(-r));
		return;
	}
	hreq_add_header(req, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	hreq_reply_buf(req, 200, buf);
	evbuffer_free(buf);
}

const struct http_route route_status[] = {
    {.method = "GET", .path = "/v1/models", .handle = route_models},
    {.method = "GET", .path = "/metrics", .handle = route_metrics},
    {.method = "GET", .path = "/healthz", .handle = route_healthz},
    {.method = "GET", .path = "/readyz", .handle = route_readyz},
    {0},
};
