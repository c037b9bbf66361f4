/*
 * scheduler.c - lanes, flights and outcomes.
 *
 * A flight is one job in the air: the job row, its open attempt and the
 * reservation its lane's gate made. Ownership: the scheduler owns flights
 * from launch until the upstream's done callback (or sched_stop) frees them.
 */
#include "scheduler.h"
#include "admission.h"
#include "config.h"
#include "lane.h"
#include "log.h"
#include "retry.h"
#include "store.h"
#include "timeutil.h"
#include "upstream.h"
#include "writeback.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

struct lane;

struct flight {
	struct lane *lane;
	struct store_job job;
	int64_t attempt_id;
	int64_t charged;
	struct gate_mark mark;
	struct up_transfer *t;
	uint64_t pump; /* the pump that launched it */
	LIST_ENTRY(flight) link;
};

struct lane {
	struct scheduler *s;
	const struct lane_config *cfg;
	struct gate gate;
	char *key;
	struct event *timer;
	int64_t avg_latency_ms;
	uint64_t launched, succeeded, failed, retried, rate_limited;
	LIST_HEAD(, flight) flights;
};

struct scheduler {
	struct llmqd *d;
	struct upstream *up;
	struct event *pump;
	struct writeback *wb;
	uint64_t pumps;
	struct lane lanes[CONFIG_MAX_LANES];
	int n_lanes;
	uint64_t rng;
	int stopping;
};

static double rand01(struct scheduler *s)
{
	/* xorshift64*: jitter only, not security. */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double)((s->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void arm(struct lane *l, int64_t at, int64_t now)
{
	int64_t d = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};

	evtimer_add(l->timer, &tv);
}

static void flight_free(struct flight *f)
{
	if (!f)
		return;
	store_job_clear(&f->job);
	free(f);
}

static void on_done(void *userdata, const struct up_response *resp);

/* Returns 1 when a job was launched (or dropped as stale), 0 when the lane must wait. */
static int launch_next(struct lane *l)
{
	struct scheduler *s = l->s;
	struct up_request req;
	struct up_response fake;
	struct flight *f;
	int64_t now = time_mono_ms(), wall = time_wall_ms(), when, next;
	char url[1024];
	int r;

	when = gate_when(&l->gate, 1, now, NULL);
	if (when == GATE_NEVER)
		return 0;
	if (when > now) {
		arm(l, when, now);
		return 0;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		arm(l, now + 1000, now);
		return 0;
	}
	r = store_next_ready(s->d->store, l->cfg->name, wall, &f->job);
	if (r <= 0) {
		flight_free(f);
		if (r < 0) {
			log_err("lane %s: cannot read the queue: %s; retrying in 1s", l->cfg->name,
			        store_errmsg(s->d->store));
			arm(l, now + 1000, now);
		} else if (store_next_wakeup(s->d->store, l->cfg->name, &next) == 0 &&
		           next != INT64_MAX) {
			arm(l, now + (next > wall ? next - wall : 0), now);
		}
		return 0;
	}
	f->lane = l;
	f->charged = f->job.est_tokens;
	when = gate_when(&l->gate, f->charged, now, NULL);
	if (when > now) {
		arm(l, when, now);
		flight_free(f);
		return 0;
	}
	r = store_job_start(s->d->store, &f->job, l->cfg->name, wall, f->charged,
	                    wall > f->job.queued_since ? wall - f->job.queued_since : 0,
	                    &f->attempt_id);
	if (r == -ESTALE) {
		flight_free(f);
		return 1;
	}
	if (r < 0) {
		log_err("lane %s: cannot start job %lld: %s; retrying in 1s", l->cfg->name,
		        (long long)f->job.id, store_errmsg(s->d->store));
		flight_free(f);
		arm(l, now + 1000, now);
		return 0;
	}
	gate_launch(&l->gate, f->charged, now, rand01(s), &f->mark);
	f->pump = s->pumps;
	l->launched++;
	LIST_INSERT_HEAD(&l->flights, f, link);
	r = lane_url(l->cfg, f->job.url, url, sizeof(url));
	if (r == 0) {
		req = (struct up_request){
		    .url = url,
		    .api_key = l->key,
		    .body = f->job.body,
		    .body_len = f->job.body_len,
		    .connect_timeout_ms = (long)l->cfg->connect_timeout_ms,
		    .timeout_ms = (long)l->cfg->request_timeout_ms,
		    .userdata = f,
		};
		r = upstream_start(s->up, &req, &f->t);
	}
	if (r < 0) {
		memset(&fake, 0, sizeof(fake));
		fake.transport_error = -r;
		fake.error = "could not start the transfer";
		fake.body = "";
		on_done(f, &fake);
	}
	return 1;
}

static void pump_lane(struct lane *l)
{
	while (!l->s->stopping && launch_next(l))
		;
}

/* The database never saw this pump's launches: take them back. */
static void undo_pump(struct scheduler *s)
{
	int64_t now = time_mono_ms();
	struct flight *f, *next;
	int i;

	for (i = 0; i < s->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		for (f = LIST_FIRST(&l->flights); f; f = next) {
			next = LIST_NEXT(f, link);
			if (f->pump != s->pumps)
				continue;
			LIST_REMOVE(f, link);
			upstream_abort(s->up, f->t);
			gate_done(&l->gate, f->charged, 0, now); /* nothing was spent */
			l->launched--;
			flight_free(f);
		}
		arm(l, now + 1000, now);
	}
}

/*
 * The launches of one pump share one transaction (each job's start is a
 * savepoint in it). Transfers only go out on a later loop turn, so if the
 * commit fails they are taken back before a byte was sent.
 */
static void pump(struct scheduler *s, struct lane *only)
{
	struct store *st = s->d->store;
	int i, grouped;

	s->pumps++;
	grouped = store_tx_begin(st) == 0;
	for (i = 0; i < s->n_lanes; i++)
		if (!only || only == &s->lanes[i])
			pump_lane(&s->lanes[i]);
	if (grouped && store_tx_commit(st) < 0) {
		log_err("cannot record the launches of jobs: %s; trying again in 1s",
		        store_errmsg(st));
		store_tx_rollback(st);
		undo_pump(s);
	}
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
	pump(arg, NULL);
}

static void lane_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;

	pump(l->s, l);
}

void sched_kick(struct scheduler *s)
{
	if (!s->stopping)
		event_active(s->pump, 0, 0);
}

/* Outcomes reached the database: retried jobs may be ready. */
static void on_written(void *userdata)
{
	sched_kick(userdata);
}

/* What the answer's JSON body says: usage and error. */
struct answer {
	json_object *root;
	int64_t prompt, completion, total;
	const char *code, *message;
};

static int64_t get_i64(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_int)
	           ? json_object_get_int64(v)
	           : -1;
}

static const char *get_str(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
	           ? json_object_get_string(v)
	           : NULL;
}

static void parse_answer(const struct up_response *resp, struct answer *a)
{
	json_object *u, *e;

	memset(a, 0, sizeof(*a));
	a->prompt = a->completion = a->total = -1;
	if (resp->body_len == 0)
		return;
	a->root = json_tokener_parse(resp->body);
	if (!a->root || !json_object_is_type(a->root, json_type_object))
		return;
	if (json_object_object_get_ex(a->root, "usage", &u)) {
		a->prompt = get_i64(u, "prompt_tokens");
		if (a->prompt < 0)
			a->prompt = get_i64(u, "input_tokens");
		a->completion = get_i64(u, "completion_tokens");
		if (a->completion < 0)
			a->completion = get_i64(u, "output_tokens");
		a->total = get_i64(u, "total_tokens");
		if (a->total < 0 && a->prompt >= 0)
			a->total = a->prompt + (a->completion > 0 ? a->completion : 0);
	}
	if (json_object_object_get_ex(a->root, "error", &e) &&
	    json_object_is_type(e, json_type_object)) {
		a->code = get_str(e, "code");
		if (!a->code)
			a->code = get_str(e, "type");
		a->message = get_str(e, "message");
	}
}

static void on_done(void *userdata, const struct up_response *resp)
{
	struct flight *f = userdata;
	struct lane *l = f->lane;
	struct scheduler *s = l->s;
	const struct lane_config *c = l->cfg;
	int64_t now = time_mono_ms(), wall = time_wall_ms(), ra, wait, pause;
	struct store_outcome o = {0};
	struct gate_feedback fb;
	struct retry_input in;
	enum retry_verdict v;
	struct answer a;
	char code[64], msg[512];
	int tries = f->job.attempts + 1;

	parse_answer(resp, &a);
	in = (struct retry_input){
	    .status = resp->status,
	    .should_retry =
	        retry_parse_should_retry(resp->hdr.should_retry[0] ? resp->hdr.should_retry : NULL),
	    .error_code = a.code,
	    .error_msg = a.message,
	};
	v = retry_classify(&in);
	retry_parse_feedback(resp->hdr.limit_tokens, resp->hdr.remaining_tokens,
	                     resp->hdr.reset_tokens, resp->hdr.limit_requests,
	                     resp->hdr.remaining_requests, resp->hdr.reset_requests, &fb);
	gate_observe(&l->gate, &fb, &f->mark, now);
	gate_done(&l->gate, f->charged, v == RV_SUCCEEDED ? a.total : -1, now);
	if (resp->status > 0)
		l->avg_latency_ms = l->avg_latency_ms
		                        ? (l->avg_latency_ms * 7 + resp->latency_ms) / 8
		                        : resp->latency_ms;
	ra = retry_after_ms(resp->hdr.retry_after_ms[0] ? resp->hdr.retry_after_ms : NULL,
	                    resp->hdr.retry_after[0] ? resp->hdr.retry_after : NULL, wall);

	o.status_code = resp->status;
	o.request_id = resp->hdr.request_id[0] ? resp->hdr.request_id : NULL;
	o.retry_after_ms = ra;
	o.prompt_tokens = a.prompt;
	o.completion_tokens = a.completion;
	o.total_tokens = a.total;
	o.latency_ms = resp->latency_ms;
	o.remaining_tokens = fb.remaining_tokens;
	o.remaining_requests = fb.remaining_requests;
	if (resp->status > 0) {
		o.response = resp->body;
		o.response_len = resp->body_len;
	}
	if (resp->status == 0) {
		snprintf(code, sizeof(code), "transport_error");
		snprintf(msg, sizeof(msg), "%s", resp->error ? resp->error : "transfer failed");
	} else {
		snprintf(code, sizeof(code), "%s",
		         a.code              ? a.code
		         : v == RV_SUCCEEDED ? ""
		                             : "http_error");
		if (a.message)
			snprintf(msg, sizeof(msg), "%s", a.message);
		else
			snprintf(msg, sizeof(msg), "upstream answered HTTP %d", resp->status);
	}
	if (v != RV_SUCCEEDED) {
		o.error_code = code;
		o.error_message = msg;
	}

	switch (v) {
	case RV_SUCCEEDED:
		o.job_state = "succeeded";
		o.attempt_outcome = "succeeded";
		l->succeeded++;
		break;
	case RV_FAILED:
		o.job_state = "failed";
		o.attempt_outcome = "failed";
		l->failed++;
		break;
	case RV_QUOTA:
		o.job_state = "failed";
		o.attempt_outcome = "failed";
		o.error_code = "insufficient_quota";
		l->failed++;
		gate_pause(&l->gate, now + c->quota_pause_ms,
		           "insufficient_quota: the key has no credit left");
		log_warn("lane %s: upstream says insufficient_quota; job %s failed and the lane is "
		         "paused for %llds: add credit or check the key's billing",
		         c->name, f->job.custom_id, (long long)(c->quota_pause_ms / 1000));
		break;
	case RV_RATE_LIMITED:
	case RV_RETRY:
		o.attempt_outcome = v == RV_RATE_LIMITED ? "rate_limited" : "retry";
		wait = retry_backoff_ms(tries, c->backoff_base_ms, c->backoff_cap_ms, rand01(s));
		if (v == RV_RATE_LIMITED) {
			l->rate_limited++;
			pause = ra >= 0 ? ra : wait;
			if (pause > c->retry_after_max_ms)
				pause = c->retry_after_max_ms;
			gate_pause(&l->gate, now + pause, "429 from upstream");
			gate_drain(&l->gate, now);
			log_info("lane %s: 429, pausing %lldms", c->name, (long long)pause);
		}
		if (ra > wait)
			wait = ra < c->retry_after_max_ms ? ra : c->retry_after_max_ms;
		if (tries >= c->retry_max_attempts) {
			o.job_state = "failed";
			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
			         " (gave up after %d attempts)", tries);
			l->failed++;
		} else {
			o.not_before = wall + wait;
			l->retried++;
		}
		break;
	}
	writeback_add(s->wb, f->job.id, f->attempt_id, &o, wall);
	if (v != RV_SUCCEEDED)
		log_debug("job %s: %s (HTTP %d, %s)", f->job.custom_id, retry_verdict_name(v),
		          resp->status, msg);
	json_object_put(a.root);
	LIST_REMOVE(f, link);
	flight_free(f);
	sched_kick(s);
}

int sched_new(struct llmqd *d, struct scheduler **ret)
{
	struct scheduler *s;
	int64_t now = time_mono_ms();
	int i, r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->d = d;
	if (getrandom(&s->rng, sizeof(s->rng), 0) != (ssize_t)sizeof(s->rng) || !s->rng)
		s->rng = (uint64_t)time_wall_ms() | 1;
	r = upstream_new(d->base, on_done, &s->up);
	if (r < 0)
		goto fail;
	s->pump = event_new(d->base, -1, 0, pump_cb, s);
	if (!s->pump) {
		r = -ENOMEM;
		goto fail;
	}
	r = writeback_new(d->base, d->store, on_written, s, &s->wb);
	if (r < 0)
		goto fail;
	for (i = 0; i < d->cfg->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		l->s = s;
		l->cfg = &d->cfg->lanes[i];
		LIST_INIT(&l->flights);
		gate_init(&l->gate, &l->cfg->limits, now);
		r = lane_load_key(l->cfg, &l->key);
		if (r < 0)
			goto fail;
		l->timer = evtimer_new(d->base, lane_timer_cb, l);
		if (!l->timer) {
			r = -ENOMEM;
			goto fail;
		}
		s->n_lanes++;
	}
	*ret = s;
	return 0;
fail:
	sched_free(s);
	return r;
}

void sched_stop(struct scheduler *s)
{
	struct store_outcome o = {0};
	struct flight *f;
	int i;

	s->stopping = 1;
	o.attempt_outcome = "interrupted";
	o.error_code = "interrupted";
	o.error_message = "llmqd stopped while the request was in flight";
	o.retry_after_ms = -1;
	o.prompt_tokens = o.completion_tokens = o.total_tokens = -1;
	o.latency_ms = -1;
	o.remaining_tokens = o.remaining_requests = -1;
	for (i = 0; i < s->n_lanes; i++) {
		while ((f = LIST_FIRST(&s->lanes[i].flights))) {
			LIST_REMOVE(f, link);
			upstream_abort(s->up, f->t);
			writeback_add(s->wb, f->job.id, f->attempt_id, &o, time_wall_ms());
			flight_free(f);
		}
	}
	if (s->wb && writeback_flush(s->wb) < 0)
		log_err("stopping with outcomes the database would not take; their jobs are "
		        "requeued at the next start");
}

void sched_free(struct scheduler *s)
{
	int i;

	if (!s)
		return;
	sched_stop(s);
	for (i = 0; i < s->n_lanes; i++) {
		if (s->lanes[i].timer)
			event_free(s->lanes[i].timer);
		if (s->lanes[i].key) {
			explicit_bzero(s->lanes[i].key, strlen(s->lanes[i].key));
			free(s->lanes[i].key);
		}
	}
	writeback_free(s->wb);
	if (s->pump)
		event_free(s->pump);
	upstream_free(s->up);
	free(s);
}

int sched_in_flight(const struct scheduler *s)
{
	return upstream_in_flight(s->up);
}

struct gate *sched_lane_gate(struct scheduler *s, const char *lane, int64_t *ret_avg_latency_ms)
{
	int i;

	for (i = 0; i < s->n_lanes; i++) {
		if (strcmp(s->lanes[i].cfg->name, lane) == 0) {
			if (ret_avg_latency_ms)
				*ret_avg_latency_ms = s->lanes[i].avg_latency_ms;
			return &s->lanes[i].gate;
		}
	}
	return NULL;
}

static void add_i64(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

int sched_lanes_json(struct scheduler *s, json_object **ret)
{
	int64_t now = time_mono_ms(), jobs, tokens;
	json_object *arr, *o;
	int i, r;

	arr = json_object_new_array();
	if (!arr)
		return -ENOMEM;
	for (i = 0; i < s->n_lanes; i++) {
		struct lane *l = &s->lanes[i];
		struct gate *g = &l->gate;

		r = store_backlog(s->d->store, l->cfg->name, &jobs, &tokens);
		if (r < 0) {
			json_object_put(arr);
			return r;
		}
		gate_when(g, 1, now, NULL); /* brings the buckets up to now */
		o = json_object_new_object();
		if (!o) {
			json_object_put(arr);
			return -ENOMEM;
		}
		json_object_object_add(o, "name", json_object_new_string(l->cfg->name));
		json_object_object_add(o, "base_url", json_object_new_string(l->cfg->base_url));
		json_object_object_add(o, "has_key", json_object_new_boolean(l->key != NULL));
		add_i64(o, "in_flight", g->in_flight);
		add_i64(o, "max_concurrency", g->lim.max_concurrency);
		add_i64(o, "stagger_ms", g->lim.stagger_ms);
		add_i64(o, "tpm_limit", g->lim.tpm);
		add_i64(o, "rpm_limit", g->lim.rpm);
		add_i64(o, "effective_tpm", gate_effective_tpm(g));
		add_i64(o, "tokens_available", (int64_t)g->tok);
		add_i64(o, "requests_available", (int64_t)g->req);
		add_i64(o, "paused_for_ms", g->paused_until > now ? g->paused_until - now : 0);
		json_object_object_add(
		    o, "pause_reason",
		    g->paused_until > now ? json_object_new_string(g->pause_reason) : NULL);
		add_i64(o, "queued_jobs", jobs);
		add_i64(o, "queued_tokens", tokens);
		add_i64(o, "drain_ms", admission_drain_ms(g, l->avg_latency_ms, jobs, tokens, now));
		add_i64(o, "avg_latency_ms", l->avg_latency_ms);
		add_i64(o, "launched", (int64_t)l->launched);
		add_i64(o, "succeeded", (int64_t)l->succeeded);
		add_i64(o, "failed", (int64_t)l->failed);
		add_i64(o, "retried", (int64_t)l->retried);
		add_i64(o, "rate_limited", (int64_t)l->rate_limited);
		json_object_array_add(arr, o);
	}
	*ret = arr;
	return 0;
}
