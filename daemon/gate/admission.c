/*
 * admission.c - the preflight guard's arithmetic.
 */
#include "gate/admission.h"
#include "timeutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int64_t admission_drain_ms(const struct gate *g, int64_t avg_latency_ms, int64_t jobs,
                           int64_t tokens, int64_t now)
{
	double t = 0, x, rate;

	if (jobs <= 0)
		return 0;
	rate = gate_tokens_per_ms(g);
	if (rate > 0) {
		x = ((double)tokens - fmax(g->tok, 0)) / rate;
		t = fmax(t, x);
	}
	rate = gate_requests_per_ms(g);
	if (rate > 0)
		t = fmax(t, (double)jobs / rate);
	if (g->lim.stagger_ms > 0)
		t = fmax(t, (double)(jobs - 1) * (double)g->lim.stagger_ms);
	if (avg_latency_ms > 0)
		t = fmax(t, ceil((double)jobs / g->lim.max_concurrency) * (double)avg_latency_ms);
	if (g->paused_until > now)
		t += (double)(g->paused_until - now);
	return t > 9e15 ? INT64_MAX : (int64_t)ceil(t);
}

int64_t admission_call_wait_ms(const struct gate *g, int64_t avg_latency_ms, int64_t ahead_jobs,
                               int64_t ahead_tokens, int64_t cost, int64_t now)
{
	double t = 0, rate;
	int64_t slots;

	(void)cost; /* with pacing, a call launches once the debt ahead of it is paid */
	if (g->paused_until > now)
		t = (double)(g->paused_until - now);
	if (g->next_launch > now)
		t = fmax(t,
		         (double)(g->next_launch - now) + (double)ahead_jobs * g->lim.stagger_ms);
	rate = gate_tokens_per_ms(g);
	if (rate > 0)
		t = fmax(t, ((double)ahead_tokens - g->tok) / rate);
	rate = gate_requests_per_ms(g);
	if (rate > 0)
		t = fmax(t, ((double)ahead_jobs + 1 - g->req) / rate);
	slots = g->lim.max_concurrency - g->in_flight;
	if (ahead_jobs >= slots && avg_latency_ms > 0)
		t = fmax(t, (double)((ahead_jobs - slots) / g->lim.max_concurrency + 1) *
		                (double)avg_latency_ms);
	return t <= 0 ? 0 : t > 9e15 ? INT64_MAX : (int64_t)ceil(t);
}

int admission_never_fits(const struct gate *g, int64_t cost)
{
	return gate_tokens_per_ms(g) > 0 && cost > gate_effective_tpm(g);
}

static void refuse(struct admission_verdict *v, int retryable, int64_t after, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void refuse(struct admission_verdict *v, int retryable, int64_t after, const char *fmt, ...)
{
	va_list ap;

	if (v->refused)
		return; /* keep the first reason */
	v->refused = 1;
	v->retryable = retryable;
	v->retry_after_ms = after < 0 ? 0 : after;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

void admission_check(const struct admission_load *loads, int n, int64_t window_ms, int64_t now,
                     struct admission_verdict *ret)
{
	char w[32], f[32];
	int i;

	memset(ret, 0, sizeof(*ret));
	ret->retryable = 1;
	for (i = 0; i < n; i++) {
		const struct admission_load *l = &loads[i];
		int64_t eff = gate_effective_tpm(l->gate);
		int64_t jobs = l->queued_jobs + l->batch_jobs;
		int64_t tokens = l->queued_tokens + l->batch_tokens;
		int64_t finish, alone, over;
		double rate = gate_tokens_per_ms(l->gate);

		if (l->batch_jobs == 0)
			continue;
		if (admission_never_fits(l->gate, l->max_cost)) {
			refuse(ret, 0, 0,
			       "lane %s: the request on line %lld needs an estimated %lld tokens, "
			       "more than the lane's whole effective budget of %lld tokens/min; it "
			       "can never run: lower its max_tokens or raise the lane's tpm_limit",
			       l->cfg->name, (long long)l->max_cost_line, (long long)l->max_cost,
			       (long long)eff);
			continue;
		}
		if (l->cfg->queue_max_jobs > 0 && jobs > l->cfg->queue_max_jobs) {
			over = jobs - l->cfg->queue_max_jobs;
			refuse(
			    ret, l->batch_jobs <= l->cfg->queue_max_jobs,
			    admission_drain_ms(l->gate, l->avg_latency_ms, over,
			                       tokens / jobs * over, now),
			    "lane %s: %lld jobs are queued and the batch adds %lld, past the "
			    "lane's queue_max_jobs of %lld; try again when the queue has drained",
			    l->cfg->name, (long long)l->queued_jobs, (long long)l->batch_jobs,
			    (long long)l->cfg->queue_max_jobs);
			continue;
		}
		if (l->cfg->queue_max_tokens > 0 && tokens > l->cfg->queue_max_tokens) {
			over = tokens - l->cfg->queue_max_tokens;
			refuse(
			    ret, l->batch_tokens <= l->cfg->queue_max_tokens,
			    rate > 0 ? (int64_t)ceil((double)over / rate) : 0,
			    "lane %s: %lld tokens are queued and the batch adds %lld, past the "
			    "lane's queue_max_tokens of %lld; try again when the queue has drained",
			    l->cfg->name, (long long)l->queued_tokens, (long long)l->batch_tokens,
			    (long long)l->cfg->queue_max_tokens);
			continue;
		}
		finish = admission_drain_ms(l->gate, l->avg_latency_ms, jobs, tokens, now);
		if (finish > ret->finish_ms)
			ret->finish_ms = finish;
		if (window_ms > 0 && finish > window_ms) {
			alone = admission_drain_ms(l->gate, l->avg_latency_ms, l->batch_jobs,
			                           l->batch_tokens, now);
			time_format_duration(finish, f, sizeof(f));
			time_format_duration(window_ms, w, sizeof(w));
			refuse(
			    ret, alone <= window_ms, finish - window_ms,
			    "lane %s: at the lane's effective rate the queue (%lld jobs) and this "
			    "batch (%lld jobs) would take %s, longer than the completion window "
			    "of %s; split the batch, widen --window, or try again later",
			    l->cfg->name, (long long)l->queued_jobs, (long long)l->batch_jobs, f,
			    w);
		}
	}
}
