/*
 * cmd.c - the op table, the dispatcher, and the one place answers are sent.
 */
#include "sock/cmd.h"
#include "service/access.h"
#include "log.h"
#include "protocol.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <event2/buffer.h>

static const struct cmd_entry *const cmd_table[] = {
    &cmd_ping_entry,
    &cmd_submit_entry,
    &cmd_status_entry,
    &cmd_list_entry,
    &cmd_cancel_entry,
    &cmd_results_entry,
    &cmd_metrics_entry,
    &cmd_usage_entry,
    &cmd_pause_entry,
    &cmd_resume_entry,
    &cmd_retry_entry,
    &cmd_set_entry,
    NULL,
};

enum cmd_retval cmd_error(struct cmd_ctx *ctx, const char *code, const char *msg)
{
	json_object_put(ctx->reply);
	ctx->reply = proto_error(code, msg);
	return CMD_REPLY;
}

enum cmd_retval cmd_ok(struct cmd_ctx *ctx)
{
	json_object_put(ctx->reply);
	ctx->reply = proto_ok();
	return CMD_REPLY;
}

void cmd_add(struct cmd_ctx *ctx, const char *key, json_object *v)
{
	if (!ctx->reply)
		json_object_put(v);
	else
		json_object_object_add(ctx->reply, key, v);
}

enum cmd_retval cmd_store_error(struct cmd_ctx *ctx, const char *what, int r)
{
	json_object_put(ctx->reply);
	ctx->reply = store_error_reply(ctx->d->store, what, r);
	return CMD_REPLY;
}

static int64_t batch_owner(json_object *b)
{
	json_object *v;

	return json_object_object_get_ex(b, "uid", &v) && json_object_is_type(v, json_type_int)
	           ? json_object_get_int64(v)
	           : ACCESS_NONE;
}

/*
 * The batch a command names: present, well formed, known, and the caller's
 * to see. Another user's batch answers exactly as an unknown one does.
 */
static enum cmd_retval resolve_batch(struct cmd_ctx *ctx, const struct cmd_entry *e, int *ret_ok)
{
	const char *id = cmd_get_string(ctx->req, "batch");
	int r;

	*ret_ok = 0;
	if (!id && (e->flags & CMD_F_BATCH_OPTIONAL)) {
		*ret_ok = 1;
		return CMD_REPLY;
	}
	if (!id)
		return cmd_error(ctx, ERR_BAD_REQUEST, "missing \"batch\" (a batch id)");
	if (!proto_valid_batch_id(id))
		return cmd_error(ctx, ERR_NOT_FOUND,
		                 "no such batch; batch ids look like b_0123456789abcdef "
		                 "(see llmq list)");
	r = store_batch_get(ctx->d->store, id, &ctx->batch);
	if (r == 0 && !access_may_see(ctx->scope, batch_owner(ctx->batch))) {
		json_object_put(ctx->batch);
		ctx->batch = NULL;
		r = -ENOENT;
	}
	if (r == -ENOENT)
		return cmd_error(ctx, ERR_NOT_FOUND, "no such batch (see llmq list)");
	if (r < 0)
		return cmd_store_error(ctx, e->name, r);
	ctx->batch_id = id;
	*ret_ok = 1;
	return CMD_REPLY;
}

enum cmd_retval cmd_execute(struct cmd_ctx *ctx)
{
	const struct cmd_entry *const *e;
	enum cmd_retval rv = CMD_REPLY;
	const char *op = NULL;
	char msg[256];
	int ok, n;

	ctx->reply = proto_check_request(ctx->req, &op);
	if (ctx->reply)
		return CMD_REPLY;
	for (e = cmd_table; *e; e++)
		if (strcmp((*e)->name, op) == 0)
			break;
	if (!*e) {
		n = snprintf(msg, sizeof(msg), "unknown op \"%.64s\"; known:", op);
		for (e = cmd_table; *e && n > 0 && (size_t)n < sizeof(msg); e++)
			n += snprintf(msg + n, sizeof(msg) - (size_t)n, "%s %s",
			              e == cmd_table ? "" : ",", (*e)->name);
		return cmd_error(ctx, ERR_UNKNOWN_OP, msg);
	}
	log_debug("uid %d: %s", (int)ctx->uid, op);
	ctx->scope = access_scope(ctx->d->cfg, ctx->uid, time_mono_ms());
	if (((*e)->flags & CMD_F_ADMIN) && ctx->scope != ACCESS_ALL) {
		snprintf(msg, sizeof(msg),
		         "%s is for root and the members of the group %s (admin_group in "
		         "llmqd.conf); ask one of them",
		         op, ctx->d->cfg->admin_group);
		return cmd_error(ctx, ERR_PERMISSION, msg);
	}
	if ((*e)->flags & (CMD_F_BATCH | CMD_F_BATCH_OPTIONAL)) {
		rv = resolve_batch(ctx, *e, &ok);
		if (!ok)
			goto out;
	}
	rv = (*e)->exec(ctx);
out:
	if (rv == CMD_REPLY && !ctx->reply) {
		if (ctx->raw)
			evbuffer_free(ctx->raw);
		ctx->raw = NULL;
		ctx->reply = proto_error(ERR_INTERNAL, "llmqd ran out of memory; try again");
	}
	return rv;
}

void cmd_ctx_clear(struct cmd_ctx *ctx)
{
	json_object_put(ctx->batch);
	json_object_put(ctx->reply);
	if (ctx->raw)
		evbuffer_free(ctx->raw);
	ctx->batch = ctx->reply = NULL;
	ctx->raw = NULL;
}

void cmd_dispatch(struct ipc_client *c, json_object *req, void *userdata)
{
	struct cmd_ctx ctx = {.d = userdata, .client = c, .uid = ipc_client_uid(c), .req = req};

	if (cmd_execute(&ctx) == CMD_REPLY) {
		ipc_reply(c, ctx.reply);
		ctx.reply = NULL;
		if (ctx.raw)
			ipc_reply_buffer(c, ctx.raw);
		if (ctx.close_after)
			ipc_close_after_reply(c);
	}
	cmd_ctx_clear(&ctx);
}

const char *cmd_who(const struct cmd_ctx *ctx, char *buf, size_t len)
{
	struct passwd pw, *found = NULL;
	char names[1024];

	if (ctx->uid == (uid_t)-1)
		snprintf(buf, len, "a caller nobody could tell");
	else if (getpwuid_r(ctx->uid, &pw, names, sizeof(names), &found) == 0 && found)
		snprintf(buf, len, "%s (uid %u)", found->pw_name, (unsigned)ctx->uid);
	else
		snprintf(buf, len, "uid %u", (unsigned)ctx->uid);
	return buf;
}

const char *cmd_get_string(json_object *req, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int64_t cmd_get_int(json_object *req, const char *key, int64_t dflt)
{
	json_object *v;

	if (!json_object_object_get_ex(req, key, &v) || !json_object_is_type(v, json_type_int))
		return dflt;
	return json_object_get_int64(v);
}
