/*
 * writeback.c - the queue of outcomes between the scheduler and the store.
 */
#include "writeback.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct pending {
	int64_t job_id;
	int64_t attempt_id;
	int64_t at;
	struct store_outcome o; /* its strings point at the copies below */
	char *request_id, *response, *error_code, *error_message;
	TAILQ_ENTRY(pending) link;
};

struct writeback {
	struct store *store;
	struct event *ev;
	int failing;
	void (*on_written)(void *);
	void *userdata;
	TAILQ_HEAD(, pending) queue;
};

static void pending_free(struct pending *p)
{
	if (!p)
		return;
	free(p->request_id);
	free(p->response);
	free(p->error_code);
	free(p->error_message);
	free(p);
}

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
                   const struct store_outcome *o, int64_t now)
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
		p->o.response = p->response = copy(o->response, o->response_len, &failed);
		p->o.error_code = p->error_code = copy_str(o->error_code, &failed);
		p->o.error_message = p->error_message = copy_str(o->error_message, &failed);
	}
	if (!p || failed) {
		pending_free(p);
		/* Out of memory: write it at once, or let the next start requeue it. */
		if (store_job_complete(wb->store, job_id, attempt_id, o, now) < 0)
			log_err("job %lld: out of memory and the database refused its outcome; it "
			        "is requeued when llmqd restarts",
			        (long long)job_id);
		return;
	}
	TAILQ_INSERT_TAIL(&wb->queue, p, link);
	if (!wb->failing)
		event_active(wb->ev, EV_TIMEOUT, 0);
}

int writeback_flush(struct writeback *wb)
{
	struct pending *p;
	int r;

	if (TAILQ_EMPTY(&wb->queue))
		return 0;
	r = store_tx_begin(wb->store);
	if (r < 0)
		return r;
	TAILQ_FOREACH(p, &wb->queue, link)
	{
		r = store_job_complete(wb->store, p->job_id, p->attempt_id, &p->o, p->at);
		if (r == -ESTALE)
			r = 0; /* no longer running: nothing to record */
		if (r < 0)
			break;
	}
	if (r == 0)
		r = store_tx_commit(wb->store);
	if (r < 0) {
		store_tx_rollback(wb->store);
		return r;
	}
	while ((p = TAILQ_FIRST(&wb->queue))) {
		TAILQ_REMOVE(&wb->queue, p, link);
		pending_free(p);
	}
	return 0;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct writeback *wb = arg;
	struct timeval tv = {1, 0};
	int r = writeback_flush(wb);

	if (r < 0) {
		if (!wb->failing)
			log_err("cannot record outcomes in the database: %s (%s); keeping them in "
			        "memory and retrying every second. Free space under the database's "
			        "directory",
			        r == -ENOSPC ? "disk full" : strerror(-r), store_errmsg(wb->store));
		wb->failing = 1;
		evtimer_add(wb->ev, &tv);
		return;
	}
	if (wb->failing)
		log_info("the database takes outcomes again; all kept outcomes are written");
	wb->failing = 0;
	wb->on_written(wb->userdata);
}

int writeback_new(struct event_base *base, struct store *store, void (*on_written)(void *),
                  void *userdata, struct writeback **ret)
{
	struct writeback *wb;
	int n;

	wb = calloc(1, sizeof(*wb));
	if (!wb)
		return -ENOMEM;
	TAILQ_INIT(&wb->queue);
	wb->store = store;
	wb->on_written = on_written;
	wb->userdata = userdata;
	wb->ev = evtimer_new(base, flush_cb, wb);
	if (!wb->ev) {
		free(wb);
		return -ENOMEM;
	}
	n = event_base_get_npriorities(base);
	if (n > 1)
		event_priority_set(wb->ev, n - 1);
	*ret = wb;
	return 0;
}

void writeback_free(struct writeback *wb)
{
	struct pending *p;

	if (!wb)
		return;
	while ((p = TAILQ_FIRST(&wb->queue))) {
		TAILQ_REMOVE(&wb->queue, p, link);
		pending_free(p);
	}
	event_free(wb->ev);
	free(wb);
}
