/*
 * caller.c - see caller.h: the caller of a request, and what it may see.
 */
#include "http/caller.h"
#include "http/reply.h"
#include "llmqd.h"
#include "store/store.h"

#include <errno.h>

int http_caller(struct llmqd *d, struct hreq *req, int owner, int64_t *ret_uid)
{
	int64_t uid = hreq_uid(req);

	*ret_uid = -1;
	if (uid == -EACCES)
		return -EACCES;
	if (uid == HSERV_FORBIDDEN)
		return -EPERM;
	/* Anonymous: only where the operator opted in, and never as an owner. */
	if (uid < 0 && (owner || !d->cfg->http_anonymous))
		return -EACCES;
	*ret_uid = uid < 0 ? -1 : uid;
	return 0;
}

void http_refuse_caller(struct hreq *req, int r)
{
	if (r == -EPERM) {
		http_error(req, 403, "invalid_request_error", "permission_denied",
		           "llmq: your user may not use this llmqd: ask its operator to add you to "
		           "its users' group (socket_group), or use a token of its tokens file");
		return;
	}
	http_error(req, 401, "invalid_request_error", "invalid_api_key",
	           "llmq: llmqd cannot tell who you are: connect over loopback or the Unix "
	           "socket from this host, or send \"Authorization: Bearer TOKEN\" with a "
	           "token llmq's operator gave you%s",
	           hreq_on_unix(req) ? ""
	                             : " (anonymous callers are refused unless the operator "
	                               "sets http_anonymous = yes, and never see Files or "
	                               "Batches)");
}

int http_owns(int64_t caller, int64_t owner)
{
	return caller == owner;
}

int http_owned_batch(struct llmqd *d, const char *id, int64_t uid, json_object **ret)
{
	json_object *b = NULL, *v;
	int64_t owner;
	int r = store_batch_brief(d->store, id, &b);

	if (r < 0)
		return r;
	owner = json_object_object_get_ex(b, "uid", &v) && v ? json_object_get_int64(v) : -1;
	if (!http_owns(uid, owner)) {
		json_object_put(b);
		return -ENOENT;
	}
	*ret = b;
	return 0;
}
