/*
 * cmd-status.c - "llmq status [BATCH]" and "llmq list [--state S] [--since
 * D] [-q]". The list is filtered by llmqd (its query), not here; -q prints
 * the ids alone, for scripts. Each command's options are its table.
 */
#include "llmq.h"
#include "protocol.h"
#include "timeutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_MAX 10000

static int status_run(const struct opts *o)
{
	json_object *req, *reply;
	int r;

	req = proto_request(OP_STATUS);
	if (o->argc == 1)
		json_object_object_add(req, "batch", json_object_new_string(o->argv[0]));
	r = conn_request(o, req, &reply);
	if (r)
		return r;
	if (o->json) {
		print_json(reply);
	} else if (o->argc == 1) {
		print_batch_detail(jget(reply, "batch"));
	} else {
		print_lanes(jget(reply, "lanes"));
		printf("\n");
		print_batch_table(jget(reply, "batches"),
		                  "(no batches yet: llmq submit FILE.jsonl)");
		print_budgets(jget(reply, "budgets"));
		if (jget(reply, "database_bytes"))
			printf("\ndatabase: %.1f MiB; finished batches kept %lld days\n",
			       (double)jint(reply, "database_bytes") / 1048576.0,
			       (long long)(jint(reply, "retention_s") / 86400));
		if (jstr(jget(reply, "database"), "problem"))
			printf("database: %s\n", jtext(jget(reply, "database"), "problem"));
		print_fleet(jget(reply, "fleet"));
	}
	json_object_put(reply);
	return EX_OK_;
}

const struct cli_command cli_status = {
    .name = "status",
    .args = "[BATCH]",
    .max_args = 1,
    .about = "a batch in detail (ETA, what holds it), or lanes and batches",
    .run = status_run,
};

static int list_run(const struct opts *o)
{
	json_object *req, *reply, *states, *batches;
	size_t i, n;
	int r, k;

	req = proto_request(OP_LIST);
	json_object_object_add(req, "limit", json_object_new_int(o->limit));
	if (o->states) {
		states = json_object_new_array();
		for (k = 0; proto_batch_states[k]; k++)
			if (o->states & (1u << k))
				json_object_array_add(
				    states, json_object_new_string(proto_batch_states[k]));
		json_object_object_add(req, "states", states);
	}
	if (o->since_ms > 0)
		json_object_object_add(req, "since", json_object_new_int64(o->since_ms));
	r = conn_request(o, req, &reply);
	if (r)
		return r;
	batches = jget(reply, "batches");
	n = batches ? json_object_array_length(batches) : 0;
	if (o->json)
		print_json(reply);
	else if (o->quiet)
		for (i = 0; i < n; i++)
			printf("%s\n", jtext(json_object_array_get_idx(batches, i), "id"));
	else
		print_batch_table(batches, o->states || o->since_ms
		                               ? "(no batch matches)"
		                               : "(no batches yet: llmq submit "
		                                 "FILE.jsonl)");
	json_object_put(reply);
	return EX_OK_;
}

static int list_opt_limit(struct opts *o, const char *arg, char *why, size_t len)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end || v < 1 || v > LIST_MAX) {
		snprintf(why, len, "--limit: '%s' is not a number in 1..%d", arg, LIST_MAX);
		return -EINVAL;
	}
	o->limit = (int)v;
	return 0;
}

/* A state, or several with commas; each one the schema knows. */
static int list_opt_state(struct opts *o, const char *arg, char *why, size_t len)
{
	char word[32];
	const char *p = arg;
	size_t n;
	int k;

	do {
		n = strcspn(p, ",");
		snprintf(word, sizeof(word), "%.*s", (int)(n < sizeof(word) ? n : sizeof(word) - 1),
		         p);
		k = n < sizeof(word) ? proto_batch_state_index(word) : -EINVAL;
		if (k < 0) {
			snprintf(why, len, "--state: '%.*s' is not a batch state; the states are",
			         (int)(n > 40 ? 40 : n), p);
			for (k = 0; proto_batch_states[k]; k++)
				snprintf(why + strlen(why), len - strlen(why), "%s %s",
				         k ? "," : "", proto_batch_states[k]);
			return -EINVAL;
		}
		o->states |= 1u << k;
		p += n;
	} while (*p++ == ',');
	return 0;
}

/* A duration back from now (24h, 30m), or a day (YYYY-MM-DD, from its local midnight). */
static int list_opt_since(struct opts *o, const char *arg, char *why, size_t len)
{
	struct tm tm;
	int64_t ms;
	char *end;
	time_t t;

	if (time_parse_duration(arg, &ms) == 0 && ms > 0) {
		o->since_ms = time_wall_ms() - ms;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(arg, "%Y-%m-%d", &tm);
	if (end && *end == '\0') {
		tm.tm_isdst = -1;
		t = mktime(&tm);
		if (t != (time_t)-1 && t > 0) {
			o->since_ms = (int64_t)t * 1000;
			return 0;
		}
	}
	snprintf(why, len, "--since: '%s' is neither a duration (24h, 30m) nor a date (YYYY-MM-DD)",
	         arg);
	return -EINVAL;
}

static int list_opt_quiet(struct opts *o, const char *arg, char *why, size_t len)
{
	(void)arg, (void)why, (void)len;
	o->quiet = 1;
	return 0;
}

static const struct cli_option list_options[] = {
    {"limit", 0, "N", "at most N batches, newest first (default 50)", list_opt_limit},
    {"state", 0, "STATE", "only batches in STATE (repeat it, or S1,S2)", list_opt_state},
    {"since", 0, "WHEN", "only those submitted since WHEN: 24h, 30m, 2026-11-02", list_opt_since},
    {"quiet", 'q', NULL, "the batch ids alone, one a line (for scripts)", list_opt_quiet},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_command cli_list = {
    .name = "list",
    .args = "",
    .about = "your batches, newest first, with their name, counts and age",
    .options = list_options,
    .notes = "STATE: validating, in_progress, cancelling, completed, cancelled or failed.\n"
             "WHEN: a duration back from now, or a day (from its local midnight).\n"
             "Example: llmq list -q --state in_progress | xargs -n1 llmq cancel\n",
    .run = list_run,
};
