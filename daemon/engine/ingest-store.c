/*
 * ingest-store.c - the batch state machine's second half: storing a batch
 * and answering its owner. Every write is an ingest write (ingest-write.c),
 * run on the store's writer thread, so the loop serves everyone meanwhile.
 * A batch of one slice is stored in one transaction once admitted. A larger
 * one is stored while its lines still come: as validating, its jobs held, a
 * slice a transaction; once all its lines are in and it is admitted, it is
 * started (in_progress, its key taken, its first slice let go) and
 * answered, then its other slices are let go. A batch is answered only once
 * stored; another program's lock delays it (retried from a timer) but
 * never loses or doubles it; a repeated idempotency key is answered with
 * the batch stored under it, a dry run with where its lines would go; what
 * was stored of a batch that is refused, or whose sender left, goes before
 * the batch does. Receiving the lines is ingest.c's.
 */
#include "engine/ingest-private.h"
#include "log.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INGEST_LOCK_RETRY_MS 250

static void ingest_store_next(struct ingest *in);

/* The one answer, after the owner was told it would be late (or not). */
static void ingest_store_reply(struct ingest *in, json_object *o)
{
	if (in->gone) {
		json_object_put(o);
		return;
	}
	if (in->awaiting)
		in->owner->await_end(in->owner_ud);
	in->awaiting = 0;
	in->gone = 1;
	ingest_reply(in, o);
}

static void on_gone(void *ud)
{
	struct ingest *in = ud;

	/* A start in the writer's hands may yet store it: ingest_store_started() says so. */
	log_info("submit from uid %d: the client left before its batch was stored%s", (int)in->uid,
	         in->started        ? " (it was, and runs)"
	         : in->start_handed ? ""
	                            : "; nothing stored");
	in->gone = 1;
	in->awaiting = 0;
	json_object_put(in->answer);
	in->answer = NULL;
	if (in->phase != INGEST_RELEASING)
		in->phase = in->started ? INGEST_RELEASING : INGEST_ABANDONED;
	ingest_store_next(in);
}

/* The answer will come from a later turn: the owner waits, and says if it leaves. */
static void ingest_store_await(struct ingest *in)
{
	if (in->awaiting || in->gone)
		return;
	in->owner->await(in->owner_ud, on_gone, in);
	in->awaiting = 1;
}

/* Bytes of the bodies of jobs [from, to). */
static uint64_t ingest_store_bytes(const struct ingest *in, size_t from, size_t to)
{
	uint64_t bytes = 0;

	for (; from < to; from++)
		bytes += in->jobs[from].body_len;
	return bytes;
}

/* Where the slice that begins at job from ends: INGEST_SLICE jobs, or
 * INGEST_SLICE_BYTES of bodies (a larger body alone). */
static size_t ingest_store_slice_end(const struct ingest *in, size_t from)
{
	uint64_t bytes = 0;
	size_t i;

	for (i = from; i < in->n_jobs && i - from < INGEST_SLICE && bytes < INGEST_SLICE_BYTES; i++)
		bytes += in->jobs[i].body_len;
	return i;
}

/* Hand over the write of a slice, jobs [in->handed, to). */
static int ingest_store_hand_slice(struct ingest *in, size_t to)
{
	struct ingest_write *w;
	int r;

	if (!in->id[0] && (r = store_new_batch_id(in->id)) < 0)
		return r;
	w = ingest_write_new(in, INGEST_WRITE_SLICE, in->handed, to);
	if (!w)
		return -ENOMEM;
	if (!in->batch_in && in->handed == 0) {
		/* Its figures and key are the start's: until then nobody runs or finds it. */
		w->with_batch = 1;
		w->batch = (struct store_batch){
		    .id = in->id,
		    .created_at = time_wall_ms(),
		    .uid = in->uid,
		    .input_name = in->name,
		    .window_ms = in->opts.window_ms,
		    .priority = in->opts.priority,
		    .state = "validating",
		    .endpoint = in->endpoint,
		    .input_file_id = in->input_file_id,
		    .metadata = in->metadata,
		};
	}
	in->sliced = 1;
	in->unhanded_bytes -= ingest_store_bytes(in, in->handed, to);
	in->handed = to;
	ingest_write_submit(w);
	return 0;
}

/* The batch whole (all stored in slices, or all in this write): its start. */
static int ingest_store_hand_start(struct ingest *in)
{
	struct ingest_write *w;
	int r;

	if (!in->id[0] && (r = store_new_batch_id(in->id)) < 0)
		return r;
	w = ingest_write_new(in, INGEST_WRITE_START, in->handed,
	                     in->sliced ? in->handed : in->n_jobs);
	if (!w)
		return -ENOMEM;
	w->batch = (struct store_batch){
	    .id = in->id,
	    .created_at = time_wall_ms(),
	    .uid = in->uid,
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
	in->start_handed = 1;
	if (in->sliced) {
		w->first = in->slices[0].first;
		w->last = in->slices[0].last;
	} else {
		w->with_batch = 1; /* in_progress at once, its jobs with it */
		in->unhanded_bytes = 0;
		in->handed = in->n_jobs;
	}
	ingest_write_submit(w);
	return 0;
}

/* Another program holds the lock: the same again in a while, up to
 * INGEST_LOCK_WAIT_MS. 1 when a retry is armed. */
static int ingest_store_wait(struct ingest *in)
{
	struct timeval tv = {0, INGEST_LOCK_RETRY_MS * 1000};
	int64_t now = time_mono_ms();

	if (!in->lock_deadline)
		in->lock_deadline = now + INGEST_LOCK_WAIT_MS;
	if (now >= in->lock_deadline || evtimer_add(in->retry, &tv) < 0)
		return 0;
	in->waiting = 1;
	return 1;
}

void ingest_store_retry(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;

	in->waiting = 0;
	ingest_store_next(in);
}

/* RECEIVING: hand over each slice that is whole, but the batch's last. */
static void ingest_store_feed_more(struct ingest *in)
{
	size_t end;

	if (in->opts.dry_run || in->n_errors > 0 || in->failed || in->too_big || in->gave_up)
		return;
	while (in->flying < INGEST_FLYING && (in->n_jobs - in->handed > INGEST_SLICE ||
	                                      in->unhanded_bytes >= INGEST_SLICE_BYTES)) {
		end = ingest_store_slice_end(in, in->handed);
		/* Stored at the end: a batch of one slice is then stored at once. */
		if (end == in->n_jobs)
			return;
		if (ingest_store_hand_slice(in, end) < 0)
			return; /* out of memory now: at the end, or refused then */
	}
}

/* STORING: the rest in slices, then the start, then the answer. */
static void ingest_store_rest(struct ingest *in)
{
	int r = 0;

	if (in->gave_up) {
		r = in->gave_up;
		in->phase = INGEST_DROPPING;
		in->answer = ingest_answer_refusal(in, r);
		ingest_store_next(in);
		return;
	}
	if (!in->sliced && in->handed == 0 && ingest_store_slice_end(in, 0) == in->n_jobs) {
		if (in->flying == 0)
			r = ingest_store_hand_start(in);
	} else {
		while (r == 0 && in->flying < INGEST_FLYING && in->handed < in->n_jobs)
			r = ingest_store_hand_slice(in, ingest_store_slice_end(in, in->handed));
		/* The start after the last slice, in the same queue (it does nothing
		 * if a slice before it failed); its range is the first slice's. */
		if (r == 0 && in->handed == in->n_jobs && in->n_slices > 0 &&
		    in->flying < INGEST_FLYING && !in->start_handed)
			r = ingest_store_hand_start(in);
	}
	if (r < 0 && in->flying == 0) {
		in->phase = INGEST_DROPPING;
		in->answer = ingest_answer_refusal(in, r);
		ingest_store_next(in);
	}
}

/*
 * The slices from released on, which in cannot let go (why): the
 * scheduler's once-a-second expiry tries them again, in one range, since a
 * release touches only this batch's jobs.
 */
static void ingest_store_release_later(struct ingest *in, const char *why)
{
	size_t left = in->n_slices - in->released;
	int later;

	if (left == 0)
		return;
	later = sched_release_later(in->d->sched, in->id, in->slices[in->released].first,
	                            in->slices[in->n_slices - 1].last) == 0;

	log_warn("batch %s: stored, but %zu slices of its jobs are still held (%s); llmqd %s",
	         in->id, left, why,
	         later ? "tries to let them go every second" : "lets them go at its next start");
	in->releasing = in->n_slices;
	in->released = in->n_slices;
}

/* RELEASING: the batch runs; its other slices are let go. Nobody waits. */
static void ingest_store_release_rest(struct ingest *in)
{
	struct ingest_write *w;
	size_t k;

	while (in->flying < INGEST_FLYING && in->releasing < in->n_slices) {
		k = in->releasing;
		w = ingest_write_new(in, INGEST_WRITE_RELEASE, 0, 0);
		if (!w)
			break;
		w->first = in->slices[k].first;
		w->last = in->slices[k].last;
		in->releasing++;
		ingest_write_submit(w);
	}
	if (in->flying > 0)
		return;
	ingest_store_release_later(in, "out of memory");
	ingest_free(in);
}

/* DROPPING, ABANDONED: what was stored goes, then the answer (if anyone waits). */
static void ingest_store_undo(struct ingest *in)
{
	struct ingest_write *w;

	if (in->flying > 0)
		return;
	if (in->started) {
		/* Its start came back meanwhile: it is stored, and runs. */
		in->phase = INGEST_RELEASING;
		json_object_put(in->answer);
		in->answer = NULL;
		ingest_store_release_rest(in);
		return;
	}
	if (in->batch_in && !in->deleting) {
		w = ingest_write_new(in, INGEST_WRITE_DELETE, 0, 0);
		if (w) {
			in->deleting = 1;
			ingest_write_submit(w);
			return;
		}
		log_warn("batch %s: out of memory to delete its part stored so far; llmqd deletes "
		         "it at its next start",
		         in->id);
	}
	if (in->phase == INGEST_DROPPING)
		ingest_store_reply(in, in->answer);
	in->answer = NULL;
	ingest_free(in);
}

/*
 * A write failed and all of in's writes are back: the failed one and those
 * after it (which did nothing) are handed again from a timer while another
 * program holds the lock, up to INGEST_LOCK_WAIT_MS; anything else, or
 * longer, and the batch is refused (or, started, its slices are left to
 * the scheduler's once-a-second expiry to let go).
 */
static void ingest_store_failed(struct ingest *in, int r)
{
	in->broken = 0;
	in->handed = in->stored;
	in->unhanded_bytes = ingest_store_bytes(in, in->stored, in->n_jobs);
	in->start_handed = in->started;
	in->releasing = in->released;
	if (r == -EBUSY && in->phase != INGEST_ABANDONED && in->phase != INGEST_DROPPING &&
	    ingest_store_wait(in))
		return;
	switch (in->phase) {
	case INGEST_RECEIVING:
		in->gave_up = r; /* refused at the end */
		break;
	case INGEST_STORING:
		in->phase = INGEST_DROPPING;
		in->answer = ingest_answer_refusal(in, r);
		break;
	case INGEST_RELEASING:
		ingest_store_release_later(in, strerror(-r));
		break;
	case INGEST_DROPPING:
	case INGEST_ABANDONED:
		break;
	}
}

/* What comes next, whatever came back. */
static void ingest_store_next(struct ingest *in)
{
	int r = in->err;

	if (r && in->flying > 0)
		return; /* the rest comes back first (doing nothing) */
	if (r) {
		in->err = 0;
		ingest_store_failed(in, r);
	}
	if (in->waiting)
		return;
	switch (in->phase) {
	case INGEST_RECEIVING:
		ingest_store_feed_more(in);
		break;
	case INGEST_STORING:
		ingest_store_rest(in);
		break;
	case INGEST_RELEASING:
		ingest_store_release_rest(in);
		break;
	case INGEST_DROPPING:
	case INGEST_ABANDONED:
		ingest_store_undo(in);
		break;
	}
}

/* The batch is started: answer, and let the rest go after. */
static void ingest_store_started(struct ingest *in)
{
	in->started = 1;
	in->released = in->sliced ? 1 : 0;
	in->releasing = in->released;
	log_info("batch %s: %zu jobs, ~%lld tokens, from uid %d", in->id, in->n_jobs,
	         (long long)in->tokens, (int)in->uid);
	sched_kick(in->d->sched);
	json_object_put(in->answer);
	in->answer = NULL;
	if (in->phase == INGEST_STORING)
		ingest_store_reply(in, ingest_answer_ok(in));
	else
		log_info("batch %s: its sender left before the answer; it is stored, and runs",
		         in->id);
	in->phase = INGEST_RELEASING;
}

/* A write of in's is in the database. */
static void ingest_store_took(struct ingest *in, const struct ingest_write *w)
{
	size_t i;

	in->lock_deadline = 0;
	switch (w->kind) {
	case INGEST_WRITE_SLICE:
		in->batch_in = 1;
		in->slices[in->n_slices].first = w->first;
		in->slices[in->n_slices].last = w->first + (int64_t)w->slice.n - 1;
		in->n_slices++;
		in->stored += w->slice.n;
		/* Its bodies are the store's now. */
		for (i = w->from; i < w->from + w->slice.n; i++) {
			if (!in->jobs[i].body)
				continue;
			in->kept -= in->jobs[i].body_len;
			free(in->jobs[i].body);
			in->jobs[i].body = NULL;
		}
		break;
	case INGEST_WRITE_START:
		in->batch_in = 1;
		in->stored = in->n_jobs;
		ingest_store_started(in);
		break;
	case INGEST_WRITE_RELEASE:
		in->released++;
		sched_kick(in->d->sched); /* its jobs are a lane's now: nothing else may wake it */
		break;
	case INGEST_WRITE_DELETE:
		in->batch_in = 0;
		break;
	}
}

/* A write of in's failed with r (-ECANCELED: one before it did). */
static void ingest_store_refused(struct ingest *in, const struct ingest_write *w, int r)
{
	json_object *o = NULL;

	if (w->kind == INGEST_WRITE_DELETE) {
		/* Harmless meanwhile: a validating batch runs nowhere, and no repeat finds it. */
		log_warn("batch %s: cannot delete its part stored so far (%s); llmqd deletes it at "
		         "its next start",
		         in->id, w->why ? w->why : strerror(-r));
		in->batch_in = 0;
		in->broken = 0;
		return;
	}
	if (r == -EEXIST && w->kind == INGEST_WRITE_START && ingest_answer_repeat(in, &o) == 1) {
		/* The same key stored meanwhile by a repeat: the answer names that batch. */
		in->broken = 0;
		in->start_handed = 0;
		if (in->phase == INGEST_STORING) {
			in->phase = INGEST_DROPPING;
			in->answer = o;
		} else {
			json_object_put(o);
		}
		return;
	}
	if (r == -ECANCELED || in->err)
		return;
	/* A custom_id twice (-EEXIST of a slice) is named, with its lines, by the
	 * end's check; another program's lock, by health.c. */
	if (r != -EBUSY && !(r == -EEXIST && w->kind == INGEST_WRITE_SLICE))
		log_err("batch %s: the database refused a write of it: %s", in->id,
		        w->why ? w->why : strerror(-r));
	in->err = r;
}

void ingest_store_written(struct ingest_write *w, int r)
{
	struct ingest *in = w->in;

	in->flying--;
	/* The writer's connection met another program's lock, or wrote: as writeback.c. */
	if (sched_writer(in->d->sched) && (r == 0 || r == -EBUSY))
		store_note_contended(in->d->store, r == 0 ? 0 : time_wall_ms());
	if (r == 0)
		ingest_store_took(in, w);
	else
		ingest_store_refused(in, w, r);
	ingest_write_free(w);
	ingest_store_next(in);
}

void ingest_store_feed(struct ingest *in)
{
	in->unhanded_bytes += in->jobs[in->n_jobs - 1].body_len;
	if (in->phase == INGEST_RECEIVING && !in->err && !in->waiting)
		ingest_store_feed_more(in);
}

void ingest_store_and_reply(struct ingest *in)
{
	if (in->opts.dry_run) {
		ingest_store_reply(in, ingest_answer_ok(in));
		ingest_free(in);
		return;
	}
	in->phase = INGEST_STORING;
	ingest_store_await(in);
	ingest_store_next(in);
}

void ingest_store_drop(struct ingest *in, json_object *o)
{
	if (in->handed == 0 && in->flying == 0 && !in->waiting) {
		ingest_store_reply(in, o);
		ingest_free(in);
		return;
	}
	in->phase = INGEST_DROPPING;
	in->answer = o;
	ingest_store_await(in);
	/* A retry was for a slice: what is stored goes instead, now. */
	if (in->waiting)
		evtimer_del(in->retry);
	in->waiting = 0;
	ingest_store_next(in);
}

void ingest_store_abort(struct ingest *in)
{
	in->gone = 1;
	in->phase = INGEST_ABANDONED;
	if (in->waiting) {
		evtimer_del(in->retry);
		in->waiting = 0;
	}
	ingest_store_next(in);
}
