/*
 * ingest-write.c - a batch's transactions as the store's writer thread runs
 * them (store/writer.h): a slice of its jobs, its start, a slice let go, the
 * delete of what was stored of it. A write touches the store it is given,
 * its own copy of the rows and the source file's bytes, nothing else: what
 * comes of it is for ingest-store.c to judge, back on the loop. Without a
 * writer thread the same writes run on the loop, one a turn.
 */
#include "engine/ingest-private.h"
#include "engine/scheduler.h"
#include "jsontext.h"
#include "timeutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ingest_write_free(struct ingest_write *w)
{
	size_t i;

	if (!w)
		return;
	for (i = 0; i < w->n_reread; i++)
		free(w->reread[i].body);
	free(w->reread);
	free(w->rows);
	free(w->why);
	free(w);
}

struct ingest_write *ingest_write_new(struct ingest *in, enum ingest_write_kind kind, size_t from,
                                      size_t to)
{
	struct ingest_write *w = calloc(1, sizeof(*w));
	size_t i, k = 0, n = to - from;

	if (!w)
		return NULL;
	w->in = in;
	w->kind = kind;
	w->broken = &in->broken;
	w->source_fd = in->source_fd;
	w->batch.id = in->id;
	w->from = from;
	w->slice.batch_id = in->id;
	w->slice.priority = in->opts.priority;
	w->slice.held = kind == INGEST_WRITE_SLICE;
	if (n == 0)
		return w;
	w->rows = malloc(n * sizeof(*w->rows));
	for (i = from; w->rows && i < to; i++)
		k += !in->jobs[i].body;
	w->reread = k ? calloc(k, sizeof(*w->reread)) : NULL;
	if (!w->rows || (k && !w->reread)) {
		ingest_write_free(w);
		return NULL;
	}
	for (i = 0; i < (size_t)in->d->cfg->n_lanes; i++)
		memcpy(w->lanes[i], in->d->cfg->lanes[i].name, sizeof(w->lanes[i]));
	for (i = 0; i < n; i++) {
		const struct ingest_job *j = &in->jobs[from + i];

		w->rows[i] = (struct store_job_row){
		    .line = j->line,
		    .custom_id = j->custom_id,
		    .url = j->url,
		    .model = j->model,
		    .lane = w->lanes[j->lane - in->d->cfg->lanes],
		    .body = j->body,
		    .body_len = j->body_len,
		    .est_tokens = j->est,
		};
		if (!j->body)
			w->reread[w->n_reread++] =
			    (struct ingest_reread){.row = i, .offset = j->offset};
	}
	w->slice.rows = w->rows;
	w->slice.n = n;
	return w;
}

/*
 * The body of a job whose line is in the source file: its bytes, read
 * again. The file is an upload, written whole and never changed; bytes that
 * are no JSON value fail the write rather than be stored.
 */
static int ingest_write_reread(struct ingest_write *w, struct ingest_reread *rr)
{
	size_t len = w->rows[rr->row].body_len;
	ssize_t n;

	rr->body = malloc(len + 1);
	if (!rr->body)
		return -ENOMEM;
	n = pread(w->source_fd, rr->body, len, (off_t)rr->offset);
	if (n != (ssize_t)len)
		return n < 0 ? -errno : -EIO;
	rr->body[len] = '\0';
	if (!jsontext_valid(rr->body, len))
		return -EIO;
	w->rows[rr->row].body = rr->body;
	return 0;
}

static void ingest_write_holds_lock(struct ingest_write *w, int held)
{
	if (w->item.w) /* on the writer thread */
		writer_holds_lock(&w->item, held);
}

static int ingest_write_do(struct store *st, struct ingest_write *w)
{
	int r = 0;

	switch (w->kind) {
	case INGEST_WRITE_SLICE:
	case INGEST_WRITE_START:
		if (w->with_batch)
			r = store_batch_insert(st, &w->batch);
		if (r == 0 && w->slice.n > 0)
			r = store_jobs_insert(st, &w->slice, w->now, &w->first);
		if (r == 0 && w->kind == INGEST_WRITE_START && !w->with_batch)
			r = store_batch_start(st, &w->batch, w->first, w->last);
		break;
	case INGEST_WRITE_RELEASE:
		r = store_batch_release(st, w->batch.id, w->first, w->last, 0);
		break;
	case INGEST_WRITE_DELETE:
		r = store_batch_delete(st, w->batch.id);
		break;
	}
	return r;
}

/* On the writer thread (or the loop's turn): one transaction, or nothing. */
static int ingest_write_run(struct store *st, struct writer_item *it)
{
	struct ingest_write *w = (struct ingest_write *)it;
	size_t i;
	int r = 0;

	if (*w->broken)
		return -ECANCELED; /* a write before this one failed: it is handed again */
	/* Read before the transaction: the write lock is not held for the file. */
	for (i = 0; i < w->n_reread && r == 0; i++)
		r = ingest_write_reread(w, &w->reread[i]);
	if (r == 0) {
		r = store_tx_begin(st);
		if (r == 0) {
			ingest_write_holds_lock(w, 1);
			r = ingest_write_do(st, w);
			if (r == 0)
				r = store_tx_commit(st);
			if (r < 0)
				store_tx_rollback(st);
			ingest_write_holds_lock(w, 0);
		}
		if (r < 0)
			w->why = strdup(store_errmsg(st));
	}
	if (r < 0)
		*w->broken = 1;
	return r;
}

static void ingest_write_done(struct writer_item *it, int r)
{
	ingest_store_written((struct ingest_write *)it, r);
}

/* The next turn of the loop, after its sockets have been served. */
static void ingest_write_next_turn(struct ingest *in)
{
	struct timeval next = {0, 0};

	if (evtimer_pending(in->turn, NULL))
		return;
	/* A timer cannot fail to be added but for want of memory: then at once,
	 * after the callbacks already due. */
	if (evtimer_add(in->turn, &next) < 0)
		event_active(in->turn, EV_TIMEOUT, 1);
}

/* Without a writer: the next write on the loop's connection, one a turn. */
void ingest_write_turn(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;
	struct ingest_write *w = in->turn_q;
	int r;

	if (!w)
		return;
	in->turn_q = w->next;
	if (!in->turn_q)
		in->turn_tail = &in->turn_q;
	else
		ingest_write_next_turn(in);
	r = ingest_write_run(in->d->store, &w->item);
	ingest_write_done(&w->item, r); /* may free in */
}

void ingest_write_submit(struct ingest_write *w)
{
	struct ingest *in = w->in;
	struct writer *wr = sched_writer(in->d->sched);

	w->item.run = ingest_write_run;
	w->item.done = ingest_write_done;
	w->now = time_wall_ms();
	in->flying++;
	if (wr) {
		writer_submit(wr, &w->item);
		return;
	}
	w->next = NULL;
	*in->turn_tail = w;
	in->turn_tail = &w->next;
	ingest_write_next_turn(in);
}
