/*
 * output.c - how the client shows things to people: tables, ages, counts and
 * the progress bar. --json bypasses all of it.
 */
#include "llmq.h"
#include "timeutil.h"

#include <string.h>
#include <time.h>

void print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
	                                           JSON_C_TO_STRING_NOSLASHESCAPE));
}

json_object *jget(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

const char *jstr(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

const char *jtext(json_object *o, const char *key)
{
	const char *s = jstr(o, key);

	return s ? s : "-";
}

int64_t jint(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v ? json_object_get_int64(v) : 0;
}

void fmt_age(int64_t ms, char *buf, size_t len)
{
	time_format_duration(ms, buf, len);
}

void fmt_count(int64_t n, char *buf, size_t len)
{
	if (n >= 10000000)
		snprintf(buf, len, "%.0fM", (double)n / 1e6);
	else if (n >= 1000000)
		snprintf(buf, len, "%.1fM", (double)n / 1e6);
	else if (n >= 10000)
		snprintf(buf, len, "%.0fk", (double)n / 1e3);
	else
		snprintf(buf, len, "%lld", (long long)n);
}

void print_progress(FILE *f, json_object *b, int tty)
{
	json_object *c = jget(b, "counts");
	int64_t total = jint(b, "total"), ok = jint(c, "succeeded"), bad = jint(c, "failed"),
	        cancelled = jint(c, "cancelled"), running = jint(c, "running");
	int64_t done = ok + bad + cancelled, eta = jint(b, "eta_ms");
	json_object *known = jget(b, "eta_known");
	char bar[41], etas[32];
	int i, fill = total > 0 ? (int)(done * 40 / total) : 40;

	for (i = 0; i < 40; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[40] = '\0';
	fmt_age(eta, etas, sizeof(etas));
	if (known && !json_object_get_boolean(known))
		eta = 0; /* a lane cannot serve it: no time to tell */
	if (tty)
		fprintf(f, "\r\033[K%s [%s] %lld/%lld  ok %lld  failed %lld  running %lld  eta %s",
		        jtext(b, "id"), bar, (long long)done, (long long)total, (long long)ok,
		        (long long)bad, (long long)running, eta > 0 ? etas : "-");
	else
		fprintf(f,
		        "%s %s: %lld/%lld done, %lld succeeded, %lld failed, %lld cancelled, "
		        "%lld running\n",
		        jtext(b, "id"), jtext(b, "state"), (long long)done, (long long)total,
		        (long long)ok, (long long)bad, (long long)cancelled, (long long)running);
	fflush(f);
}

void print_batch_table(json_object *batches, const char *empty)
{
	size_t i, n = batches ? json_object_array_length(batches) : 0;
	int64_t now = time_wall_ms();
	char age[32], tok[32];

	printf("%-18s  %-11s  %6s  %6s  %7s  %9s  %6s  %6s  %8s  %6s  %s\n", "BATCH", "STATE",
	       "TOTAL", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCEL", "TOKENS", "AGE",
	       "NAME");
	for (i = 0; i < n; i++) {
		json_object *b = json_object_array_get_idx(batches, i), *c = jget(b, "counts");

		fmt_age(now - jint(b, "created_at"), age, sizeof(age));
		fmt_count(jint(b, "tokens_used"), tok, sizeof(tok));
		printf("%-18s  %-11s  %6lld  %6lld  %7lld  %9lld  %6lld  %6lld  %8s  %6s  %s\n",
		       jtext(b, "id"), jtext(b, "state"), (long long)jint(b, "total"),
		       (long long)jint(c, "queued"), (long long)jint(c, "running"),
		       (long long)jint(c, "succeeded"), (long long)jint(c, "failed"),
		       (long long)jint(c, "cancelled"), tok, age, jtext(b, "name"));
	}
	if (n == 0)
		printf("%s\n", empty);
}

/* " until 14:02:11 (in 37s)": a wall time in ms, as this host's clock reads. */
static void fmt_until(json_object *w, const char *word, char *buf, size_t len)
{
	time_t t = (time_t)(jint(w, "until") / 1000);
	char clock[16] = "?", in[32];
	struct tm tm;

	if (!jget(w, "until")) {
		snprintf(buf, len, "%s", "");
		return;
	}
	if (localtime_r(&t, &tm))
		strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	fmt_age(jint(w, "in_ms"), in, sizeof(in));
	snprintf(buf, len, " %s %s (in %s)", word, clock, in);
}

/* What holds a batch back (status's "waiting"), said as a sentence. */
static void print_waiting(json_object *w)
{
	const char *why = jstr(w, "reason"), *lane = jtext(w, "lane"), *msg = jtext(w, "message");
	char until[96];

	if (!w || !why)
		return;
	if (!strcmp(why, "unreachable")) {
		fmt_until(w, "next try at", until, sizeof(until));
		printf("waiting    lane %s cannot reach its upstream (%s);%s\n", lane, msg,
		       until[0] ? until : " trying it now");
	} else if (!strcmp(why, "rate_limited") && !strncmp(msg, "429", 3)) {
		fmt_until(w, "until", until, sizeof(until));
		printf("waiting    lane %s paused by a 429%s\n", lane, until);
	} else if (!strcmp(why, "rate_limited") || !strcmp(why, "out_of_credit")) {
		fmt_until(w, "until", until, sizeof(until));
		printf("waiting    lane %s paused%s: %s%s\n", lane, until, msg,
		       !strcmp(why, "out_of_credit") ? " (the key has no credit)" : "");
	} else if (!strcmp(why, "paused")) {
		if (jstr(w, "lane") && *jstr(w, "lane"))
			printf("waiting    lane %s %s\n", lane, msg);
		else
			printf("waiting    %s\n", msg);
	} else if (!strcmp(why, "budget")) {
		printf("waiting    %s\n", msg); /* it says until when */
	} else if (!strcmp(why, "backoff")) {
		fmt_until(w, "until", until, sizeof(until));
		printf("waiting    its requests on lane %s back off after errors%s\n", lane, until);
	} else {
		printf("waiting    lane %s: %s\n", lane, msg);
	}
}

static const char *age_of(int64_t ms, char *buf, size_t len)
{
	fmt_age(ms, buf, len);
	return buf;
}

void print_batch_detail(json_object *b)
{
	json_object *c = jget(b, "counts");
	int64_t now = time_wall_ms();
	char age[32], eta[32], win[32];

	fmt_age(now - jint(b, "created_at"), age, sizeof(age));
	fmt_age(jint(b, "eta_ms"), eta, sizeof(eta));
	fmt_age(jint(b, "window_ms"), win, sizeof(win));
	printf("batch      %s\n", jtext(b, "id"));
	printf("state      %s%s\n", jtext(b, "state"),
	       jint(b, "expired_at") > 0 ? " (expired: its window ended; the requests it left "
	                                   "unanswered failed as batch_expired)"
	                                 : "");
	printf("name       %s\n", jstr(b, "name") ? jtext(b, "name") : jtext(b, "input_name"));
	if (jstr(b, "input_file_id"))
		printf("input      %s (%s)\n", jtext(b, "input_file_id"), jtext(b, "input_name"));
	printf("submitted  %s ago by uid %lld, window %s\n", age, (long long)jint(b, "uid"), win);
	printf("jobs       %lld total: %lld queued, %lld running, %lld succeeded, %lld failed, "
	       "%lld cancelled\n",
	       (long long)jint(b, "total"), (long long)jint(c, "queued"),
	       (long long)jint(c, "running"), (long long)jint(c, "succeeded"),
	       (long long)jint(c, "failed"), (long long)jint(c, "cancelled"));
	printf("tokens     %lld used, %lld estimated for the whole batch, %lld still pending\n",
	       (long long)jint(b, "tokens_used"), (long long)jint(b, "est_tokens"),
	       (long long)jint(b, "tokens_pending"));
	if (jget(b, "paused_at"))
		printf("paused     by uid %lld, %s ago (llmq resume %s)\n",
		       (long long)jint(b, "paused_by"),
		       age_of(now - jint(b, "paused_at"), win, sizeof(win)), jtext(b, "id"));
	print_waiting(jget(b, "waiting"));
	if (jget(b, "eta_known") && !json_object_get_boolean(jget(b, "eta_known")))
		printf("eta        unknown while lane %s cannot serve it\n",
		       jtext(jget(b, "waiting"), "lane"));
	else if (jint(b, "eta_ms") > 0)
		printf("eta        %s\n", eta);
}

/* How the provider enforces its minute: "window: minute", or "~1s (learned at ...)". */
static void print_window(json_object *l)
{
	const char *w = jstr(l, "window"), *src = jstr(l, "window_source");
	char at[32] = "";
	time_t t;
	struct tm tm;

	if (!w)
		return;
	if (src && (!strcmp(src, "learned") || !strcmp(src, "probation"))) {
		t = (time_t)(jint(l, !strcmp(src, "learned") ? "window_learned_at"
		                                             : "window_probation_since") /
		             1000);
		if (localtime_r(&t, &tm))
			strftime(at, sizeof(at), "%Y-%m-%d %H:%M", &tm);
	}
	printf("%-12s  window: %s%s%s%s\n", "", strcmp(w, "second") == 0 ? "~1s" : "minute",
	       !at[0] ? (src && !strcmp(src, "config") ? " (set in the config)" : "")
	       : !strcmp(src, "learned") ? " (learned at "
	                                 : " (on probation since ",
	       at,
	       !at[0] ? ""
	       : !strcmp(src, "learned")
	           ? "; tried as a minute again after 10 min without a 429)"
	           : ": the short window learned before had no 429 for 10 min)");
}

static void print_lane_fleet(json_object *f);

void print_lanes(json_object *lanes)
{
	size_t i, n = lanes ? json_object_array_length(lanes) : 0;
	char drain[32], paused[32], tok[32], req[32];

	/* TOKENS NOW and REQS NOW: what the lane's buckets hold at this moment. */
	printf("%-12s  %9s  %10s  %8s  %12s  %8s  %s\n", "LANE", "IN FLIGHT", "TOKENS NOW",
	       "REQS NOW", "QUEUED", "DRAIN", "PAUSED");
	for (i = 0; i < n; i++) {
		json_object *l = json_object_array_get_idx(lanes, i);
		char inflight[32], queued[48];

		snprintf(inflight, sizeof(inflight), "%lld/%lld", (long long)jint(l, "in_flight"),
		         (long long)jint(l, "max_concurrency"));
		if (jint(l, "tpm_limit") > 0)
			fmt_count(jint(l, "tokens_available"), tok, sizeof(tok));
		else
			snprintf(tok, sizeof(tok), "-");
		if (jint(l, "rpm_limit") > 0)
			fmt_count(jint(l, "requests_available"), req, sizeof(req));
		else
			snprintf(req, sizeof(req), "-");
		snprintf(queued, sizeof(queued), "%lld jobs", (long long)jint(l, "queued_jobs"));
		fmt_age(jint(l, "drain_ms"), drain, sizeof(drain));
		fmt_age(jint(l, "paused_for_ms"), paused, sizeof(paused));
		printf("%-12s  %9s  %10s  %8s  %12s  %8s  ", jtext(l, "name"), inflight, tok, req,
		       queued, jint(l, "queued_jobs") ? drain : "-");
		if (jget(l, "paused_by_operator"))
			printf("by %s (llmq resume %s)\n",
			       jtext(jget(l, "paused_by_operator"), "user"), jtext(l, "name"));
		else if (jint(l, "paused_for_ms") > 0)
			printf("%s (%s)\n", paused, jtext(l, "pause_reason"));
		else
			printf("no\n");
		if (!json_object_get_boolean(jget(l, "has_key")))
			printf("%-12s  (no API key: requests go out without Authorization)\n", "");
		print_window(l);
		print_lane_fleet(jget(l, "fleet"));
	}
}

/* "fleet: shared (key openai) with 3 hosts; 2 in flight here", or alone. */
static void print_lane_fleet(json_object *f)
{
	const char *mode = jstr(f, "mode");
	long long hosts = (long long)jint(f, "hosts");

	if (!mode)
		return;
	if (!strcmp(mode, "shared"))
		printf("%-12s  fleet: shared (key %s) with %lld host%s; %lld in flight here\n", "",
		       jtext(f, "share"), hosts, hosts == 1 ? "" : "s",
		       (long long)jint(f, "in_flight_here"));
	else if (!strcmp(mode, "alone"))
		printf("%-12s  fleet: Redis away: gating alone with 1/%lld of the limits\n", "",
		       hosts);
	else
		printf("%-12s  fleet: %s\n", "", mode);
}

void print_fleet(json_object *f)
{
	char since[32] = "";
	time_t t = (time_t)(jint(f, "since") / 1000);
	struct tm tm;

	if (!f)
		return;
	if (t > 0 && localtime_r(&t, &tm))
		strftime(since, sizeof(since), "%Y-%m-%d %H:%M:%S", &tm);
	if (!strcmp(jtext(f, "redis"), "up"))
		printf("fleet: Redis %s up since %s, this host is %s\n", jtext(f, "url"), since,
		       jtext(f, "host_id"));
	else
		printf("fleet: Redis %s down since %s: %s\n", jtext(f, "url"), since,
		       jtext(f, "error"));
}

/* One budget's figure: tokens, or dollars (nano-dollars given). */
static void fmt_budget(json_object *k, const char *key, int usd, char *buf, size_t len)
{
	char nkey[32];

	if (!usd) {
		fmt_count(jint(k, key), buf, len);
		return;
	}
	snprintf(nkey, sizeof(nkey), "%s_nusd", key);
	snprintf(buf, len, "$%.2f", (double)jint(k, nkey) / 1e9);
}

void print_budgets(json_object *budgets)
{
	static const char *const kinds[] = {"daily_tokens", "monthly_usd"};
	size_t i, n = budgets ? json_object_array_length(budgets) : 0;
	char used[32], held[32], allowed[32], at[32], share[16];
	json_object *u, *k, *w;
	time_t t;
	struct tm tm;
	int j;

	if (n == 0)
		return;
	printf("\n%-16s  %-12s  %10s  %9s  %10s  %-16s  %s\n", "USER", "BUDGET", "USED", "HELD",
	       "ALLOWED", "RESETS", "SHARE");
	for (i = 0; i < n; i++) {
		u = json_object_array_get_idx(budgets, i);
		w = jget(u, "waiting");
		if (jget(u, "tpm_share"))
			snprintf(share, sizeof(share), "%.0f%%",
			         json_object_get_double(jget(u, "tpm_share")) * 100);
		else
			snprintf(share, sizeof(share), "-");
		for (j = 0; j < 2; j++) {
			if (!(k = jget(u, kinds[j])))
				continue;
			fmt_budget(k, "used", j, used, sizeof(used));
			fmt_budget(k, "held", j, held, sizeof(held));
			fmt_budget(k, "allowed", j, allowed, sizeof(allowed));
			t = (time_t)(jint(k, "resets_at") / 1000);
			if (!localtime_r(&t, &tm) ||
			    !strftime(at, sizeof(at), "%Y-%m-%d %H:%M", &tm))
				snprintf(at, sizeof(at), "?");
			printf("%-16s  %-12s  %10s  %9s  %10s  %-16s  %s\n",
			       jstr(u, "user") ? jtext(u, "user") : "?", kinds[j], used, held,
			       allowed, at, share);
		}
		if (!jget(u, kinds[0]) && !jget(u, kinds[1]))
			printf("%-16s  %-12s  %10s  %9s  %10s  %-16s  %s\n",
			       jstr(u, "user") ? jtext(u, "user") : "?", "-", "-", "-", "-", "-",
			       share);
		if (w)
			printf("  waiting: %s\n", jtext(w, "message"));
	}
}
