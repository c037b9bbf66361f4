/*
 * retry.h - what an upstream answer means for its job and its lane, and how
 * long to wait before trying again: the whole policy, in one pure function
 * (retry_decide). No I/O; the random draw is an argument. Also parses the
 * headers the decision needs.
 */
#ifndef LLMQ_RETRY_H
#define LLMQ_RETRY_H

#include <stdint.h>

#include "gate/gate.h"

enum retry_verdict {
	RV_SUCCEEDED,    /* 2xx */
	RV_FAILED,       /* final: 4xx, 508 (a loop), or a request that can never fit */
	RV_RETRY,        /* 5xx, 408, 409, transport error: back off and retry */
	RV_RATE_LIMITED, /* 429 rate limit: pause the lane, back off, retry */
	RV_QUOTA,        /* 429 insufficient_quota: the key has no credit: pause the lane */
	RV_UNREACHABLE,  /* the request never reached the upstream (refused, DNS, TLS) */
};

struct retry_input {
	int status;             /* HTTP status; 0 when no answer came */
	int should_retry;       /* x-should-retry: 1 true, 0 false, -1 absent */
	const char *error_code; /* error.code (or error.type) of the answer's body */
	const char *error_msg;  /* error.message of the answer's body */
	int too_big;            /* an answer came but past the size cap: never retried */
	int unsent;             /* no answer, and the request never went out */
};

enum retry_verdict retry_classify(const struct retry_input *in);
/*
 * What an answer spent of its lane's budget, for gate_done(): the usage it
 * reports (total, -1 when absent: the estimate stays charged); 0 for an
 * answer that says the request was not processed - a 4xx other than a rate
 * limit (a bad request, "request too large", a loop) - so that one refused
 * call cannot leave its lane in debt. An answer too large to keep was
 * processed (and billed): its estimate stays.
 */
int64_t retry_spent(const struct retry_input *in, enum retry_verdict v, int64_t total);
const char *retry_verdict_name(enum retry_verdict v);

/* A lane's policy for its jobs' tries. */
struct retry_policy {
	int max_attempts;        /* tries that are the job's own fault */
	int64_t backoff_base_ms; /* backoff = base x 2^(n-1), jittered, capped */
	int64_t backoff_cap_ms;
	int64_t retry_after_max_ms; /* the longest retry-after honoured */
	int64_t quota_pause_ms;     /* the lane's pause, and probe interval, without credit */
	int64_t lane_wait_max_ms;   /* how long a job may wait for its lane (429s, unreachable) */
};

/* The job, as the try that just ended leaves it. */
struct retry_job {
	int tries;            /* tries made, this one included */
	int free_tries;       /* of those before this one, how many did not count */
	int64_t lane_wait_ms; /* waited so far because of the lane's state */
};

enum retry_job_action {
	RJ_SUCCEED,
	RJ_FAIL,
	RJ_REQUEUE, /* queued again, not before now + wait_ms */
};

/* What the answer says about the lane, for its circuit breaker. */
enum retry_lane_event {
	RL_ANSWERED,    /* the upstream answered (any HTTP status but a 429 or quota) */
	RL_UNREACHABLE, /* no answer: refused, DNS, TLS, timeout, a broken connection */
	RL_RATE_LIMITED,
	RL_QUOTA,
};

struct retry_decision {
	enum retry_verdict verdict;
	enum retry_job_action job;
	int counts;            /* the try spends one of the job's max_attempts */
	int64_t wait_ms;       /* RJ_REQUEUE: before the next try */
	int64_t lane_wait_ms;  /* of wait_ms, how much is the lane's (added to the job's) */
	int64_t lane_pause_ms; /* pause the lane this long; 0: no pause */
	enum retry_lane_event lane;
	int learn_short_window; /* a 429 although the provider's headers said there was room */
	enum {
		RG_NONE,      /* RJ_FAIL: the answer's own error */
		RG_ATTEMPTS,  /* max_attempts tries counted */
		RG_LANE_WAIT, /* waited lane_wait_max_ms for its lane */
	} give_up;
};

/*
 * The one decision after a batch job's try. a is the classified answer
 * (retry_classify's input), retry_after the wait it asks for (-1: none),
 * room whether the provider's headers before this launch said there was
 * room for it. The rules:
 *   - 2xx succeeds; a final 4xx, or an answer past the size cap, fails;
 *   - 5xx, 408, 409, a timeout or a broken connection is the job's fault:
 *     it counts, backs off (retry-after when longer), and fails once
 *     max_attempts tries have counted;
 *   - a 429, no credit, or an upstream that cannot be reached is the lane's
 *     state: it does not count; the lane pauses (retry-after, backoff, or
 *     quota_pause), and the job waits with it - a 429 or an unreachable
 *     upstream for at most lane_wait_max_ms in all, no credit until its
 *     batch's window ends;
 *   - a 429 that came although the provider said there was room teaches the
 *     lane that the provider enforces a window shorter than its minute.
 */
void retry_decide(const struct retry_input *a, int64_t retry_after, int room,
                  const struct retry_policy *p, const struct retry_job *j, double rand01,
                  struct retry_decision *d);

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
