/*
 * writeback.c - the queue of outcomes between the scheduler and the store:
 * batch jobs' outcomes and interactive calls' records, written together, by
 * the writer thread (store/writer.c) when there is one. The loop keeps what
 * waits; a group, once handed to the writer, is the writer's until it comes
 * back written or refused (then its outcomes go back to the head of the
 * queue, and the retry timer hands them over again).
 */
#include "store/writeback.h"
#include "store/writeback-private.h"
#include "store/writer.h"
#include "log.h"
#include "timeutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/*
 * Call records are accounting, not outcomes anything waits on: they are
 * written with the next outcomes, or at the latest after CALLS_DELAY_MS or
 * CALLS_MAX records, so a host busy with interactive calls commits ten times
 * a second rather than once per call (each commit rewrites the same pages in
 * the WAL, whose checkpoints then stall the loop).
 */
#define CALLS_DELAY_MS 100
#define CALLS_MAX 512

/*
 * At most this many outcomes a transaction: a write of the loop's (a
 * launch's record) that meets the writer's transaction waits for its end
 * (writer_holds_lock), so it stays short; the rest follow at once.
 */
#define GROUP_MAX 64

/* What the writer holds: a lot taken from the queue's head. */
struct wb_group {
	struct writer_item item; /* first: the item is the group */
	struct writeback *wb;    /* read on the loop only */
	struct wb_lot lot;
	int had;   /* it holds outcomes, not only call records */
	char *why; /* what the writer's connection said of a refusal */
};

struct writeback {
	struct store *store;
	struct writer *writer; /* NULL: written on the loop's connection */
	struct event *retry;   /* a failing write is tried again every second */
	struct event *later;   /* call records waiting for company */
	int flying;            /* a group is the writer's */
	int again;             /* a write was asked for while it flew */
	int last;              /* how the last write ended: 0 or -errno */
	int failing;
	void (*on_written)(void *);
	void *userdata;
	struct wb_lot lot; /* waiting: not yet handed over */
};

static char *copy(const char *s, size_t len, int *failed)
{
	char *p;

	if (!s)
		return NULL;
	p = malloc(len + 1);
	if (!p) {
		*failed = 1;
		return NULL;
	}
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static char *copy_str(const char *s, int *failed)
{
	return copy(s, s ? strlen(s) : 0, failed);
}

void writeback_add(struct writeback *wb, int64_t job_id, int64_t attempt_id,
                   const struct store_outcome *o, int64_t now, char *response_owned)
{
	struct pending *p;
	int failed = 0;

	p = calloc(1, sizeof(*p));
	if (p) {
		p->job_id = job_id;
		p->attempt_id = attempt_id;
		p->at = now;
		p->o = *o;
		p->o.request_id = p->request_id = copy_str(o->request_id, &failed);
		if (response_owned && response_owned == o->response) {
			p->o.response = p->response = response_owned;
			response_owned = NULL;
		} else {
			p->o.response = p->response = copy(o->response, o->response_len, &failed);
		}
		p->o.error_code = p->error_code = copy_str(o->error_code, &failed);
		p->o.error_message = p->error_message = copy_str(o->error_message, &failed);
	}
	if (!p || failed) {
		wb_pending_free(p);
		/* Out of memory: write it at once, or let the next start requeue it. */
		if (store_job_complete(wb->store, job_id, attempt_id, o, now, NULL) < 0)
			log_err("job %lld: out of memory and the database refused its outcome; it "
			        "is requeued when llmqd restarts",
			        (long long)job_id);
		free(response_owned);
		return;
	}
	TAILQ_INSERT_TAIL(&wb->lot.queue, p, link);
}

void writeback_add_call(struct writeback *wb, const struct store_call *c)
{
	struct pending_call *p;
	const char **field[CALL_STRINGS];
	int failed = 0, i;

	p = calloc(1, sizeof(*p));
	if (p) {
		p->c = *c;
		field[0] = &p->c.call_id;
		field[1] = &p->c.lane;
		field[2] = &p->c.endpoint;
		field[3] = &p->c.model;
		field[4] = &p->c.outcome;
		field[5] = &p->c.error_code;
		field[6] = &p->c.request_id;
		field[7] = &p->c.request_body;
		field[8] = &p->c.response_body;
		for (i = 0; i < CALL_STRINGS; i++)
			*field[i] = p->str[i] = copy_str(*field[i], &failed);
	}
	if (!p || failed) {
		/* Accounting only: the caller has its answer either way. */
		log_err("out of memory: the record of a call on lane %s is lost", c->lane);
		wb_pending_call_free(p);
		return;
	}
	TAILQ_INSERT_TAIL(&wb->lot.calls, p, link);
	wb->lot.n_calls++;
}

/* A batch's last outcome is written: say how it ended, once. */
static void writeback_log_end(struct writeback *wb, const char *id)
{
	struct log_fields f = {.batch = id};
	json_object *b = NULL, *c = NULL, *v;
	int64_t n[5] = {0}, used = -1, created = 0, finished = 0;
	static const char *const keys[] = {"total", "succeeded", "failed", "cancelled",
	                                   "est_tokens"};
	const char *state = "ended";
	char took[32];
	int i;

	if (store_batch_get(wb->store, id, &b) < 0) {
		log_ctx(LOG_INFO, &f, "batch %s ended", id);
		return;
	}
	json_object_object_get_ex(b, "counts", &c);
	for (i = 0; i < 5; i++)
		if (json_object_object_get_ex(i == 0 || i == 4 ? b : c, keys[i], &v))
			n[i] = json_object_get_int64(v);
	if (json_object_object_get_ex(b, "tokens_used", &v) && v)
		used = json_object_get_int64(v);
	if (json_object_object_get_ex(b, "state", &v))
		state = json_object_get_string(v);
	if (json_object_object_get_ex(b, "created_at", &v))
		created = json_object_get_int64(v);
	if (json_object_object_get_ex(b, "finished_at", &v) && v)
		finished = json_object_get_int64(v);
	time_format_duration(finished > created ? finished - created : 0, took, sizeof(took));
	log_ctx(LOG_INFO, &f,
	        "batch %s %s: %lld requests, %lld succeeded, %lld failed, %lld cancelled; "
	        "%lld tokens used (%lld estimated); %s from submit to end",
	        id, state, (long long)n[0], (long long)n[1], (long long)n[2], (long long)n[3],
	        (long long)used, (long long)n[4], took);
	json_object_put(b);
}

/* A lot is written: log what its write noted and the batches it ended, free it. */
static void writeback_written(struct writeback *wb, struct wb_lot *lot)
{
	struct pending *p;
	struct pending_call *pc;

	while ((p = TAILQ_FIRST(&lot->queue))) {
		TAILQ_REMOVE(&lot->queue, p, link);
		if (p->note)
			log_err("%s", p->note);
		if (p->ended[0])
			writeback_log_end(wb, p->ended);
		wb_pending_free(p);
	}
	while ((pc = TAILQ_FIRST(&lot->calls))) {
		TAILQ_REMOVE(&lot->calls, pc, link);
		if (pc->note)
			log_err("%s", pc->note);
		wb_pending_call_free(pc);
	}
	lot->n_calls = 0;
}

static void write_now(struct writeback *wb);

/* How a write ended, on the loop: the same whichever thread wrote. */
static void write_ended(struct writeback *wb, int r, int had, const char *why)
{
	struct timeval tv = {1, 0};

	wb->last = r;
	if (r < 0) {
		/* A lock another program holds is reported once, by health.c. */
		if (!wb->failing && r != -EBUSY)
			log_err("cannot record outcomes in the database: %s (%s); keeping them in "
			        "memory and retrying every second. Free space under the database's "
			        "directory",
			        r == -ENOSPC ? "disk full" : strerror(-r), why);
		/* The writer's connection was refused by a lock: health.c asks the loop's. */
		if (r == -EBUSY && wb->writer)
			store_note_contended(wb->store, time_wall_ms());
		wb->failing = 1;
		evtimer_add(wb->retry, &tv);
		return;
	}
	if (wb->writer)
		store_note_contended(wb->store, 0);
	if (wb->failing)
		log_info("the database takes outcomes again; all kept outcomes are written");
	wb->failing = 0;
	if (had)
		wb->on_written(wb->userdata);
}

static int group_run(struct store *st, struct writer_item *it)
{
	struct wb_group *g = (struct wb_group *)it;
	int r = wb_lot_write(st, &g->lot, it);

	if (r < 0)
		g->why = strdup(store_errmsg(st));
	return r;
}

static void group_done(struct writer_item *it, int r)
{
	struct wb_group *g = (struct wb_group *)it;
	struct writeback *wb = g->wb;
	int had = g->had, again;

	wb->flying = 0;
	again = wb->again;
	wb->again = 0;
	if (r < 0)
		wb_lot_put_back(&wb->lot, &g->lot);
	else
		writeback_written(wb, &g->lot);
	write_ended(wb, r, had, g->why ? g->why : strerror(-r));
	free(g->why);
	free(g);
	/* What came meanwhile: outcomes go now, call records when they would have. */
	if (r == 0 && (again || !TAILQ_EMPTY(&wb->lot.queue) || wb->lot.n_calls >= CALLS_MAX))
		write_now(wb);
}

/* Hand the queue's head to the writer; 0, or -ENOMEM (then nothing moved). */
static int hand_over(struct writeback *wb)
{
	struct wb_group *g;
	struct pending *p;
	struct pending_call *pc;
	int n = 0;

	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->item.run = group_run;
	g->item.done = group_done;
	g->wb = wb;
	wb_lot_init(&g->lot);
	while (n < GROUP_MAX && (p = TAILQ_FIRST(&wb->lot.queue))) {
		TAILQ_REMOVE(&wb->lot.queue, p, link);
		TAILQ_INSERT_TAIL(&g->lot.queue, p, link);
		n++;
	}
	g->had = n > 0;
	while (g->lot.n_calls < CALLS_MAX && (pc = TAILQ_FIRST(&wb->lot.calls))) {
		TAILQ_REMOVE(&wb->lot.calls, pc, link);
		TAILQ_INSERT_TAIL(&g->lot.calls, pc, link);
		g->lot.n_calls++;
		wb->lot.n_calls--;
	}
	if (wb->lot.n_calls == 0)
		evtimer_del(wb->later);
	wb->flying = 1;
	writer_submit(wb->writer, &g->item);
	return 0;
}

/* Write the queue on the loop's own connection (no writer, or no memory). */
static int write_here(struct writeback *wb)
{
	int had = !TAILQ_EMPTY(&wb->lot.queue);
	int r = wb_lot_write(wb->store, &wb->lot, NULL);

	if (r == 0) {
		writeback_written(wb, &wb->lot);
		evtimer_del(wb->later);
	}
	write_ended(wb, r, had, store_errmsg(wb->store));
	return r;
}

static void write_now(struct writeback *wb)
{
	if (TAILQ_EMPTY(&wb->lot.queue) && TAILQ_EMPTY(&wb->lot.calls))
		return;
	if (!wb->writer) {
		write_here(wb);
		return;
	}
	if (wb->flying) {
		wb->again = 1;
		return;
	}
	if (hand_over(wb) < 0 && !wb->flying)
		write_here(wb);
}

int writeback_flush(struct writeback *wb)
{
	if (!wb->writer)
		return TAILQ_EMPTY(&wb->lot.queue) && TAILQ_EMPTY(&wb->lot.calls) ? 0
		                                                                  : write_here(wb);
	for (;;) {
		/* What flies lands (and what it hands over after it), then the rest. */
		writer_drain(wb->writer);
		if (TAILQ_EMPTY(&wb->lot.queue) && TAILQ_EMPTY(&wb->lot.calls))
			return 0;
		if (hand_over(wb) < 0)
			return write_here(wb);
		writer_drain(wb->writer);
		if (wb->last < 0)
			return wb->last;
	}
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	write_now(arg);
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct writeback *wb = arg;

	if (!wb->failing)
		write_now(wb);
}

void writeback_after_turn(struct writeback *wb)
{
	struct timeval tv = {0, CALLS_DELAY_MS * 1000};

	/* While the database refuses, only the retry timer writes. */
	if (wb->failing)
		return;
	if (!TAILQ_EMPTY(&wb->lot.queue) || wb->lot.n_calls >= CALLS_MAX)
		write_now(wb);
	else if (wb->lot.n_calls > 0 && !evtimer_pending(wb->later, NULL))
		evtimer_add(wb->later, &tv);
}

int writeback_failing(const struct writeback *wb)
{
	return wb->failing;
}

struct writer *writeback_writer(const struct writeback *wb)
{
	return wb->writer;
}

int writeback_new(struct event_base *base, struct store *store, void (*on_written)(void *),
                  void *userdata, struct writeback **ret)
{
	struct writeback *wb;
	int r;

	wb = calloc(1, sizeof(*wb));
	if (!wb)
		return -ENOMEM;
	wb_lot_init(&wb->lot);
	wb->store = store;
	wb->on_written = on_written;
	wb->userdata = userdata;
	wb->retry = evtimer_new(base, retry_cb, wb);
	wb->later = evtimer_new(base, later_cb, wb);
	if (!wb->retry || !wb->later) {
		if (wb->retry)
			event_free(wb->retry);
		free(wb);
		return -ENOMEM;
	}
	r = writer_new(base, store, &wb->writer);
	if (r == -ENOTSUP)
		log_info("outcomes are written on the event loop: the database is held "
		         "exclusively, so a second connection cannot share it");
	else if (r < 0)
		log_warn("cannot start the database's writer thread: %s; outcomes are written on "
		         "the event loop",
		         strerror(-r));
	*ret = wb;
	return 0;
}

void writeback_free(struct writeback *wb)
{
	if (!wb)
		return;
	/* What the writer holds comes back first (written or put back). */
	writer_free(wb->writer);
	wb->writer = NULL;
	wb_lot_free(&wb->lot);
	event_free(wb->retry);
	event_free(wb->later);
	free(wb);
}
