/*
 * route-batches-create.c - POST /v1/batches: a batch made as `llmq submit`
 * makes it. Its input file is read line by line into the same ingest (the
 * same validation, the same admission, stored in one transaction), in
 * slices of a few milliseconds so that a 50,000-line file does not hold
 * the loop. What ingest refuses is told as the hosted API tells it: an
 * input that does not validate makes a batch whose status is failed, with
 * errors.data[] naming the lines, and nothing runs; admission's refusal is
 * a 503 BATCH_RATE_LIMITED with a Retry-After of at least a second when
 * waiting may cure it, a 400 naming the line (or the limit) when it cannot;
 * nothing is stored.
 *
 * Ownership: a struct load lives from the request until it is answered or
 * its caller left; it owns the ingest until ingest_end() takes it.
 */
#include "http/caller.h"
#include "http/reply.h"
#include "http/route-batches.h"
#include "llmqd.h"
#include "log.h"
#include "protocol.h"
#include "service/quota.h"
#include "engine/scheduler.h"
#include "store/files.h"
#include "engine/ingest.h"
#include "store/store.h"
#include "text.h"
#include "timeutil.h"
#include "engine/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>
#define LOAD_SLICE_MS 5 /* reading the input file, per turn of the loop */
#define LOAD_READ (256 * 1024)
#define METADATA_MAX_KEYS 16
#define METADATA_MAX_KEY 64
#define METADATA_MAX_VALUE 512

struct load {
	struct llmqd *d;
	struct hreq *req;
	struct ingest *in; /* until ingest_end() */
	int fd;
	struct evbuffer *pending; /* read, not yet a whole line */
	int skipping;             /* in a line past LLMQ_MAX_LINE: dropped to its end */
	int64_t offset;           /* in the file, of what pending holds first */
	struct event *next;
	int64_t uid;
	int64_t window_ms;
	char endpoint[64];
	char file_id[64];
	char filename[256];
	char *metadata;
	int64_t started; /* monotonic ms */
	/* While the ingest waits for a locked database: its own cleanup. */
	void (*await_gone)(void *arg);
	void *await_arg;
};

static void load_free(struct load *l)
{
	if (l->in)
		ingest_abort(l->in);
	if (l->fd >= 0)
		close(l->fd);
	if (l->pending)
		evbuffer_free(l->pending);
	if (l->next)
		event_free(l->next);
	free(l->metadata);
	free(l);
}

/* ---- POST /v1/batches: the ingest's answer, as the hosted API gives it ---- */

/*
 * An input that did not validate: a batch with status failed and the lines
 * that were wrong, stored so that it can be retrieved; nothing runs.
 */
static void reply_failed(struct load *l, json_object *err)
{
	json_object *data = json_object_new_array(), *lines, *e, *x;
	struct store_batch b = {0};
	const char *msg = route_batches_str(err, "message"), *code = route_batches_str(err, "code"),
	           *s;
	char id[19];
	size_t i, n;
	int r;

	if (!data) {
		http_error(l->req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	if (json_object_object_get_ex(err, "lines", &lines) && lines) {
		n = json_object_array_length(lines);
		for (i = 0; i < n; i++) {
			x = json_object_array_get_idx(lines, i);
			e = json_object_new_object();
			if (!e)
				break;
			json_object_object_add(e, "code",
			                       json_object_new_string("invalid_request"));
			json_object_object_add(
			    e, "message",
			    json_object_new_string(route_batches_str(x, "error")
			                               ? route_batches_str(x, "error")
			                               : ""));
			json_object_object_add(e, "param", NULL);
			json_object_object_add(e, "line",
			                       json_object_new_int64(route_batches_int(x, "line")));
			json_object_array_add(data, e);
		}
	}
	if (json_object_array_length(data) == 0) {
		e = json_object_new_object();
		if (e) {
			json_object_object_add(
			    e, "code",
			    json_object_new_string(code && strcmp(code, ERR_BATCH_TOO_LARGE) == 0
			                               ? "file_too_large"
			                               : "invalid_file"));
			json_object_object_add(e, "message",
			                       json_object_new_string(msg ? msg : ""));
			json_object_object_add(e, "param", NULL);
			json_object_object_add(e, "line", NULL);
			json_object_array_add(data, e);
		}
	}
	r = store_new_batch_id(id);
	s = json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN);
	b.id = id;
	b.created_at = time_wall_ms();
	b.uid = l->uid;
	b.window_ms = l->window_ms;
	b.state = "failed";
	b.endpoint = l->endpoint;
	b.input_file_id = l->file_id;
	b.input_name = l->filename;
	b.metadata = l->metadata;
	b.errors = s;
	b.finished_at = b.created_at;
	if (r == 0)
		r = store_batch_insert(l->d->store, &b);
	if (r < 0) {
		json_object_put(data);
		http_store_error(l->d, l->req, "record the failed batch", r);
		return;
	}
	/* Not the submitter's message, which says nothing was stored: this was. */
	x = json_object_array_length(data) > 0 ? json_object_array_get_idx(data, 0) : NULL;
	log_info("batch %s from file %s failed validation (%lld bad line%s; first: line %lld: "
	         "%s); stored as failed, nothing runs",
	         id, l->file_id,
	         (long long)(route_batches_int(err, "bad_lines") > 0
	                         ? route_batches_int(err, "bad_lines")
	                         : 1),
	         route_batches_int(err, "bad_lines") > 1 ? "s" : "",
	         (long long)route_batches_int(x, "line"),
	         route_batches_str(x, "message") ? route_batches_str(x, "message") : "");
	json_object_put(data);
	route_batches_reply(l->d, l->req, id);
}

static void owner_reply(void *ud, json_object *o)
{
	struct load *l = ud;
	struct hreq *req = l->req;
	json_object *err = NULL, *v;
	const char *code, *msg;
	int64_t after;
	char ra[32];

	l->in = NULL; /* the ingest is over */
	hreq_on_gone(req, NULL, NULL);
	if (!o) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		goto out;
	}
	if (!json_object_object_get_ex(o, "error", &err)) {
		sched_kick(l->d->sched);
		route_batches_reply(l->d, req, route_batches_str(o, "id"));
		goto out;
	}
	code = route_batches_str(err, "code");
	msg = route_batches_str(err, "message");
	if (code && strcmp(code, ERR_RATE_LIMITED) == 0 &&
	    json_object_object_get_ex(err, "retryable", &v) && !json_object_get_boolean(v)) {
		/* A Retry-After would have an SDK try again for ever. */
		http_error(req, 400, "invalid_request_error", "batch_cannot_run",
		           "%s; nothing was stored", msg ? msg : "refused by admission");
	} else if (code && strcmp(code, ERR_RATE_LIMITED) == 0) {
		/* Never 0: an SDK would come back at once, again and again. */
		after = route_batches_int(err, "retry_after");
		snprintf(ra, sizeof(ra), "%lld", (long long)(after < 1 ? 1 : after));
		hreq_add_header(req, "Retry-After", ra);
		http_error(req, 503, "rate_limit", "BATCH_RATE_LIMITED", "%s",
		           msg ? msg : "refused by admission");
	} else if (code && (strcmp(code, ERR_INVALID_BATCH) == 0 ||
	                    strcmp(code, ERR_BATCH_TOO_LARGE) == 0)) {
		reply_failed(l, err);
	} else if (code && strcmp(code, ERR_BUSY) == 0) {
		hreq_add_header(req, "Retry-After", "1");
		http_error(req, 503, "server_error", "busy", "%s", msg ? msg : "busy");
	} else {
		http_error(req, code && strcmp(code, ERR_STORAGE) == 0 ? 503 : 500, "server_error",
		           NULL, "%s", msg ? msg : "llmqd cannot store the batch");
	}
out:
	json_object_put(o);
	load_free(l);
}

static void await_gone(void *ud)
{
	struct load *l = ud;

	l->await_gone(l->await_arg); /* frees the ingest */
	l->in = NULL;
	load_free(l);
}

static void owner_await(void *ud, void (*gone)(void *arg), void *arg)
{
	struct load *l = ud;

	l->await_gone = gone;
	l->await_arg = arg;
	hreq_on_gone(l->req, await_gone, l);
}

static void load_gone(void *ud)
{
	struct load *l = ud;

	log_info("HTTP batch from file %s: the caller left while it was read; nothing stored",
	         l->file_id);
	load_free(l);
}

static void owner_await_end(void *ud)
{
	struct load *l = ud;

	hreq_on_gone(l->req, NULL, NULL); /* the answer comes now */
}

static const struct ingest_owner http_owner = {
    .reply = owner_reply,
    .await = owner_await,
    .await_end = owner_await_end,
};

/* Give the ingest the first len bytes of pending as a line, and drop them (and skip more). */
static void take(struct load *l, size_t len, size_t skip, int too_long)
{
	char *line = too_long ? "" : (char *)evbuffer_pullup(l->pending, (ev_ssize_t)(len + skip));

	if (!too_long && len && line[len - 1] == '\r')
		len--;
	ingest_line_at(l->in, line, too_long ? 0 : len, too_long, l->offset);
}

/* Whole lines out of l->pending, into the ingest. */
static void take_lines(struct load *l, int eof)
{
	struct evbuffer_ptr p;
	size_t len;

	for (;;) {
		p = evbuffer_search(l->pending, "\n", 1, NULL);
		len = p.pos < 0 ? evbuffer_get_length(l->pending) : (size_t)p.pos;
		if (p.pos < 0 && !l->skipping && len > LLMQ_MAX_LINE) {
			take(l, 0, 0, 1);
			l->skipping = 1;
		}
		if (p.pos < 0 && (l->skipping || !eof || len == 0)) {
			if (l->skipping) { /* the rest of a line too long, dropped as it comes */
				evbuffer_drain(l->pending, len);
				l->offset += (int64_t)len;
			}
			return;
		}
		if (l->skipping)
			l->skipping = 0;
		else if (len > LLMQ_MAX_LINE)
			take(l, 0, 0, 1);
		else
			take(l, len, p.pos < 0 ? 0 : 1, 0);
		len += p.pos < 0 ? 0 : 1;
		evbuffer_drain(l->pending, len);
		l->offset += (int64_t)len;
		if (p.pos < 0)
			return;
	}
}

/* Read the input file for a slice of time; go on next turn, or end. */
static void load_step(evutil_socket_t fd, short what, void *arg)
{
	struct load *l = arg;
	struct timeval zero = {0, 0};
	int64_t until = time_mono_ms() + LOAD_SLICE_MS;
	struct ingest *in;
	int n;

	do {
		n = evbuffer_read(l->pending, l->fd, LOAD_READ);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_err("HTTP batch: reading file %s: %s", l->file_id, strerror(errno));
			hreq_on_gone(l->req, NULL, NULL);
			http_error(l->req, 500, "server_error", NULL,
			           "llmqd cannot read file %s: %s; nothing was stored", l->file_id,
			           strerror(errno));
			load_free(l);
			return;
		}
		take_lines(l, n == 0);
		if (n == 0) {
			in = l->in;
			log_debug("HTTP batch from file %s read in %lldms", l->file_id,
			          (long long)(time_mono_ms() - l->started));
			hreq_on_gone(l->req, NULL, NULL);
			ingest_end(in); /* answers through owner_reply, which frees l */
			return;
		}
	} while (time_mono_ms() < until);
	evtimer_add(l->next, &zero);
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* The hosted API's bounds: at most 16 pairs, keys of 64 characters, values of 512. */
static int valid_metadata(json_object *m, char *err, size_t len)
{
	int n = 0;

	if (!json_object_is_type(m, json_type_object)) {
		snprintf(err, len, "metadata must be an object of strings");
		return 0;
	}
	json_object_object_foreach(m, k, v)
	{
		if (!json_object_is_type(v, json_type_string)) {
			snprintf(err, len, "metadata[\"%.64s\"] is not a string", k);
			return 0;
		}
		if (++n > METADATA_MAX_KEYS || utf8_chars(k) > METADATA_MAX_KEY ||
		    utf8_chars(json_object_get_string(v)) > METADATA_MAX_VALUE) {
			snprintf(
			    err, len,
			    "metadata holds at most %d keys of up to %d characters, with string "
			    "values of up to %d",
			    METADATA_MAX_KEYS, METADATA_MAX_KEY, METADATA_MAX_VALUE);
			return 0;
		}
	}
	return 1;
}

/*
 * metadata as stored: its keys and values without control characters (its
 * description is a batch's name in llmq list and status, shown to root too).
 * NULL when out of memory.
 */
static char *clean_metadata(json_object *m)
{
	json_object *o = json_object_new_object();
	char key[4 * METADATA_MAX_KEY + 1], *val, *text = NULL;

	if (!o)
		return NULL;
	json_object_object_foreach(m, k, v)
	{
		snprintf(key, sizeof(key), "%s", k);
		text_clean(key);
		val = strdup(json_object_get_string(v));
		if (!val)
			goto out;
		text_clean(val);
		json_object_object_add(o, key, json_object_new_string(val));
		free(val);
	}
	text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
out:
	json_object_put(o);
	return text;
}

void route_batches_create(void *ud, struct hreq *req, struct evbuffer *body)
{
	struct llmqd *d = ud;
	struct ingest_opts opts = {0};
	struct store_file f;
	json_object *o = NULL, *m = NULL;
	const char *file_id, *endpoint, *window, *key = hreq_header(req, "Idempotency-Key");
	struct load *l = NULL;
	char err[256], why[512];
	int64_t uid;
	int r, refuse_db, never;

	http_caller(d, req, 1, &uid); /* the route checked it */
	r = proto_parse_object((const char *)evbuffer_pullup(body, -1), evbuffer_get_length(body),
	                       &o, err, sizeof(err));
	if (r < 0) {
		http_error(req, 400, "invalid_request_error", "invalid_body", "%s", err);
		return;
	}
	file_id = route_batches_str(o, "input_file_id");
	endpoint = route_batches_str(o, "endpoint");
	window = route_batches_str(o, "completion_window");
	if (!file_id || !endpoint || !window) {
		http_error(req, 400, "invalid_request_error", "missing_required_parameter",
		           "POST /v1/batches takes input_file_id, endpoint and completion_window");
		goto out;
	}
	if (!proto_known_url(endpoint)) {
		http_error(req, 400, "invalid_request_error", "invalid_endpoint",
		           "endpoint %.64s is not served; use /v1/chat/completions, "
		           "/v1/completions, /v1/embeddings or /v1/responses",
		           endpoint);
		goto out;
	}
	opts.window_ms = 0;
	if (time_parse_duration(window, &opts.window_ms) < 0 || opts.window_ms <= 0) {
		http_error(req, 400, "invalid_request_error", "invalid_completion_window",
		           "completion_window must be a duration such as 24h");
		goto out;
	}
	if (json_object_object_get_ex(o, "metadata", &m) && m &&
	    !valid_metadata(m, err, sizeof(err))) {
		http_error(req, 400, "invalid_request_error", "invalid_metadata", "%s", err);
		goto out;
	}
	if (key && !proto_valid_idempotency_key(key)) {
		http_error(req, 400, "invalid_request_error", "invalid_idempotency_key",
		           "Idempotency-Key must be 1 to 64 letters, digits, '-', '_', '.' or ':'");
		goto out;
	}
	if (health_db(d, why, sizeof(why), &refuse_db) && refuse_db) {
		http_error(req, 503, "server_error", "storage", "%s", why);
		goto out;
	}
	if (health_disk(d, why, sizeof(why))) {
		http_error(req, 507, "server_error", "insufficient_storage", "%s", why);
		goto out;
	}
	r = store_file_get(d->store, file_id, &f);
	if (r == -ENOENT || (r == 0 && !http_owns(uid, f.uid))) {
		http_error(req, 404, "invalid_request_error", "not_found",
		           "no file %.64s among yours; upload it with POST /v1/files", file_id);
		goto out;
	}
	if (r < 0) {
		http_store_error(d, req, "read the file's record", r);
		goto out;
	}
	r = quota_jobs(d, uid, f.lines, &never, why, sizeof(why));
	if (r == -EDQUOT) {
		d->refusals[REFUSAL_RATE_LIMITED]++;
		if (!never)
			hreq_add_header(req, "Retry-After", "60");
		http_error(req, never ? 400 : 503, never ? "invalid_request_error" : "rate_limit",
		           "quota_exceeded", "%s", why);
		goto out;
	}
	if (r < 0) {
		http_store_error(d, req, "count your queued requests", r);
		goto out;
	}
	if (d->ingests >= LLMQ_MAX_INGESTS) {
		d->refusals[REFUSAL_BUSY]++;
		hreq_add_header(req, "Retry-After", "2");
		http_error(
		    req, 503, "server_error", "busy",
		    "llmqd is receiving too many batches at once; try again in a few seconds");
		goto out;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		goto oom;
	l->d = d;
	l->req = req;
	l->uid = uid;
	l->fd = -1;
	l->window_ms = opts.window_ms;
	l->started = time_mono_ms();
	snprintf(l->endpoint, sizeof(l->endpoint), "%s", endpoint);
	snprintf(l->file_id, sizeof(l->file_id), "%s", file_id);
	snprintf(l->filename, sizeof(l->filename), "%s", f.filename);
	if (m)
		l->metadata = clean_metadata(m);
	l->pending = evbuffer_new();
	l->next = evtimer_new(d->base, load_step, l);
	if ((m && !l->metadata) || !l->pending || !l->next)
		goto oom;
	l->fd = files_open_read(d->files, file_id);
	if (l->fd < 0) {
		r = l->fd;
		http_error(req, 500, "server_error", NULL, "llmqd cannot read file %s: %s", file_id,
		           strerror(-r));
		load_free(l);
		goto out;
	}
	opts.name = f.filename;
	opts.idempotency_key = key;
	opts.endpoint = l->endpoint;
	opts.input_file_id = l->file_id;
	opts.metadata = l->metadata;
	opts.lines = -1;
	opts.source_fd = l->fd;
	l->in = ingest_new(d, &opts, uid, &http_owner, l);
	if (!l->in)
		goto oom;
	hreq_on_gone(req, load_gone, l);
	load_step(-1, 0, l);
	json_object_put(o);
	return;
oom:
	if (l)
		load_free(l);
	http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
out:
	json_object_put(o);
}
