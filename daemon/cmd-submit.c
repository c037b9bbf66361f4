/*
 * cmd-submit.c - "submit": the header {"lines": N, "window": "24h", "name",
 * "dry_run"} is checked here; the N input lines that follow are received by
 * ingest.c. A header that cannot be honoured closes the connection after
 * the reply, since the lines that follow it cannot be told from requests.
 */
#include "cmd.h"
#include "ingest.h"
#include "protocol.h"
#include "timeutil.h"

#include <stdio.h>

#define DEFAULT_WINDOW_MS (24LL * 3600 * 1000)

static void refuse(struct cmd_ctx *ctx, const char *code, const char *msg)
{
	ipc_reply(ctx->client, proto_error(code, msg));
	ipc_close_after_reply(ctx->client);
}

static void cmd_submit_exec(struct cmd_ctx *ctx)
{
	struct ingest_opts opts = {0};
	const char *window = cmd_get_string(ctx->req, "window");
	json_object *v;
	char msg[160];

	opts.lines = cmd_get_int(ctx->req, "lines", -1);
	opts.name = cmd_get_string(ctx->req, "name");
	opts.window_ms = DEFAULT_WINDOW_MS;
	if (json_object_object_get_ex(ctx->req, "dry_run", &v))
		opts.dry_run = json_object_get_boolean(v);
	if (opts.lines < 0) {
		refuse(ctx, ERR_BAD_REQUEST,
		       "submit needs \"lines\": the number of lines that follow");
		return;
	}
	if (opts.lines > LLMQ_MAX_BATCH_LINES) {
		snprintf(msg, sizeof(msg),
		         "batch of %lld lines; the limit is %d: split it into several batches",
		         (long long)opts.lines, LLMQ_MAX_BATCH_LINES);
		refuse(ctx, ERR_BATCH_TOO_LARGE, msg);
		return;
	}
	if (window && (time_parse_duration(window, &opts.window_ms) < 0 || opts.window_ms <= 0)) {
		refuse(ctx, ERR_BAD_REQUEST,
		       "\"window\" must be a duration such as 24h, 90m or 3600s");
		return;
	}
	if (ctx->d->ingests >= LLMQ_MAX_INGESTS) {
		refuse(ctx, ERR_BUSY,
		       "llmqd is receiving too many batches at once; try again "
		       "in a few seconds");
		return;
	}
	ingest_start(ctx->d, ctx->client, &opts);
}

const struct cmd_entry cmd_submit_entry = {
    .name = OP_SUBMIT,
    .usage = "{\"lines\": N, \"window\": \"24h\", \"name\": S, \"dry_run\": B} + N lines",
    .exec = cmd_submit_exec,
};
