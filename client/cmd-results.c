/*
 * cmd-results.c - "llmq results BATCH [-o FILE] [--errors]": writes the
 * batch's output lines (Batch API output format), page by page, to FILE or
 * stdout. --errors writes the failed and cancelled requests instead.
 */
#include "llmq.h"
#include "protocol.h"

#include <errno.h>
#include <string.h>

int cmd_results(const struct opts *o)
{
	json_object *req, *reply = NULL;
	int64_t after = 0, total = 0, i, count;
	const char *line, *state = "";
	struct conn c;
	FILE *out = stdout;
	ssize_t n;
	int r, done = 0;

	if (o->argc != 1) {
		fprintf(stderr, "usage: llmq results BATCH [-o FILE] [--errors]\n");
		return EX_USAGE_;
	}
	r = conn_open(o, &c);
	if (r)
		return r;
	if (o->output && !(out = fopen(o->output, "we"))) {
		fprintf(stderr, "llmq: cannot write %s: %s\n", o->output, strerror(errno));
		conn_close(&c);
		return 73;
	}
	while (!done) {
		req = proto_request(OP_RESULTS);
		json_object_object_add(req, "batch", json_object_new_string(o->argv[0]));
		json_object_object_add(req, "after", json_object_new_int64(after));
		json_object_object_add(req, "errors", json_object_new_boolean(o->errors));
		r = conn_call(&c, o, req, &reply);
		if (r)
			goto out;
		count = jint(reply, "count");
		after = jint(reply, "next");
		done = json_object_get_boolean(jget(reply, "done"));
		state = jstr(reply, "state") ? jstr(reply, "state") : "";
		for (i = 0; i < count; i++) {
			n = conn_read_line(&c, &line);
			if (n < 0) {
				fprintf(stderr, "llmq: llmqd closed the connection mid-page\n");
				r = EX_UNAVAILABLE_;
				goto out;
			}
			fwrite(line, 1, (size_t)n, out);
			fputc('\n', out);
		}
		total += count;
		if (!done) {
			json_object_put(reply);
			reply = NULL;
		}
	}
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(stderr, "llmq: writing the results failed: %s\n", strerror(errno));
		r = 74;
		goto out;
	}
	if (o->output)
		fprintf(stderr, "llmq: %lld %s written to %s%s\n", (long long)total,
		        o->errors ? "failed requests" : "results", o->output,
		        strcmp(state, "completed") && strcmp(state, "cancelled")
		            ? " (the batch is still running: more will come)"
		            : "");
	r = EX_OK_;
out:
	json_object_put(reply);
	if (out != stdout)
		fclose(out);
	conn_close(&c);
	return r;
}
