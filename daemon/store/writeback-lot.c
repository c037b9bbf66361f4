/*
 * writeback-lot.c - one lot of outcomes and call records: freed, put back
 * at the head of the queue, and written in one transaction, each outcome a
 * savepoint, a record refused for good failed or dropped (and noted for the
 * loop to log) rather than holding every other back. The write runs on the
 * writer thread, or on the loop when there is none: it touches the store it
 * is given and the lot alone.
 */
#include "store/writeback-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wb_pending_free(struct pending *p)
{
	if (!p)
		return;
	free(p->request_id);
	free(p->response);
	free(p->error_code);
	free(p->error_message);
	free(p->note);
	free(p);
}

void wb_pending_call_free(struct pending_call *p)
{
	int i;

	if (!p)
		return;
	for (i = 0; i < CALL_STRINGS; i++)
		free(p->str[i]);
	free(p->note);
	free(p);
}

/*
 * A record the database refuses for what it is (a constraint, a trigger, a
 * value too big), not for the state it is in (locked, full): retrying it
 * would hold every other outcome back for good.
 */
static int refused_for_good(int r)
{
	return r == -EEXIST || r == -E2BIG;
}

/* What the loop logs once the write is done (no thread but the loop logs). */
static void note(char **slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(char **slot, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(*slot);
	*slot = m;
}

/* The job's answer could not be kept: record the job as failed instead. */
static int complete_as_failed(struct store *st, struct pending *p, int why)
{
	struct store_outcome o = p->o;
	char msg[512];

	snprintf(msg, sizeof(msg),
	         "llmqd could not store this request's outcome (%s: %s); it is failed instead "
	         "of being retried for ever",
	         strerror(-why), store_errmsg(st));
	o.job_state = o.attempt_outcome = "failed";
	o.error_code = "internal_error";
	o.error_message = msg;
	o.response = NULL;
	o.response_len = 0;
	o.response_json = 0;
	note(&p->note, "job %lld: %s", (long long)p->job_id, msg);
	return store_job_complete(st, p->job_id, p->attempt_id, &o, p->at, p->ended);
}

/*
 * Write a lot, all in one transaction or none; 0 or -errno. On whichever
 * thread holds st: it touches st and the lot alone.
 */
int wb_lot_write(struct store *st, struct wb_lot *lot, struct writer_item *it)
{
	struct pending *p;
	struct pending_call *pc;
	int r = 0;

	if (TAILQ_EMPTY(&lot->queue) && TAILQ_EMPTY(&lot->calls))
		return 0;
	r = store_tx_begin(st);
	if (r < 0)
		return r;
	if (it)
		writer_holds_lock(it, 1);
	TAILQ_FOREACH(p, &lot->queue, link)
	{
		/* Each outcome is a savepoint: one refused for good is undone alone. */
		p->ended[0] = '\0';
		free(p->note);
		p->note = NULL;
		r = store_job_complete(st, p->job_id, p->attempt_id, &p->o, p->at, p->ended);
		if (refused_for_good(r))
			r = complete_as_failed(st, p, r);
		if (refused_for_good(r)) {
			note(&p->note,
			     "job %lld: its outcome cannot be stored at all (%s); it is requeued "
			     "when llmqd restarts",
			     (long long)p->job_id, store_errmsg(st));
			r = 0;
		}
		if (r == -ESTALE)
			r = 0; /* no longer running: nothing to record */
		if (r < 0)
			break;
	}
	if (r == 0) {
		TAILQ_FOREACH(pc, &lot->calls, link)
		{
			free(pc->note);
			pc->note = NULL;
			r = store_call_insert(st, &pc->c);
			if (refused_for_good(r)) {
				note(&pc->note,
				     "the record of call %s cannot be stored (%s); it is dropped",
				     pc->c.call_id, store_errmsg(st));
				r = 0;
			}
			if (r < 0)
				break;
		}
	}
	if (r == 0)
		r = store_tx_commit(st);
	if (r < 0)
		store_tx_rollback(st);
	if (it)
		writer_holds_lock(it, 0);
	return r;
}

/* What was never written: its jobs are requeued at the next start. */
void wb_lot_free(struct wb_lot *lot)
{
	struct pending *p;
	struct pending_call *pc;

	while ((p = TAILQ_FIRST(&lot->queue))) {
		TAILQ_REMOVE(&lot->queue, p, link);
		wb_pending_free(p);
	}
	while ((pc = TAILQ_FIRST(&lot->calls))) {
		TAILQ_REMOVE(&lot->calls, pc, link);
		wb_pending_call_free(pc);
	}
	lot->n_calls = 0;
}

void wb_lot_init(struct wb_lot *lot)
{
	TAILQ_INIT(&lot->queue);
	TAILQ_INIT(&lot->calls);
	lot->n_calls = 0;
}

/* Put back at the head of dst what src holds (a refused group's lot). */
void wb_lot_put_back(struct wb_lot *dst, struct wb_lot *src)
{
	TAILQ_CONCAT(&src->queue, &dst->queue, link);
	TAILQ_CONCAT(&dst->queue, &src->queue, link);
	TAILQ_CONCAT(&src->calls, &dst->calls, link);
	TAILQ_CONCAT(&dst->calls, &src->calls, link);
	dst->n_calls += src->n_calls;
	src->n_calls = 0;
}
