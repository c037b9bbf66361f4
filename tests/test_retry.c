/* Outcome classification, backoff bounds and header parsing. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "params.h"
#include "retry.h"

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
	struct retry_input in = {c->status, c->should_retry, c->code, c->msg, 0};

	cr_assert_eq(retry_classify(&in), c->want, "status %d should_retry %d code %s", c->status,
	             c->should_retry, c->code ? c->code : "-");
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
