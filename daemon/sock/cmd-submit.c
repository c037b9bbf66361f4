/*
 * cmd-submit.c - "submit": the header {"lines": N, "window": "24h", "name",
 * "dry_run", "priority"} is checked here; the N input lines that follow are
 * received here and given to ingest.c, stored by ingest-store.c, which answers once they are in. A
 * header that cannot be honoured closes the connection after the reply, since the lines that follow
 * it cannot be told from requests.
 */
#include "sock/cmd.h"
#include "engine/health.h"
#include "engine/ingest.h"
#include "protocol.h"
#include "service/quota.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_WINDOW_MS (24LL * 3600 * 1000)

static enum cmd_retval refuse(struct cmd_ctx *ctx, const char *code, const char *msg)
{
	ctx->close_after = 1;
	return cmd_error(ctx, code, msg);
}

/* The socket's side of a batch: its lines from the client, its answer to it. */
static int submit_line(void *ud, const char *line, size_t len, int too_long)
{
	ingest_line(ud, line, len, too_long);
	return 0;
}

static void submit_end(void *ud)
{
	ingest_end(ud);
}

static void submit_abort(void *ud)
{
	ingest_abort(ud);
}

static const struct ipc_line_handler submit_lines = {
    .line = submit_line,
    .end = submit_end,
    .abort = submit_abort,
};

static void submit_reply(void *ud, json_object *o)
{
	ipc_reply(ud, o);
}

static void submit_await(void *ud, void (*gone)(void *arg), void *arg)
{
	ipc_await(ud, gone, arg);
}

static void submit_await_end(void *ud)
{
	ipc_await_end(ud);
}

static const struct ingest_owner submit_owner = {
    .reply = submit_reply,
    .await = submit_await,
    .await_end = submit_await_end,
};

/* Receiving on c starts; ingest.c answers (now on a bad line, or once stored). */
static enum cmd_retval submit_start(struct cmd_ctx *ctx, const struct ingest_opts *opts)
{
	uid_t u = ipc_client_uid(ctx->client);
	struct ingest *in =
	    ingest_new(ctx->d, opts, u == (uid_t)-1 ? -1 : (int64_t)u, &submit_owner, ctx->client);

	if (!in) {
		ctx->close_after = 1;
		return cmd_error(ctx, ERR_INTERNAL, "out of memory");
	}
	ipc_expect_lines(ctx->client, opts->lines, &submit_lines, in);
	return CMD_WAIT;
}

static enum cmd_retval cmd_submit_exec(struct cmd_ctx *ctx)
{
	struct ingest_opts opts = {0};
	const char *window = cmd_get_string(ctx->req, "window");
	json_object *v;
	char msg[160], why[512];
	int refuse_db, never, r;

	if (!ctx->client)
		return cmd_error(ctx, ERR_BAD_REQUEST, "submit is only taken on the socket");
	if (health_db(ctx->d, why, sizeof(why), &refuse_db) && refuse_db)
		return refuse(ctx, ERR_STORAGE, why);
	if (health_disk(ctx->d, why, sizeof(why)))
		return refuse(ctx, ERR_STORAGE, why);
	opts.source_fd = -1; /* the lines come over the socket */
	opts.lines = cmd_get_int(ctx->req, "lines", -1);
	opts.name = cmd_get_string(ctx->req, "name");
	opts.window_ms = DEFAULT_WINDOW_MS;
	opts.priority = cmd_get_int(ctx->req, "priority", 0);
	opts.idempotency_key = cmd_get_string(ctx->req, "idempotency_key");
	if (json_object_object_get_ex(ctx->req, "dry_run", &v))
		opts.dry_run = json_object_get_boolean(v);
	if (opts.name && strlen(opts.name) > LLMQ_MAX_NAME) {
		snprintf(msg, sizeof(msg),
		         "\"name\" is %zu bytes long; a batch's name is at most %d",
		         strlen(opts.name), LLMQ_MAX_NAME);
		return refuse(ctx, ERR_BAD_REQUEST, msg);
	}
	if (opts.lines < 0)
		return refuse(ctx, ERR_BAD_REQUEST,
		              "submit needs \"lines\": the number of lines that follow");
	if (opts.lines > LLMQ_MAX_BATCH_LINES) {
		snprintf(msg, sizeof(msg),
		         "batch of %lld lines; the limit is %d: split it into several batches",
		         (long long)opts.lines, LLMQ_MAX_BATCH_LINES);
		ctx->d->refusals[REFUSAL_TOO_LARGE]++;
		return refuse(ctx, ERR_BATCH_TOO_LARGE, msg);
	}
	if (window && (time_parse_duration(window, &opts.window_ms) < 0 || opts.window_ms <= 0))
		return refuse(ctx, ERR_BAD_REQUEST,
		              "\"window\" must be a duration such as 24h, 90m or 3600s");
	if (opts.priority < -LLMQ_MAX_PRIORITY || opts.priority > LLMQ_MAX_PRIORITY) {
		snprintf(msg, sizeof(msg), "\"priority\" must be -%d..%d", LLMQ_MAX_PRIORITY,
		         LLMQ_MAX_PRIORITY);
		return refuse(ctx, ERR_BAD_REQUEST, msg);
	}
	if (json_object_object_get_ex(ctx->req, "idempotency_key", &v) &&
	    !proto_valid_idempotency_key(opts.idempotency_key))
		return refuse(ctx, ERR_BAD_REQUEST,
		              "\"idempotency_key\" must be 1 to 64 letters, digits, '-', '_', '.' "
		              "or ':'");
	if (ipc_receiving(ipc_of(ctx->client), ctx->uid) >= LLMQ_MAX_INGESTS_PER_UID) {
		ctx->d->refusals[REFUSAL_BUSY]++;
		snprintf(msg, sizeof(msg),
		         "uid %u is already sending %d batches, the most one user may at once; "
		         "send this one when they are in",
		         (unsigned)ctx->uid, LLMQ_MAX_INGESTS_PER_UID);
		return refuse(ctx, ERR_BUSY, msg);
	}
	if (ctx->d->ingests >= LLMQ_MAX_INGESTS) {
		ctx->d->refusals[REFUSAL_BUSY]++;
		return refuse(ctx, ERR_BUSY,
		              "llmqd is receiving too many batches at once; try again "
		              "in a few seconds");
	}
	r = quota_jobs(ctx->d, ctx->uid, opts.lines, &never, why, sizeof(why));
	if (r == -EDQUOT) {
		json_object *e;

		ctx->d->refusals[REFUSAL_RATE_LIMITED]++;
		refuse(ctx, ERR_QUOTA, why);
		if (json_object_object_get_ex(ctx->reply, "error", &e))
			json_object_object_add(e, "retryable", json_object_new_boolean(!never));
		return CMD_REPLY;
	}
	if (r < 0) {
		ctx->close_after = 1;
		return cmd_store_error(ctx, "count your queued requests", r);
	}
	return submit_start(ctx, &opts);
}

const struct cmd_entry cmd_submit_entry = {
    .name = OP_SUBMIT,
    .usage = "{\"lines\": N, \"window\": \"24h\", \"name\": S, \"dry_run\": B, \"priority\": P} "
             "+ N lines",
    .exec = cmd_submit_exec,
};
