/*
 * cmd-status.c - "llmq status [BATCH]" and "llmq list".
 */
#include "llmq.h"
#include "protocol.h"

int cmd_status(const struct opts *o)
{
	json_object *req, *reply;
	int r;

	if (o->argc > 1) {
		fprintf(stderr, "usage: llmq status [BATCH]\n");
		return EX_USAGE_;
	}
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
		print_batch_table(jget(reply, "batches"));
		if (jget(reply, "database_bytes"))
			printf("\ndatabase: %.1f MiB; finished batches kept %lld days\n",
			       (double)jint(reply, "database_bytes") / 1048576.0,
			       (long long)(jint(reply, "retention_s") / 86400));
		if (jstr(jget(reply, "database"), "problem"))
			printf("database: %s\n", jtext(jget(reply, "database"), "problem"));
	}
	json_object_put(reply);
	return EX_OK_;
}

int cmd_list(const struct opts *o)
{
	json_object *req, *reply;
	int r;

	if (o->argc > 0) {
		fprintf(stderr, "usage: llmq list [--limit N]\n");
		return EX_USAGE_;
	}
	req = proto_request(OP_LIST);
	json_object_object_add(req, "limit", json_object_new_int(o->limit));
	r = conn_request(o, req, &reply);
	if (r)
		return r;
	if (o->json)
		print_json(reply);
	else
		print_batch_table(jget(reply, "batches"));
	json_object_put(reply);
	return EX_OK_;
}
