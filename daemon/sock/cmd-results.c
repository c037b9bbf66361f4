/*
 * cmd-results.c - "results": one page of a batch's output lines in the Batch
 * API output format. The answer is a header line {"ok", "count", "next",
 * "done", "state"} followed by "count" raw JSONL lines; the client asks again
 * with "after": next until done. A page holds at most LLMQ_RESULTS_PAGE lines
 * and ends after the line that takes it past LLMQ_RESULTS_PAGE_BYTES, so what
 * one answer costs in memory is bounded whatever the answers' sizes.
 */
#include "sock/cmd.h"
#include "protocol.h"
#include "store/store.h"

#include <errno.h>
#include <event2/buffer.h>

static int add_line(void *ud, const char *bytes, size_t len, int end)
{
	struct evbuffer *buf = ud;

	if (evbuffer_add(buf, bytes, len) < 0 || (end && evbuffer_add(buf, "\n", 1) < 0))
		return -ENOMEM;
	if (!end)
		return 0;
	/* Pages are bounded in bytes too: a page of large answers ends early. */
	return evbuffer_get_length(buf) >= LLMQ_RESULTS_PAGE_BYTES;
}

static enum cmd_retval cmd_results_exec(struct cmd_ctx *ctx)
{
	int64_t after = cmd_get_int(ctx->req, "after", 0), last = 0;
	int64_t limit = cmd_get_int(ctx->req, "limit", LLMQ_RESULTS_PAGE);
	json_object *errors, *state;
	int r, count = 0, more = 0, want_errors = 0;

	if (limit < 1 || limit > LLMQ_RESULTS_PAGE)
		limit = LLMQ_RESULTS_PAGE;
	if (json_object_object_get_ex(ctx->req, "errors", &errors))
		want_errors = json_object_get_boolean(errors);
	ctx->raw = evbuffer_new();
	if (!ctx->raw)
		return cmd_store_error(ctx, "results", -ENOMEM);
	r = store_results(ctx->d->store, ctx->batch_id, after, (int)limit, want_errors, add_line,
	                  ctx->raw, &last, &count, &more);
	if (r < 0) {
		evbuffer_free(ctx->raw);
		ctx->raw = NULL;
		return cmd_store_error(ctx, "results", r);
	}
	cmd_ok(ctx);
	cmd_add(ctx, "count", json_object_new_int(count));
	cmd_add(ctx, "next", json_object_new_int64(last));
	cmd_add(ctx, "done", json_object_new_boolean(!more));
	if (json_object_object_get_ex(ctx->batch, "state", &state))
		cmd_add(ctx, "state", json_object_get(state));
	return CMD_REPLY;
}

const struct cmd_entry cmd_results_entry = {
    .name = OP_RESULTS,
    .usage = "{\"batch\": ID, \"after\": N, \"errors\": BOOL}",
    .flags = CMD_F_BATCH,
    .exec = cmd_results_exec,
};
