/*
 * sched-answers.c - what an upstream's answer says, for a batch job's try
 * (sched-flights.c) and an interactive call's (sched-tickets.c) alike: its
 * JSON parsed for usage and error (a large success only for its usage), its
 * cost at today's prices, its verdict and the provider's figures, counted in
 * the lane's stats, and all the lane's gate takes from it with its decision.
 * What the decision does to a job or a call is theirs, not this file's.
 */
#include "engine/scheduler-private.h"
#include "service/config.h"
#include "jsontext.h"
#include "gate/price.h"
#include "timeutil.h"

#include <string.h>

static const char *get_str(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
	           ? json_object_get_string(v)
	           : NULL;
}

/*
 * An answer that succeeded is not parsed whole (json-c would build a tree of
 * all its choices, and hold a large one twice more): only its "usage"
 * member, found from the end, where the providers put it. One that speaks
 * of an "error" as well, and is not large, is parsed whole, as a failure is.
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
int64_t sched_cost(const struct scheduler *s, const char *model, const struct answer *a)
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
	if (resp->status >= 200 && resp->status < 300 &&
	    (resp->body_len > ANSWER_PARSE_MAX ||
	     !jsontext_last_object(resp->body, resp->body_len, "error"))) {
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

enum stat_outcome sched_answer_outcome(enum retry_verdict v)
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
 * sched_answer_apply().
 */
enum retry_verdict sched_answer_settle(struct lane *l, enum gate_class cls, int64_t charged,
                                       const struct up_response *resp,
                                       const struct price_usage *streamed, struct answer *a,
                                       struct retry_input *in)
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

void sched_answer_apply(struct lane *l, enum gate_class cls, const struct gate_mark *mark,
                        const struct sched_lease *lease, int64_t charged, const struct answer *a,
                        const struct retry_input *in, const struct up_response *resp,
                        const struct retry_decision *d, const char *error)
{
	struct gate_answer ga;

	sched_gate_answer(cls, mark, charged, a, in, resp, d, &ga);
	sched_lane_settle(l, &ga, lease, error);
}
