/*
 * cmd-wait.c - "llmq wait BATCH": polls the batch until it is completed or
 * cancelled. On a terminal, a live progress bar; otherwise a plain line each
 * time the counts change. With --json, the final status answer. llmqd
 * restarting underneath (an upgrade, a crash) is waited out. The exit
 * status says how it ended: 0 every request succeeded, 65 some failed or
 * the batch was cancelled (llmq results --errors tells which).
 */
#include "llmq.h"
#include "protocol.h"
#include "timeutil.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_RESTART_S 120 /* how long llmqd may be away */

/* llmqd went away: reconnect, for WAIT_RESTART_S at most. */
static int reconnect(const struct opts *o, struct conn *c)
{
	int i, r = EX_UNAVAILABLE_;

	conn_close(c);
	fprintf(stderr, "llmq: llmqd went away; waiting up to %ds for it to come back\n",
	        WAIT_RESTART_S);
	for (i = 0; i < WAIT_RESTART_S && r == EX_UNAVAILABLE_; i++) {
		sleep(1);
		r = conn_open(o, c);
	}
	if (r == 0)
		fprintf(stderr, "llmq: llmqd is back\n");
	return r;
}

static int finished(json_object *b)
{
	const char *s = jstr(b, "state");

	return s && (!strcmp(s, "completed") || !strcmp(s, "cancelled"));
}

static int wait_run(const struct opts *o)
{
	json_object *req, *reply = NULL, *b;
	char last[256] = "", now[256];
	struct timespec ts;
	struct conn c;
	int r, fresh = 0, tty = isatty(STDERR_FILENO) && !o->json;

	r = conn_open(o, &c);
	if (r)
		return r;
	conn_set_quiet(1);
	ts.tv_sec = (time_t)o->interval;
	ts.tv_nsec = (long)((o->interval - (double)ts.tv_sec) * 1e9);
	for (;;) {
		req = proto_request(OP_STATUS);
		json_object_object_add(req, "batch", json_object_new_string(o->argv[0]));
		r = conn_call(&c, o, req, &reply);
		/* llmqd closes connections that stay quiet long: open a new one first. */
		if (r == EX_UNAVAILABLE_ && !fresh) {
			conn_close(&c);
			fresh = 1;
			if (conn_open(o, &c) == 0)
				continue;
		}
		fresh = 0;
		if (r == EX_UNAVAILABLE_) {
			r = reconnect(o, &c);
			if (r == 0)
				continue;
			fprintf(stderr, "llmq: llmqd did not come back; start it and wait again\n");
		}
		if (r)
			goto out;
		b = jget(reply, "batch");
		if (!o->json) {
			snprintf(now, sizeof(now), "%s",
			         json_object_to_json_string(jget(b, "counts")));
			if (tty || strcmp(now, last) != 0)
				print_progress(stderr, b, tty);
			memcpy(last, now, sizeof(last));
		}
		if (finished(b))
			break;
		json_object_put(reply);
		reply = NULL;
		nanosleep(&ts, NULL);
	}
	if (tty)
		fputc('\n', stderr);
	if (o->json)
		print_json(reply); /* the same shape as every --json answer */
	else
		printf("%s %s\n", jtext(b, "id"), jtext(b, "state"));
	r = strcmp(jtext(b, "state"), "completed") == 0 && jint(jget(b, "counts"), "failed") == 0 &&
	            jint(jget(b, "counts"), "cancelled") == 0
	        ? EX_OK_
	        : EX_DATAERR_;
out:
	json_object_put(reply);
	conn_close(&c);
	return r;
}

static int wait_opt_interval(struct opts *o, const char *arg, char *why, size_t len)
{
	int64_t ms;

	if (time_parse_duration(arg, &ms) < 0 || ms < 50 || ms > 3600000) {
		snprintf(why, len,
		         "--interval: '%s' is not seconds between 0.05 and 3600 (or a duration "
		         "such as 500ms)",
		         arg);
		return -EINVAL;
	}
	o->interval = (double)ms / 1000.0;
	return 0;
}

static const struct cli_option wait_options[] = {
    {"interval", 0, "SECONDS", "time between two looks (default 0.5)", wait_opt_interval},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_command cli_wait = {
    .name = "wait",
    .args = "BATCH",
    .min_args = 1,
    .max_args = 1,
    .about = "follow a batch until it ends (0: every request succeeded)",
    .options = wait_options,
    .run = wait_run,
};
