/*
 * fuzz_retry.c - the headers of an upstream's answer, as llmq reads them:
 * each line through upstream_header_line() (daemon/upstream/upstream.c), then the
 * values through the retry policy's parsers (daemon/gate/retry.c: retry-after,
 * retry-after-ms, x-should-retry, x-ratelimit-*), and the figures into a
 * lane's gate (gate_observe, then the next launch's time) and into
 * retry_decide(), as the scheduler takes them.
 *
 * Beyond not crashing: a kept value is trimmed and bounded; every parsed
 * figure is -1 or >= 0; a duration or count read back from its own printed
 * form is the same; the gate's levels stay numbers and its next launch is
 * not in the past; a decision's waits are within the policy's caps.
 */
#include "fuzz.h"

#include "gate/gate.h"
#include "gate/retry.h"
#include "timeutil.h"
#include "upstream/upstream.h"

#include <ctype.h>
#include <math.h>

#define WALL_NOW 1700000000000LL /* a wall clock for HTTP dates */

static const char *opt(const char *v)
{
	return v[0] ? v : NULL;
}

static void check_kept(const char *v)
{
	size_t n = strnlen(v, UP_HDR_LEN);

	FUZZ_ASSERT(n < UP_HDR_LEN, "a value past its buffer");
	FUZZ_ASSERT(n == 0 || (!isspace((unsigned char)v[0]) && !isspace((unsigned char)v[n - 1])),
	            "a value not trimmed: \"%s\"", v);
}

/* Printed again and read back, a figure is the same. */
static void round_trip(const struct gate_feedback *fb)
{
	char a[3][32], b[3][32];
	struct gate_feedback again;

	snprintf(a[0], sizeof(a[0]), "%lld", (long long)fb->limit_tokens);
	snprintf(a[1], sizeof(a[1]), "%lld", (long long)fb->remaining_tokens);
	snprintf(a[2], sizeof(a[2]), "%lldms", (long long)fb->reset_tokens_ms);
	snprintf(b[0], sizeof(b[0]), "%lld", (long long)fb->limit_requests);
	snprintf(b[1], sizeof(b[1]), "%lld", (long long)fb->remaining_requests);
	snprintf(b[2], sizeof(b[2]), "%lldms", (long long)fb->reset_requests_ms);
	retry_parse_feedback(a[0], a[1], a[2], b[0], b[1], b[2], &again);
	FUZZ_ASSERT(memcmp(fb, &again, sizeof(again)) == 0, "figures read back differ");
}

static void gate(const struct gate_feedback *fb)
{
	static const struct gate_limits lim = {
	    .max_concurrency = 4, .tpm = 30000, .rpm = 500, .headroom = 0.15};
	struct gate g;
	struct gate_mark mark;
	enum gate_block why;
	int64_t now = 1000, when;

	gate_init(&g, &lim, now);
	gate_launch(&g, GATE_BATCH, 700, now, 0.5, &mark);
	now += 300;
	gate_observe(&g, fb, &mark, now);
	gate_done(&g, GATE_BATCH, 700, 650, now);
	FUZZ_ASSERT(!isnan(g.tok) && !isnan(g.req), "a level is not a number");
	FUZZ_ASSERT(!isnan(g.prov_tok_cap) && !isnan(g.prov_req_cap), "a cap is not a number");
	when = gate_when(&g, GATE_BATCH, 700, now, &why);
	FUZZ_ASSERT(when >= now, "next launch %lld before now %lld", (long long)when,
	            (long long)now);
}

static void decide(int64_t retry_after, int should_retry)
{
	static const struct retry_policy pol = {
	    .max_attempts = 5,
	    .backoff_base_ms = 2000,
	    .backoff_cap_ms = 300000,
	    .retry_after_max_ms = 900000,
	    .quota_pause_ms = 300000,
	    .lane_wait_max_ms = 3600000,
	};
	static const int statuses[] = {0, 200, 400, 408, 429, 500, 503};
	struct retry_input in = {.should_retry = should_retry};
	struct retry_job job = {.tries = 2, .free_tries = 1, .lane_wait_ms = 1000};
	struct retry_decision d;
	size_t i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		in.status = statuses[i];
		retry_decide(&in, retry_after, 1, &pol, &job, 0.5, &d);
		FUZZ_ASSERT(d.wait_ms >= 0 && d.wait_ms <= pol.retry_after_max_ms &&
		                d.lane_pause_ms >= 0 && d.lane_pause_ms <= pol.retry_after_max_ms,
		            "status %d, retry-after %lld: wait %lld, pause %lld", in.status,
		            (long long)retry_after, (long long)d.wait_ms,
		            (long long)d.lane_pause_ms);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *nl;
	struct up_headers h;
	struct gate_feedback fb;
	size_t left = size, n;
	int64_t ra, ms;
	int should;

	memset(&h, 0, sizeof(h));
	while (left > 0) {
		nl = memchr(p, '\n', left);
		n = nl ? (size_t)(nl - p) + 1 : left;
		upstream_header_line(&h, p, n);
		p += n;
		left -= n;
	}
	check_kept(h.retry_after);
	check_kept(h.retry_after_ms);
	check_kept(h.should_retry);
	check_kept(h.limit_tokens);
	check_kept(h.reset_tokens);
	check_kept(h.request_id);

	ra = retry_after_ms(opt(h.retry_after_ms), opt(h.retry_after), WALL_NOW);
	FUZZ_ASSERT(ra >= -1, "retry-after %lld", (long long)ra);
	should = retry_parse_should_retry(opt(h.should_retry));
	FUZZ_ASSERT(should >= -1 && should <= 1, "x-should-retry %d", should);
	retry_parse_feedback(opt(h.limit_tokens), opt(h.remaining_tokens), opt(h.reset_tokens),
	                     opt(h.limit_requests), opt(h.remaining_requests),
	                     opt(h.reset_requests), &fb);
	FUZZ_ASSERT(fb.limit_tokens >= -1 && fb.remaining_tokens >= -1 &&
	                fb.reset_tokens_ms >= -1 && fb.limit_requests >= -1 &&
	                fb.remaining_requests >= -1 && fb.reset_requests_ms >= -1,
	            "a figure below -1");
	round_trip(&fb);
	if (time_parse_duration(h.reset_tokens, &ms) == 0)
		FUZZ_ASSERT(ms >= 0, "duration %lld", (long long)ms);
	gate(&fb);
	decide(ra, should);
	return 0;
}
