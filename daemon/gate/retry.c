/*
 * retry.c - the outcome classifier and the backoff, in one pure place.
 */
#include "gate/retry.h"
#include "timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int eq(const char *a, const char *b)
{
	return a && strcmp(a, b) == 0;
}

enum retry_verdict retry_classify(const struct retry_input *in)
{
	int s = in->status;

	/* Each try would be another billed answer that cannot be kept. */
	if (in->too_big)
		return RV_FAILED;
	if (s == 0 && in->unsent)
		return RV_UNREACHABLE;
	if (s >= 200 && s < 300)
		return RV_SUCCEEDED;
	if (s == 429 && eq(in->error_code, "insufficient_quota"))
		return RV_QUOTA;
	/* Loop Detected (llmqds forwarding to each other): every try would loop again. */
	if (s == 508)
		return RV_FAILED;
	/* The provider's TPM can never admit this request: trying again cannot help. */
	if (s == 429 && in->error_msg && strncasecmp(in->error_msg, "Request too large", 17) == 0)
		return RV_FAILED;
	if (in->should_retry == 1)
		return s == 429 ? RV_RATE_LIMITED : RV_RETRY;
	if (in->should_retry == 0 && s != 0)
		return RV_FAILED;
	if (s == 429)
		return RV_RATE_LIMITED;
	if (s == 0 || s >= 500 || s == 408 || s == 409)
		return RV_RETRY;
	return RV_FAILED;
}

int64_t retry_spent(const struct retry_input *in, enum retry_verdict v, int64_t total)
{
	int s = in->status;

	if (v == RV_SUCCEEDED)
		return total;
	/* Answered, and not processed: nothing of the estimate was spent. A 429
	 * that is a rate limit empties the buckets anyway; 5xx and broken
	 * transfers may have been processed: their estimate stays. */
	if (v == RV_FAILED && s >= 400 && s < 600 && (s < 500 || s == 508) &&
	    !(s == 429 && in->should_retry == 1))
		return 0;
	return -1;
}

const char *retry_verdict_name(enum retry_verdict v)
{
	switch (v) {
	case RV_SUCCEEDED:
		return "succeeded";
	case RV_FAILED:
		return "failed";
	case RV_RETRY:
		return "retry";
	case RV_RATE_LIMITED:
		return "rate_limited";
	case RV_QUOTA:
		return "insufficient_quota";
	case RV_UNREACHABLE:
		return "unreachable";
	}
	return "unknown";
}

void retry_decide(const struct retry_input *a, int64_t retry_after, int room,
                  const struct retry_policy *p, const struct retry_job *j, double rand01,
                  struct retry_decision *d)
{
	/* Tries that were the job's own fault, this one included when it is. */
	int counted = j->tries - j->free_tries;
	int64_t ra = retry_after > p->retry_after_max_ms ? p->retry_after_max_ms : retry_after;

	memset(d, 0, sizeof(*d));
	d->verdict = retry_classify(a);
	d->lane = a->status > 0 || a->too_big ? RL_ANSWERED : RL_UNREACHABLE;
	switch (d->verdict) {
	case RV_SUCCEEDED:
		d->job = RJ_SUCCEED;
		d->counts = 1;
		return;
	case RV_FAILED:
		d->job = RJ_FAIL;
		d->counts = 1;
		return;
	case RV_RETRY:
		d->counts = 1;
		if (counted >= p->max_attempts) {
			d->job = RJ_FAIL;
			d->give_up = RG_ATTEMPTS;
			return;
		}
		d->job = RJ_REQUEUE;
		d->wait_ms =
		    retry_backoff_ms(counted, p->backoff_base_ms, p->backoff_cap_ms, rand01);
		if (ra > d->wait_ms)
			d->wait_ms = ra;
		return;
	case RV_QUOTA:
		/* Topping up the credit lets the batch finish: the job waits for it. */
		d->lane = RL_QUOTA;
		d->job = RJ_REQUEUE;
		d->lane_pause_ms = p->quota_pause_ms;
		d->wait_ms = p->quota_pause_ms;
		return;
	case RV_RATE_LIMITED:
		d->lane = RL_RATE_LIMITED;
		d->learn_short_window = room;
		d->lane_pause_ms =
		    ra >= 0 ? ra
		            : retry_backoff_ms(1, p->backoff_base_ms, p->backoff_cap_ms, rand01);
		d->wait_ms = d->lane_pause_ms;
		break;
	case RV_UNREACHABLE:
		/* The lane's breaker paces the probes; the job only steps back. */
		d->wait_ms = retry_backoff_ms(j->free_tries + 1, p->backoff_base_ms,
		                              p->backoff_cap_ms, rand01);
		break;
	}
	d->lane_wait_ms = d->wait_ms;
	if (j->lane_wait_ms + d->lane_wait_ms > p->lane_wait_max_ms) {
		d->job = RJ_FAIL;
		d->give_up = RG_LANE_WAIT;
		return;
	}
	d->job = RJ_REQUEUE;
}

int64_t retry_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, double rand01)
{
	int64_t d = base_ms > 0 ? base_ms : 1;
	int i;

	for (i = 1; i < attempt && d < cap_ms; i++)
		d *= 2;
	if (d > cap_ms)
		d = cap_ms;
	if (rand01 < 0)
		rand01 = 0;
	if (rand01 >= 1)
		rand01 = 0.999999;
	return d / 2 + (int64_t)((double)(d - d / 2) * rand01);
}

static int parse_number(const char *s, double *ret)
{
	char *end;
	double v;

	while (isspace((unsigned char)*s))
		s++;
	if (!*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	while (isspace((unsigned char)*end))
		end++;
	if (errno || *end || v < 0 || v != v)
		return -EINVAL;
	*ret = v;
	return 0;
}

int64_t retry_after_ms(const char *retry_after_ms_hdr, const char *retry_after_hdr,
                       int64_t now_wall_ms)
{
	int64_t at;
	double v;

	if (retry_after_ms_hdr && parse_number(retry_after_ms_hdr, &v) == 0 && v < 9e15)
		return (int64_t)v;
	if (!retry_after_hdr)
		return -1;
	if (parse_number(retry_after_hdr, &v) == 0 && v < 9e12)
		return (int64_t)(v * 1000.0);
	if (time_parse_http_date(retry_after_hdr, &at) == 0)
		return at > now_wall_ms ? at - now_wall_ms : 0;
	return -1;
}

int retry_parse_should_retry(const char *v)
{
	if (!v)
		return -1;
	if (strcasecmp(v, "true") == 0)
		return 1;
	if (strcasecmp(v, "false") == 0)
		return 0;
	return -1;
}

static int64_t count(const char *v)
{
	double d;

	if (!v || parse_number(v, &d) < 0 || d > 9e15)
		return -1;
	return (int64_t)d;
}

static int64_t duration(const char *v)
{
	int64_t ms;

	if (!v || time_parse_duration(v, &ms) < 0)
		return -1;
	return ms;
}

void retry_parse_feedback(const char *limit_tokens, const char *remaining_tokens,
                          const char *reset_tokens, const char *limit_requests,
                          const char *remaining_requests, const char *reset_requests,
                          struct gate_feedback *ret)
{
	ret->limit_tokens = count(limit_tokens);
	ret->remaining_tokens = count(remaining_tokens);
	ret->reset_tokens_ms = duration(reset_tokens);
	ret->limit_requests = count(limit_requests);
	ret->remaining_requests = count(remaining_requests);
	ret->reset_requests_ms = duration(reset_requests);
}
