/*
 * scheduler.c - lanes, flights, interactive tickets and outcomes.
 *
 * A flight is one batch job in the air: the job row, its open attempt and
 * the reservation its lane's gate made. A ticket is one interactive call at
 * its lane's gate: queued in memory, then granted (the gate's reservation
 * taken) and flying under its owner, the HTTP face. Ownership: the scheduler
 * owns flights from launch until the upstream's done callback (or
 * sched_stop) frees them, and tickets from enqueue until sched_call_done,
 * sched_call_cancel or a refusal frees them. A lane whose gate is the
 * fleet's (LLMQ_REDIS_URL) asks it through sched-fleet.c; its structures
 * are in scheduler-private.h.
 */
#include "engine/scheduler-private.h"
#include "gate/admission.h"
#include "service/config.h"
#include "http/hop.h"
#include "jsontext.h"
#include "gate/lane.h"
#include "log.h"
#include "gate/price.h"
#include "store/store.h"
#include "timeutil.h"
#include "store/writeback.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

enum launch_result {
	LAUNCHED,
	MUST_WAIT,  /* the gate holds the lane back */
	SLOTS_FULL, /* the class holds all the slots it may */
	NOTHING,    /* no work of that class is ready */
};

double sched_rand01(struct scheduler *s)
{
	/* xorshift64*: jitter only, not security. */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double)((s->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

void sched_arm(struct lane *l, int64_t at, int64_t now)
{
	int64_t d = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};

	evtimer_add(l->timer, &tv);
}

void sched_flight_free(struct flight *f)
{
	if (!f)
		return;
	/* Whatever path ends it, what its user's budgets hold for it goes back. */
	if (f->hold.held && f->lane)
		ledger_settle(f->lane->s->ledger, &f->hold, -1, -1, time_wall_ms());
	store_job_clear(&f->job);
	free(f);
}

static int sched_lane_idx(const struct lane *l)
{
	return (int)(l - l->s->lanes);
}

/* The slot of uid's last batch on lane l (direct-mapped: a user whose slot
 * another took starts again from their first batch). */
static struct sched_turn *sched_turn(struct lane *l, int64_t uid)
{
	return &l->turns[(uint64_t)uid % SCHED_TURNS];
}

static const char *sched_last_batch(void *ud, int64_t uid)
{
	struct sched_turn *t = sched_turn(ud, uid);

	return t->uid == uid ? t->batch : NULL;
}

/* The ready query's judge: the job's user's budgets and share of the lane. */
static enum store_pick_verdict sched_judge_job(void *ud, const struct store_job *job)
{
	struct lane *l = ud;
	struct budget_verdict v;

	switch (ledger_judge(l->s->ledger, job->uid, sched_lane_idx(l), job->model, job->est_tokens,
	                     time_wall_ms(), time_mono_ms(), &v)) {
	case LEDGER_GO:
		return STORE_PICK_GO;
	case LEDGER_LATER:
		return STORE_PICK_LATER;
	case LEDGER_NO:
		break;
	}
	/* A budget spent: the lane looks again when it resets (a hold given
	 * back kicks the lanes anyway). */
	if (v.fit == BUDGET_SPENT && v.resets_at < l->budget_wake)
		l->budget_wake = v.resets_at;
	return STORE_PICK_SKIP;
}

int sched_next_job(struct lane *l, int64_t wall, struct store_job *ret)
{
	struct store_pick p = {
	    .after_uid = l->last_uid,
	    .last_batch = sched_last_batch,
	    .judge = sched_judge_job,
	    .ud = l,
	};

	l->budget_wake = INT64_MAX;
	return store_next_ready_pick(l->s->d->store, l->cfg->name, wall, &p, ret);
}

int64_t sched_next_wake(struct lane *l, int64_t wall)
{
	int64_t next = INT64_MAX;

	if (store_next_wakeup(l->s->d->store, l->cfg->name, wall, &next) < 0)
		next = wall + 1000;
	return next < l->budget_wake ? next : l->budget_wake;
}

static void on_done(void *userdata, const struct up_response *resp);

/* Count a launch of this host's (the fleet's leases are reconciled from them). */
static void sched_own(struct lane *l, enum gate_class cls, int delta)
{
	if (l->mode != LANE_ALONE)
		l->own[cls] += delta;
}

/* A launch recorded and granted: off it goes. */
static void sched_send_job(struct lane *l, struct flight *f, int64_t wall)
{
	struct scheduler *s = l->s;
	struct up_request req;
	struct up_response fake;
	char url[1024];
	int r;

	struct sched_turn *turn = sched_turn(l, f->job.uid);

	l->last_uid = f->job.uid;
	turn->uid = f->job.uid;
	snprintf(turn->batch, sizeof(turn->batch), "%s", f->job.batch_id);
	f->pump = s->pumps;
	sched_own(l, GATE_BATCH, 1);
	l->stats.tokens_charged[GATE_BATCH] += (uint64_t)f->charged;
	stats_observe(&l->stats.gate_wait[GATE_BATCH],
	              wall > f->job.queued_since ? wall - f->job.queued_since : 0);
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
}

/* Record f's job as started; -ESTALE when it is no longer queued (cancelled). */
static int sched_record_job(struct lane *l, struct flight *f, int64_t wall)
{
	struct store *st = l->s->d->store;
	int r;

	f->lane = l;
	r = store_job_start(st, &f->job, l->cfg->name, wall, f->charged,
	                    wall > f->job.queued_since ? wall - f->job.queued_since : 0,
	                    &f->attempt_id);
	/* A lock another program holds is reported once, by health.c. */
	if (r < 0 && r != -ESTALE && r != -EBUSY)
		log_err("lane %s: cannot start job %lld: %s; retrying in 1s", l->cfg->name,
		        (long long)f->job.id, store_errmsg(st));
	/* Recorded: its user's budgets hold its estimate, counted in the day its
	 * attempt started (store_job_start's wall). */
	if (r == 0)
		ledger_hold(l->s->ledger, f->job.uid, sched_lane_idx(l), f->job.model,
		            f->job.est_tokens, wall, wall, time_mono_ms(), &f->hold);
	return r;
}

int sched_start_job(struct lane *l, struct flight *f, int64_t now, int64_t wall)
{
	int r = sched_record_job(l, f, wall);

	if (r < 0) {
		sched_flight_free(f);
		return r;
	}
	sched_send_job(l, f, wall);
	return 0;
}

static enum launch_result launch_job(struct lane *l)
{
	struct scheduler *s = l->s;
	struct flight *f;
	int64_t now = time_mono_ms(), wall = time_wall_ms(), when, next;
	int r;

	when = gate_when(&l->gate, GATE_BATCH, 1, now, NULL);
	if (when == GATE_NEVER)
		return SLOTS_FULL;
	if (when > now) {
		sched_arm(l, when, now);
		return MUST_WAIT;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		sched_arm(l, now + 1000, now);
		return MUST_WAIT;
	}
	r = sched_next_job(l, wall, &f->job);
	if (r <= 0) {
		sched_flight_free(f);
		if (r < 0) {
			log_err("lane %s: cannot read the queue: %s; retrying in 1s", l->cfg->name,
			        store_errmsg(s->d->store));
			sched_arm(l, now + 1000, now);
			return MUST_WAIT;
		}
		next = sched_next_wake(l, wall);
		if (next != INT64_MAX)
			sched_arm(l, now + (next > wall ? next - wall : 0), now);
		return NOTHING;
	}
	f->charged = f->job.est_tokens;
	when = gate_when(&l->gate, GATE_BATCH, f->charged, now, NULL);
	if (when > now) {
		sched_arm(l, when, now);
		sched_flight_free(f);
		return MUST_WAIT;
	}
	/* The database first: a launch it refuses never touched the gate. */
	r = sched_record_job(l, f, wall);
	if (r < 0) {
		sched_flight_free(f);
		if (r == -ESTALE)
			return LAUNCHED;
		sched_arm(l, now + 1000, now);
		return MUST_WAIT;
	}
	gate_launch(&l->gate, GATE_BATCH, f->charged, now, sched_rand01(s), &f->mark);
	if (l->mode != LANE_ALONE)
		sched_fleet_lease_alone(l, &f->lease);
	sched_send_job(l, f, wall);
	return LAUNCHED;
}

static void ticket_free(struct sched_ticket *t)
{
	if (!t)
		return;
	/* Whatever path ends it, what its user's budgets hold for it goes back. */
	if (t->hold.held)
		ledger_settle(t->lane->s->ledger, &t->hold, -1, -1, time_wall_ms());
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
	struct sched_lease lease = {"", 0};
	struct sched_ticket *t;
	struct gate_mark mark;
	int64_t now = time_mono_ms(), when;

	if (!l->n_waiting)
		return NOTHING;
	t = sched_next_call(l, now);
	if (!t)
		return NOTHING; /* their budgets hold the callers back: a hold given back kicks */
	when = gate_when(&l->gate, GATE_INTERACTIVE, t->info.cost, now, NULL);
	if (when == GATE_NEVER)
		return MUST_WAIT;
	if (when > now) {
		sched_arm(l, when, now);
		return MUST_WAIT;
	}
	gate_launch(&l->gate, GATE_INTERACTIVE, t->info.cost, now, sched_rand01(l->s), &mark);
	if (l->mode != LANE_ALONE)
		sched_fleet_lease_alone(l, &lease);
	sched_start_call(l, t, &mark, &lease, now);
	return LAUNCHED;
}

void sched_start_call(struct lane *l, struct sched_ticket *t, const struct gate_mark *mark,
                      const struct sched_lease *lease, int64_t now)
{
	unqueue(t);
	t->mark = *mark;
	t->lease = *lease;
	t->granted = now;
	l->last_call_uid = t->info.uid;
	ledger_hold(l->s->ledger, t->info.uid, sched_lane_idx(l), t->info.model, t->info.cost,
	            t->enqueued_wall, time_wall_ms(), now, &t->hold);
	sched_own(l, GATE_INTERACTIVE, 1);
	if (l->mode != LANE_ALONE)
		LIST_INSERT_HEAD(&l->flying, t, flying);
	l->stats.tokens_charged[GATE_INTERACTIVE] += (uint64_t)t->info.cost;
	stats_observe(&l->stats.gate_wait[GATE_INTERACTIVE], now - t->enqueued);
	t->info.grant(t->info.ud);
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
	if (gate_probation(&l->gate, now))
		sched_on_probation(l);
}

/* The lane went on probation (here, or in the fleet's shared gate): say so, keep it. */
void sched_on_probation(struct lane *l)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)], quiet[32];
	int64_t wall = time_wall_ms();

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
	/* The fleet's shared gate is asked, not consulted: sched-fleet.c. */
	if (l->mode != LANE_ALONE && l->mode != LANE_FALLBACK) {
		sched_fleet_pump(l);
		return;
	}
	while (!l->s->stopping) {
		if (l->n_waiting > 0 &&
		    gate_first_class(&l->gate, time_mono_ms()) == GATE_INTERACTIVE) {
			r = launch_call(l);
			if (r == LAUNCHED)
				continue;
			if (r != NOTHING)
				return;
			/* No caller may go now (their budgets hold them): the batch's turn. */
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
			sched_own(l, GATE_BATCH, -1);
			/* Nothing was spent: neither of the lane's budget nor of its user's. */
			ledger_settle(s->ledger, &f->hold, 0, 0, time_wall_ms());
			if (f->lease.shared)
				sched_fleet_release(l, GATE_BATCH, f->charged, &f->lease, 1);
			else
				gate_done(&l->gate, GATE_BATCH, f->charged, 0, now);
			l->stats.tokens_charged[GATE_BATCH] -= (uint64_t)f->charged;
			sched_flight_free(f);
		}
		sched_arm(l, now + 1000, now);
	}
}

/*
 * The launches of one pump share one transaction (each job's start is a
 * savepoint in it). Transfers only go out on a later loop turn, so if the
 * commit fails they are taken back before a byte was sent.
 */
int sched_launches_begin(struct scheduler *s)
{
	s->pumps++;
	return store_tx_begin(s->d->store) == 0;
}

void sched_launches_end(struct scheduler *s, int grouped)
{
	struct store *st = s->d->store;
	int r;

	if (grouped && (r = store_tx_commit(st)) < 0) {
		if (r != -EBUSY)
			log_err("cannot record the launches of jobs: %s; trying again in 1s",
			        store_errmsg(st));
		store_tx_rollback(st);
		undo_pump(s);
	}
}

void sched_pump(struct scheduler *s, struct lane *only)
{
	int i, grouped = sched_launches_begin(s);

	for (i = 0; i < s->n_lanes; i++)
		if (!only || only == &s->lanes[i])
			pump_lane(&s->lanes[i]);
	sched_launches_end(s, grouped);
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_pump(arg, NULL);
}

static void lane_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;

	sched_pump(l->s, l);
}

void sched_kick(struct scheduler *s)
{
	if (!s->stopping)
		event_active(s->pump, 0, 0);
}

void sched_after_turn(struct scheduler *s)
{
	sched_fleet_after_turn(s);
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
 * An answer, parsed: usage, error, the provider's headers and the wait it
 * asks for, into a; for retry_decide(), the classified answer into in.
 * streamed: the usage a relayed stream reported (NULL: take it from the
 * body). Counts it in the lane's stats; the gate hears of it in
 * apply_to_lane().
 */
static enum retry_verdict settle(struct lane *l, enum gate_class cls, int64_t charged,
                                 const struct up_response *resp, const struct price_usage *streamed,
                                 struct answer *a, struct retry_input *in)
{
	int64_t wall = time_wall_ms();
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
	/* libcurl sent it again after a reused connection died: the upstream saw
	 * (and may bill) each send. */
	if (resp->sends > 1)
		l->stats.tokens_charged[cls] += (uint64_t)(charged * (resp->sends - 1));
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
 * enforces its limits over windows shorter than a minute. The gate paces
 * from now on (gate_settle); the lane remembers it for this upstream across
 * restarts, and says so.
 */
static void sched_on_learned(struct lane *l, const struct gate_news *n)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)];
	int r;

	if (n->probation_ended)
		log_info("lane %s: the minute was tried again and a 429 came: the short window "
		         "stays (probation ended)",
		         c->name);
	r = store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "second",
	                          time_wall_ms(), -1);
	log_warn("lane %s: a 429 came although the provider's headers said there was room: it "
	         "enforces its limits over windows shorter than a minute. The lane paces from "
	         "now on (bursts of at most 1s)%s; set provider_window to pin it",
	         c->name, r < 0 ? " (not remembered: the database refused)" : ", remembered");
}

/* The provider's windows end at now + retry_after (the gate aligned its
 * own): keep their phase (of the wall clock's seconds) for the next start. */
static void sched_on_aligned(struct lane *l, int64_t now, int64_t retry_after)
{
	const struct lane_config *c = l->cfg;
	char url[sizeof(c->base_url)];
	int64_t wall = time_wall_ms(), phase = (wall + retry_after) % GATE_WINDOW_MS;

	if (l->window_phase == phase || c->provider_window != GATE_WINDOW_AUTO)
		return;
	l->window_phase = phase;
	if (store_lane_window_set(l->s->d->store, c->name,
	                          lane_redact_url(c->base_url, url, sizeof(url)), "second",
	                          wall - (now - l->gate.learned_at), phase) < 0)
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
		l->gate.learned = 1;
		l->gate.learned_at = now - (wall - at);
		l->gate.confirmed_at = now;
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

static enum gate_event sched_gate_event(enum retry_lane_event e)
{
	switch (e) {
	case RL_UNREACHABLE:
		return GATE_EV_UNREACHABLE;
	case RL_RATE_LIMITED:
		return GATE_EV_RATE_LIMITED;
	case RL_QUOTA:
		return GATE_EV_QUOTA;
	case RL_ANSWERED:
		break;
	}
	return GATE_EV_ANSWERED;
}

/* All the gate takes from one launch's answer and its decision. */
static void sched_gate_answer(enum gate_class cls, const struct gate_mark *mark, int64_t charged,
                              const struct answer *a, const struct retry_input *in,
                              const struct up_response *resp, const struct retry_decision *d,
                              struct gate_answer *ret)
{
	*ret = (struct gate_answer){
	    .cls = cls,
	    .charged = charged,
	    .used = retry_spent(in, d->verdict, a->total),
	    .succeeded = d->verdict == RV_SUCCEEDED,
	    .resends = resp->sends > 1 ? resp->sends - 1 : 0,
	    .done = 1,
	    .observe = 1,
	    .mark = *mark,
	    .fb = a->fb,
	    .event = sched_gate_event(d->lane),
	    .pause_ms = d->lane_pause_ms,
	    .learn = d->learn_short_window,
	    .retry_after_ms = a->retry_after_ms,
	};
}

/* What gate_settle() did to the lane that people should hear of, or that
 * lane_state keeps. error says what the last failure was. */
void sched_tell(struct lane *l, const struct gate_answer *ga, const struct gate_news *n,
                const char *error, int64_t now)
{
	const struct lane_config *c = l->cfg;

	if (n->breaker_open)
		log_warn("lane %s: the upstream could not be reached %d times in a row (%s); "
		         "the lane pauses and probes it with one request, backing off up "
		         "to %llds. Queued jobs keep their attempts",
		         c->name, GATE_BREAKER_TRIP, error ? error : "no answer",
		         (long long)(GATE_BREAKER_MAX_MS / 1000));
	if (n->no_credit)
		log_warn("lane %s: upstream says insufficient_quota: the key has no credit. "
		         "The lane pauses and tries one request every %llds; its jobs stay "
		         "queued until their batch's window ends: add credit or check the "
		         "key's billing",
		         c->name, (long long)(c->quota_pause_ms / 1000));
	if (n->rate_limited)
		log_info("lane %s: 429, pausing %lldms", c->name, (long long)ga->pause_ms);
	if (n->learned)
		sched_on_learned(l, n);
	if (n->aligned)
		sched_on_aligned(l, now, ga->retry_after_ms);
	if (n->resumed)
		log_info("lane %s: the upstream answers again; the lane resumes", c->name);
}

/*
 * What an answer and its decision do to the lane's gate, as one step
 * (gate_settle): the provider's figures, the refund and the slot, pauses,
 * the circuit breaker (several tries in a row that reached no upstream
 * pause the lane, then one request probes it, backing off), running out of
 * credit (paused, probed once per pause), a 429's pause and what it teaches
 * of the provider's window. error says what the last failure was, for the
 * log.
 */
static void settle_lane(struct lane *l, struct gate_answer *ga, const struct sched_lease *lease,
                        const char *error)
{
	int64_t now = time_mono_ms();
	struct gate_news n;

	sched_own(l, ga->cls, -1);
	if (l->mode != LANE_ALONE && sched_fleet_settle(l, ga, lease, error) == 0)
		return;
	/* The lane's own gate: a mark of the shared gate's is of another clock. */
	ga->observe = !lease->shared;
	gate_settle(&l->gate, ga, now, &n);
	sched_tell(l, ga, &n, error, now);
}

static void apply_to_lane(struct lane *l, enum gate_class cls, const struct gate_mark *mark,
                          const struct sched_lease *lease, int64_t charged, const struct answer *a,
                          const struct retry_input *in, const struct up_response *resp,
                          const struct retry_decision *d, const char *error)
{
	struct gate_answer ga;

	sched_gate_answer(cls, mark, charged, a, in, resp, d, &ga);
	settle_lane(l, &ga, lease, error);
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
	settle(l, GATE_BATCH, f->charged, resp, NULL, &a, &in);
	describe(resp, &a, retry_classify(&in), code, sizeof(code), msg, sizeof(msg));
	/* Decide. */
	lane_policy(c, &pol);
	retry_decide(&in, a.retry_after_ms, f->mark.room, &pol, &job, sched_rand01(s), &d);
	/* Apply: to the lane, to its user's budgets (what the attempt's record
	 * says it spent), then to the job. */
	apply_to_lane(l, GATE_BATCH, &f->mark, &f->lease, f->charged, &a, &in, resp, &d, msg);
	o.cost_nusd = sched_cost(s, f->job.model, &a);
	ledger_settle(s->ledger, &f->hold, a.total, o.cost_nusd, wall);
	o.status_code = resp->status;
	o.request_id = resp->hdr.request_id[0] ? resp->hdr.request_id : NULL;
	o.retry_after_ms = a.retry_after_ms;
	o.prompt_tokens = a.prompt;
	o.completion_tokens = a.completion;
	o.total_tokens = a.total;
	o.cached_tokens = a.cached;
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
	sched_flight_free(f);
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

/* How long until a budget's verdict may change: its reset (at least 1 s);
 * -1 when no wait helps (it is smaller than the call). */
static int64_t sched_budget_retry_ms(const struct budget_verdict *v)
{
	int64_t in = v->resets_at - time_wall_ms();

	if (v->fit == BUDGET_NEVER)
		return -1;
	return in > 1000 ? in : 1000;
}

/* The call's user's budgets and share now; why: what a refusal says. */
static enum ledger_go sched_call_judge(struct lane *l, const struct sched_ticket *t, int64_t now,
                                       struct sched_budget_refusal *why)
{
	struct ledger_user u;
	enum ledger_go g;

	memset(why, 0, sizeof(*why));
	g = ledger_judge(l->s->ledger, t->info.uid, sched_lane_idx(l), t->info.model, t->info.cost,
	                 time_wall_ms(), now, &why->v);
	if (g == LEDGER_NO) {
		ledger_user(l->s->ledger, t->info.uid, time_wall_ms(), now, &u);
		budget_describe(&why->v, u.name[0] ? u.name : "this user", why->message,
		                sizeof(why->message));
	}
	return g;
}

/* A waiting call its budget refuses: answered, and gone. */
static void sched_refuse_budget(struct sched_ticket *t, const struct sched_budget_refusal *why)
{
	unqueue(t);
	sched_fleet_forget(t);
	refuse_ticket(t, "budget_exceeded", sched_budget_retry_ms(&why->v));
	t->info.over_budget(t->info.ud, why);
	ticket_free(t);
}

static int sched_cmp_uid(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Users take turns: the waiting users in uid order from the one after the
 * user a call went for last, each their oldest call first; a user over
 * their share goes only when nobody else may, one whose calls in flight hold
 * their budget waits, and a call a spent budget refuses is answered.
 */
struct sched_ticket *sched_next_call(struct lane *l, int64_t now)
{
	struct sched_ticket *t, *next, *later = NULL, *pick = NULL;
	struct sched_budget_refusal why;
	int64_t *uids;
	int n = 0, i, k, start = 0;

	uids = malloc((size_t)l->n_waiting * sizeof(*uids));
	if (!uids)
		return TAILQ_FIRST(&l->waiting);
	TAILQ_FOREACH(t, &l->waiting, link)
	if (n < l->n_waiting)
		uids[n++] = t->info.uid;
	qsort(uids, (size_t)n, sizeof(*uids), sched_cmp_uid);
	for (i = k = 0; i < n; i++)
		if (k == 0 || uids[k - 1] != uids[i])
			uids[k++] = uids[i];
	n = k;
	while (start < n && uids[start] <= l->last_call_uid)
		start++;
	for (i = 0; i < n && !pick; i++) {
		int64_t uid = uids[(start + i) % n];

		for (t = TAILQ_FIRST(&l->waiting); t; t = next) {
			next = TAILQ_NEXT(t, link);
			if (t->info.uid != uid)
				continue;
			switch (sched_call_judge(l, t, now, &why)) {
			case LEDGER_GO:
				pick = t;
				break;
			case LEDGER_LATER:
				if (!later)
					later = t;
				break;
			case LEDGER_NO:
				if (why.v.fit != BUDGET_HELD) {
					sched_refuse_budget(t, &why);
					continue; /* the user's next call */
				}
				break;
			}
			break;
		}
	}
	free(uids);
	return pick ? pick : later;
}

int sched_call_budget_ok(struct lane *l, struct sched_ticket *t, int64_t now)
{
	struct sched_budget_refusal why;

	if (sched_call_judge(l, t, now, &why) != LEDGER_NO)
		return 1;
	if (why.v.fit == BUDGET_HELD)
		return 0;
	sched_refuse_budget(t, &why);
	return -1;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_ticket *t = arg;
	struct lane *l = t->lane;
	int64_t now = time_mono_ms(), ra;

	unqueue(t);
	sched_fleet_forget(t);
	ra = predicted_wait(l, t->info.cost, now);
	if (ra < 1000)
		ra = 1000;
	refuse_ticket(t, "gate_wait_exceeded", ra);
	t->info.refuse(t->info.ud, ra);
	ticket_free(t);
}

int sched_call_enqueue(struct scheduler *s, const struct sched_call_info *info,
                       struct sched_ticket **ret, int64_t *ret_retry_after_ms,
                       struct sched_budget_refusal *ret_budget)
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
	t->id = ++s->tickets;
	g = l->gate;
	gate_refill(&g, now);
	if (admission_never_fits(&g, info->cost)) {
		/* No wait would do: the call is refused as a batch line would be. */
		refuse_ticket(t, "request_too_large", -1);
		ticket_free(t);
		return -E2BIG;
	}
	/* A budget spent is refused at once; one that in-flight calls hold waits. */
	if (sched_call_judge(l, t, now, ret_budget) == LEDGER_NO &&
	    ret_budget->v.fit != BUDGET_HELD) {
		*ret_retry_after_ms = sched_budget_retry_ms(&ret_budget->v);
		refuse_ticket(t, "budget_exceeded", *ret_retry_after_ms);
		ticket_free(t);
		return -EDQUOT;
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
		sched_fleet_forget(t);
	} else {
		/* In flight: the slot comes back; what was spent stays charged. */
		struct gate_answer ga = {.cls = GATE_INTERACTIVE,
		                         .charged = t->info.cost,
		                         .used = -1,
		                         .done = 1,
		                         .event = GATE_EV_NONE,
		                         .retry_after_ms = -1};

		if (l->mode != LANE_ALONE)
			LIST_REMOVE(t, flying);
		settle_lane(l, &ga, &t->lease, NULL);
		/* Its record says aborted, nothing spent: so do its user's budgets. */
		ledger_settle(s->ledger, &t->hold, -1, -1, time_wall_ms());
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

	v = settle(l, GATE_INTERACTIVE, t->info.cost, resp, streamed, &a, &in);
	/* The same policy decides what the answer does to the lane. */
	job = (struct retry_job){t->info.try_no, 0, 0};
	lane_policy(c, &pol);
	retry_decide(&in, a.retry_after_ms, t->mark.room, &pol, &job, sched_rand01(s), &d);
	if (l->mode != LANE_ALONE && t->granted)
		LIST_REMOVE(t, flying);
	apply_to_lane(l, GATE_INTERACTIVE, &t->mark, &t->lease, t->info.cost, &a, &in, resp, &d,
	              resp->error);
	/* What the call's record says it spent (record_call, below). */
	ledger_settle(s->ledger, &t->hold, a.total, sched_cost(s, t->info.model, &a),
	              time_wall_ms());
	so = outcome_of(v);
	for (i = 1; i < resp->sends; i++) /* sends that died with a reused connection */
		record_call(l, t, "retry", NULL, NULL, "connection_lost", -1, NULL);
	if (may_retry && (v == RV_RETRY || v == RV_RATE_LIMITED || v == RV_UNREACHABLE) &&
	    t->info.try_no < c->retry_max_attempts) {
		/* A 429 already paused the lane: the gate is the wait. */
		wait = v == RV_RATE_LIMITED ? 0
		                            : retry_backoff_ms(t->info.try_no, c->backoff_base_ms,
		                                               c->backoff_cap_ms, sched_rand01(s));
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
		if (s->lanes[i].mode == LANE_ALONE || s->lanes[i].mode == LANE_FALLBACK)
			sched_probation(&s->lanes[i], now);
	sched_fleet_tick(s);
	/* Budgets that were waiting for the store to say what was spent. */
	if (ledger_tick(s->ledger, time_wall_ms()) == 1)
		sched_kick(s);
	if (store_expire(s->d->store, time_wall_ms(), &n) == 0 && n > 0)
		log_warn("%lld queued requests expired: their batch's completion window ended "
		         "(they are in the batch's errors as batch_expired)",
		         (long long)n);
}

/* A lane's gate limits: the configured ones, and how its window is learned. */
void sched_lane_limits(const struct lane_config *c, struct gate_limits *ret)
{
	*ret = c->limits;
	ret->provider_window = c->provider_window;
	ret->probation_ms = c->window_probation_ms;
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
	int i, k, r;

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
	if (r == 0)
		r = ledger_new(d->store, d->cfg, d->cfg->n_lanes, time_wall_ms(), &s->ledger);
	if (r < 0)
		goto fail;
	for (i = 0; i < d->cfg->n_lanes; i++) {
		struct lane *l = &s->lanes[i];

		l->s = s;
		l->cfg = &d->cfg->lanes[i];
		l->last_uid = STORE_UID_FIRST;
		l->last_call_uid = INT64_MIN;
		for (k = 0; k < SCHED_TURNS; k++)
			l->turns[k].uid = -2;
		LIST_INIT(&l->flights);
		TAILQ_INIT(&l->waiting);
		LIST_INIT(&l->flying);
		l->mode = d->cfg->fleet.redis_url[0] ? LANE_STARTING : LANE_ALONE;
		sched_lane_limits(l->cfg, &l->lim);
		gate_init(&l->gate, &l->lim, now);
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
	r = sched_fleet_new(s);
	if (r < 0)
		goto fail;
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
			/* Its slot back now, not at its lease's deadline; it may have cost
			 * (its record says interrupted, nothing spent: so do its user's
			 * budgets). */
			if (f->lease.shared)
				sched_fleet_release(&s->lanes[i], GATE_BATCH, f->charged, &f->lease,
				                    0);
			ledger_settle(s->ledger, &f->hold, -1, -1, time_wall_ms());
			writeback_add(s->wb, f->job.id, f->attempt_id, &o, time_wall_ms(), NULL);
			sched_flight_free(f);
		}
		/* Waiting callers are told to come back. */
		while ((t = TAILQ_FIRST(&s->lanes[i].waiting))) {
			unqueue(t);
			sched_fleet_forget(t);
			refuse_ticket(t, "gate_wait_exceeded", 5000);
			t->info.refuse(t->info.ud, 5000);
			ticket_free(t);
		}
	}
	sched_fleet_flush(s);
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
	sched_fleet_free(s);
	writeback_free(s->wb);
	ledger_free(s->ledger);
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
	struct gate_limits lim;
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
		sched_lane_limits(l->cfg, &l->lim);
		sched_fleet_limits(l, &lim);
		gate_set_limits(&l->gate, &lim, now);
	}
	ledger_reload(s->ledger);
	sched_kick(s);
	return 0;
}

struct ledger *sched_ledger(struct scheduler *s)
{
	return s->ledger;
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

int sched_fleet_stats(const struct scheduler *s, struct fleet_stats *ret)
{
	if (!s->fleet)
		return -ENOENT;
	fleet_stats(s->fleet, ret);
	return 0;
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
	int64_t wall;

	if (i < 0 || i >= s->n_lanes)
		return -ENOENT;
	l = &s->lanes[i];
	memset(ret, 0, sizeof(*ret));
	ret->cfg = l->cfg;
	ret->gate = l->gate;
	ret->lim = l->lim;
	gate_refill(&ret->gate, now);
	ret->has_key = l->key != NULL;
	ret->avg_latency_ms = l->avg_latency_ms;
	ret->calls_waiting = l->n_waiting;
	ret->calls_waiting_tokens = l->waiting_tokens;
	ret->stats = l->stats;
	/* The gate's times are the monotonic clock's; the snapshot's, the wall's. */
	wall = time_wall_ms() - (time_mono_ms() - now);
	ret->window_learned = l->gate.learned;
	ret->window_learned_at = wall - (now - l->gate.learned_at);
	ret->probation_since = l->gate.probation_since ? wall - (now - l->gate.probation_since) : 0;
	ret->unreachable = l->gate.faults >= GATE_BREAKER_TRIP;
	ret->unreachable_since = ret->unreachable ? wall - (now - l->gate.fault_since) : 0;
	ret->no_credit_since = l->gate.no_credit_since ? wall - (now - l->gate.no_credit_since) : 0;
	if (l->mode != LANE_ALONE) {
		static const char *const modes[] = {
		    [LANE_STARTING] = "starting",
		    [LANE_SHARED] = "shared",
		    [LANE_FALLBACK] = "alone",
		    [LANE_RECONCILING] = "reconciling",
		};

		ret->fleet_mode = modes[l->mode];
		ret->share = config_lane_share(l->cfg);
		ret->fleet_hosts = fleet_hosts(s->fleet, ret->share);
		ret->in_flight_here = l->own[GATE_BATCH] + l->own[GATE_INTERACTIVE];
	}
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
	struct lane *l = &s->lanes[i];
	struct gate_limits now_lim;

	/* The lane's (the key's, in a fleet: its shared gate takes them with the
	 * next call); gating alone, this host's share of them. */
	l->lim = *lim;
	l->lim.provider_window = l->cfg->provider_window;
	l->lim.probation_ms = l->cfg->window_probation_ms;
	sched_fleet_limits(l, &now_lim);
	gate_set_limits(&l->gate, &now_lim, time_mono_ms());
	sched_kick(s);
}
