/*
 * cmd-misc.c - "llmq ping" and "llmq cancel BATCH".
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
		       jstr(reply, "version"), (long long)jint(reply, "protocol"), up,
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
		       jstr(b, "id"), jstr(b, "state"), (long long)jint(reply, "cancelled"),
		       (long long)jint(jget(b, "counts"), "running"));
	json_object_put(reply);
	return EX_OK_;
}
