/*
 * metrics.h - Prometheus text exposition (format 0.0.4) of what llmqd
 * counts: requests by lane, class and outcome, 429s, tokens, in flight and
 * queued, bucket levels and limits, pauses (an operator's too), gate wait
 * and latency histograms, batches by every state, refusals by reason, the
 * database's health, and usage - requests, tokens and cost by lane, class,
 * user and model, with bounded label sets. Served at GET /metrics and by
 * the socket op "metrics". Reads lane snapshots and the store; changes
 * nothing.
 */
#ifndef LLMQ_METRICS_H
#define LLMQ_METRICS_H

#include "llmqd.h"

struct evbuffer;

/* Append the exposition to out; 0 or -errno. */
int metrics_render(struct llmqd *d, struct evbuffer *out);

#endif
