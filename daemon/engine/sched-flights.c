/*
 * sched-flights.c - batch jobs in the air. A flight is one batch job
 * launched: the job row, its open attempt and the reservation its lane's
 * gate made. Here: a lane's next launch (picked, granted by its gate, then
 * recorded by sched-launch.c before it is sent), its transfer, and its
 * outcome (the answer decided by retry.c, applied to the lane, the user's
 * budgets and the job's row through the writeback). The scheduler owns a
 * flight from its launch until the upstream's done callback (or sched_stop)
 * frees it.
 */
#include "engine/scheduler-private.h"
#include "jsontext.h"
#include "gate/lane.h"
#include "log.h"
#include "store/store.h"
#include "timeutil.h"
#include "store/writeback.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void on_done(void *userdata, const struct up_response *resp);

/* f was picked: its user's turn, and its batch's within them, move on, so
 * that the lane's next pick (in the same pump too) is the next user's. */
void sched_flight_turn(struct lane *l, const struct flight *f)
{
	struct sched_turn *turn = sched_turn(l, f->job.uid);

	l->last_uid = f->job.uid;
	turn->uid = f->job.uid;
	snprintf(turn->batch, sizeof(turn->batch), "%s", f->job.batch_id);
}

/* A launch recorded and granted: off it goes. */
void sched_flight_send(struct lane *l, struct flight *f, int64_t wall)
{
	struct scheduler *s = l->s;
	struct up_request req;
	struct up_response fake;
	char url[1024];
	int r;

	if (f->transit) {
		f->transit = 0; /* on its lane's list, its turn taken, since it was picked */
	} else {
		sched_flight_turn(l, f);
		LIST_INSERT_HEAD(&l->flights, f, link);
	}
	f->pump = s->pumps;
	sched_own(l, GATE_BATCH, 1);
	l->stats.tokens_charged[GATE_BATCH] += (uint64_t)f->charged;
	stats_observe(&l->stats.gate_wait[GATE_BATCH],
	              wall > f->job.queued_since ? wall - f->job.queued_since : 0);
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

enum launch_result sched_flight_launch(struct lane *l)
{
	struct scheduler *s = l->s;
	struct flight *f;
	int64_t now = time_mono_ms(), wall = time_wall_ms(), when, next;
	int r, reading;

	/* Its launches being recorded: the lane picks again once they are
	 * (callers may use the slots meanwhile). */
	if (l->recording > 0)
		return SLOTS_FULL;
	/* A launch's record was refused (not a cancel): a second before the next. */
	if (l->refused_until > now) {
		sched_arm(l, l->refused_until, now);
		return MUST_WAIT;
	}
	when = gate_when(&l->gate, GATE_BATCH, 1, now, NULL);
	if (when == GATE_NEVER)
		return SLOTS_FULL;
	if (when > now) {
		sched_arm(l, when, now);
		return MUST_WAIT;
	}
	/* Nothing can have come since its queue was last found empty: no SQL. */
	if (!l->queued)
		return NOTHING;
	f = calloc(1, sizeof(*f));
	if (!f) {
		sched_arm(l, now + 1000, now);
		return MUST_WAIT;
	}
	/* Outside the pump's transaction (none before its first launch): one read. */
	reading = store_read_begin(s->d->store);
	r = sched_next_job(l, wall, &f->job);
	next = r == 0 ? sched_next_wake(l, wall) : INT64_MAX;
	store_read_end(s->d->store, reading);
	if (r <= 0) {
		sched_flight_free(f);
		if (r < 0) {
			log_err("lane %s: cannot read the queue: %s; retrying in 1s", l->cfg->name,
			        store_errmsg(s->d->store));
			sched_arm(l, now + 1000, now);
			return MUST_WAIT;
		}
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
	if (sched_launch_deferred(s)) {
		/* Recorded by the writer with the pump's others, sent once it is. */
		if (sched_launch_defer(l, f, wall) < 0) {
			sched_flight_free(f);
			sched_arm(l, now + 1000, now);
			return MUST_WAIT;
		}
		gate_launch(&l->gate, GATE_BATCH, f->charged, now, sched_rand01(s), &f->mark);
		if (l->mode != LANE_ALONE)
			sched_fleet_lease_alone(l, &f->lease);
		return LAUNCHED;
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
	sched_flight_send(l, f, wall);
	return LAUNCHED;
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
	sched_answer_settle(l, GATE_BATCH, f->charged, resp, NULL, &a, &in);
	describe(resp, &a, retry_classify(&in), code, sizeof(code), msg, sizeof(msg));
	/* Decide. */
	sched_lane_policy(c, &pol);
	retry_decide(&in, a.retry_after_ms, f->mark.room, &pol, &job, sched_rand01(s), &d);
	/* Apply: to the lane, to its user's budgets (what the attempt's record
	 * says it spent), then to the job. */
	sched_answer_apply(l, GATE_BATCH, &f->mark, &f->lease, f->charged, &a, &in, resp, &d, msg);
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
	so = sched_answer_outcome(d.verdict);
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
	sched_pump_soon(s);
}
