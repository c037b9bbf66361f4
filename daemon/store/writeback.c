/*
 * writeback.c - the queue of outcomes between the scheduler and the store:
 * batch jobs' outcomes and interactive calls' records, written together.
 */
#include "store/writeback.h"
#include "log.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct pending {
	int64_t job_id;
	int64_t attempt_id;
	int64_t at;
	struct store_outcome o; /* its strings point at the copies below */
	char *request_id, *response, *error_code, *error_message;
	char ended[STORE_ID_LEN]; /* the batch this outcome ended, once written */
	TAILQ_ENTRY(pending) link;
};

#define CALL_STRINGS 9

/* An interactive call's try; c's strings point at the copies in str. */
struct pending_call {
	struct store_call c;
	char *str[CALL_STRINGS];
	TAILQ_ENTRY(pending_call) link;
};

/*
 * Call records are accounting, not outcomes anything waits on: they are
 * written with the next outcomes, or at the latest after CALLS_DELAY_MS or
 * CALLS_MAX records, so a host busy with interactive calls commits ten times
 * a second rather than once per call (each commit rewrites the same pages in
 * the WAL, whose checkpoints then stall the loop).
 */
#define CALLS_DELAY_MS 100
#define CALLS_MAX 512

struct writeback {
	struct store *store;
	struct event *retry; /* a failing write is tried again every second */
	struct event *later; /* call records waiting for company */
	int n_calls;
	int failing;
	void (*on_written)(void *);
	void *userdata;
	TAILQ_HEAD(, pending) queue;
	TAILQ_HEAD(, pending_call) calls;
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

static void pending_call_free(struct pending_call *p)
{
	int i;

	if (!p)
		return;
	for (i = 0; i < CALL_STRINGS; i++)
		free(p->str[i]);
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
		pending_free(p);
		/* Out of memory: write it at once, or let the next start requeue it. */
		if (store_job_complete(wb->store, job_id, attempt_id, o, now, NULL) < 0)
			log_err("job %lld: out of memory and the database refused its outcome; it "
			        "is requeued when llmqd restarts",
			        (long long)job_id);
		free(response_owned);
		return;
	}
	TAILQ_INSERT_TAIL(&wb->queue, p, link);
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
		pending_call_free(p);
		return;
	}
	TAILQ_INSERT_TAIL(&wb->calls, p, link);
	wb->n_calls++;
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

/* The job's answer could not be kept: record the job as failed instead. */
static int complete_as_failed(struct writeback *wb, struct pending *p, int why)
{
	struct store_outcome o = p->o;
	char msg[512];

	snprintf(msg, sizeof(msg),
	         "llmqd could not store this request's outcome (%s: %s); it is failed instead "
	         "of being retried for ever",
	         strerror(-why), store_errmsg(wb->store));
	o.job_state = o.attempt_outcome = "failed";
	o.error_code = "internal_error";
	o.error_message = msg;
	o.response = NULL;
	o.response_len = 0;
	o.response_json = 0;
	log_err("job %lld: %s", (long long)p->job_id, msg);
	return store_job_complete(wb->store, p->job_id, p->attempt_id, &o, p->at, p->ended);
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

int writeback_flush(struct writeback *wb)
{
	struct pending *p;
	struct pending_call *pc;
	int r = 0;

	if (TAILQ_EMPTY(&wb->queue) && TAILQ_EMPTY(&wb->calls))
		return 0;
	r = store_tx_begin(wb->store);
	if (r < 0)
		return r;
	TAILQ_FOREACH(p, &wb->queue, link)
	{
		/* Each outcome is a savepoint: one refused for good is undone alone. */
		p->ended[0] = '\0';
		r = store_job_complete(wb->store, p->job_id, p->attempt_id, &p->o, p->at, p->ended);
		if (refused_for_good(r))
			r = complete_as_failed(wb, p, r);
		if (refused_for_good(r)) {
			log_err(
			    "job %lld: its outcome cannot be stored at all (%s); it is requeued "
			    "when llmqd restarts",
			    (long long)p->job_id, store_errmsg(wb->store));
			r = 0;
		}
		if (r == -ESTALE)
			r = 0; /* no longer running: nothing to record */
		if (r < 0)
			break;
	}
	if (r == 0) {
		TAILQ_FOREACH(pc, &wb->calls, link)
		{
			r = store_call_insert(wb->store, &pc->c);
			if (refused_for_good(r)) {
				log_err(
				    "the record of call %s cannot be stored (%s); it is dropped",
				    pc->c.call_id, store_errmsg(wb->store));
				r = 0;
			}
			if (r < 0)
				break;
		}
	}
	if (r == 0)
		r = store_tx_commit(wb->store);
	if (r < 0) {
		store_tx_rollback(wb->store);
		return r;
	}
	while ((p = TAILQ_FIRST(&wb->queue))) {
		TAILQ_REMOVE(&wb->queue, p, link);
		if (p->ended[0])
			writeback_log_end(wb, p->ended);
		pending_free(p);
	}
	while ((pc = TAILQ_FIRST(&wb->calls))) {
		TAILQ_REMOVE(&wb->calls, pc, link);
		pending_call_free(pc);
	}
	wb->n_calls = 0;
	evtimer_del(wb->later);
	return 0;
}

static void write_now(struct writeback *wb)
{
	struct timeval tv = {1, 0};
	int had = !TAILQ_EMPTY(&wb->queue);
	int r = writeback_flush(wb);

	if (r < 0) {
		/* A lock another program holds is reported once, by health.c. */
		if (!wb->failing && r != -EBUSY)
			log_err("cannot record outcomes in the database: %s (%s); keeping them in "
			        "memory and retrying every second. Free space under the database's "
			        "directory",
			        r == -ENOSPC ? "disk full" : strerror(-r), store_errmsg(wb->store));
		wb->failing = 1;
		evtimer_add(wb->retry, &tv);
		return;
	}
	if (wb->failing)
		log_info("the database takes outcomes again; all kept outcomes are written");
	wb->failing = 0;
	if (had)
		wb->on_written(wb->userdata);
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
	if (!TAILQ_EMPTY(&wb->queue) || wb->n_calls >= CALLS_MAX)
		write_now(wb);
	else if (wb->n_calls > 0 && !evtimer_pending(wb->later, NULL))
		evtimer_add(wb->later, &tv);
}

int writeback_failing(const struct writeback *wb)
{
	return wb->failing;
}

int writeback_new(struct event_base *base, struct store *store, void (*on_written)(void *),
                  void *userdata, struct writeback **ret)
{
	struct writeback *wb;

	wb = calloc(1, sizeof(*wb));
	if (!wb)
		return -ENOMEM;
	TAILQ_INIT(&wb->queue);
	TAILQ_INIT(&wb->calls);
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
	*ret = wb;
	return 0;
}

void writeback_free(struct writeback *wb)
{
	struct pending *p;
	struct pending_call *pc;

	if (!wb)
		return;
	while ((p = TAILQ_FIRST(&wb->queue))) {
		TAILQ_REMOVE(&wb->queue, p, link);
		if (p->ended[0])
			writeback_log_end(wb, p->ended);
		pending_free(p);
	}
	while ((pc = TAILQ_FIRST(&wb->calls))) {
		TAILQ_REMOVE(&wb->calls, pc, link);
		pending_call_free(pc);
	}
	event_free(wb->retry);
	event_free(wb->later);
	free(wb);
}
