/*
 * cmd-misc.c - "llmq ping", "llmq metrics" and "llmq cancel BATCH": commands
 * without options of their own.
 */
#include "llmq.h"
#include "protocol.h"

static int ping_run(const struct opts *o)
{
	json_object *reply;
	const char *http;
	char up[32];
	int r;

	r = conn_request(o, proto_request(OP_PING), &reply);
	if (r)
		return r;
	if (o->json) {
		print_json(reply);
	} else {
		fmt_age(jint(reply, "uptime_ms"), up, sizeof(up));
		printf("llmqd %s, protocol %lld, up %s, %lld jobs queued or running (%lld in "
		       "flight)\n",
		       jtext(reply, "version"), (long long)jint(reply, "protocol"), up,
		       (long long)jint(reply, "queue_depth"), (long long)jint(reply, "in_flight"));
		/* Where the OpenAI-compatible face listens: an app's OPENAI_BASE_URL. */
		http = jstr(reply, "http");
		if (http && *http)
			printf("HTTP: http://%s/v1\n", http);
		else
			printf("HTTP: off (LLMQ_HTTP_ADDR, or http in llmqd.conf, turns it on)\n");
		if (jstr(reply, "http_socket"))
			printf("HTTP on Unix socket: %s\n", jtext(reply, "http_socket"));
	}
	json_object_put(reply);
	return EX_OK_;
}

const struct cli_command cli_ping = {
    .name = "ping",
    .args = "",
    .about = "llmqd's version, uptime, queue depth and HTTP address",
    .run = ping_run,
};

static int cancel_run(const struct opts *o)
{
	json_object *req, *reply, *b;
	int r;

	req = proto_request(OP_CANCEL);
	json_object_object_add(req, "batch", json_object_new_string(o->argv[0]));
	r = conn_request(o, req, &reply);
	if (r)
		return r;
	b = jget(reply, "batch");
	if (o->json)
		print_json(reply);
	else
		printf("%s %s: %lld queued requests cancelled, %lld still running will finish\n",
		       jtext(b, "id"), jtext(b, "state"), (long long)jint(reply, "cancelled"),
		       (long long)jint(jget(b, "counts"), "running"));
	json_object_put(reply);
	return EX_OK_;
}

const struct cli_command cli_cancel = {
    .name = "cancel",
    .args = "BATCH",
    .min_args = 1,
    .max_args = 1,
    .about = "cancel its queued requests; those in flight finish",
    .run = cancel_run,
};

/* The Prometheus text, as GET /metrics serves it: a header, then raw bytes. */
static int metrics_run(const struct opts *o)
{
	struct conn c;
	json_object *reply = NULL;
	int64_t want, got = 0;
	char buf[65536];
	size_t n;
	int r;

	r = conn_open(o, &c);
	if (r)
		return r;
	r = conn_call(&c, o, proto_request(OP_METRICS), &reply);
	if (r)
		goto out;
	want = jint(reply, "bytes");
	while (got < want &&
	       (n = fread(buf, 1,
	                  (size_t)(want - got) < sizeof(buf) ? (size_t)(want - got) : sizeof(buf),
	                  c.in)) > 0) {
		if (fwrite(buf, 1, n, stdout) != n) {
			r = EX_IOERR_;
			goto out;
		}
		got += (int64_t)n;
	}
	if (got < want) {
		fprintf(stderr, "llmq: llmqd closed the connection mid-answer; try again\n");
		r = EX_UNAVAILABLE_;
	}
out:
	json_object_put(reply);
	conn_close(&c);
	return r;
}

const struct cli_command cli_metrics = {
    .name = "metrics",
    .args = "",
    .about = "the Prometheus exposition, as GET /metrics serves it",
    .run = metrics_run,
};
