/*
 * scheduler.c - lanes, flights, interactive tickets and outcomes.
 *
 * A flight is one batch job in the air: the job row, its open attempt and
 * the reservation its lane's gate made. A ticket is one interactive call at
 * its lane's gate: queued in memory, then granted (the gate's reservation
 * taken) and flying under its owner, the HTTP face. Ownership: the scheduler
 * owns flights from launch until the upstream's done callback (or
 * sched_stop) frees them, and tickets from enqueue until sched_call_done,
 * sched_call_cancel or a refusal frees them.
 */
#include "scheduler.h"
#include "admission.h"
#include "config.h"
#include "hop.h"
#include "jsontext.h"
#include "lane.h"
#include "log.h"
#include "price.h"
#include "store.h"
#include "timeutil.h"
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

struct sched_ticket {
	struct lane *lane;
	struct sched_call_info info; /* its strings belong to the owner */
	int64_t enqueued;            /* monotonic */
	int64_t enqueued_wall;
	int64_t granted; /* monotonic; 0 while waiting */
	struct gate_mark mark;
	struct event *deadline;
	TAILQ_ENTRY(sched_ticket) link;
};

struct lane {
	struct scheduler *s;
	const struct lane_config *cfg;
	struct gate gate;
	char *key;
	struct event *timer;
	int64_t avg_latency_ms;
	char last_batch[32]; /* round-robin: the batch launched last */
	struct lane_stats stats;
	LIST_HEAD(, flight) flights;
	TAILQ_HEAD(, sched_ticket) waiting;
	int n_waiting;
	int64_t waiting_tokens;
	int faults;                /* tries in a row that reached no upstream */
	int64_t fault_since;       /* wall ms: the first of them */
	int64_t breaker_ms;        /* the breaker's current pause; 0 while closed */
	int64_t no_credit_since;   /* wall ms: insufficient_quota since; 0: the key has credit */
	int window_learned;        /* the window came from a 429 (now or before a restart) */
	int64_t window_phase;      /* where the provider's windows start, ms into a wall second */
	int64_t window_learned_at; /* wall ms */
	int64_t window_429_at;     /* mono: the last 429 that confirmed the short window */
	int64_t probation_since;   /* wall ms: the minute tried again; 0: not on probation */
	int64_t paused_at;         /* wall ms an operator paused it (llmq pause); 0: not */
	int64_t paused_by;         /* and who: a uid, -1 when unknown */
};

/* The circuit breaker: after BREAKER_TRIP tries in a row reached no upstream,
 * the lane pauses, then probes with one request, doubling the pause. */
#define BREAKER_TRIP 3
#define BREAKER_FIRST_MS 1000
#define BREAKER_MAX_MS 60000

struct scheduler {
	struct llmqd *d;
	struct upstream *up;
	struct event *pump;
	struct event *expiry; /* batches whose completion window ended */
	struct writeback *wb;
	uint64_t pumps;
	struct lane lanes[CONFIG_MAX_LANES];
	int n_lanes;
	uint64_t rng;
	int stopping;
	char id[HOP_ID_LEN + 1]; /* this llmqd, in the hop header of what it sends */
};

enum launch_result {
	LAUNCHED,
	MUST_WAIT,  /* the gate holds the lane back */
	SLOTS_FULL, /* the class holds all the slots it may */
	NOTHING,    /* no work of that class is ready */
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

static enum launch_result launch_job(struct lane *l)
{
	struct scheduler *s = l->s;
	struct up_request req;
	struct up_response fake;
	struct flight *f;
	int64_t now = time_mono_ms(), wall = time_wall_ms(), when, next, waited;
	char url[1024];
	int r;

	when = gate_when(&l->gate, GATE_BATCH, 1, now, NULL);
	if (when == GATE_NEVER)
		return SLOTS_FULL;
	if (when > now) {
		arm(l, when, now);
		return MUST_WAIT;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		arm(l, now + 1000, now);
		return MUST_WAIT;
	}
	r = store_next_ready(s->d->store, l->cfg->name, wall, l->last_batch, &f->job);
	if (r <= 0) {
		flight_free(f);
		if (r < 0) {
			log_err("lane %s: cannot read the queue: %s; retrying in 1s", l->cfg->name,
			        store_errmsg(s->d->store));
			arm(l, now + 1000, now);
			return MUST_WAIT;
		}
		if (store_next_wakeup(s->d->store, l->cfg->name, &next) == 0 && next != INT64_MAX)
			arm(l, now + (next > wall ? next - wall : 0), now);
		return NOTHING;
	}
	f->lane = l;
	f->charged = f->job.est_tokens;
	when = gate_when(&l->gate, GATE_BATCH, f->charged, now, NULL);
	if (when > now) {
		arm(l, when, now);
		flight_free(f);
		return MUST_WAIT;
	}
	waited = wall > f->job.queued_since ? wall - f->job.queued_since : 0;
	r = store_job_start(s->d->store, &f->job, l->cfg->name, wall, f->charged, waited,
	                    &f->attempt_id);
	if (r == -ESTALE) {
		flight_free(f);
		return LAUNCHED;
	}
	if (r < 0) {
		/* A lock another program holds is reported once, by health.c. */
		if (r != -EBUSY)
			log_err("lane %s: cannot start job %lld: %s; retrying in 1s", l->cfg->name,
			        (long long)f->job.id, store_errmsg(s->d->store));
		flight_free(f);
		arm(l, now + 1000, now);
		return MUST_WAIT;
	}
	gate_launch(&l->gate, GATE_BATCH, f->charged, now, rand01(s), &f->mark);
	snprintf(l->last_batch, sizeof(l->last_batch), "%s", f->job.batch_id);
	f->pump = s->pumps;
	l->stats.tokens_charged[GATE_BATCH] += (uint64_t)f->charged;
	stats_observe(&l->stats.gate_wait[GATE_BATCH], waited);
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
		    .done = on_done,
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
	return LAUNCHED;
}

static void ticket_free(struct sched_ticket *t)
{
	if (!t)
		return;
	if (t->deadline)
		event_free(t->deadline);
	free(t);
}

static void unqueue(struct sched_ticket *t)
{
	struct lane *l = t->lane;

	TAILQ_REMOVE(&l->waiting, t, link);
	l->n_waiting--;
	l->waiting_tokens -= t->info.cost;
	evtimer_del(t->deadline);
}

static enum launch_result launch_call(struct lane *l)
{
	struct sched_ticket *t = TAILQ_FIRST(&l->waiting);
	int64_t now = time_mono_ms(), when;

	if (!t)
		return NOTHING;
	when = gate_when(&l->gate, GATE_INTERACTIVE, t->info.cost, now, NULL);
	if (when == GATE_NEVER)
		return MUST_WAIT;
	if (when > now) {
		arm(l, when, now);
		return MUST_WAIT;
	}
	unqueue(t);
	gate_launch(&l->gate, GATE_INTERACTIVE, t->info.cost, now, rand01(l->s), &t->mark);
	t->granted = now;
	l->stats.tokens_charged[GATE_INTERACTIVE] += (uint64_t)t->info.cost;
	stats_observe(&l->stats.gate_wait[GATE_INTERACTIVE], now - t->enqueued);
	t->info.grant(t->info.ud);
	return LAUNCHED;
}

/*
 * A learned short window not confirmed by a 429 for window_probation_seconds
 * (an overload's 429 teaches it as well as a real short window does, and it
 * would cost throughput for good): try
 * the provider's minute again, from a window's budget (gate_set_window), on
 * probation; the next 429 that shows the short window brings it back.
 */
static void sched_probation(struct lane *l, int64_t now)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)], quiet[32];
	int64_t wall = time_wall_ms();

	if (!l->window_learned || l->gate.window != GATE_WINDOW_SECOND ||
	    c->provider_window != GATE_WINDOW_AUTO ||
	    now - l->window_429_at < c->window_probation_ms)
		return;
	gate_set_window(&l->gate, GATE_WINDOW_MINUTE, now);
	l->window_learned = 0;
	l->probation_since = wall;
	if (store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "minute", wall,
	                          -1) < 0)
		log_debug("lane %s: the minute's probation is not remembered: %s", c->name,
		          store_errmsg(l->s->d->store));
	time_format_duration(c->window_probation_ms, quiet, sizeof(quiet));
	log_info("lane %s: no 429 has confirmed the provider's short window for %s: the lane "
	         "tries its minute again, slowly (on probation; a 429 brings the short window "
	         "back)",
	         c->name, quiet);
}

/*
 * Interactive calls go first, unless they have had more than their share
 * lately and a batch job is ready; a batch job never overtakes a call that
 * is preferred but must wait.
 */
static void pump_lane(struct lane *l)
{
	enum launch_result r;

	if (l->paused_at)
		return; /* by an operator: what flies finishes, nothing new goes */
	while (!l->s->stopping) {
		if (l->n_waiting > 0 &&
		    gate_first_class(&l->gate, time_mono_ms()) == GATE_INTERACTIVE) {
			if (launch_call(l) == LAUNCHED)
				continue;
			return;
		}
		r = launch_job(l);
		if (r == LAUNCHED)
			continue;
		/* Callers may still use what a batch may not: the reserved slots. */
		if ((r == NOTHING || r == SLOTS_FULL) && launch_call(l) == LAUNCHED)
			continue;
		return;
	}
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
			gate_done(&l->gate, GATE_BATCH, f->charged, 0, now); /* nothing was spent */
			l->stats.tokens_charged[GATE_BATCH] -= (uint64_t)f->charged;
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
	int i, grouped, r;

	s->pumps++;
	grouped = store_tx_begin(st) == 0;
	for (i = 0; i < s->n_lanes; i++)
		if (!only || only == &s->lanes[i])
			pump_lane(&s->lanes[i]);
	if (grouped && (r = store_tx_commit(st)) < 0) {
		if (r != -EBUSY)
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

void sched_after_turn(struct scheduler *s)
{
	writeback_after_turn(s->wb);
}

/* Outcomes reached the database: retried jobs may be ready. */
static void on_written(void *userdata)
{
	sched_kick(userdata);
}

/* What the answer's JSON body says: usage and error. */
struct answer {
	json_object *root;
	int64_t prompt, completion, total, cached;
	const char *code, *message;
	int64_t retry_after_ms; /* -1: none asked for */
	struct gate_feedback fb;
};

static const char *get_str(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
	           ? json_object_get_string(v)
	           : NULL;
}

/*
 * A large answer that succeeded is not parsed whole (json-c would hold it
 * twice more): only its "usage" member, found from the end, where the
 * providers put it.
 */
#define ANSWER_PARSE_MAX (256u << 10)

static json_object *parse_usage_only(const struct up_response *resp)
{
	const char *u = jsontext_last_object(resp->body, resp->body_len, "usage");
	struct json_tokener *tok;
	json_object *o = NULL;

	if (!u || !(tok = json_tokener_new()))
		return NULL;
	o = json_tokener_parse_ex(tok, u, (int)(resp->body + resp->body_len - u));
	json_tokener_free(tok);
	return o;
}

static void sched_answer_usage(struct answer *a, json_object *usage)
{
	struct price_usage pu;

	price_usage_read(usage, &pu);
	a->prompt = pu.prompt;
	a->cached = pu.cached;
	a->completion = pu.completion;
	a->total = pu.total;
}

/* What the answer cost at the prices of now: nano-dollars, -1 when model has none. */
static int64_t sched_cost(const struct scheduler *s, const char *model, const struct answer *a)
{
	const struct price *p = price_find(&s->d->cfg->prices, model);
	struct price_usage pu = {a->prompt, a->cached, a->completion, a->total};

	return p ? price_cost(p, &pu) : -1;
}

static void parse_answer(const struct up_response *resp, struct answer *a)
{
	json_object *u = NULL, *e;

	memset(a, 0, sizeof(*a));
	a->prompt = a->completion = a->total = a->cached = -1;
	if (resp->body_len == 0)
		return;
	if (resp->body_len > ANSWER_PARSE_MAX && resp->status >= 200 && resp->status < 300) {
		a->root = parse_usage_only(resp);
		u = a->root;
	} else {
		a->root = json_tokener_parse(resp->body);
		if (a->root && json_object_is_type(a->root, json_type_object))
			json_object_object_get_ex(a->root, "usage", &u);
	}
	if (!a->root || !json_object_is_type(a->root, json_type_object))
		return;
	sched_answer_usage(a, u);
	if (json_object_object_get_ex(a->root, "error", &e) &&
	    json_object_is_type(e, json_type_object)) {
		a->code = get_str(e, "code");
		if (!a->code)
			a->code = get_str(e, "type");
		a->message = get_str(e, "message");
	}
}

static enum stat_outcome outcome_of(enum retry_verdict v)
{
	switch (v) {
	case RV_SUCCEEDED:
		return SO_SUCCEEDED;
	case RV_RETRY:
	case RV_UNREACHABLE:
		return SO_RETRY;
	case RV_RATE_LIMITED:
		return SO_RATE_LIMITED;
	default:
		return SO_FAILED;
	}
}

/*
 * What an answer does to its lane's gate, whichever class sent it: the
 * provider's headers and the usage reconcile the buckets. streamed: the
 * usage a relayed stream reported (NULL: take it from the body). Fills in,
 * for retry_decide(), the classified answer.
 */
static enum retry_verdict settle(struct lane *l, enum gate_class cls, const struct gate_mark *mark,
                                 int64_t charged, const struct up_response *resp,
                                 const struct price_usage *streamed, struct answer *a,
                                 struct retry_input *in)
{
	int64_t now = time_mono_ms(), wall = time_wall_ms();
	enum retry_verdict v;

	parse_answer(resp, a);
	if (streamed && streamed->total >= 0 && a->total < 0) {
		a->prompt = streamed->prompt;
		a->cached = streamed->cached;
		a->completion = streamed->completion;
		a->total = streamed->total;
	}
	*in = (struct retry_input){
	    .status = resp->status,
	    .too_big = resp->too_big,
	    .unsent = resp->status == 0 && resp->sends == 0,
	    .should_retry =
	        retry_parse_should_retry(resp->hdr.should_retry[0] ? resp->hdr.should_retry : NULL),
	    .error_code = a->code,
	    .error_msg = a->message,
	};
	v = retry_classify(in);
	retry_parse_feedback(resp->hdr.limit_tokens, resp->hdr.remaining_tokens,
	                     resp->hdr.reset_tokens, resp->hdr.limit_requests,
	                     resp->hdr.remaining_requests, resp->hdr.reset_requests, &a->fb);
	gate_observe(&l->gate, &a->fb, mark, now);
	if (v == RV_SUCCEEDED)
		gate_confirm(&l->gate, mark);
	gate_done(&l->gate, cls, charged, retry_spent(in, v, a->total), now);
	if (resp->sends > 1) {
		/* libcurl sent it again after a reused connection died: the upstream saw
		 * (and may bill) each send. */
		gate_charge(&l->gate, charged * (resp->sends - 1), resp->sends - 1, now);
		l->stats.tokens_charged[cls] += (uint64_t)(charged * (resp->sends - 1));
	}
	a->retry_after_ms =
	    retry_after_ms(resp->hdr.retry_after_ms[0] ? resp->hdr.retry_after_ms : NULL,
	                   resp->hdr.retry_after[0] ? resp->hdr.retry_after : NULL, wall);
	if (resp->status > 0) {
		l->avg_latency_ms = l->avg_latency_ms
		                        ? (l->avg_latency_ms * 7 + resp->latency_ms) / 8
		                        : resp->latency_ms;
		stats_observe(&l->stats.latency[cls], resp->latency_ms);
	}
	if (resp->status == 429)
		l->stats.upstream_429[cls]++;
	if (v == RV_SUCCEEDED && a->total > 0)
		l->stats.tokens_used[cls] += (uint64_t)a->total;
	return v;
}

static void lane_policy(const struct lane_config *c, struct retry_policy *p)
{
	*p = (struct retry_policy){
	    .max_attempts = c->retry_max_attempts,
	    .backoff_base_ms = c->backoff_base_ms,
	    .backoff_cap_ms = c->backoff_cap_ms,
	    .retry_after_max_ms = c->retry_after_max_ms,
	    .quota_pause_ms = c->quota_pause_ms,
	    .lane_wait_max_ms = c->lane_wait_max_ms,
	};
}

/*
 * A 429 came although the provider's own figures said there was room: it
 * enforces its limits over windows shorter than a minute. The lane paces
 * from now on, and remembers it for this upstream across restarts.
 */
static void learn_window(struct lane *l, int64_t now)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)];
	int64_t wall = time_wall_ms();
	int r;

	if (c->provider_window != GATE_WINDOW_AUTO)
		return;
	if (l->gate.window == GATE_WINDOW_SECOND) {
		l->window_429_at = now; /* confirmed */
		return;
	}
	gate_set_window(&l->gate, GATE_WINDOW_SECOND, now);
	l->window_learned = 1;
	l->window_learned_at = wall;
	l->window_429_at = now;
	if (l->probation_since)
		log_info("lane %s: the minute was tried again and a 429 came: the short window "
		         "stays (probation ended)",
		         c->name);
	l->probation_since = 0;
	r = store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "second", wall,
	                          -1);
	log_warn("lane %s: a 429 came although the provider's headers said there was room: it "
	         "enforces its limits over windows shorter than a minute. The lane paces from "
	         "now on (bursts of at most 1s)%s; set provider_window to pin it",
	         c->name, r < 0 ? " (not remembered: the database refused)" : ", remembered");
}

/* The provider's windows end at now + retry_after: align the lane's, and keep
 * their phase (of the wall clock's seconds) for the next start. */
static void align_window(struct lane *l, int64_t now, int64_t retry_after)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)];
	int64_t phase = (time_wall_ms() + retry_after) % GATE_WINDOW_MS;

	gate_align_window(&l->gate, now + retry_after, now);
	if (l->window_phase == phase || c->provider_window != GATE_WINDOW_AUTO)
		return;
	l->window_phase = phase;
	if (store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "second",
	                          l->window_learned_at, phase) < 0)
		log_debug("lane %s: the window's phase is not remembered: %s", c->name,
		          store_errmsg(l->s->d->store));
}

/* The window a lane starts with: pinned by the config, else learned before. */
static void start_window(struct lane *l, int64_t now)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)], w[16];
	int64_t at = 0, phase = -1, wall = time_wall_ms();

	if (c->provider_window != GATE_WINDOW_AUTO) {
		gate_set_window(&l->gate, c->provider_window, now);
		return;
	}
	l->window_phase = -1;
	if (store_lane_window_get(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), w, sizeof(w), &at,
	                          &phase) == 1 &&
	    strcmp(w, "second") == 0) {
		gate_set_window(&l->gate, GATE_WINDOW_SECOND, now);
		l->window_learned = 1;
		l->window_learned_at = at;
		l->window_429_at = now;
		/* Windows kept their phase of the wall clock's seconds: align at once. */
		if (phase >= 0) {
			l->window_phase = phase;
			gate_align_window(&l->gate,
			                  now + (phase - wall % GATE_WINDOW_MS + GATE_WINDOW_MS) %
			                            GATE_WINDOW_MS,
			                  now);
		}
	}
}

/*
 * What a decision does to the lane: pauses, the circuit breaker (several
 * tries in a row that reached no upstream pause the lane, then one request
 * probes it, backing off), running out of credit (paused, probed once per
 * pause). error says what the last failure was, for the log.
 */
static void apply_to_lane(struct lane *l, const struct retry_decision *d, const char *error,
                          int64_t retry_after)
{
	const struct lane_config *c = l->cfg;
	int64_t now = time_mono_ms();
	char why[96];

	switch (d->lane) {
	case RL_UNREACHABLE:
		if (l->faults == 0)
			l->fault_since = time_wall_ms();
		if (++l->faults < BREAKER_TRIP)
			return;
		l->breaker_ms = l->breaker_ms ? l->breaker_ms * 2 : BREAKER_FIRST_MS;
		if (l->breaker_ms > BREAKER_MAX_MS)
			l->breaker_ms = BREAKER_MAX_MS;
		snprintf(why, sizeof(why), "upstream unreachable; probing every %llds",
		         (long long)(l->breaker_ms / 1000));
		gate_pause(&l->gate, now + l->breaker_ms, why);
		l->gate.probe = 1;
		if (l->faults == BREAKER_TRIP)
			log_warn(
			    "lane %s: the upstream could not be reached %d times in a row (%s); "
			    "the lane pauses and probes it with one request, backing off up "
			    "to %llds. Queued jobs keep their attempts",
			    c->name, BREAKER_TRIP, error ? error : "no answer",
			    (long long)(BREAKER_MAX_MS / 1000));
		return;
	case RL_QUOTA:
		if (!l->no_credit_since)
			l->no_credit_since = time_wall_ms();
		snprintf(why, sizeof(why), "insufficient_quota: probing every %llds",
		         (long long)(c->quota_pause_ms / 1000));
		gate_pause(&l->gate, now + d->lane_pause_ms, why);
		if (!l->gate.probe)
			log_warn(
			    "lane %s: upstream says insufficient_quota: the key has no credit. "
			    "The lane pauses and tries one request every %llds; its jobs stay "
			    "queued until their batch's window ends: add credit or check the "
			    "key's billing",
			    c->name, (long long)(c->quota_pause_ms / 1000));
		l->gate.probe = 1;
		break;
	case RL_RATE_LIMITED:
		gate_pause(&l->gate, now + d->lane_pause_ms, "429 from upstream");
		gate_drain(&l->gate, now);
		log_info("lane %s: 429, pausing %lldms", c->name, (long long)d->lane_pause_ms);
		if (d->learn_short_window || l->gate.window == GATE_WINDOW_SECOND)
			learn_window(l, now);
		/* The provider's window ends when its 429 says to come back. */
		if (l->gate.window == GATE_WINDOW_SECOND && retry_after >= 0 &&
		    retry_after <= GATE_WINDOW_MS)
			align_window(l, now, retry_after);
		l->gate.probe = 0;
		l->no_credit_since = 0; /* a rate limit is not a lack of credit */
		break;
	case RL_ANSWERED:
		if (l->gate.probe || l->faults >= BREAKER_TRIP)
			log_info("lane %s: the upstream answers again; the lane resumes", c->name);
		l->gate.probe = 0;
		l->no_credit_since = 0;
		break;
	}
	l->faults = 0;
	l->breaker_ms = 0;
}

/* What the answer was, for the job's row and the log. */
static void describe(const struct up_response *resp, const struct answer *a, enum retry_verdict v,
                     char *code, size_t clen, char *msg, size_t mlen)
{
	if (resp->status == 0) {
		snprintf(code, clen, "%s",
		         resp->too_big         ? "response_too_large"
		         : v == RV_UNREACHABLE ? "upstream_unreachable"
		                               : "transport_error");
		snprintf(msg, mlen, "%s", resp->error ? resp->error : "transfer failed");
		return;
	}
	snprintf(code, clen, "%s", a->code ? a->code : v == RV_SUCCEEDED ? "" : "http_error");
	if (a->message)
		snprintf(msg, mlen, "%s", a->message);
	else
		snprintf(msg, mlen, "upstream answered HTTP %d", resp->status);
}

/* A batch job's try ended: parse the answer, decide (retry.c), apply. */
static void on_done(void *userdata, const struct up_response *resp)
{
	struct flight *f = userdata;
	struct lane *l = f->lane;
	struct scheduler *s = l->s;
	const struct lane_config *c = l->cfg;
	int64_t wall = time_wall_ms();
	struct store_outcome o = {0};
	struct retry_input in;
	struct retry_policy pol;
	struct retry_decision d;
	struct retry_job job = {f->job.attempts + 1, f->job.free_tries, f->job.lane_wait_ms};
	enum stat_outcome so;
	struct answer a;
	char code[64], msg[512], *kept = NULL;
	size_t n;

	/* Parse. */
	settle(l, GATE_BATCH, &f->mark, f->charged, resp, NULL, &a, &in);
	describe(resp, &a, retry_classify(&in), code, sizeof(code), msg, sizeof(msg));
	/* Decide. */
	lane_policy(c, &pol);
	retry_decide(&in, a.retry_after_ms, f->mark.room, &pol, &job, rand01(s), &d);
	/* Apply: to the lane, then to the job. */
	apply_to_lane(l, &d, msg, a.retry_after_ms);
	o.status_code = resp->status;
	o.request_id = resp->hdr.request_id[0] ? resp->hdr.request_id : NULL;
	o.retry_after_ms = a.retry_after_ms;
	o.prompt_tokens = a.prompt;
	o.completion_tokens = a.completion;
	o.total_tokens = a.total;
	o.cached_tokens = a.cached;
	o.cost_nusd = sched_cost(s, f->job.model, &a);
	o.latency_ms = resp->latency_ms;
	o.remaining_tokens = a.fb.remaining_tokens;
	o.remaining_requests = a.fb.remaining_requests;
	o.lost_sends = resp->sends > 1 ? resp->sends - 1 : 0;
	if (resp->status > 0 && resp->body_owner) {
		/* The answer is kept as it came, on one line, without a copy. */
		kept = *resp->body_owner;
		*resp->body_owner = NULL;
		o.response_len = resp->body_len;
		o.response_json = jsontext_compact(kept, &o.response_len) == 0;
		kept[o.response_len] = '\0';
		o.response = kept;
	}
	if (d.verdict != RV_SUCCEEDED) {
		o.error_code = code;
		o.error_message = msg;
	}
	so = outcome_of(d.verdict);
	switch (d.job) {
	case RJ_SUCCEED:
		o.job_state = o.attempt_outcome = "succeeded";
		break;
	case RJ_FAIL:
		/* The last try: the attempt says what really became of the job. */
		o.job_state = o.attempt_outcome = "failed";
		so = SO_FAILED;
		n = strlen(msg);
		if (d.give_up == RG_ATTEMPTS)
			snprintf(msg + n, sizeof(msg) - n, " (gave up after %d attempts)",
			         job.tries - job.free_tries);
		else if (d.give_up == RG_LANE_WAIT)
			snprintf(msg + n, sizeof(msg) - n,
			         " (gave up after waiting %llds for the lane: rate limited or "
			         "unreachable)",
			         (long long)((job.lane_wait_ms + d.lane_wait_ms) / 1000));
		break;
	case RJ_REQUEUE:
		/* The schema's outcomes: a 429 is rate_limited; the error_code tells the
		 * rest (insufficient_quota, upstream_unreachable). */
		o.attempt_outcome = d.verdict == RV_RATE_LIMITED ? "rate_limited" : "retry";
		o.not_before = wall + d.wait_ms;
		o.free_try = !d.counts;
		o.lane_wait_ms = d.lane_wait_ms;
		break;
	}
	l->stats.requests[GATE_BATCH][so]++;
	writeback_add(s->wb, f->job.id, f->attempt_id, &o, wall, kept);
	if (d.verdict != RV_SUCCEEDED) {
		struct log_fields lf = {f->job.batch_id, c->name, f->job.custom_id};

		/* A job given up is worth a warning; a try that is retried, a note. */
		log_ctx(o.job_state         ? LOG_WARNING
		        : resp->status == 0 ? LOG_INFO
		                            : LOG_DEBUG,
		        &lf, "batch %s job %s: %s%s (HTTP %d: %s)", f->job.batch_id,
		        f->job.custom_id, o.job_state ? "failed" : "will retry: ",
		        o.job_state ? "" : retry_verdict_name(d.verdict), resp->status, msg);
	}
	json_object_put(a.root);
	LIST_REMOVE(f, link);
	flight_free(f);
	sched_kick(s);
}

static struct lane *lane_by_name(const struct scheduler *s, const char *name)
{
	int i = sched_lane_index(s, name);

	return i < 0 ? NULL : (struct lane *)&s->lanes[i];
}

static void record_call(struct lane *l, const struct sched_ticket *t, const char *outcome,
                        const struct up_response *resp, const struct answer *a,
                        const char *error_code, int64_t retry_after_ms, const char *response_body)
{
	int64_t now = time_mono_ms();
	int bodies = l->s->d->cfg->http_log_bodies;
	struct store_call c = {
	    .call_id = t->info.call_id,
	    .try_no = t->info.try_no,
	    .lane = l->cfg->name,
	    .endpoint = t->info.endpoint,
	    .model = t->info.model,
	    .stream = t->info.stream,
	    .uid = t->info.uid,
	    .started_at = t->enqueued_wall,
	    .ended_at = t->enqueued_wall + (now - t->enqueued),
	    .outcome = outcome,
	    .status_code = resp ? resp->status : 0,
	    .error_code = error_code,
	    .retry_after_ms = retry_after_ms,
	    .tokens_charged = t->granted ? t->info.cost : 0,
	    .tokens_used = a ? a->total : -1,
	    .gate_wait_ms = (t->granted ? t->granted : now) - t->enqueued,
	    .latency_ms = resp && resp->status > 0 ? resp->latency_ms : -1,
	    .request_id = resp && resp->hdr.request_id[0] ? resp->hdr.request_id : NULL,
	    .request_body = bodies ? t->info.request_body : NULL,
	    .response_body = bodies ? response_body : NULL,
	    .prompt_tokens = a ? a->prompt : -1,
	    .cached_tokens = a ? a->cached : -1,
	    .completion_tokens = a ? a->completion : -1,
	    .cost_nusd = -1,
	};

	if (a && strcmp(outcome, "refused") != 0)
		c.cost_nusd = sched_cost(l->s, t->info.model, a);

	writeback_add_call(l->s->wb, &c);
}

/* How long the gate would make this call wait, from a copy of the gate. */
static int64_t predicted_wait(struct lane *l, int64_t cost, int64_t now)
{
	struct gate g = l->gate;

	gate_refill(&g, now);
	return admission_call_wait_ms(&g, l->avg_latency_ms, l->n_waiting, l->waiting_tokens, cost,
	                              now);
}

static void refuse_ticket(struct sched_ticket *t, const char *code, int64_t retry_after_ms)
{
	struct lane *l = t->lane;

	l->stats.requests[GATE_INTERACTIVE][SO_REFUSED]++;
	record_call(l, t, "refused", NULL, NULL, code, retry_after_ms, NULL);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_ticket *t = arg;
	struct lane *l = t->lane;
	int64_t now = time_mono_ms(), ra;

	unqueue(t);
	ra = predicted_wait(l, t->info.cost, now);
	if (ra < 1000)
		ra = 1000;
	refuse_ticket(t, "gate_wait_exceeded", ra);
	t->info.refuse(t->info.ud, ra);
	ticket_free(t);
}

int sched_call_enqueue(struct scheduler *s, const struct sched_call_info *info,
                       struct sched_ticket **ret, int64_t *ret_retry_after_ms)
{
	struct lane *l = lane_by_name(s, info->lane);
	struct sched_ticket *t;
	int64_t now = time_mono_ms(), wait;
	struct timeval tv;
	struct gate g;

	if (!l)
		return -ENOENT;
	if (l->paused_at)
		return -EBUSY; /* an operator paused it: no telling when it goes again */
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->lane = l;
	t->info = *info;
	t->enqueued = now;
	t->enqueued_wall = time_wall_ms();
	g = l->gate;
	gate_refill(&g, now);
	if (admission_never_fits(&g, info->cost)) {
		/* No wait would do: the call is refused as a batch line would be. */
		refuse_ticket(t, "request_too_large", -1);
		ticket_free(t);
		return -E2BIG;
	}
	wait = s->stopping ? INT64_MAX : predicted_wait(l, info->cost, now);
	if (wait > info->max_wait_ms) {
		*ret_retry_after_ms = wait == INT64_MAX ? 60000 : wait;
		refuse_ticket(t, "gate_wait_exceeded", *ret_retry_after_ms);
		ticket_free(t);
		return -EAGAIN;
	}
	t->deadline = evtimer_new(s->d->base, deadline_cb, t);
	if (!t->deadline) {
		ticket_free(t);
		return -ENOMEM;
	}
	time_to_timeval(info->max_wait_ms, &tv);
	evtimer_add(t->deadline, &tv);
	TAILQ_INSERT_TAIL(&l->waiting, t, link);
	l->n_waiting++;
	l->waiting_tokens += info->cost;
	sched_kick(s);
	*ret = t;
	return 0;
}

void sched_call_cancel(struct scheduler *s, struct sched_ticket *t)
{
	struct lane *l;

	if (!t)
		return;
	l = t->lane;
	if (!t->granted) {
		unqueue(t);
	} else {
		/* In flight: the slot comes back; what was spent stays charged. */
		gate_done(&l->gate, GATE_INTERACTIVE, t->info.cost, -1, time_mono_ms());
		sched_kick(s);
	}
	l->stats.requests[GATE_INTERACTIVE][SO_ABORTED]++;
	record_call(l, t, "aborted", NULL, NULL, "caller_gone", -1, NULL);
	ticket_free(t);
}

enum retry_verdict sched_call_done(struct scheduler *s, struct sched_ticket *t,
                                   const struct up_response *resp,
                                   const struct price_usage *streamed, int may_retry,
                                   int64_t deadline, const char *response_body,
                                   int64_t *ret_retry_in_ms)
{
	struct lane *l = t->lane;
	const struct lane_config *c = l->cfg;
	int64_t now = time_mono_ms(), wait = -1;
	const char *outcome, *code;
	struct retry_input in;
	struct retry_policy pol;
	struct retry_decision d;
	struct retry_job job;
	enum stat_outcome so;
	enum retry_verdict v;
	struct answer a;
	int i;

	v = settle(l, GATE_INTERACTIVE, &t->mark, t->info.cost, resp, streamed, &a, &in);
	/* The same policy decides what the answer does to the lane. */
	job = (struct retry_job){t->info.try_no, 0, 0};
	lane_policy(c, &pol);
	retry_decide(&in, a.retry_after_ms, t->mark.room, &pol, &job, rand01(s), &d);
	apply_to_lane(l, &d, resp->error, a.retry_after_ms);
	so = outcome_of(v);
	for (i = 1; i < resp->sends; i++) /* sends that died with a reused connection */
		record_call(l, t, "retry", NULL, NULL, "connection_lost", -1, NULL);
	if (may_retry && (v == RV_RETRY || v == RV_RATE_LIMITED || v == RV_UNREACHABLE) &&
	    t->info.try_no < c->retry_max_attempts) {
		/* A 429 already paused the lane: the gate is the wait. */
		wait = v == RV_RATE_LIMITED ? 0
		                            : retry_backoff_ms(t->info.try_no, c->backoff_base_ms,
		                                               c->backoff_cap_ms, rand01(s));
		if (a.retry_after_ms > wait)
			wait = a.retry_after_ms;
		if (now + wait >= deadline)
			wait = -1;
	}
	if (wait < 0 && so != SO_SUCCEEDED)
		so = SO_FAILED; /* the caller gets this answer: it is final */
	outcome = stats_outcome_name(so);
	code = resp->status == 0 ? "transport_error" : a.code;
	l->stats.requests[GATE_INTERACTIVE][so]++;
	record_call(l, t, outcome, resp, &a, v == RV_SUCCEEDED ? NULL : code, a.retry_after_ms,
	            response_body);
	json_object_put(a.root);
	ticket_free(t);
	sched_kick(s);
	*ret_retry_in_ms = wait;
	return v;
}

/* Jobs still queued when their batch's window ends fail as batch_expired. */
/* Once a second: batches whose window ended; learned windows due for probation. */
static void expiry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scheduler *s = arg;
	int64_t n = 0, now = time_mono_ms();
	int i;

	for (i = 0; i < s->n_lanes; i++)
		sched_probation(&s->lanes[i], now);
	if (store_expire(s->d->store, time_wall_ms(), &n) == 0 && n > 0)
		log_warn("%lld queued requests expired: their batch's completion window ended "
		         "(they are in the batch's errors as batch_expired)",
		         (long long)n);
}

/* A lane an operator paused stays paused across restarts (lane_paused). */
static void sched_restore_pause(struct lane *l)
{
	int r = store_lane_paused_get(l->s->d->store, l->cfg->name, &l->paused_at, &l->paused_by);

	if (r < 0) {
		l->paused_at = 0;
		log_err("lane %s: cannot read whether an operator paused it: %s; it runs",
		        l->cfg->name, store_errmsg(l->s->d->store));
	} else if (r == 1) {
		log_warn("lane %s: paused by an operator (uid %lld) before llmqd started; "
		         "llmq resume %s lets it launch again",
		         l->cfg->name, (long long)l->paused_by, l->cfg->name);
	}
}

int sched_new(struct llmqd *d, struct scheduler **ret)
{
	static const struct timeval expiry_every = {1, 0};

	struct scheduler *s;
	int64_t now = time_mono_ms();
	int i, r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->d = d;
	if (getrandom(&s->rng, sizeof(s->rng), 0) != (ssize_t)sizeof(s->rng) || !s->rng)
		s->rng = (uint64_t)time_wall_ms() | 1;
	r = hop_new_id(s->id);
	if (r == 0)
		r = upstream_new(d->base, s->id, &s->up);
	if (r < 0)
		goto fail;
	s->pump = event_new(d->base, -1, 0, pump_cb, s);
	s->expiry = event_new(d->base, -1, EV_PERSIST, expiry_cb, s);
	if (!s->pump || !s->expiry || evtimer_add(s->expiry, &expiry_every) < 0) {
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
		TAILQ_INIT(&l->waiting);
		gate_init(&l->gate, &l->cfg->limits, now);
		start_window(l, now);
		sched_restore_pause(l);
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
	struct sched_ticket *t;
	struct flight *f;
	int i;

	s->stopping = 1;
	o.attempt_outcome = "interrupted";
	o.error_code = "interrupted";
	o.error_message = "llmqd stopped while the request was in flight";
	o.retry_after_ms = -1;
	o.prompt_tokens = o.completion_tokens = o.total_tokens = o.cached_tokens = -1;
	o.cost_nusd = -1;
	o.latency_ms = -1;
	o.remaining_tokens = o.remaining_requests = -1;
	for (i = 0; i < s->n_lanes; i++) {
		while ((f = LIST_FIRST(&s->lanes[i].flights))) {
			LIST_REMOVE(f, link);
			upstream_abort(s->up, f->t);
			writeback_add(s->wb, f->job.id, f->attempt_id, &o, time_wall_ms(), NULL);
			flight_free(f);
		}
		/* Waiting callers are told to come back. */
		while ((t = TAILQ_FIRST(&s->lanes[i].waiting))) {
			unqueue(t);
			refuse_ticket(t, "gate_wait_exceeded", 5000);
			t->info.refuse(t->info.ud, 5000);
			ticket_free(t);
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
	if (s->expiry)
		event_free(s->expiry);
	upstream_free(s->up);
	free(s);
}

int sched_in_flight(const struct scheduler *s)
{
	return upstream_in_flight(s->up);
}

int sched_reload(struct scheduler *s)
{
	int64_t now = time_mono_ms();
	char *key;
	int i, r;

	for (i = 0; i < s->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		r = lane_load_key(l->cfg, &key);
		if (r < 0)
			return r;
		if (l->key) {
			explicit_bzero(l->key, strlen(l->key));
			free(l->key);
		}
		l->key = key;
		gate_set_limits(&l->gate, &l->cfg->limits, now);
	}
	sched_kick(s);
	return 0;
}

int sched_store_writable(const struct scheduler *s)
{
	return !writeback_failing(s->wb);
}

struct upstream *sched_upstream(struct scheduler *s)
{
	return s->up;
}

const char *sched_instance_id(const struct scheduler *s)
{
	return s->id;
}

const char *sched_lane_key(const struct scheduler *s, int i)
{
	return i >= 0 && i < s->n_lanes ? s->lanes[i].key : NULL;
}

int sched_n_lanes(const struct scheduler *s)
{
	return s->n_lanes;
}

int sched_lane_index(const struct scheduler *s, const char *name)
{
	int i;

	for (i = 0; i < s->n_lanes; i++)
		if (strcmp(s->lanes[i].cfg->name, name) == 0)
			return i;
	return -ENOENT;
}

int sched_lane_snapshot(const struct scheduler *s, int i, int64_t now, struct lane_snapshot *ret)
{
	const struct lane *l;

	if (i < 0 || i >= s->n_lanes)
		return -ENOENT;
	l = &s->lanes[i];
	memset(ret, 0, sizeof(*ret));
	ret->cfg = l->cfg;
	ret->gate = l->gate;
	gate_refill(&ret->gate, now);
	ret->has_key = l->key != NULL;
	ret->avg_latency_ms = l->avg_latency_ms;
	ret->calls_waiting = l->n_waiting;
	ret->calls_waiting_tokens = l->waiting_tokens;
	ret->stats = l->stats;
	ret->window_learned = l->window_learned;
	ret->window_learned_at = l->window_learned_at;
	ret->probation_since = l->probation_since;
	ret->unreachable = l->faults >= BREAKER_TRIP;
	ret->unreachable_since = ret->unreachable ? l->fault_since : 0;
	ret->no_credit_since = l->no_credit_since;
	ret->paused_at = l->paused_at;
	ret->paused_by = l->paused_by;
	return 0;
}

void sched_lane_pause(struct scheduler *s, int i, int64_t at, int64_t by)
{
	struct lane *l = &s->lanes[i];

	l->paused_at = at;
	l->paused_by = at ? by : 0;
	if (!at)
		sched_kick(s);
}

void sched_lane_set_limits(struct scheduler *s, int i, const struct gate_limits *lim)
{
	gate_set_limits(&s->lanes[i].gate, lim, time_mono_ms());
	sched_kick(s);
}
