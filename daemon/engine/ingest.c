/*
 * ingest.c - the batch state machine's first half: receiving. Owns the lines
 * of one batch from the first to the decision: its sender (a socket client
 * through ipc, or route-batches-create.c reading a stored file) calls ingest_line()
 * per input line, ingest_end() when all arrived, ingest_abort() when it went
 * away. Each line is validated and kept as it comes (ingest-store.c stores
 * each whole slice meanwhile); at the end the whole is checked (duplicate
 * custom_ids, a repeated idempotency key, admission) and refused with its
 * first bad lines, or handed to ingest-store.c, which stores the rest and
 * answers the owner.
 */
#include "engine/ingest-private.h"
#include "text.h"
#include "gate/admission.h"
#include "estimate.h"
#include "jsontext.h"
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
/* Bodies kept in memory per batch from a file, not yet stored; past it, they
 * are read again when stored. */
#define INGEST_KEEP_BYTES (32u << 20)

void ingest_free(struct ingest *in)
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
	if (in->turn)
		event_free(in->turn);
	json_object_put(in->answer);
	in->d->ingests--;
	free(in);
}

void ingest_reply(struct ingest *in, json_object *o)
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
	size_t boff = 0, blen = 0;
	int64_t at = -1;
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
	/*
	 * The body as the line has it: the bytes json-c read, not written
	 * again. When a name is written with an escape (it might be "body"),
	 * as json-c writes the body, and then never read again from the file.
	 */
	if (jsontext_member(line, len, "body", &boff, &blen) == 0) {
		body = line + boff;
		at = offset < 0 ? -1 : offset + (int64_t)boff;
	} else {
		body = json_object_to_json_string_length(pi.body, JSON_C_TO_STRING_PLAIN, &blen);
	}
	j->custom_id = strdup(pi.custom_id);
	j->url = strdup(pi.url);
	j->model = strdup(pi.model);
	j->offset = at;
	j->body_len = blen;
	/* From a file, past the budget, the body is read again when it is stored. */
	if (!body || in->source_fd < 0 || at < 0 || in->kept + blen <= INGEST_KEEP_BYTES) {
		j->body = body ? strndup(body, blen) : NULL;
		in->kept += blen;
	}
	in->n_jobs++; /* counted even if a copy failed, so ingest_free frees it */
	proto_input_clear(&pi);
	if (!j->custom_id || !j->url || !j->model || (!j->body && j->offset < 0))
		return -ENOMEM;
	ingest_store_feed(in);
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

/* The refusal of a batch with bad lines, naming the first; NULL when out of memory. */
static json_object *reply_invalid(struct ingest *in)
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
		return NULL;
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
	return o;
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

void ingest_end(struct ingest *in)
{
	struct admission_verdict *v = &in->v;
	char msg[160];
	json_object *o = NULL, *e;
	int r;

	if (in->failed) {
		log_err(
		    "submit from uid %d: cannot keep its %lld lines in memory: %s; nothing stored",
		    (int)in->uid, (long long)in->line_no, strerror(-in->failed));
		ingest_store_drop(in, proto_error(ERR_BUSY, "llmqd ran out of memory receiving the "
		                                            "batch; nothing was stored: try again, "
		                                            "or split the batch"));
		return;
	}
	if (in->too_big) {
		snprintf(msg, sizeof(msg),
		         "batch larger than %llu MiB; split it into several batches",
		         (unsigned long long)(LLMQ_MAX_BATCH_BYTES >> 20));
		in->d->refusals[REFUSAL_TOO_LARGE]++;
		ingest_store_drop(in, proto_error(ERR_BATCH_TOO_LARGE, msg));
		return;
	}
	r = check_duplicates(in);
	if (r < 0)
		goto fail;
	if (in->n_errors > 0) {
		in->d->refusals[REFUSAL_INVALID]++;
		ingest_store_drop(in, reply_invalid(in));
		return;
	}
	if (in->n_jobs == 0) {
		ingest_store_drop(
		    in, proto_error(ERR_INVALID_BATCH,
		                    "the batch has no request lines; nothing was stored"));
		return;
	}
	r = ingest_answer_repeat(in, &o);
	if (r < 0)
		goto fail;
	if (r == 1) {
		ingest_store_drop(in, o);
		return;
	}
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
		ingest_store_drop(in, o);
		return;
	}
	ingest_store_and_reply(in);
	return;
fail:
	ingest_store_drop(in, store_error_reply(in->d->store, "submit", r));
}

void ingest_abort(struct ingest *in)
{
	log_info("submit from uid %d abandoned after %lld lines; nothing of it is kept",
	         (int)in->uid, (long long)in->line_no);
	ingest_store_abort(in);
}

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
	in->turn_tail = &in->turn_q;
	in->retry = evtimer_new(d->base, ingest_store_retry, in);
	in->turn = evtimer_new(d->base, ingest_write_turn, in);
	d->ingests++;
	if (!in->errors || !in->retry || !in->turn || failed) {
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
