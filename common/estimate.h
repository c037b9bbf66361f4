/*
 * estimate.h - a request's token cost, counted the way the provider's rate
 * limiter counts it: prompt characters / 4, plus the largest completion it may
 * produce (max_tokens, max_completion_tokens or max_output_tokens, times n).
 * Pure; shared by the daemon's gate and the client's --dry-run.
 */
#ifndef LLMQ_ESTIMATE_H
#define LLMQ_ESTIMATE_H

#include <stdint.h>
#include <json-c/json.h>

/* No estimate is larger: far past any provider's budget, far from overflow. */
#define ESTIMATE_MAX ((int64_t)1000000000000) /* 10^12 */

/*
 * Estimate the tokens one request body costs. per_run is the configured
 * estimate (OPENAI_EST_TOKENS_PER_RUN): it stands in for the completion when
 * the body sets no output limit, and for the whole request when the body has
 * nothing to count. Embeddings have no completion part. Always 1..ESTIMATE_MAX.
 */
int64_t estimate_tokens(json_object *body, const char *url, int64_t per_run);

/* Characters (UTF-8 code points) of the prompt text in body; -1 if none found. */
int64_t estimate_prompt_chars(json_object *body);

#endif
