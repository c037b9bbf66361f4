/*
 * ingest.c - the batch state machine. Owns the lines of one batch from the
 * first to the answer, and the storing after it: its sender (a socket
 * client through ipc, or http-batches.c reading a stored file) calls
 * ingest_line() per input line, ingest_end() when all arrived,
 * ingest_abort() when it went away; the answer goes to its owner.
 */
#include "store/ingest.h"
#include "text.h"
#include "gate/admission.h"
#include "sock/cmd.h"
#include "estimate.h"
#include "log.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INGEST_KEEP_ERRORS 1000
#define INGEST_LOCK_WAIT_MS 30000 /* how long a locked database may delay the answer */
#define INGEST_LOCK_RETRY_MS 250
/* Stored per transaction, per turn of the loop: so many jobs, or so many bytes of bodies. */
#define INGEST_SLICE 1000
#define INGEST_SLICE_BYTES (4u << 20)
#define INGEST_MAX_SLICES                                                                          \
	(LLMQ_MAX_BATCH_LINES / INGEST_SLICE + LLMQ_MAX_BATCH_BYTES / INGEST_SLICE_BYTES + 2)
/* Bodies kept in memory per batch from a file; past it, they are read again when stored. */
#define INGEST_KEEP_BYTES (32u << 20)

struct ingest_job {
	int64_t line;
	char *custom_id;
	char *url;
	char *model;
	char *body; /* NULL: read again from the source file when stored */
	size_t body_len;
	int64_t offset; /* of the line in the source file */
	size_t line_len;
	int64_t est;
	const struct lane_config *lane;
};

struct ingest_error {
	int64_t line;
	char *msg;
};

struct ingest {
	struct llmqd *d;
	const struct ingest_owner *owner;
	void *owner_ud;
	int64_t uid; /* the submitter, -1 unknown */
	struct ingest_opts opts;
	char *name;
	char *key; /* the idempotency key, or NULL */
	char *endpoint, *input_file_id, *metadata;
	int64_t line_no;
	uint64_t bytes;
	int too_big;
	int failed; /* -errno: a line could not be kept (out of memory) */
	struct ingest_job *jobs;
	size_t n_jobs, cap_jobs;
	struct ingest_error *errors;
	size_t n_errors_kept;
	int64_t n_errors;
	/* Once admitted: what is stored, retried while another program holds a lock. */
	struct admission_verdict v;
	int64_t tokens;
	char id[19];
	struct event *retry;
	int64_t lock_deadline; /* monotonic ms; 0 until the first refusal */
	/* Stored in steps: how far, and the job ids of each slice. */
	size_t stored, released, n_slices;
	int sliced; /* more than one slice: stored as validating, its jobs held */
	struct {
		int64_t first, last;
	} slices[INGEST_MAX_SLICES];
	int awaiting;  /* the owner was told the answer will be late */
	int answered;  /* in_progress and answered: the rest of its slices are let go */
	int source_fd; /* the file the lines come from, or -1 */
	uint64_t kept; /* bytes of bodies kept in memory */
};

static void ingest_free(struct ingest *in)
{
	size_t i;

	if (!in)
		return;
	for (i = 0; i < in->n_jobs; i++) {
		free(in->jobs[i].custom_id);
		free(in->jobs[i].url);
		free(in->jobs[i].model);
		free(in->jobs[i].body);
	}
	for (i = 0; i < in->n_errors_kept; i++)
		free(in->errors[i].msg);
	free(in->jobs);
	free(in->errors);
	free(in->name);
	free(in->key);
	free(in->endpoint);
	free(in->input_file_id);
	free(in->metadata);
	if (in->source_fd >= 0)
		close(in->source_fd);
	if (in->retry)
		event_free(in->retry);
	in->d->ingests--;
	free(in);
}

static int64_t submitter(const struct ingest *in)
{
	return in->uid;
}

static void reply(struct ingest *in, json_object *o)
{
	in->owner->reply(in->owner_ud, o);
}

static int add_error(struct ingest *in, int64_t line, const char *msg)
{
	in->n_errors++;
	if (in->n_errors_kept == INGEST_KEEP_ERRORS)
		return 0;
	in->errors[in->n_errors_kept].line = line;
	in->errors[in->n_errors_kept].msg = strdup(msg);
	if (!in->errors[in->n_errors_kept].msg)
		return -ENOMEM;
	in->n_errors_kept++;
	return 0;
}

static int is_blank(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

static int take_line(struct ingest *in, const char *line, size_t len, int too_long, int64_t offset)
{
	struct proto_input pi = {0};
	struct ingest_job *j;
	const char *body;
	char err[256];
	size_t blen;
	int r;

	in->line_no++;
	in->bytes += len + 1;
	if (in->bytes > LLMQ_MAX_BATCH_BYTES)
		in->too_big = 1;
	if (in->too_big)
		return 0;
	if (too_long)
		return add_error(in, in->line_no, "line longer than the 8 MiB limit");
	/* A byte-order mark, as Windows editors write, is not part of the first line. */
	if (in->line_no == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
		line += 3;
		len -= 3;
		offset += 3;
	}
	if (is_blank(line, len))
		return 0;
	r = proto_parse_input(line, len, &pi, err, sizeof(err));
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return add_error(in, in->line_no, err);
	if (in->opts.endpoint && strcmp(pi.url, in->opts.endpoint) != 0) {
		snprintf(
		    err, sizeof(err),
		    "url %.64s is not the batch's endpoint %.64s; a batch's lines all go to its "
		    "endpoint",
		    pi.url, in->opts.endpoint);
		proto_input_clear(&pi);
		return add_error(in, in->line_no, err);
	}
	if (in->n_jobs == in->cap_jobs) {
		size_t cap = in->cap_jobs ? in->cap_jobs * 2 : 256;
		struct ingest_job *p = realloc(in->jobs, cap * sizeof(*p));

		if (!p) {
			proto_input_clear(&pi);
			return -ENOMEM;
		}
		in->jobs = p;
		in->cap_jobs = cap;
	}
	j = &in->jobs[in->n_jobs];
	memset(j, 0, sizeof(*j));
	j->line = in->line_no;
	j->lane = config_lane_for_model(in->d->cfg, pi.model);
	j->est = estimate_tokens(pi.body, pi.url, j->lane->est_tokens_per_run);
	body = json_object_to_json_string_length(pi.body, JSON_C_TO_STRING_PLAIN, &blen);
	j->custom_id = strdup(pi.custom_id);
	j->url = strdup(pi.url);
	j->model = strdup(pi.model);
	j->offset = offset;
	j->line_len = len;
	j->body_len = blen;
	/* From a file, past the budget, the body is read again when it is stored. */
	if (!body || in->source_fd < 0 || offset < 0 || in->kept + blen <= INGEST_KEEP_BYTES) {
		j->body = body ? strndup(body, blen) : NULL;
		in->kept += blen;
	}
	in->n_jobs++; /* counted even if a copy failed, so ingest_free frees it */
	proto_input_clear(&pi);
	if (!j->custom_id || !j->url || !j->model || (!j->body && j->offset < 0))
		return -ENOMEM;
	return 0;
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
 * Keeps reading to the end of the batch even when a line could not be kept,
 * so the client gets an answer saying so instead of a dropped connection.
 */
void ingest_line_at(struct ingest *in, const char *line, size_t len, int too_long, int64_t offset)
{
	int r;

	if (in->failed)
		return;
	r = take_line(in, line, len, too_long, offset);
	if (r < 0)
		in->failed = r;
}

void ingest_line(struct ingest *in, const char *line, size_t len, int too_long)
{
	ingest_line_at(in, line, len, too_long, -1);
}

static int on_line(void *ud, const char *line, size_t len, int too_long)
{
	ingest_line(ud, line, len, too_long);
	return 0;
}

static int cmp_custom_id(const void *a, const void *b)
{
	const struct ingest_job *x = *(struct ingest_job *const *)a;
	const struct ingest_job *y = *(struct ingest_job *const *)b;
	int c = strcmp(x->custom_id, y->custom_id);

	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_error(const void *a, const void *b)
{
	const struct ingest_error *x = a, *y = b;

	return (x->line > y->line) - (x->line < y->line);
}

static int check_duplicates(struct ingest *in)
{
	struct ingest_job **v;
	char msg[LLMQ_MAX_CUSTOM_ID + 96];
	size_t i;
	int r = 0;

	if (in->n_jobs < 2)
		return 0;
	v = malloc(in->n_jobs * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (i = 0; i < in->n_jobs; i++)
		v[i] = &in->jobs[i];
	qsort(v, in->n_jobs, sizeof(*v), cmp_custom_id);
	for (i = 1; i < in->n_jobs && r == 0; i++) {
		if (strcmp(v[i]->custom_id, v[i - 1]->custom_id) != 0)
			continue;
		snprintf(msg, sizeof(msg), "duplicate custom_id \"%s\" (also on line %lld)",
		         v[i]->custom_id, (long long)v[i - 1]->line);
		r = add_error(in, v[i]->line, msg);
	}
	free(v);
	return r;
}

static void reply_invalid(struct ingest *in)
{
	json_object *o, *lines, *e;
	char msg[512];
	size_t i;

	qsort(in->errors, in->n_errors_kept, sizeof(*in->errors), cmp_error);
	snprintf(msg, sizeof(msg),
	         "%lld bad line%s; first: line %lld: %s. Nothing was stored: fix the file and "
	         "submit it again",
	         (long long)in->n_errors, in->n_errors == 1 ? "" : "s",
	         (long long)in->errors[0].line, in->errors[0].msg);
	o = proto_error(ERR_INVALID_BATCH, msg);
	lines = json_object_new_array();
	if (!o || !lines) {
		json_object_put(o);
		json_object_put(lines);
		reply(in, NULL);
		return;
	}
	for (i = 0; i < in->n_errors_kept && i < LLMQ_MAX_REPORTED_ERRORS; i++) {
		e = json_object_new_object();
		if (!e)
			break;
		json_object_object_add(e, "line", json_object_new_int64(in->errors[i].line));
		json_object_object_add(e, "error", json_object_new_string(in->errors[i].msg));
		json_object_array_add(lines, e);
	}
	json_object_object_get_ex(o, "error", &e);
	json_object_object_add(e, "lines", lines);
	json_object_object_add(e, "bad_lines", json_object_new_int64(in->n_errors));
	reply(in, o);
}

/* Per lane: its share of the batch and its current load. */
static int admit(struct ingest *in, struct admission_verdict *v, int64_t *ret_tokens)
{
	struct admission_load loads[CONFIG_MAX_LANES];
	struct lane_snapshot snap[CONFIG_MAX_LANES];
	const struct config *cfg = in->d->cfg;
	int64_t total = 0, now = time_mono_ms();
	size_t i;
	int k, r;

	memset(loads, 0, sizeof(loads));
	for (k = 0; k < cfg->n_lanes; k++) {
		r = sched_lane_snapshot(in->d->sched, k, now, &snap[k]);
		if (r < 0)
			return r;
		loads[k].cfg = &cfg->lanes[k];
		loads[k].gate = &snap[k].gate;
		loads[k].avg_latency_ms = snap[k].avg_latency_ms;
	}
	for (i = 0; i < in->n_jobs; i++) {
		struct admission_load *l = &loads[in->jobs[i].lane - cfg->lanes];

		l->batch_jobs++;
		l->batch_tokens += in->jobs[i].est;
		total += in->jobs[i].est;
		if (in->jobs[i].est > l->max_cost) {
			l->max_cost = in->jobs[i].est;
			l->max_cost_line = in->jobs[i].line;
		}
	}
	for (k = 0; k < cfg->n_lanes; k++) {
		if (loads[k].batch_jobs == 0)
			continue;
		r = store_backlog(in->d->store, cfg->lanes[k].name, &loads[k].queued_jobs,
		                  &loads[k].queued_tokens);
		if (r < 0)
			return r;
	}
	admission_check(loads, cfg->n_lanes, in->opts.window_ms, now, v);
	*ret_tokens = total;
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

static void store_and_reply(struct ingest *in);

/*
 * A repeat of a submit that was stored (its key is known): answer with that
 * batch. Returns 1 when it answered, 0 when the key is new, or -errno.
 */
static int reply_if_repeat(struct ingest *in)
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
	reply(in, o);
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
		store_and_reply(in);
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
static void store_and_reply(struct ingest *in)
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
		if (r == -EEXIST && reply_if_repeat(in) == 1)
			goto out;
		if (r == -EBUSY) {
			reply(in, proto_error(ERR_BUSY,
			                      "the database stayed locked by another program for "
			                      "30s; nothing was stored. End that program's "
			                      "transaction and submit again"));
			goto out;
		}
		if (r < 0) {
			reply(in, cmd_store_error_reply(in->d, "submit", r));
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
	reply(in, o);
	if (in->answered) {
		if (evtimer_add(in->retry, &next) == 0)
			return; /* release_rest() */
		in->answered = 0;
	}
out:
	ingest_free(in);
}

void ingest_end(struct ingest *in)
{
	struct admission_verdict *v = &in->v;
	char msg[160];
	json_object *o, *e;
	int r;

	if (in->failed) {
		log_err(
		    "submit from uid %d: cannot keep its %lld lines in memory: %s; nothing stored",
		    (int)in->uid, (long long)in->line_no, strerror(-in->failed));
		reply(in, proto_error(ERR_BUSY, "llmqd ran out of memory receiving the "
		                                "batch; nothing was stored: try again, or "
		                                "split the batch"));
		goto out;
	}
	if (in->too_big) {
		snprintf(msg, sizeof(msg),
		         "batch larger than %llu MiB; split it into several batches",
		         (unsigned long long)(LLMQ_MAX_BATCH_BYTES >> 20));
		in->d->refusals[REFUSAL_TOO_LARGE]++;
		reply(in, proto_error(ERR_BATCH_TOO_LARGE, msg));
		goto out;
	}
	r = check_duplicates(in);
	if (r < 0)
		goto fail;
	if (in->n_errors > 0) {
		in->d->refusals[REFUSAL_INVALID]++;
		reply_invalid(in);
		goto out;
	}
	if (in->n_jobs == 0) {
		reply(in, proto_error(ERR_INVALID_BATCH,
		                      "the batch has no request lines; nothing was stored"));
		goto out;
	}
	r = reply_if_repeat(in);
	if (r < 0)
		goto fail;
	if (r == 1)
		goto out;
	r = admit(in, v, &in->tokens);
	if (r < 0)
		goto fail;
	if (v->refused && !in->opts.dry_run) {
		in->d->refusals[REFUSAL_RATE_LIMITED]++;
		o = proto_error(ERR_RATE_LIMITED, v->reason);
		if (o && json_object_object_get_ex(o, "error", &e)) {
			json_object_object_add(
			    e, "retry_after",
			    json_object_new_int64((v->retry_after_ms + 999) / 1000));
			json_object_object_add(e, "retryable",
			                       json_object_new_boolean(v->retryable));
		}
		log_info("submit from uid %d refused: %s", (int)in->uid, v->reason);
		reply(in, o);
		goto out;
	}
	if (!in->opts.dry_run && (r = store_new_batch_id(in->id)) < 0)
		goto fail;
	store_and_reply(in);
	return;
fail:
	reply(in, cmd_store_error_reply(in->d, "submit", r));
out:
	ingest_free(in);
}

static void on_end(void *ud)
{
	ingest_end(ud);
}

void ingest_abort(struct ingest *in)
{
	log_info("submit from uid %d abandoned after %lld lines; nothing stored", (int)in->uid,
	         (long long)in->line_no);
	ingest_free(in);
}

static void on_abort(void *ud)
{
	ingest_abort(ud);
}

static const struct ipc_line_handler ingest_handler = {
    .line = on_line,
    .end = on_end,
    .abort = on_abort,
};

static char *dup_opt(const char *v, int *failed)
{
	char *p = v ? strdup(v) : NULL;

	if (v && !p)
		*failed = 1;
	return p;
}

struct ingest *ingest_new(struct llmqd *d, const struct ingest_opts *opts, int64_t uid,
                          const struct ingest_owner *owner, void *owner_ud)
{
	struct ingest *in = calloc(1, sizeof(*in));
	int failed = 0;

	if (!in)
		return NULL;
	in->errors = calloc(INGEST_KEEP_ERRORS, sizeof(*in->errors));
	in->name = dup_opt(opts->name, &failed);
	if (in->name)
		text_clean(in->name); /* shown by list and status, to root too */
	in->key = dup_opt(opts->idempotency_key, &failed);
	in->endpoint = dup_opt(opts->endpoint, &failed);
	in->input_file_id = dup_opt(opts->input_file_id, &failed);
	in->metadata = dup_opt(opts->metadata, &failed);
	in->d = d;
	in->source_fd = -1;
	d->ingests++;
	if (!in->errors || failed) {
		ingest_free(in);
		return NULL;
	}
	in->owner = owner;
	in->owner_ud = owner_ud;
	in->uid = uid;
	if (opts->source_fd >= 0) {
		in->source_fd = fcntl(opts->source_fd, F_DUPFD_CLOEXEC, 3);
		if (in->source_fd < 0) {
			ingest_free(in);
			return NULL;
		}
	}
	in->opts = *opts;
	in->opts.name = in->name;
	in->opts.idempotency_key = in->key;
	in->opts.endpoint = in->endpoint;
	in->opts.input_file_id = in->input_file_id;
	in->opts.metadata = in->metadata;
	return in;
}

static void ipc_owner_reply(void *ud, json_object *o)
{
	ipc_reply(ud, o);
}

static void ipc_owner_await(void *ud, void (*gone)(void *arg), void *arg)
{
	ipc_await(ud, gone, arg);
}

static void ipc_owner_await_end(void *ud)
{
	ipc_await_end(ud);
}

static const struct ingest_owner ipc_owner = {
    .reply = ipc_owner_reply,
    .await = ipc_owner_await,
    .await_end = ipc_owner_await_end,
};

void ingest_start(struct llmqd *d, struct ipc_client *c, const struct ingest_opts *opts)
{
	uid_t u = ipc_client_uid(c);
	struct ingest *in = ingest_new(d, opts, u == (uid_t)-1 ? -1 : (int64_t)u, &ipc_owner, c);

	if (!in) {
		ipc_reply(c, proto_error(ERR_INTERNAL, "out of memory"));
		ipc_close_after_reply(c);
		return;
	}
	ipc_expect_lines(c, opts->lines, &ingest_handler, in);
}
