/*
 * metrics.c - the exposition text, one family at a time: the lanes'
 * requests, tokens, buckets, pauses and histograms, batches by state,
 * refusals, the socket, the fleet and the database. The families by user
 * are metrics-usage.c's.
 */
#include "view/metrics-private.h"
#include "fleet/fleet.h"
#include "engine/health.h"
#include "sock/ipc.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "upstream/upstream.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <event2/buffer.h>

#define METRICS_STATES 16

void metrics_put(struct metrics_out *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(o->buf, fmt, ap) < 0)
		o->failed = 1;
	va_end(ap);
}

void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
	metrics_put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(struct metrics_out *o, const char *name, const char *lane, const char *cls,
                      const struct stats_histo *h)
{
	uint64_t cum = 0;
	int i;

	for (i = 0; i < STATS_BUCKETS; i++) {
		cum += h->le[i];
		metrics_put(o, "%s_bucket{lane=\"%s\",class=\"%s\",le=\"%g\"} %llu\n", name, lane,
		            cls, stats_bucket_le[i], (unsigned long long)cum);
	}
	metrics_put(o, "%s_bucket{lane=\"%s\",class=\"%s\",le=\"+Inf\"} %llu\n", name, lane, cls,
	            (unsigned long long)h->count);
	metrics_put(o, "%s_sum{lane=\"%s\",class=\"%s\"} %.6f\n", name, lane, cls, h->sum);
	metrics_put(o, "%s_count{lane=\"%s\",class=\"%s\"} %llu\n", name, lane, cls,
	            (unsigned long long)h->count);
}

/* Per lane and class, one counter taken from the stats by field offset. */
static void lane_counter(struct metrics_out *o, const struct lane_snapshot *snap, int n,
                         const char *name, const char *help, size_t off)
{
	int i, c;

	metrics_family(o, name, "counter", help);
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			metrics_put(o, "%s{lane=\"%s\",class=\"%s\"} %llu\n", name,
			            snap[i].cfg->name, stats_class_name(c),
			            (unsigned long long)((
			                const uint64_t *)((const char *)&snap[i].stats + off))[c]);
}

/* The fleet's families, when llmqd has one (LLMQ_REDIS_URL). */
static void fleet_metrics(struct metrics_out *o, struct llmqd *d, const struct lane_snapshot *snap,
                          int n)
{
	struct fleet_stats st;
	uint64_t cum = 0;
	int i;

	if (sched_fleet_stats(d->sched, &st) < 0)
		return;
	metrics_family(o, "llmq_fleet_redis_up", "gauge",
	               "1 while the fleet's Redis answers (the lanes' gates are shared).");
	metrics_put(o, "llmq_fleet_redis_up %d\n", st.up);
	metrics_family(
	    o, "llmq_fleet_fallbacks_total", "counter",
	    "Times the lanes fell back to gating alone (Redis unreachable, slow or refusing).");
	metrics_put(o, "llmq_fleet_fallbacks_total %llu\n", (unsigned long long)st.fallbacks);
	metrics_family(o, "llmq_fleet_hosts", "gauge",
	               "Hosts sharing the lane's key at the last heartbeat (this one included).");
	for (i = 0; i < n; i++)
		if (snap[i].fleet_mode)
			metrics_put(o, "llmq_fleet_hosts{lane=\"%s\",share=\"%s\"} %d\n",
			            snap[i].cfg->name, snap[i].share, snap[i].fleet_hosts);
	metrics_family(o, "llmq_fleet_lane_shared", "gauge",
	               "1 while the lane's gate is the fleet's; 0 while it gates alone.");
	for (i = 0; i < n; i++)
		if (snap[i].fleet_mode)
			metrics_put(o, "llmq_fleet_lane_shared{lane=\"%s\"} %d\n",
			            snap[i].cfg->name, strcmp(snap[i].fleet_mode, "shared") == 0);
	metrics_family(o, "llmq_fleet_grant_seconds", "histogram",
	               "Round trips of the grants asked of the fleet's Redis.");
	for (i = 0; i < FLEET_RTT_BUCKETS; i++) {
		cum += st.rtt_le[i];
		metrics_put(o, "llmq_fleet_grant_seconds_bucket{le=\"%g\"} %llu\n", fleet_rtt_le[i],
		            (unsigned long long)cum);
	}
	metrics_put(o, "llmq_fleet_grant_seconds_bucket{le=\"+Inf\"} %llu\n",
	            (unsigned long long)st.grants);
	metrics_put(o, "llmq_fleet_grant_seconds_sum %.6f\n", st.rtt_sum);
	metrics_put(o, "llmq_fleet_grant_seconds_count %llu\n", (unsigned long long)st.grants);
}

int metrics_render(struct llmqd *d, struct evbuffer *buf)
{
	struct lane_snapshot snap[CONFIG_MAX_LANES];
	struct metrics_out o = {.buf = buf};
	struct ipc_stats is;
	int64_t now = time_mono_ms(), jobs[CONFIG_MAX_LANES], tokens, counts[METRICS_STATES],
	        paused;
	int n, i, c, so, r, n_states, refuse;
	uint64_t builtin, curl;
	char why[512];

	for (n_states = 0; proto_batch_states[n_states] && n_states < METRICS_STATES; n_states++)
		;

	for (n = 0; n < CONFIG_MAX_LANES && sched_lane_snapshot(d->sched, n, now, &snap[n]) == 0;
	     n++) {
		r = store_backlog(d->store, snap[n].cfg->name, &jobs[n], &tokens);
		if (r < 0)
			return r;
	}
	r = store_batch_states(d->store, proto_batch_states, n_states, counts);
	if (r == 0)
		r = store_batches_paused(d->store, &paused);
	if (r < 0)
		return r;

	metrics_family(&o, "llmq_build_info", "gauge", "llmqd's version.");
	metrics_put(&o, "llmq_build_info{version=\"%s\"} 1\n", LLMQ_VERSION);
	metrics_family(&o, "llmq_uptime_seconds", "gauge", "Seconds since llmqd started.");
	metrics_put(&o, "llmq_uptime_seconds %.3f\n", (double)(now - d->started_mono) / 1000.0);

	metrics_family(
	    &o, "llmq_requests_total", "counter",
	    "Upstream tries by lane, class and outcome; refused: an interactive call the gate "
	    "could not serve within its wait, answered 429 without an upstream call.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			for (so = 0; so < SO__COUNT; so++)
				metrics_put(
				    &o,
				    "llmq_requests_total{lane=\"%s\",class=\"%s\",outcome=\"%s\"} "
				    "%llu\n",
				    snap[i].cfg->name, stats_class_name(c), stats_outcome_name(so),
				    (unsigned long long)snap[i].stats.requests[c][so]);
	lane_counter(&o, snap, n, "llmq_upstream_429_total",
	             "Answers with HTTP 429 from the upstream.",
	             offsetof(struct lane_stats, upstream_429));
	metrics_family(&o, "llmq_retries_total", "counter",
	               "Tries answered in a way that is tried again.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			metrics_put(
			    &o, "llmq_retries_total{lane=\"%s\",class=\"%s\"} %llu\n",
			    snap[i].cfg->name, stats_class_name(c),
			    (unsigned long long)(snap[i].stats.requests[c][SO_RETRY] +
			                         snap[i].stats.requests[c][SO_RATE_LIMITED]));
	lane_counter(&o, snap, n, "llmq_tokens_charged_total",
	             "Tokens the gate reserved at launch (estimates).",
	             offsetof(struct lane_stats, tokens_charged));
	lane_counter(&o, snap, n, "llmq_tokens_used_total", "Tokens the answers reported as used.",
	             offsetof(struct lane_stats, tokens_used));

	metrics_family(&o, "llmq_in_flight", "gauge", "Transfers in flight.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			metrics_put(&o, "llmq_in_flight{lane=\"%s\",class=\"%s\"} %d\n",
			            snap[i].cfg->name, stats_class_name(c),
			            snap[i].gate.class_in_flight[c]);
	metrics_family(&o, "llmq_queued", "gauge",
	               "Work waiting at the lane: batch jobs queued, calls waiting.");
	for (i = 0; i < n; i++) {
		int64_t q = jobs[i] - snap[i].gate.class_in_flight[GATE_BATCH];

		metrics_put(&o, "llmq_queued{lane=\"%s\",class=\"batch\"} %lld\n",
		            snap[i].cfg->name, (long long)(q > 0 ? q : 0));
		metrics_put(&o, "llmq_queued{lane=\"%s\",class=\"interactive\"} %d\n",
		            snap[i].cfg->name, snap[i].calls_waiting);
	}
	upstream_connects(sched_upstream(d->sched), &builtin, &curl);
	metrics_family(&o, "llmq_upstream_connections_total", "counter",
	               "New connections made to the upstreams, by llmqd's own HTTP/1.1 client "
	               "(plain http to an address) and by curl; far fewer than requests while "
	               "connections are kept alive.");
	metrics_put(&o, "llmq_upstream_connections_total{client=\"builtin\"} %llu\n",
	            (unsigned long long)builtin);
	metrics_put(&o, "llmq_upstream_connections_total{client=\"curl\"} %llu\n",
	            (unsigned long long)curl);
	metrics_family(&o, "llmq_queue_reads_total", "counter",
	               "Looks at the lane's queue of batch jobs in the database; a queue found "
	               "empty is not looked at again until jobs may have come.");
	for (i = 0; i < n; i++)
		metrics_put(&o, "llmq_queue_reads_total{lane=\"%s\"} %llu\n", snap[i].cfg->name,
		            (unsigned long long)snap[i].stats.queue_reads);
	metrics_family(&o, "llmq_bucket_tokens", "gauge",
	               "Tokens the lane's bucket holds (negative: debt).");
	for (i = 0; i < n; i++)
		metrics_put(&o, "llmq_bucket_tokens{lane=\"%s\"} %.0f\n", snap[i].cfg->name,
		            snap[i].gate.tok);
	metrics_family(&o, "llmq_bucket_requests", "gauge", "Requests the lane's bucket holds.");
	for (i = 0; i < n; i++)
		metrics_put(&o, "llmq_bucket_requests{lane=\"%s\"} %.2f\n", snap[i].cfg->name,
		            snap[i].gate.req);
	metrics_family(&o, "llmq_effective_tokens_per_minute", "gauge",
	               "The lane's token budget after headroom (0: unlimited).");
	for (i = 0; i < n; i++)
		metrics_put(&o, "llmq_effective_tokens_per_minute{lane=\"%s\"} %lld\n",
		            snap[i].cfg->name, (long long)gate_effective_tpm(&snap[i].gate));
	metrics_family(&o, "llmq_effective_requests_per_minute", "gauge",
	               "The lane's request budget after headroom (0: unlimited).");
	for (i = 0; i < n; i++)
		metrics_put(
		    &o, "llmq_effective_requests_per_minute{lane=\"%s\"} %lld\n", snap[i].cfg->name,
		    snap[i].gate.lim.rpm > 0
		        ? (long long)floor(gate_requests_per_ms(&snap[i].gate) * 60000.0 + 1e-6)
		        : 0LL);
	metrics_family(&o, "llmq_lane_max_concurrency", "gauge",
	               "Transfers the lane may have in flight at once (its live max_concurrency).");
	for (i = 0; i < n; i++)
		metrics_put(&o, "llmq_lane_max_concurrency{lane=\"%s\"} %d\n", snap[i].cfg->name,
		            snap[i].gate.lim.max_concurrency);
	metrics_family(&o, "llmq_lane_paused", "gauge",
	               "1 while the lane is paused (429, no credit, or by an operator).");
	for (i = 0; i < n; i++)
		metrics_put(&o, "llmq_lane_paused{lane=\"%s\"} %d\n", snap[i].cfg->name,
		            snap[i].gate.paused_until > now || snap[i].paused_at);
	metrics_family(
	    &o, "llmq_lane_paused_by_operator", "gauge",
	    "1 while an operator holds the lane paused (llmq pause; llmq resume ends it).");
	for (i = 0; i < n; i++)
		metrics_put(&o, "llmq_lane_paused_by_operator{lane=\"%s\"} %d\n", snap[i].cfg->name,
		            snap[i].paused_at != 0);

	metrics_family(&o, "llmq_gate_wait_seconds", "histogram",
	               "Time from ready (or arrival) to launch at the gate.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			histogram(&o, "llmq_gate_wait_seconds", snap[i].cfg->name,
			          stats_class_name(c), &snap[i].stats.gate_wait[c]);
	metrics_family(&o, "llmq_upstream_latency_seconds", "histogram",
	               "Upstream latency of answered tries.");
	for (i = 0; i < n; i++)
		for (c = 0; c < GATE_CLASSES; c++)
			histogram(&o, "llmq_upstream_latency_seconds", snap[i].cfg->name,
			          stats_class_name(c), &snap[i].stats.latency[c]);

	metrics_family(&o, "llmq_batches", "gauge", "Batches in the database by state.");
	for (i = 0; i < n_states; i++)
		metrics_put(&o, "llmq_batches{state=\"%s\"} %lld\n", proto_batch_states[i],
		            (long long)counts[i]);
	metrics_family(&o, "llmq_batches_paused", "gauge",
	               "Batches in progress an operator paused (llmq pause BATCH).");
	metrics_put(&o, "llmq_batches_paused %lld\n", (long long)paused);
	r = metrics_usage(d, &o);
	if (r == 0)
		r = metrics_budgets(d, &o);
	if (r < 0)
		return r;
	metrics_family(&o, "llmq_refusals_total", "counter",
	               "Submits and calls refused, by reason.");
	for (i = 0; i < REFUSAL__COUNT; i++)
		metrics_put(&o, "llmq_refusals_total{reason=\"%s\"} %llu\n", llmqd_refusal_name(i),
		            (unsigned long long)d->refusals[i]);

	if (d->ipc) {
		ipc_stats(d->ipc, &is);
		metrics_family(&o, "llmq_socket_clients", "gauge",
		               "Clients connected to the llmq socket.");
		metrics_put(&o, "llmq_socket_clients %d\n", ipc_clients(d->ipc));
		metrics_family(&o, "llmq_socket_refused_total", "counter",
		               "Socket connections refused: too many overall, or for one user.");
		metrics_put(&o, "llmq_socket_refused_total %llu\n", (unsigned long long)is.refused);
		metrics_family(&o, "llmq_socket_stalls_total", "counter",
		               "Times a client's requests waited for its unread answers to drain.");
		metrics_put(&o, "llmq_socket_stalls_total %llu\n", (unsigned long long)is.stalls);
		metrics_family(&o, "llmq_socket_deadline_closed_total", "counter",
		               "Socket clients closed at their deadline, by what was late.");
		metrics_put(&o, "llmq_socket_deadline_closed_total{what=\"request\"} %llu\n",
		            (unsigned long long)is.idle_expired);
		metrics_put(&o, "llmq_socket_deadline_closed_total{what=\"submit_lines\"} %llu\n",
		            (unsigned long long)is.lines_expired);
	}
	fleet_metrics(&o, d, snap, n);
	metrics_family(
	    &o, "llmq_database_locked", "gauge",
	    "1 while another program holds the database's lock (writes wait in memory).");
	metrics_put(&o, "llmq_database_locked %d\n", d->db_locked_since != 0);
	metrics_family(
	    &o, "llmq_database_refusing_writes", "gauge",
	    "1 while the database takes no writes (another program's lock, the file gone, "
	    "the disk full): outcomes wait in memory, /healthz says degraded.");
	metrics_put(&o, "llmq_database_refusing_writes %d\n",
	            health_db(d, why, sizeof(why), &refuse));
	metrics_family(
	    &o, "llmq_database_gone", "gauge",
	    "1 once the database file was deleted or replaced under llmqd (restart it).");
	metrics_put(&o, "llmq_database_gone %d\n", d->db_gone != 0);
	return o.failed ? -ENOMEM : 0;
}
