/*
 * cmd-misc.c - "llmq ping", "llmq metrics" and "llmq cancel BATCH".
 */
#include "llmq.h"
#include "protocol.h"

int cmd_ping(const struct opts *o)
{
	json_object *reply;
	char up[32];
	int r;

	if (o->argc != 0) {
		fprintf(stderr, "usage: llmq ping\n");
		return EX_USAGE_;
	}
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
	}
	json_object_put(reply);
	return EX_OK_;
}

int cmd_cancel(const struct opts *o)
{
	json_object *req, *reply, *b;
	int r;

	if (o->argc != 1) {
		fprintf(stderr, "usage: llmq cancel BATCH\n");
		return EX_USAGE_;
	}
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

/* The Prometheus text, as GET /metrics serves it: a header, then raw bytes. */
int cmd_metrics(const struct opts *o)
{
	struct conn c;
	json_object *reply = NULL;
	int64_t want, got = 0;
	char buf[65536];
	size_t n;
	int r;

	if (o->argc != 0) {
		fprintf(stderr, "usage: llmq metrics\n");
		return EX_USAGE_;
	}
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
