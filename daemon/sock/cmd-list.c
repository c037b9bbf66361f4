/*
 * cmd-list.c - "list": the caller's most recent batches, newest first,
 * filtered in the store's query by state ("states": an array of the
 * schema's states) and age ("since": wall ms), at most "limit" of them.
 */
#include "sock/cmd.h"
#include "protocol.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define LIST_MAX 10000

/* "states" checked against the schema's; *ret_json the array as text, or NULL. */
static int cmd_list_states(json_object *req, const char **ret_json, char *why, size_t len)
{
	json_object *a, *v;
	size_t i, n;
	int k;

	*ret_json = NULL;
	if (!json_object_object_get_ex(req, "states", &a) || !a)
		return 0;
	if (!json_object_is_type(a, json_type_array)) {
		snprintf(why, len, "\"states\" must be an array of batch states");
		return -EINVAL;
	}
	n = json_object_array_length(a);
	for (i = 0; i < n; i++) {
		v = json_object_array_get_idx(a, i);
		if (!json_object_is_type(v, json_type_string) ||
		    proto_batch_state_index(json_object_get_string(v)) < 0) {
			snprintf(why, len, "\"states\": %s is not a batch state; the states are",
			         json_object_to_json_string(v));
			for (k = 0; proto_batch_states[k]; k++)
				snprintf(why + strlen(why), len - strlen(why), "%s %s",
				         k ? "," : "", proto_batch_states[k]);
			return -EINVAL;
		}
	}
	if (n > 0)
		*ret_json = json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN);
	return 0;
}

static enum cmd_retval cmd_list_exec(struct cmd_ctx *ctx)
{
	struct store_batch_filter f = {
	    .uid = ctx->scope,
	    .since = cmd_get_int(ctx->req, "since", 0),
	};
	int64_t limit = cmd_get_int(ctx->req, "limit", 50);
	json_object *arr = NULL;
	char why[256];
	int r;

	if (limit < 1 || limit > LIST_MAX) {
		snprintf(why, sizeof(why), "\"limit\" must be 1..%d", LIST_MAX);
		return cmd_error(ctx, ERR_BAD_REQUEST, why);
	}
	f.limit = (int)limit;
	if (f.since < 0)
		return cmd_error(ctx, ERR_BAD_REQUEST,
		                 "\"since\" must be a time in unix milliseconds, 0 for any time");
	if (cmd_list_states(ctx->req, &f.states_json, why, sizeof(why)) < 0)
		return cmd_error(ctx, ERR_BAD_REQUEST, why);
	r = store_batch_list(ctx->d->store, &f, &arr);
	if (r < 0)
		return cmd_store_error(ctx, "list", r);
	cmd_ok(ctx);
	cmd_add(ctx, "batches", arr);
	return CMD_REPLY;
}

const struct cmd_entry cmd_list_entry = {
    .name = OP_LIST,
    .usage = "{\"limit\": N, \"states\": [STATE, ...], \"since\": UNIX_MS}",
    .exec = cmd_list_exec,
};
