/*
 * quota.c - see quota.h.
 */
#include "service/quota.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>

/* n bytes as people read them, in the unit the bounds are set in. */
static void quota_size(int64_t n, char *buf, size_t len)
{
	if (n >= (1LL << 30))
		snprintf(buf, len, "%.1f GiB", (double)n / (double)(1LL << 30));
	else if (n >= (1LL << 20))
		snprintf(buf, len, "%.1f MiB", (double)n / (double)(1LL << 20));
	else
		snprintf(buf, len, "%.1f KiB", (double)n / 1024.0);
}

static const char *quota_who(int64_t uid, char *buf, size_t len)
{
	if (uid < 0)
		snprintf(buf, len, "anonymous callers");
	else
		snprintf(buf, len, "uid %lld", (long long)uid);
	return buf;
}

int quota_files(struct llmqd *d, int64_t uid, int64_t adding, char *msg, size_t len)
{
	int64_t max = d->cfg->files_max_bytes_per_user, held = 0;
	char a[32], b[32], c[32], who[48];
	int r;

	if (max <= 0)
		return 0;
	r = store_files_bytes(d->store, uid, &held);
	if (r < 0)
		return r;
	if (held + adding <= max)
		return 0;
	quota_size(held, a, sizeof(a));
	quota_size(adding, b, sizeof(b));
	quota_size(max, c, sizeof(c));
	snprintf(msg, len,
	         "%s already hold%s %s of uploaded files; %s more would pass "
	         "files_max_bytes_per_user (%s). Delete files no batch needs any more "
	         "(DELETE /v1/files/{id}), or ask the operator to raise the bound",
	         quota_who(uid, who, sizeof(who)), uid < 0 ? "" : "s", a, b, c);
	return -EDQUOT;
}

int quota_jobs(struct llmqd *d, int64_t uid, int64_t adding, int *ret_never, char *msg, size_t len)
{
	int64_t max = d->cfg->queue_max_jobs_per_user, held = 0;
	char who[48];
	int r;

	*ret_never = 0;
	if (max <= 0)
		return 0;
	if (adding > max) {
		*ret_never = 1;
		snprintf(msg, len,
		         "a batch of %lld requests is more than queue_max_jobs_per_user (%lld) "
		         "allows one user to have queued: split it into batches of at most %lld",
		         (long long)adding, (long long)max, (long long)max);
		return -EDQUOT;
	}
	r = store_unfinished_jobs(d->store, uid, &held);
	if (r < 0)
		return r;
	if (held + adding <= max)
		return 0;
	snprintf(msg, len,
	         "%s already ha%s %lld requests queued or running; %lld more would pass "
	         "queue_max_jobs_per_user (%lld). Submit it once some have finished, or "
	         "cancel batches you no longer need",
	         quota_who(uid, who, sizeof(who)), uid < 0 ? "ve" : "s", (long long)held,
	         (long long)adding, (long long)max);
	return -EDQUOT;
}
