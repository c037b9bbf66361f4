/*
 * retry.h - what an upstream answer means for its job, and how long to wait
 * before trying again. Pure: no I/O, the clock and the random draw are
 * arguments. Also parses the headers the decision needs.
 */
#ifndef LLMQ_RETRY_H
#define LLMQ_RETRY_H

#include <stdint.h>

#include "gate.h"

enum retry_verdict {
	RV_SUCCEEDED,    /* 2xx */
	RV_FAILED,       /* final: 4xx, or a request that can never fit */
	RV_RETRY,        /* 5xx, 408, 409, transport error: back off and retry */
	RV_RATE_LIMITED, /* 429 rate limit: pause the lane, back off, retry */
	RV_QUOTA,        /* 429 insufficient_quota: fail, pause the lane */
};

struct retry_input {
	int status;             /* HTTP status; 0 when no answer came */
	int should_retry;       /* x-should-retry: 1 true, 0 false, -1 absent */
	const char *error_code; /* error.code (or error.type) of the answer's body */
	const char *error_msg;  /* error.message of the answer's body */
	int too_big;            /* an answer came but past the size cap: never retried */
};

enum retry_verdict retry_classify(const struct retry_input *in);
const char *retry_verdict_name(enum retry_verdict v);

/*
 * Jittered exponential backoff before try number attempt + 1 (attempt >= 1
 * tries made): base x 2^(attempt - 1), capped at cap, of which the upper half
 * is jittered by rand01 in [0,1).
 */
int64_t retry_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, double rand01);

/*
 * The wait a 429 or 503 asks for: retry-after-ms (milliseconds), else
 * retry-after (seconds, or an HTTP date against now_wall_ms). Either may be
 * NULL. Returns the wait in ms, or -1 when neither header gives one.
 */
int64_t retry_after_ms(const char *retry_after_ms_hdr, const char *retry_after_hdr,
                       int64_t now_wall_ms);

/* x-should-retry: 1, 0, or -1 when absent or neither "true" nor "false". */
int retry_parse_should_retry(const char *v);

/*
 * Provider rate-limit headers to gate feedback. Any argument may be NULL;
 * unparsable values become -1. Resets are durations like "6m0s", "1s", "20ms".
 */
void retry_parse_feedback(const char *limit_tokens, const char *remaining_tokens,
                          const char *reset_tokens, const char *limit_requests,
                          const char *remaining_requests, const char *reset_requests,
                          struct gate_feedback *ret);

#endif
