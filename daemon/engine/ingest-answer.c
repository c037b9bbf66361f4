/*
 * ingest-answer.c - what an ingest answers its owner, as JSON: a batch
 * stored (its id, count, estimate and finish), a dry run (where its lines
 * would go, and whether a real submit would be refused), a repeated
 * idempotency key (the batch stored under it), a batch the store would not
 * take. When they are sent is ingest-store.c's.
 */
#include "engine/ingest-private.h"
#include "log.h"
#include "protocol.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Where a dry run's lines would go: per lane, its jobs, tokens and models. */
static json_object *ingest_answer_routing(struct ingest *in)
{
	const struct config *cfg = in->d->cfg;
	json_object *arr = json_object_new_array(), *o, *models, *m;
	int64_t jobs, tokens;
	size_t i, k, n;
	int l;

	for (l = 0; arr && l < cfg->n_lanes; l++) {
		jobs = tokens = 0;
		o = json_object_new_object();
		models = json_object_new_array();
		if (!o || !models) {
			json_object_put(o);
			json_object_put(models);
			break;
		}
		for (i = 0; i < in->n_jobs; i++) {
			if (in->jobs[i].lane != &cfg->lanes[l])
				continue;
			jobs++;
			tokens += in->jobs[i].est;
			n = json_object_array_length(models);
			for (k = 0; k < n; k++) {
				m = json_object_array_get_idx(models, k);
				if (strcmp(json_object_get_string(m), in->jobs[i].model) == 0)
					break;
			}
			if (k == n && n < 16)
				json_object_array_add(models,
				                      json_object_new_string(in->jobs[i].model));
		}
		if (jobs == 0) {
			json_object_put(o);
			json_object_put(models);
			continue;
		}
		json_object_object_add(o, "lane", json_object_new_string(cfg->lanes[l].name));
		json_object_object_add(o, "jobs", json_object_new_int64(jobs));
		json_object_object_add(o, "est_tokens", json_object_new_int64(tokens));
		json_object_object_add(o, "models", models);
		json_object_array_add(arr, o);
	}
	return arr;
}

/*
 * A repeat of a submit that was stored (its key is known): the answer
 * naming that batch. Returns 1 with it, 0 when the key is new, or -errno.
 */
int ingest_answer_repeat(struct ingest *in, json_object **ret)
{
	char id[STORE_ID_LEN];
	int64_t total = 0;
	json_object *o;
	int r;

	if (!in->key || in->opts.dry_run)
		return 0;
	r = store_batch_by_key(in->d->store, in->uid, in->key, id, &total);
	if (r <= 0)
		return r;
	log_info("submit from uid %d repeats batch %s (same idempotency key); not stored again",
	         (int)in->uid, id);
	o = proto_ok();
	if (o) {
		json_object_object_add(o, "id", json_object_new_string(id));
		json_object_object_add(o, "count", json_object_new_int64(total));
		json_object_object_add(o, "duplicate", json_object_new_boolean(1));
	}
	*ret = o;
	return 1;
}

/* The answer to a batch stored (or, for a dry run, that would be). */
json_object *ingest_answer_ok(struct ingest *in)
{
	json_object *o = proto_ok();

	if (!o)
		return NULL;
	if (!in->opts.dry_run)
		json_object_object_add(o, "id", json_object_new_string(in->id));
	json_object_object_add(o, "count", json_object_new_int64((int64_t)in->n_jobs));
	json_object_object_add(o, "est_tokens", json_object_new_int64(in->tokens));
	json_object_object_add(o, "eta_ms", json_object_new_int64(in->v.finish_ms));
	if (in->opts.dry_run)
		json_object_object_add(o, "lanes", ingest_answer_routing(in));
	if (in->opts.dry_run && in->v.refused) {
		json_object_object_add(o, "would_refuse", json_object_new_string(in->v.reason));
		json_object_object_add(o, "retry_after",
		                       json_object_new_int64((in->v.retry_after_ms + 999) / 1000));
		/* false: the batch can never run as it is (the real submit's 65). */
		json_object_object_add(o, "retryable", json_object_new_boolean(in->v.retryable));
	}
	return o;
}

/* Why a batch the store would not take is refused. */
json_object *ingest_answer_refusal(struct ingest *in, int r)
{
	char msg[256];

	if (r != -EBUSY)
		return store_error_reply(in->d->store, "submit", r);
	snprintf(msg, sizeof(msg),
	         "the database stayed locked by another program for %ds; nothing was stored. "
	         "End that program's transaction and submit again",
	         INGEST_LOCK_WAIT_MS / 1000);
	return proto_error(ERR_BUSY, msg);
}
