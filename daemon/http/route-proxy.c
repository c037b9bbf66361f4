/*
 * route-proxy.c - the OpenAI-compatible model endpoints: POST
 * /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/responses.
 *
 * A call is validated and estimated as a batch line is (common/), routed to
 * a lane by its model, queued at the lane's gate as interactive traffic,
 * and, once granted, sent upstream with the lane's key (the caller's
 * Authorization is never forwarded). A non-streamed answer is read whole
 * and retried within the call's wait budget when it is a 429, a 5xx or a
 * transport error; a streamed one is relayed chunk by chunk, with
 * back-pressure, and retried only before its first byte reached the caller.
 * A caller that leaves cancels its transfer and frees its slot. A call that
 * comes back to this llmqd (its hop header names us: a loop of llmqds) is
 * answered 508 at once, before the gate.
 *
 * Ownership: a struct call lives from the request's arrival until it is
 * answered or its caller is gone, and whatever of it the scheduler or the
 * upstream still holds (ticket, transfer, timer) has been given back.
 */
#include "estimate.h"
#include "upstream/hop.h"
#include "http/caller.h"
#include "http/route.h"
#include "llmqd.h"
#include "http/reply.h"
#include "gate/lane.h"
#include "log.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "http/sse.h"
#include "timeutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <event2/buffer.h>

/* A caller's socket holding more unsent bytes than this pauses the upstream. */
#define PROXY_OUT_HIGH (256 * 1024)

struct call {
	struct llmqd *d;
	struct hreq *req;
	int attached; /* the caller's leaving is watched */
	char id[24];
	char endpoint[32];
	char *model;
	char *via;  /* the caller's hop header; NULL: none */
	char *body; /* as the caller sent it, forwarded unchanged */
	size_t body_len;
	int64_t cost;
	int stream;
	int64_t uid;
	const struct lane_config *lane;
	int lane_idx;
	int64_t deadline; /* monotonic: the wait budget ends */
	int tries;
	struct sched_ticket *ticket;
	struct up_transfer *t;
	struct event *retry;
	int relaying;        /* the reply's head went out: no more retries */
	struct sse_scan sse; /* the usage a relayed stream reports */
};

static const struct up_stream relay_ops;

/*
 * A call's id: a counter from a random start, mixed (splitmix64's
 * finaliser, a bijection), so ids never repeat within a run and look
 * unrelated to each other, at no system call a call.
 */
static uint64_t call_id_next(uint64_t salt)
{
	static uint64_t start, n;
	uint64_t z;

	if (n == 0 && getrandom(&start, sizeof(start), GRND_NONBLOCK) != (ssize_t)sizeof(start))
		start = (uint64_t)time_wall_ms() ^ salt;
	z = start + ++n * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void call_free(struct call *c)
{
	if (!c)
		return;
	if (c->retry)
		event_free(c->retry);
	sse_scan_clear(&c->sse);
	free(c->model);
	free(c->via);
	free(c->body);
	free(c);
}

/* The caller went away: give back whatever the call holds. */
static void on_caller_gone(void *arg)
{
	struct call *c = arg;
	struct scheduler *s = c->d->sched;

	log_debug("call %s: the caller left", c->id);
	c->attached = 0;
	if (c->t) {
		upstream_abort(sched_upstream(s), c->t);
		c->t = NULL;
	}
	if (c->ticket)
		sched_call_cancel(s, c->ticket);
	c->ticket = NULL;
	call_free(c); /* the server frees the request */
}

/*
 * Before the final answer is sent: that send may close the connection at
 * once, and its gone callback must not find the call.
 */
static void detach(struct call *c)
{
	if (c->attached) {
		hreq_on_gone(c->req, NULL, NULL);
		hreq_on_drain(c->req, NULL, NULL);
	}
	c->attached = 0;
}

static void add_header(struct hreq *h, const char *name, const char *v)
{
	if (v && *v)
		hreq_add_header(h, name, v);
}

/* The upstream's headers that matter to an SDK. */
static void relay_headers(struct hreq *h, const struct up_headers *u, const char *dflt_type)
{
	add_header(h, "Content-Type", u->content_type[0] ? u->content_type : dflt_type);
	add_header(h, "x-request-id", u->request_id);
	add_header(h, "openai-processing-ms", u->processing_ms);
	add_header(h, "x-ratelimit-limit-requests", u->limit_requests);
	add_header(h, "x-ratelimit-limit-tokens", u->limit_tokens);
	add_header(h, "x-ratelimit-remaining-requests", u->remaining_requests);
	add_header(h, "x-ratelimit-remaining-tokens", u->remaining_tokens);
	add_header(h, "x-ratelimit-reset-requests", u->reset_requests);
	add_header(h, "x-ratelimit-reset-tokens", u->reset_tokens);
	add_header(h, "retry-after", u->retry_after);
	add_header(h, "retry-after-ms", u->retry_after_ms);
	add_header(h, "x-should-retry", u->should_retry);
}

static void fmt_ms(char *buf, size_t len, int64_t ms)
{
	if (ms >= 1000)
		snprintf(buf, len, "%llds%lldms", (long long)(ms / 1000), (long long)(ms % 1000));
	else
		snprintf(buf, len, "%lldms", (long long)(ms > 0 ? ms : 0));
}

/* llmq's own view of the lane, in the provider's x-ratelimit-* terms. */
static void lane_headers(struct call *c, struct hreq *h)
{
	struct lane_snapshot snap;
	int64_t now = time_mono_ms();
	double rate;
	char v[64];

	if (sched_lane_snapshot(c->d->sched, c->lane_idx, now, &snap) < 0)
		return;
	if (snap.gate.lim.tpm > 0) {
		rate = gate_tokens_per_ms(&snap.gate);
		snprintf(v, sizeof(v), "%lld", (long long)gate_effective_tpm(&snap.gate));
		hreq_add_header(h, "x-ratelimit-limit-tokens", v);
		snprintf(v, sizeof(v), "%lld", (long long)(snap.gate.tok > 0 ? snap.gate.tok : 0));
		hreq_add_header(h, "x-ratelimit-remaining-tokens", v);
		fmt_ms(v, sizeof(v),
		       rate > 0 && snap.gate.tok < 0 ? (int64_t)ceil(-snap.gate.tok / rate) : 0);
		hreq_add_header(h, "x-ratelimit-reset-tokens", v);
	}
	if (snap.gate.lim.rpm > 0) {
		rate = gate_requests_per_ms(&snap.gate);
		snprintf(v, sizeof(v), "%lld", (long long)(rate * 60000.0 + 0.5));
		hreq_add_header(h, "x-ratelimit-limit-requests", v);
		snprintf(v, sizeof(v), "%lld", (long long)(snap.gate.req > 0 ? snap.gate.req : 0));
		hreq_add_header(h, "x-ratelimit-remaining-requests", v);
		fmt_ms(v, sizeof(v),
		       rate > 0 && snap.gate.req < 1 ? (int64_t)ceil((1 - snap.gate.req) / rate)
		                                     : 0);
		hreq_add_header(h, "x-ratelimit-reset-requests", v);
	}
}

/* The gate cannot serve the call in time: 429 at once, with when to come back. */
static void answer_gate_429(struct call *c, int64_t retry_after_ms)
{
	struct hreq *h = c->req;
	char v[32];

	snprintf(v, sizeof(v), "%lld", (long long)((retry_after_ms + 999) / 1000));
	hreq_add_header(h, "retry-after", v);
	snprintf(v, sizeof(v), "%lld", (long long)retry_after_ms);
	hreq_add_header(h, "retry-after-ms", v);
	lane_headers(c, h);
	c->d->refusals[REFUSAL_GATE_WAIT]++;
	http_error(c->req, 429, "rate_limit_error", "rate_limit_exceeded",
	           "llmq: lane %s cannot serve this call within %llds at its rate limits; "
	           "retry after %.1fs",
	           c->lane->name, (long long)(c->lane->interactive_max_wait_ms / 1000),
	           (double)retry_after_ms / 1000.0);
}

/* No wait would do (as admission refuses such a batch line): 400, not a 429. */
static void answer_never_fits(struct call *c)
{
	struct lane_snapshot snap;
	int64_t eff = 0;

	if (sched_lane_snapshot(c->d->sched, c->lane_idx, time_mono_ms(), &snap) == 0)
		eff = gate_effective_tpm(&snap.gate);
	c->d->refusals[REFUSAL_TOO_LARGE]++;
	http_error(c->req, 400, "invalid_request_error", "request_too_large",
	           "llmq: this call needs an estimated %lld tokens, more than lane %s's whole "
	           "effective budget of %lld tokens/min; it can never run: lower its max_tokens "
	           "(or max_completion_tokens, max_output_tokens) or the prompt, or raise the "
	           "lane's tpm_limit",
	           (long long)c->cost, c->lane->name, (long long)eff);
}

/*
 * The caller's budget (llmqd.conf's [user] or [group]) is spent: 429 with
 * when it resets, or 400 when the call is more than the whole budget.
 */
static void answer_over_budget(struct call *c, const struct sched_budget_refusal *why)
{
	struct hreq *h = c->req;
	int64_t in = why->v.resets_at - time_wall_ms();
	char v[32];

	c->d->refusals[REFUSAL_BUDGET]++;
	if (why->v.fit == BUDGET_NEVER) {
		http_error(h, 400, "invalid_request_error", "budget_exceeded", "llmq: %s",
		           why->message);
		return;
	}
	snprintf(v, sizeof(v), "%lld", (long long)(in > 1000 ? (in + 999) / 1000 : 1));
	hreq_add_header(h, "retry-after", v);
	http_error(h, 429, "rate_limit_error", "budget_exceeded", "llmq: %s", why->message);
}

static void on_over_budget(void *ud, const struct sched_budget_refusal *why)
{
	struct call *c = ud;

	c->ticket = NULL;
	detach(c);
	answer_over_budget(c, why);
	call_free(c);
}

static void on_refused(void *ud, int64_t retry_after_ms)
{
	struct call *c = ud;

	c->ticket = NULL;
	detach(c);
	answer_gate_429(c, retry_after_ms);
	call_free(c);
}

static void on_granted(void *ud);

static int enqueue(struct call *c)
{
	int64_t now = time_mono_ms(), ra = 0;
	struct sched_call_info info = {
	    .lane = c->lane->name,
	    .endpoint = c->endpoint,
	    .model = c->model,
	    .call_id = c->id,
	    .try_no = c->tries + 1,
	    .stream = c->stream,
	    .uid = c->uid,
	    .cost = c->cost,
	    .max_wait_ms = c->deadline > now ? c->deadline - now : 0,
	    .grant = on_granted,
	    .refuse = on_refused,
	    .over_budget = on_over_budget,
	    .ud = c,
	    .request_body = c->body,
	};
	struct sched_budget_refusal why;
	int r = sched_call_enqueue(c->d->sched, &info, &c->ticket, &ra, &why);

	if (r == -EAGAIN) {
		c->ticket = NULL;
		detach(c);
		answer_gate_429(c, ra);
		return r;
	}
	if (r == -E2BIG) {
		c->ticket = NULL;
		detach(c);
		answer_never_fits(c);
		return r;
	}
	if (r == -EDQUOT) {
		c->ticket = NULL;
		detach(c);
		answer_over_budget(c, &why);
		return r;
	}
	if (r == -EBUSY) {
		c->ticket = NULL;
		detach(c);
		http_error(c->req, 503, "server_error", "lane_paused",
		           "llmq: lane %s is paused by an operator: nothing is sent upstream until "
		           "they resume it (llmq resume %s); try again later",
		           c->lane->name, c->lane->name);
		return r;
	}
	if (r < 0) {
		c->ticket = NULL;
		detach(c);
		http_error(c->req, 500, "server_error", NULL, "llmqd cannot queue the call: %s",
		           strerror(-r));
	}
	return r;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct call *c = arg;

	if (enqueue(c) < 0)
		call_free(c); /* answered */
}

static void on_up_done(void *ud, const struct up_response *resp);

static void on_granted(void *ud)
{
	struct call *c = ud;
	struct up_response fake;
	struct up_request ur;
	char url[1024];
	int r;

	r = lane_url(c->lane, c->endpoint, url, sizeof(url));
	if (r == 0) {
		ur = (struct up_request){
		    .url = url,
		    .api_key = sched_lane_key(c->d->sched, c->lane_idx),
		    .via = c->via,
		    .body = c->body,
		    .body_len = c->body_len,
		    .connect_timeout_ms = (long)c->lane->connect_timeout_ms,
		    .timeout_ms = (long)c->lane->request_timeout_ms,
		    .done = on_up_done,
		    .stream = c->stream ? &relay_ops : NULL,
		    .userdata = c,
		};
		r = upstream_start(sched_upstream(c->d->sched), &ur, &c->t);
	}
	if (r < 0) {
		c->t = NULL;
		memset(&fake, 0, sizeof(fake));
		fake.transport_error = -r;
		fake.error = "could not start the transfer";
		fake.body = "";
		on_up_done(c, &fake);
	}
}

static int relay_head(void *ud, int status, const struct up_headers *u)
{
	struct call *c = ud;

	if (status < 200 || status > 299)
		return 0; /* an error answer is read whole: it may be retried */
	c->relaying = 1;
	relay_headers(c->req, u, "text/event-stream");
	hreq_start(c->req, status);
	return 1;
}

static void on_drained(void *arg)
{
	struct call *c = arg;

	if (c->t)
		upstream_resume(sched_upstream(c->d->sched), c->t);
}

static int relay_data(void *ud, const char *data, size_t len)
{
	struct call *c = ud;

	if (!c->attached)
		return -1;
	sse_scan_feed(&c->sse, data, len);
	if (hreq_chunk(c->req, data, len) > PROXY_OUT_HIGH)
		return UP_PAUSE; /* a slow caller slows its transfer, not llmqd's memory */
	return 0;
}

static const struct up_stream relay_ops = {
    .head = relay_head,
    .data = relay_data,
};

static void answer_upstream(struct call *c, const struct up_response *resp)
{
	if (resp->status == 0) {
		http_error(c->req, 502, "upstream_error", "upstream_unreachable",
		           "llmq: the upstream of lane %s did not answer: %s", c->lane->name,
		           resp->error ? resp->error : "transfer failed");
		return;
	}
	relay_headers(c->req, &resp->hdr, "application/json");
	hreq_reply(c->req, resp->status, resp->body, resp->body_len);
}

static void on_up_done(void *ud, const struct up_response *resp)
{
	struct call *c = ud;
	struct timeval tv;
	int64_t again = -1;

	c->t = NULL;
	sched_call_done(c->d->sched, c->ticket, resp, c->sse.used >= 0 ? &c->sse.usage : NULL,
	                !c->relaying, c->deadline, c->relaying ? NULL : resp->body, &again);
	c->ticket = NULL;
	c->tries++;
	if (c->relaying) {
		detach(c);
		hreq_end(c->req);
		call_free(c);
		return;
	}
	if (again >= 0) {
		log_debug("call %s: HTTP %d, trying again in %lldms", c->id, resp->status,
		          (long long)again);
		time_to_timeval(again, &tv);
		if (evtimer_add(c->retry, &tv) == 0)
			return;
	}
	detach(c);
	answer_upstream(c, resp);
	call_free(c);
}

/*
 * The call came back to this llmqd, or passed too many: a lane's upstream
 * on its way leads back here. 508 at once, and SDKs are told not to retry.
 * Returns 1 when answered.
 */
static int refuse_loop(struct llmqd *d, struct hreq *req, const char *path)
{
	const char *via = hreq_header(req, HOP_HEADER);
	int hops, r = hop_check(via, sched_instance_id(d->sched), &hops);

	if (r == 0)
		return 0;
	d->refusals[REFUSAL_LOOP]++;
	log_warn("HTTP %s: a loop between llmqds: the request %s (%s: %.200s); answered 508. "
	         "Check the base_url of the lanes on its way",
	         path, r == -ELOOP ? "came back to this llmqd" : "passed too many llmqds",
	         HOP_HEADER, via);
	hreq_add_header(req, "x-should-retry", "false");
	if (r == -ELOOP)
		http_error(req, 508, "invalid_request_error", "loop_detected",
		           "llmq: loop detected: this request already passed through this llmqd "
		           "(%s: %.200s): the upstream of a lane on its way leads back here. Point "
		           "that lane's base_url at the provider, or at an llmqd that does not "
		           "forward back",
		           HOP_HEADER, via);
	else
		http_error(req, 508, "invalid_request_error", "loop_detected",
		           "llmq: loop detected: this request has already passed %d llmqds (%s: "
		           "%.200s); more than %d in a row are taken for a loop: check the "
		           "base_url of the lanes on its way",
		           hops, HOP_HEADER, via, HOP_MAX);
	return 1;
}

static int body_is_stream(json_object *body)
{
	json_object *v;

	return json_object_object_get_ex(body, "stream", &v) && json_object_get_boolean(v);
}

static void http_proxy_handle(struct llmqd *d, struct hreq *req, const char *path,
                              struct evbuffer *in)
{
	json_object *body = NULL;
	const char *model, *via;
	struct call *c;
	char err[256];
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	c->d = d;
	c->req = req;
	sse_scan_init(&c->sse);
	r = http_caller(d, req, 0, &c->uid);
	if (r < 0) {
		http_refuse_caller(req, r);
		goto fail;
	}
	if (refuse_loop(d, req, path))
		goto fail;
	snprintf(c->endpoint, sizeof(c->endpoint), "%s", path);
	snprintf(c->id, sizeof(c->id), "c_%016llx", (unsigned long long)call_id_next((uintptr_t)c));
	c->body_len = evbuffer_get_length(in);
	c->body = malloc(c->body_len + 1);
	c->retry = evtimer_new(d->base, retry_cb, c);
	via = hreq_header(req, HOP_HEADER);
	c->via = via ? strdup(via) : NULL;
	if (!c->body || !c->retry || (via && !c->via)) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		goto fail;
	}
	evbuffer_copyout(in, c->body, c->body_len);
	c->body[c->body_len] = '\0';
	r = proto_parse_object(c->body, c->body_len, &body, err, sizeof(err));
	if (r == 0)
		r = proto_check_body(body, 1, &model, err, sizeof(err));
	if (r < 0) {
		d->refusals[REFUSAL_INVALID]++;
		http_error(req, 400, "invalid_request_error", r == -ENOMEM ? NULL : "invalid_body",
		           "%s", r == -ENOMEM ? "llmqd ran out of memory" : err);
		goto fail;
	}
	c->model = strdup(model);
	if (!c->model) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		goto fail;
	}
	c->lane = config_lane_for_model(d->cfg, model);
	c->lane_idx = sched_lane_index(d->sched, c->lane->name);
	c->cost = estimate_tokens(body, path, c->lane->est_tokens_per_run);
	c->stream = body_is_stream(body);
	json_object_put(body);
	body = NULL;
	c->deadline = time_mono_ms() + c->lane->interactive_max_wait_ms;
	c->attached = 1;
	hreq_on_gone(req, on_caller_gone, c);
	hreq_on_drain(req, on_drained, c);
	if (enqueue(c) < 0)
		call_free(c); /* answered */
	return;
fail:
	json_object_put(body);
	call_free(c);
}

static void http_proxy_on_body(void *ud, struct hreq *req, struct evbuffer *body)
{
	http_proxy_handle(ud, req, hreq_path(req), body);
}

/* The body first, whole: a call is validated, estimated and routed by it. */
static void http_proxy_route(struct llmqd *d, struct hreq *req, const char *path)
{
	hreq_read_body(req, LLMQ_MAX_LINE, http_proxy_on_body, d);
}

const struct http_route route_proxy[] = {
    {.method = "POST", .match = proto_known_url, .handle = http_proxy_route},
    {0},
};
