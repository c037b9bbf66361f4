/*
 * cmd-steer.c - an operator's commands: "llmq pause LANE|BATCH", "llmq
 * resume LANE|BATCH", "llmq retry BATCH --failed" and "llmq set LANE
 * KEY=VALUE...". A batch id (b_ and 16 hex digits) names a batch, anything
 * else a lane. llmqd answers them for root and the admin group alone.
 */
#include "llmq.h"
#include "protocol.h"

#include <stdio.h>
#include <string.h>

/* {"lane": ARG} or {"batch": ARG}. */
static json_object *steer_request(const char *op, const char *arg)
{
	json_object *req = proto_request(op);

	json_object_object_add(req, proto_valid_batch_id(arg) ? "batch" : "lane",
	                       json_object_new_string(arg));
	return req;
}

static int steer_pause(const struct opts *o, int pause)
{
	const char *arg = o->argv[0];
	json_object *reply;
	int r, changed;

	r = conn_request(o, steer_request(pause ? OP_PAUSE : OP_RESUME, arg), &reply);
	if (r)
		return r;
	changed = json_object_get_boolean(jget(reply, "changed"));
	if (o->json)
		print_json(reply);
	else if (!changed)
		printf("%s %s was %s already\n", jget(reply, "batch") ? "batch" : "lane", arg,
		       pause ? "paused" : "not paused");
	else if (pause && jget(reply, "batch"))
		printf("batch %s paused: its %lld requests in flight finish, nothing new is sent "
		       "until llmq resume %s\n",
		       arg, (long long)jint(jget(jget(reply, "batch"), "counts"), "running"), arg);
	else if (pause)
		printf("lane %s paused: its %lld requests in flight finish, nothing new is sent "
		       "until llmq resume %s\n",
		       arg, (long long)jint(reply, "in_flight"), arg);
	else
		printf("%s %s resumed\n", jget(reply, "batch") ? "batch" : "lane", arg);
	json_object_put(reply);
	return EX_OK_;
}

static int pause_run(const struct opts *o)
{
	return steer_pause(o, 1);
}

static int resume_run(const struct opts *o)
{
	return steer_pause(o, 0);
}

const struct cli_command cli_pause = {
    .name = "pause",
    .args = "LANE|BATCH",
    .min_args = 1,
    .max_args = 1,
    .about = "launch nothing more on a lane or of a batch; what flies finishes",
    .notes = "A pause outlives a restart of llmqd; llmq resume ends it. Root and the\n"
             "admin group alone.\n",
    .run = pause_run,
};

const struct cli_command cli_resume = {
    .name = "resume",
    .args = "LANE|BATCH",
    .min_args = 1,
    .max_args = 1,
    .about = "let a paused lane or batch launch again",
    .run = resume_run,
};

static int retry_opt_failed(struct opts *o, const char *arg, char *why, size_t len)
{
	o->failed = 1;
	return 0;
}

static int retry_run(const struct opts *o)
{
	json_object *req, *reply, *b;
	int r;

	if (!o->failed) {
		fprintf(stderr, "llmq retry: say which requests: --failed (a completed batch's "
		                "failed ones)\nTry 'llmq retry --help'.\n");
		return EX_USAGE_;
	}
	req = proto_request(OP_RETRY);
	json_object_object_add(req, "batch", json_object_new_string(o->argv[0]));
	json_object_object_add(req, "failed", json_object_new_boolean(1));
	r = conn_request(o, req, &reply);
	if (r)
		return r;
	b = jget(reply, "batch");
	if (o->json)
		print_json(reply);
	else if (jint(reply, "retried") == 0)
		printf("%s: no failed requests; nothing changed\n", jtext(b, "id"));
	else
		printf("%s: %lld failed requests queued again; the batch is %s (llmq wait %s)\n",
		       jtext(b, "id"), (long long)jint(reply, "retried"), jtext(b, "state"),
		       jtext(b, "id"));
	json_object_put(reply);
	return EX_OK_;
}

static const struct cli_option retry_options[] = {
    {"failed", 0, NULL, "queue the failed requests again, each as a new attempt", retry_opt_failed},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_command cli_retry = {
    .name = "retry",
    .args = "BATCH",
    .min_args = 1,
    .max_args = 1,
    .about = "queue a completed batch's failed requests again (--failed)",
    .options = retry_options,
    .notes = "Their earlier attempts are kept; the batch is in progress again, its\n"
             "window running from now. Root and the admin group alone.\n",
    .run = retry_run,
};

static int set_run(const struct opts *o)
{
	json_object *req, *settings, *reply;
	const char *eq;
	char key[64];
	int i, r;

	settings = json_object_new_object();
	for (i = 1; i < o->argc; i++) {
		eq = strchr(o->argv[i], '=');
		if (!eq || eq == o->argv[i]) {
			json_object_put(settings);
			fprintf(stderr,
			        "llmq set: '%s' is not KEY=VALUE (tpm_limit=100000)\nTry 'llmq set "
			        "--help'.\n",
			        o->argv[i]);
			return EX_USAGE_;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - o->argv[i]), o->argv[i]);
		json_object_object_add(settings, key, json_object_new_string(eq + 1));
	}
	req = proto_request(OP_SET);
	json_object_object_add(req, "lane", json_object_new_string(o->argv[0]));
	json_object_object_add(req, "settings", settings);
	r = conn_request(o, req, &reply);
	if (r)
		return r;
	if (o->json)
		print_json(reply);
	else
		printf("lane %s: max_concurrency %lld, tpm_limit %lld (effective %lld), rpm_limit "
		       "%lld, headroom %g, stagger_seconds %g, until the next reload\n",
		       jtext(reply, "lane"), (long long)jint(reply, "max_concurrency"),
		       (long long)jint(reply, "tpm_limit"), (long long)jint(reply, "effective_tpm"),
		       (long long)jint(reply, "rpm_limit"),
		       json_object_get_double(jget(reply, "headroom")),
		       (double)jint(reply, "stagger_ms") / 1000.0);
	json_object_put(reply);
	return EX_OK_;
}

const struct cli_command cli_set = {
    .name = "set",
    .args = "LANE KEY=VALUE...",
    .min_args = 2,
    .max_args = 16,
    .about = "change a lane's live limits until the next reload",
    .notes = "KEY: max_concurrency, tpm_limit, rpm_limit, headroom, stagger_seconds\n"
             "(as in llmqd.conf). systemctl reload llmqd (or a restart) sets the file's\n"
             "again. Root and the admin group alone.\n",
    .run = set_run,
};
