/*
 * cmd-results.c - "results": one page of a batch's output lines in the Batch
 * API output format. The answer is a header line {"ok", "count", "next",
 * "done", "state"} followed by "count" raw JSONL lines; the client asks again
 * with "after": next until done.
 */
#include "cmd.h"
#include "protocol.h"
#include "store.h"

#include <errno.h>
#include <event2/buffer.h>

static int add_line(void *ud, const char *line, size_t len)
{
	struct evbuffer *buf = ud;

	if (evbuffer_add(buf, line, len) < 0 || evbuffer_add(buf, "\n", 1) < 0)
		return -ENOMEM;
	return 0;
}

static void cmd_results_exec(struct cmd_ctx *ctx)
{
	const char *id = cmd_get_string(ctx->req, "batch");
	int64_t after = cmd_get_int(ctx->req, "after", 0), last = 0;
	int64_t limit = cmd_get_int(ctx->req, "limit", LLMQ_RESULTS_PAGE);
	json_object *errors, *b = NULL, *state, *o;
	struct evbuffer *buf;
	int r, count = 0, want_errors = 0;

	if (cmd_check_batch_id(ctx, id) < 0)
		return;
	if (limit < 1 || limit > LLMQ_RESULTS_PAGE)
		limit = LLMQ_RESULTS_PAGE;
	if (json_object_object_get_ex(ctx->req, "errors", &errors))
		want_errors = json_object_get_boolean(errors);
	r = store_batch_get(ctx->d->store, id, &b);
	if (r == -ENOENT) {
		ipc_reply(ctx->client, proto_error(ERR_NOT_FOUND, "no such batch (see llmq list)"));
		return;
	}
	if (r < 0) {
		cmd_store_error(ctx, "results", r);
		return;
	}
	buf = evbuffer_new();
	if (!buf) {
		json_object_put(b);
		return;
	}
	r = store_results(ctx->d->store, id, after, (int)limit, want_errors, add_line, buf, &last,
	                  &count);
	if (r < 0) {
		evbuffer_free(buf);
		json_object_put(b);
		cmd_store_error(ctx, "results", r);
		return;
	}
	o = proto_ok();
	if (o) {
		json_object_object_add(o, "count", json_object_new_int(count));
		json_object_object_add(o, "next", json_object_new_int64(last));
		json_object_object_add(o, "done", json_object_new_boolean(count < limit));
		if (json_object_object_get_ex(b, "state", &state))
			json_object_object_add(o, "state", json_object_get(state));
		ipc_reply(ctx->client, o);
		ipc_reply_buffer(ctx->client, buf);
	}
	evbuffer_free(buf);
	json_object_put(b);
}

const struct cmd_entry cmd_results_entry = {
    .name = OP_RESULTS,
    .usage = "{\"batch\": ID, \"after\": N, \"errors\": BOOL}",
    .exec = cmd_results_exec,
};
