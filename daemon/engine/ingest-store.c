/*
 * ingest-store.c - the batch state machine's second half: storing an
 * admitted batch and answering its owner. A batch is stored in one
 * transaction, or, when large, as validating with its jobs held, a slice a
 * turn, then let go a slice a turn; another program's lock delays it from a
 * timer but never loses or doubles it; a repeated idempotency key is
 * answered with the batch stored under it, a dry run with where its lines
 * would go. Receiving the lines is ingest.c's.
 */
#include "engine/ingest-private.h"
#include "sock/cmd.h"
#include "log.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INGEST_LOCK_WAIT_MS 30000 /* how long a locked database may delay the answer */
#define INGEST_LOCK_RETRY_MS 250

static int64_t submitter(const struct ingest *in)
{
	return in->uid;
}

/*
 * The body of a job whose line is in the source file: read and parsed
 * again, as take_line() did. *ret (to free) holds the whole line; the body
 * is *ret_body, *ret_len bytes (owned by *ret_obj, to put).
 */
static int reread_body(struct ingest *in, const struct ingest_job *j, char **ret,
                       json_object **ret_obj, const char **ret_body, size_t *ret_len)
{
	struct proto_input pi = {0};
	char *line = malloc(j->line_len + 1), err[256];
	ssize_t n;
	int r;

	if (!line)
		return -ENOMEM;
	n = pread(in->source_fd, line, j->line_len, (off_t)j->offset);
	if (n != (ssize_t)j->line_len) {
		free(line);
		return n < 0 ? -errno : -EIO;
	}
	line[n] = '\0';
	r = proto_parse_input(line, j->line_len, &pi, err, sizeof(err));
	if (r < 0) {
		free(line);
		return r == -ENOMEM ? r : -EIO; /* the file changed under us */
	}
	*ret_body = json_object_to_json_string_length(pi.body, JSON_C_TO_STRING_PLAIN, ret_len);
	*ret_obj = json_object_get(pi.body);
	proto_input_clear(&pi);
	*ret = line;
	return 0;
}

/*
 * One step of storing the batch, in one transaction. A batch of one slice
 * (INGEST_SLICE jobs) is stored in one step. A larger one is stored as
 * validating, its jobs held, a slice a step, so that neither the database
 * nor the loop is held for long, and nothing of it runs (nor survives a
 * crash) until all of it is in; then its slices are let go a step each,
 * the first making it in_progress. Returns 1 when there is more to do, 0
 * when the batch is stored, or -errno (the step did not happen).
 */
static int store_step(struct ingest *in)
{
	struct store *st = in->d->store;
	int64_t now = time_wall_ms();
	int sliced;
	struct store_batch b = {
	    .id = in->id,
	    .created_at = now,
	    .uid = submitter(in),
	    .input_name = in->name,
	    .window_ms = in->opts.window_ms,
	    .total = (int64_t)in->n_jobs,
	    .est_tokens = in->tokens,
	    .priority = in->opts.priority,
	    .idempotency_key = in->key,
	    .endpoint = in->endpoint,
	    .input_file_id = in->input_file_id,
	    .metadata = in->metadata,
	};
	size_t i, k = in->n_slices;
	uint64_t bytes = 0;
	int r;

	if (in->stored == 0) {
		for (i = 0; i < in->n_jobs; i++)
			bytes += in->jobs[i].body_len;
		in->sliced = in->n_jobs > INGEST_SLICE || bytes > INGEST_SLICE_BYTES;
		bytes = 0;
	}
	sliced = in->sliced;
	b.state = sliced ? "validating" : NULL;
	if (in->stored == in->n_jobs) {
		k = in->released;
		r = store_batch_release(st, in->id, in->slices[k].first, in->slices[k].last,
		                        k == 0);
		if (r < 0)
			return r;
		in->released++;
		return in->released < in->n_slices ? 1 : 0;
	}
	r = store_tx_begin(st);
	if (r < 0)
		return r;
	if (in->stored == 0)
		r = store_batch_insert(st, &b);
	for (i = in->stored; i < in->n_jobs && i - in->stored < INGEST_SLICE &&
	                     bytes < INGEST_SLICE_BYTES && r == 0;
	     i++) {
		struct ingest_job *j = &in->jobs[i];
		json_object *obj = NULL;
		char *line = NULL;
		const char *body = j->body;
		size_t blen = j->body_len;

		if (!body)
			r = reread_body(in, j, &line, &obj, &body, &blen);
		if (r < 0)
			break;
		struct store_job_new nj = {
		    .batch_id = in->id,
		    .line = j->line,
		    .custom_id = j->custom_id,
		    .url = j->url,
		    .model = j->model,
		    .lane = j->lane->name,
		    .body = body,
		    .body_len = blen,
		    .est_tokens = j->est,
		    .priority = in->opts.priority,
		    .held = sliced,
		};

		r = store_job_insert(st, &nj, now);
		bytes += blen;
		json_object_put(obj);
		free(line);
		if (r == 0 && i == in->stored)
			in->slices[k].first = store_last_insert_id(st);
	}
	if (r == 0) {
		in->slices[k].last = store_last_insert_id(st);
		r = store_tx_commit(st);
	}
	if (r < 0) {
		store_tx_rollback(st);
		return r;
	}
	in->stored = i;
	in->n_slices++;
	return sliced ? 1 : 0;
}

/* A batch stored in part cannot be completed: what of it is stored goes. */
static void store_undo(struct ingest *in)
{
	int r;

	if (in->stored == 0 || !in->sliced || in->released > 0)
		return;
	r = store_batch_delete(in->d->store, in->id);
	if (r < 0)
		log_warn("batch %s: cannot delete its part stored so far (%s); llmqd deletes it at "
		         "its next start",
		         in->id, strerror(-r));
	in->stored = 0;
}

/* Where a dry run's lines would go: per lane, its jobs, tokens and models. */
static json_object *routing(struct ingest *in)
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
 * A repeat of a submit that was stored (its key is known): answer with that
 * batch. Returns 1 when it answered, 0 when the key is new, or -errno.
 */
int ingest_store_reply_if_repeat(struct ingest *in)
{
	char id[19];
	int64_t total = 0;
	json_object *o;
	int r;

	if (!in->key || in->opts.dry_run)
		return 0;
	r = store_batch_by_key(in->d->store, submitter(in), in->key, id, &total);
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
	ingest_reply(in, o);
	return 1;
}

/*
 * After the answer: the batch is in_progress with its first slice running;
 * its other slices are let go a step a turn. Nobody waits for this.
 */
static void release_rest(struct ingest *in)
{
	struct timeval tv = {0, INGEST_LOCK_RETRY_MS * 1000}, next = {0, 0};
	int r = store_step(in);

	if (r == -EBUSY && !in->lock_deadline)
		in->lock_deadline = time_mono_ms() + INGEST_LOCK_WAIT_MS;
	if ((r == 1 || (r == -EBUSY && time_mono_ms() < in->lock_deadline)) &&
	    evtimer_add(in->retry, r == 1 ? &next : &tv) == 0)
		return;
	if (r != 0)
		log_warn("batch %s: %zu slices of its jobs cannot be let go now (%s); llmqd lets "
		         "them go at its next start",
		         in->id, in->n_slices - in->released, strerror(r < 0 ? -r : ENOMEM));
	ingest_free(in);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;

	if (in->answered)
		release_rest(in);
	else
		ingest_store_and_reply(in);
}

static void on_gone(void *ud)
{
	struct ingest *in = ud;

	log_info("submit from uid %d: the client left before its batch was stored%s", (int)in->uid,
	         in->released ? " (it was, and runs)" : "; nothing stored");
	store_undo(in);
	ingest_free(in);
}

/*
 * The batch is admitted: store it and answer. Another program's lock on the
 * database delays this (up to INGEST_LOCK_WAIT_MS, retried from a timer, the
 * loop serving everyone meanwhile) but never loses or doubles the batch:
 * the transaction either committed or did not happen.
 */
void ingest_store_and_reply(struct ingest *in)
{
	struct timeval tv = {0, INGEST_LOCK_RETRY_MS * 1000}, next = {0, 0};
	int64_t now = time_mono_ms();
	json_object *o;
	int r = 0;

	if (!in->opts.dry_run) {
		r = store_step(in);
		if (r == -EBUSY && !in->lock_deadline)
			in->lock_deadline = now + INGEST_LOCK_WAIT_MS;
		if (r == 1 && in->released == 1 && in->retry) {
			in->answered = 1; /* in_progress now: answer, and let the rest go after */
			r = 0;
		}
		if ((r == 1 || (r == -EBUSY && now < in->lock_deadline)) &&
		    (in->retry || (in->retry = evtimer_new(in->d->base, retry_cb, in))) &&
		    evtimer_add(in->retry, r == 1 ? &next : &tv) == 0) {
			if (!in->awaiting)
				in->owner->await(in->owner_ud, on_gone, in);
			in->awaiting = 1;
			return; /* the next step, or the same again, on a later turn */
		}
		if (r == 1)
			r = -ENOMEM; /* no timer: give up */
		if (in->awaiting)
			in->owner->await_end(in->owner_ud);
		in->awaiting = 0;
		if (r < 0 && in->released == 0)
			store_undo(in);
		if (r < 0 && in->released > 0) {
			/* Stored and running; the rest is let go at the next start. */
			log_warn(
			    "batch %s: stored, but some of its jobs wait for llmqd's next start: "
			    "%s",
			    in->id, strerror(-r));
			r = 0;
		}
		/* The same key stored meanwhile by a concurrent repeat. */
		if (r == -EEXIST && ingest_store_reply_if_repeat(in) == 1)
			goto out;
		if (r == -EBUSY) {
			ingest_reply(
			    in, proto_error(ERR_BUSY,
			                    "the database stayed locked by another program for "
			                    "30s; nothing was stored. End that program's "
			                    "transaction and submit again"));
			goto out;
		}
		if (r < 0) {
			ingest_reply(in, cmd_store_error_reply(in->d, "submit", r));
			goto out;
		}
		log_info("batch %s: %zu jobs, ~%lld tokens, from uid %d", in->id, in->n_jobs,
		         (long long)in->tokens, (int)in->uid);
		sched_kick(in->d->sched);
	}
	o = proto_ok();
	if (o) {
		if (!in->opts.dry_run)
			json_object_object_add(o, "id", json_object_new_string(in->id));
		json_object_object_add(o, "count", json_object_new_int64((int64_t)in->n_jobs));
		json_object_object_add(o, "est_tokens", json_object_new_int64(in->tokens));
		json_object_object_add(o, "eta_ms", json_object_new_int64(in->v.finish_ms));
		if (in->opts.dry_run)
			json_object_object_add(o, "lanes", routing(in));
		if (in->opts.dry_run && in->v.refused) {
			json_object_object_add(o, "would_refuse",
			                       json_object_new_string(in->v.reason));
			json_object_object_add(
			    o, "retry_after",
			    json_object_new_int64((in->v.retry_after_ms + 999) / 1000));
			/* false: the batch can never run as it is (the real submit's 65). */
			json_object_object_add(o, "retryable",
			                       json_object_new_boolean(in->v.retryable));
		}
	}
	ingest_reply(in, o);
	if (in->answered) {
		if (evtimer_add(in->retry, &next) == 0)
			return; /* release_rest() */
		in->answered = 0;
	}
out:
	ingest_free(in);
}
