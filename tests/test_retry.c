/* Outcome classification, backoff bounds and header parsing. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "params.h"
#include "gate/retry.h"
#include "upstream/upstream.h"

struct cls_case {
	int status;
	int should_retry;
	const char *code;
	const char *msg;
	enum retry_verdict want;
};

static void dup_cls(void *p)
{
	struct cls_case *c = p;

	c->code = params_strdup(c->code);
	c->msg = params_strdup(c->msg);
}

ParameterizedTestParameters(retry, classify)
{
	static struct cls_case cases[] = {
	    {200, -1, NULL, NULL, RV_SUCCEEDED},
	    {201, -1, NULL, NULL, RV_SUCCEEDED},
	    {400, -1, "invalid_request_error", NULL, RV_FAILED},
	    {401, -1, "invalid_api_key", NULL, RV_FAILED},
	    {404, -1, NULL, NULL, RV_FAILED},
	    {408, -1, NULL, NULL, RV_RETRY},
	    {409, -1, NULL, NULL, RV_RETRY},
	    {429, -1, "rate_limit_exceeded", "Rate limit reached", RV_RATE_LIMITED},
	    {429, -1, "insufficient_quota", "You exceeded your current quota", RV_QUOTA},
	    {429, -1, "rate_limit_exceeded", "Request too large for gpt-4 on tokens per min",
	     RV_FAILED},
	    {500, -1, NULL, NULL, RV_RETRY},
	    {502, -1, NULL, NULL, RV_RETRY},
	    {503, -1, NULL, NULL, RV_RETRY},
	    {508, -1, "loop_detected", NULL, RV_FAILED}, /* llmqds forwarding in a circle */
	    {508, 1, "loop_detected", NULL, RV_FAILED},
	    {0, -1, NULL, NULL, RV_RETRY},
	    {500, 0, NULL, NULL, RV_FAILED},
	    {400, 1, NULL, NULL, RV_RETRY},
	    {429, 1, NULL, NULL, RV_RATE_LIMITED},
	    {429, 0, NULL, NULL, RV_FAILED},
	    {0, 0, NULL, NULL, RV_RETRY}, /* no answer: nobody said not to */
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);

	return cr_make_param_array(struct cls_case,
	                           params_copy(cases, n, sizeof(cases[0]), dup_cls), n);
}

ParameterizedTest(struct cls_case *c, retry, classify)
{
	struct retry_input in = {c->status, c->should_retry, c->code, c->msg, 0, 0};

	cr_assert_eq(retry_classify(&in), c->want, "status %d should_retry %d code %s", c->status,
	             c->should_retry, c->code ? c->code : "-");
}

/* What an answer spent of its estimate: a refusal that says it was not processed, nothing. */
Test(retry, what_an_answer_spent)
{
	static const struct {
		int status, should_retry, too_big;
		const char *code, *msg;
		int64_t total, want;
		const char *what;
	} rows[] = {
	    {200, -1, 0, NULL, NULL, 120, 120, "the usage reported"},
	    {200, -1, 0, NULL, NULL, -1, -1, "no usage: the estimate stays"},
	    {400, -1, 0, "invalid_request_error", NULL, -1, 0, "a bad request was not processed"},
	    {404, -1, 0, NULL, NULL, -1, 0, "nor an unknown model"},
	    {429, -1, 0, "rate_limit_exceeded", "Request too large for gpt-4o", -1, 0,
	     "too large for the provider's minute: not processed"},
	    {508, -1, 0, "loop_detected", NULL, -1, 0, "a loop was not processed"},
	    {429, 0, 0, NULL, NULL, -1, 0, "a 429 told not to retry"},
	    {429, -1, 0, "rate_limit_exceeded", "Rate limit reached", -1, -1,
	     "a rate limit empties the buckets instead"},
	    {500, -1, 0, NULL, NULL, -1, -1, "a 5xx may have been processed"},
	    {500, 0, 0, NULL, NULL, -1, -1, "even when final"},
	    {0, -1, 0, NULL, NULL, -1, -1, "a broken transfer may have been processed"},
	    {200, -1, 1, NULL, NULL, -1, -1, "an answer too large to keep was billed"},
	};
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct retry_input in = {.status = rows[i].status,
		                         .should_retry = rows[i].should_retry,
		                         .error_code = rows[i].code,
		                         .error_msg = rows[i].msg,
		                         .too_big = rows[i].too_big};

		cr_assert_eq(retry_spent(&in, retry_classify(&in), rows[i].total), rows[i].want,
		             "%s", rows[i].what);
	}
}

Test(retry, an_answer_past_the_size_cap_is_final)
{
	/* It was sent and billed; another try would be billed again and lost again. */
	struct retry_input in = {.status = 0, .should_retry = -1, .too_big = 1};

	cr_assert_eq(retry_classify(&in), RV_FAILED);
	in.should_retry = 1;
	cr_assert_eq(retry_classify(&in), RV_FAILED);
	in.too_big = 0;
	cr_assert_eq(retry_classify(&in), RV_RETRY, "an ordinary transport error is retried");
}

Test(retry, backoff_doubles_within_jitter_and_caps)
{
	int a;

	for (a = 1; a <= 6; a++) {
		int64_t d = 2000LL << (a - 1);

		cr_assert_eq(retry_backoff_ms(a, 2000, 1000000, 0.0), d / 2);
		cr_assert_eq(retry_backoff_ms(a, 2000, 1000000, 0.999999), d - 1);
		cr_assert_geq(retry_backoff_ms(a, 2000, 1000000, 0.5), d / 2);
	}
	cr_assert_leq(retry_backoff_ms(30, 2000, 300000, 0.999), 300000);
	cr_assert_geq(retry_backoff_ms(30, 2000, 300000, 0.0), 150000);
	cr_assert_eq(retry_backoff_ms(1000, 2000, 300000, 0.0), 150000, "no overflow");
}

Test(retry, retry_after_forms)
{
	int64_t now = 784111777000LL; /* Sun, 06 Nov 1994 08:49:37 GMT */

	cr_assert_eq(retry_after_ms("1500", "20", now), 1500, "retry-after-ms wins");
	cr_assert_eq(retry_after_ms(NULL, "20", now), 20000);
	cr_assert_eq(retry_after_ms(NULL, "0.5", now), 500);
	cr_assert_eq(retry_after_ms(NULL, "Sun, 06 Nov 1994 08:50:07 GMT", now), 30000);
	cr_assert_eq(retry_after_ms(NULL, "Sun, 06 Nov 1994 08:49:00 GMT", now), 0, "past date");
	cr_assert_eq(retry_after_ms("soon", "later", now), -1);
	cr_assert_eq(retry_after_ms(NULL, NULL, now), -1);
	cr_assert_eq(retry_after_ms("-5", NULL, now), -1);
	cr_assert_eq(retry_after_ms("bogus", "3", now), 3000, "bad -ms falls back");
}

Test(retry, should_retry_header)
{
	cr_assert_eq(retry_parse_should_retry("true"), 1);
	cr_assert_eq(retry_parse_should_retry("False"), 0);
	cr_assert_eq(retry_parse_should_retry("maybe"), -1);
	cr_assert_eq(retry_parse_should_retry(NULL), -1);
}

Test(retry, feedback_headers)
{
	struct gate_feedback fb;

	retry_parse_feedback("30000", "29000", "2s", "500", "499", "120ms", &fb);
	cr_assert_eq(fb.limit_tokens, 30000);
	cr_assert_eq(fb.remaining_tokens, 29000);
	cr_assert_eq(fb.reset_tokens_ms, 2000);
	cr_assert_eq(fb.limit_requests, 500);
	cr_assert_eq(fb.remaining_requests, 499);
	cr_assert_eq(fb.reset_requests_ms, 120);
	retry_parse_feedback(NULL, "lots", "6m0s", "", "-1", "1h2m3s", &fb);
	cr_assert_eq(fb.limit_tokens, -1);
	cr_assert_eq(fb.remaining_tokens, -1);
	cr_assert_eq(fb.reset_tokens_ms, 360000);
	cr_assert_eq(fb.limit_requests, -1);
	cr_assert_eq(fb.remaining_requests, -1);
	cr_assert_eq(fb.reset_requests_ms, 3723000);
}

/* The headers as they come off the wire, line by line, to the gate's feedback. */
Test(retry, feedback_from_the_header_lines)
{
	static const char *const lines[] = {
	    "HTTP/1.1 100 Continue\r\n",
	    "x-ratelimit-limit-tokens: 1\r\n",
	    "HTTP/1.1 429 Too Many Requests\r\n", /* a new block: the first is forgotten */
	    "X-RateLimit-Remaining-Tokens:\t 29000 \r\n",
	    "x-ratelimit-reset-tokens: 6m0s\r\n",
	    "x-ratelimit-reset-requests: 120ms",
	    "retry-after-msx: 5\r\n",
	    "retry-after: 20\r\n",
	    /* Found by fuzz_retry: a value past the buffer was cut, and read as its
	     * prefix; one with a control byte was read up to it. Neither is kept. */
	    "x-ratelimit-limit-requests: 500                                                      "
	    "                          9\r\n",
	    "x-request-id: 0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789\r\n",
	    "no colon here\r\n",
	};
	static const char nul[] = "x-ratelimit-remaining-requests: 7\0 junk\r\n";
	struct up_headers h;
	struct gate_feedback fb;
	size_t i;

	memset(&h, 0, sizeof(h));
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		upstream_header_line(&h, lines[i], strlen(lines[i]));
	upstream_header_line(&h, nul, sizeof(nul) - 1);
	retry_parse_feedback(h.limit_tokens, h.remaining_tokens, h.reset_tokens, h.limit_requests,
	                     h.remaining_requests, h.reset_requests, &fb);
	cr_assert_eq(fb.limit_tokens, -1);
	cr_assert_eq(fb.remaining_tokens, 29000);
	cr_assert_eq(fb.reset_tokens_ms, 360000);
	cr_assert_eq(fb.reset_requests_ms, 120);
	cr_assert_eq(
	    retry_after_ms(h.retry_after_ms[0] ? h.retry_after_ms : NULL, h.retry_after, 0), 20000);
	cr_assert_eq(fb.limit_requests, -1, "a value past the buffer is not read");
	cr_assert_eq(fb.remaining_requests, -1, "a value with a NUL is not read");
	cr_assert_str_eq(h.request_id, "", "nor relayed");
}

/* The policy after a batch job's try: one row per rule of the issue. */
struct decide_case {
	const char *what;
	int status, should_retry, unsent, too_big;
	const char *code;
	int64_t retry_after;
	int room, tries, free_tries;
	int64_t lane_wait_ms;
	enum retry_job_action job;
	int counts;
	int64_t wait_ms; /* -1: not checked (jittered backoff) */
	int64_t lane_pause;
	enum retry_lane_event lane;
	int learn, give_up;
};

Test(retry, decide_applies_every_rule)
{
	static const struct retry_policy p = {
	    .max_attempts = 3,
	    .backoff_base_ms = 1000,
	    .backoff_cap_ms = 60000,
	    .retry_after_max_ms = 30000,
	    .quota_pause_ms = 300000,
	    .lane_wait_max_ms = 3600000,
	};
	static const struct decide_case cases[] = {
	    {"2xx succeeds", 200, -1, 0, 0, NULL, -1, 0, 1, 0, 0, RJ_SUCCEED, 1, 0, 0, RL_ANSWERED,
	     0, RG_NONE},
	    {"a final 4xx fails", 400, -1, 0, 0, "invalid_request_error", -1, 0, 1, 0, 0, RJ_FAIL,
	     1, 0, 0, RL_ANSWERED, 0, RG_NONE},
	    {"past the size cap fails", 0, -1, 0, 1, NULL, -1, 0, 1, 0, 0, RJ_FAIL, 1, 0, 0,
	     RL_ANSWERED, 0, RG_NONE},
	    {"a 5xx counts and backs off", 500, -1, 0, 0, NULL, -1, 0, 1, 0, 0, RJ_REQUEUE, 1, -1,
	     0, RL_ANSWERED, 0, RG_NONE},
	    {"a 503's retry-after when longer", 503, -1, 0, 0, NULL, 20000, 0, 1, 0, 0, RJ_REQUEUE,
	     1, 20000, 0, RL_ANSWERED, 0, RG_NONE},
	    {"the third counted try is the last", 500, -1, 0, 0, NULL, -1, 0, 3, 0, 0, RJ_FAIL, 1,
	     0, 0, RL_ANSWERED, 0, RG_ATTEMPTS},
	    {"free tries do not count", 500, -1, 0, 0, NULL, -1, 0, 10, 8, 0, RJ_REQUEUE, 1, -1, 0,
	     RL_ANSWERED, 0, RG_NONE},
	    {"a timeout counts (the job's fault) and feeds the breaker", 0, -1, 0, 0, NULL, -1, 0,
	     1, 0, 0, RJ_REQUEUE, 1, -1, 0, RL_UNREACHABLE, 0, RG_NONE},
	    {"a 429 is the lane's: no count, the lane pauses", 429, -1, 0, 0, "rate_limit_exceeded",
	     5000, 0, 3, 0, 0, RJ_REQUEUE, 0, 5000, 5000, RL_RATE_LIMITED, 0, RG_NONE},
	    {"a 429 past the retry-after cap waits the cap", 429, -1, 0, 0, NULL, 900000, 0, 1, 0,
	     0, RJ_REQUEUE, 0, 30000, 30000, RL_RATE_LIMITED, 0, RG_NONE},
	    {"a 429 although the provider said there was room", 429, -1, 0, 0, NULL, 1000, 1, 1, 0,
	     0, RJ_REQUEUE, 0, 1000, 1000, RL_RATE_LIMITED, 1, RG_NONE},
	    {"an hour of rate-limited waiting ends it", 429, -1, 0, 0, NULL, 5000, 0, 40, 39,
	     3598000, RJ_FAIL, 0, 5000, 5000, RL_RATE_LIMITED, 0, RG_LANE_WAIT},
	    {"no credit: queued, the lane pauses", 429, -1, 0, 0, "insufficient_quota", -1, 0, 5, 0,
	     0, RJ_REQUEUE, 0, 300000, 300000, RL_QUOTA, 0, RG_NONE},
	    {"no credit never fails the job by itself", 429, -1, 0, 0, "insufficient_quota", -1, 0,
	     500, 499, 3599999, RJ_REQUEUE, 0, 300000, 300000, RL_QUOTA, 0, RG_NONE},
	    {"refused, DNS, TLS: no count", 0, -1, 1, 0, NULL, -1, 0, 9, 0, 0, RJ_REQUEUE, 0, -1, 0,
	     RL_UNREACHABLE, 0, RG_NONE},
	    {"x-should-retry false on a 5xx", 500, 0, 0, 0, NULL, -1, 0, 1, 0, 0, RJ_FAIL, 1, 0, 0,
	     RL_ANSWERED, 0, RG_NONE},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct decide_case *c = &cases[i];
		struct retry_input in = {.status = c->status,
		                         .should_retry = c->should_retry,
		                         .error_code = c->code,
		                         .too_big = c->too_big,
		                         .unsent = c->unsent};
		struct retry_job j = {c->tries, c->free_tries, c->lane_wait_ms};
		struct retry_decision d;

		retry_decide(&in, c->retry_after, c->room, &p, &j, 0.5, &d);
		cr_assert_eq(d.job, c->job, "%s: job %d", c->what, d.job);
		cr_assert_eq(d.counts, c->counts, "%s: counts", c->what);
		if (c->wait_ms >= 0)
			cr_assert_eq(d.wait_ms, c->wait_ms, "%s: wait %lld", c->what,
			             (long long)d.wait_ms);
		else
			cr_assert_gt(d.wait_ms, 0, "%s: a backoff", c->what);
		cr_assert_eq(d.lane_pause_ms, c->lane_pause, "%s: pause", c->what);
		cr_assert_eq(d.lane, c->lane, "%s: lane %d", c->what, d.lane);
		cr_assert_eq(d.learn_short_window, c->learn, "%s: learn", c->what);
		cr_assert_eq((int)d.give_up, c->give_up, "%s: give up", c->what);
	}
}
