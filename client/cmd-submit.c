/*
 * cmd-submit.c - "llmq submit FILE": sends a Batch API JSONL file to llmqd
 * and prints the new batch id. --dry-run prints the projected cost (counted
 * here with the shared estimator) and llmqd's projected finish, stores
 * nothing, and exits as the real submit would (75 refused for now, 65 never
 * fits); --retry waits out a BATCH_RATE_LIMITED refusal and tries again.
 * Its options are the table at the end.
 */
#include "estimate.h"
#include "llmq.h"
#include "protocol.h"
#include "timeutil.h"

#include <errno.h>
#include <libgen.h>
#include <sys/random.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_input(const char *path, char **ret, size_t *ret_len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	size_t len = 0, cap = 1 << 16, n;
	char *buf = NULL, *p;
	int r = 0;

	if (!f)
		return -errno;
	buf = malloc(cap);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len > LLMQ_MAX_BATCH_BYTES) {
			r = -EFBIG;
			goto out;
		}
		if (len == cap) {
			p = realloc(buf, cap * 2);
			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			buf = p;
			cap *= 2;
		}
	}
	if (ferror(f))
		r = -EIO;
out:
	if (f != stdin)
		fclose(f);
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int64_t count_lines(const char *buf, size_t len)
{
	int64_t n = 0;
	const char *p = buf, *end = buf + len;

	while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
		n++;
		p++;
	}
	if (len > 0 && buf[len - 1] != '\n')
		n++;
	return n;
}

/* The cost of the batch as the shared estimator counts it. */
static void local_estimate(const char *buf, size_t len, int64_t *ret_tokens, int64_t *ret_max,
                           int64_t *ret_bad)
{
	const char *env = getenv("OPENAI_EST_TOKENS_PER_RUN"), *p = buf, *end = buf + len, *nl;
	int64_t per_run = env && atoll(env) > 0 ? atoll(env) : 7000, est;
	struct proto_input in;
	char err[256];

	*ret_tokens = *ret_max = *ret_bad = 0;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		if (nl > p && !(nl - p == 1 && *p == '\r')) {
			if (proto_parse_input(p, (size_t)(nl - p), &in, err, sizeof(err)) == 0) {
				est = estimate_tokens(in.body, in.url, per_run);
				*ret_tokens += est;
				if (est > *ret_max)
					*ret_max = est;
				proto_input_clear(&in);
			} else {
				(*ret_bad)++;
			}
		}
		p = nl + 1;
	}
}

/* A fresh key per invocation: a repeat of this submit is then told from a new one. */
static int make_key(char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[16];
	size_t i;

	if (len < 2 * sizeof(rnd) + 1 || getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -EIO;
	for (i = 0; i < sizeof(rnd); i++) {
		buf[2 * i] = hex[rnd[i] >> 4];
		buf[2 * i + 1] = hex[rnd[i] & 15];
	}
	buf[2 * sizeof(rnd)] = '\0';
	return 0;
}

/* A dry run's refusal that waiting cannot cure (the real submit's 65). */
static int submit_never(json_object *reply)
{
	json_object *v = jget(reply, "retryable");

	return v && !json_object_get_boolean(v);
}

static int submit_once(const struct opts *o, const char *buf, size_t len, int64_t lines,
                       const char *name, const char *key, json_object **ret)
{
	json_object *req, *reply = NULL;
	struct conn c;
	int r, sent;

	*ret = NULL;
	r = conn_open(o, &c);
	if (r)
		return r;
	req = proto_request("submit");
	json_object_object_add(req, "lines", json_object_new_int64(lines));
	json_object_object_add(req, "name", json_object_new_string(name));
	if (o->window)
		json_object_object_add(req, "window", json_object_new_string(o->window));
	if (o->priority_set)
		json_object_object_add(req, "priority", json_object_new_int(o->priority));
	if (o->dry_run)
		json_object_object_add(req, "dry_run", json_object_new_boolean(1));
	json_object_object_add(req, "idempotency_key", json_object_new_string(key));
	r = conn_send(&c, req);
	if (r == 0)
		r = conn_write(&c, buf, len);
	if (r == 0 && len > 0 && buf[len - 1] != '\n')
		r = conn_write(&c, "\n", 1);
	sent = r == 0;
	/* If llmqd stopped reading early, its answer says why. */
	r = conn_read(&c, &reply);
	conn_close(&c);
	if ((r < 0 || !reply) && sent && !o->dry_run) {
		/* llmqd may have stored it and died before it could say so. */
		fprintf(stderr,
		        "llmq: the connection to llmqd dropped after the whole batch was sent; "
		        "it is unknown whether it was stored: 'llmq list' will tell.\n"
		        "llmq: to send it again without risking a second copy, run:\n"
		        "  llmq submit --idempotency-key %s %s\n",
		        key, o->argv[0]);
		return EX_TEMPFAIL_;
	}
	if (r < 0 || !reply) {
		fprintf(stderr, "llmq: llmqd closed the connection during the submit; nothing "
		                "was stored. See its log\n");
		return EX_UNAVAILABLE_;
	}
	*ret = reply;
	return 0;
}

static int submit_run(const struct opts *o)
{
	int64_t lines, tokens, max, bad, wait, i;
	json_object *reply = NULL, *err;
	char *buf = NULL, *pathcopy = NULL, eta[32];
	const char *code, *name, *key = o->idempotency_key;
	char fresh[40];
	size_t len = 0;
	int r;

	r = read_input(o->argv[0], &buf, &len);
	if (r < 0) {
		if (r == -EFBIG)
			fprintf(stderr,
			        "llmq: %s is larger than %llu MiB, the limit of one batch; "
			        "split it\n",
			        o->argv[0], (unsigned long long)(LLMQ_MAX_BATCH_BYTES >> 20));
		else
			fprintf(stderr, "llmq: cannot read %s: %s\n", o->argv[0], strerror(-r));
		return r == -EFBIG ? EX_DATAERR_ : EX_NOINPUT_;
	}
	lines = count_lines(buf, len);
	if (lines > LLMQ_MAX_BATCH_LINES) {
		fprintf(stderr, "llmq: %s has %lld lines; a batch holds at most %d: split it\n",
		        o->argv[0], (long long)lines, LLMQ_MAX_BATCH_LINES);
		free(buf);
		return EX_DATAERR_;
	}
	pathcopy = strdup(o->argv[0]);
	name = o->name ? o->name : pathcopy ? basename(pathcopy) : "-";
	if (!key) {
		if (make_key(fresh, sizeof(fresh)) < 0) {
			fprintf(stderr, "llmq: cannot draw a random idempotency key: %s\n",
			        strerror(errno));
			r = EX_SOFTWARE_;
			goto out;
		}
		key = fresh;
	}
	/* --retry sends the same key again: a batch that got in is never doubled. */
	for (;;) {
		r = submit_once(o, buf, len, lines, name, key, &reply);
		if (r)
			goto out;
		if (json_object_get_boolean(jget(reply, "ok")))
			break;
		err = jget(reply, "error");
		code = jstr(err, "code");
		wait = -1;
		if (o->retry && code && !strcmp(code, ERR_RATE_LIMITED) &&
		    json_object_get_boolean(jget(err, "retryable")))
			wait = jint(err, "retry_after") > 0 ? jint(err, "retry_after") : 1;
		else if (o->retry && code && !strcmp(code, ERR_BUSY))
			wait = 2;
		if (wait < 0) {
			r = report_error(o, reply);
			goto out;
		}
		fprintf(stderr, "llmq: refused for now: %s\nllmq: trying again in %llds\n",
		        jtext(err, "message"), (long long)wait);
		json_object_put(reply);
		reply = NULL;
		sleep((unsigned)wait);
	}
	if (o->dry_run) {
		local_estimate(buf, len, &tokens, &max, &bad);
		json_object_object_add(reply, "local_est_tokens", json_object_new_int64(tokens));
		json_object_object_add(reply, "max_request_tokens", json_object_new_int64(max));
	}
	if (o->json) {
		print_json(reply);
	} else if (o->dry_run) {
		fmt_age(jint(reply, "eta_ms"), eta, sizeof(eta));
		printf(
		    "%lld requests, ~%lld tokens (dearest request ~%lld); projected finish in %s\n",
		    (long long)jint(reply, "count"), (long long)jint(reply, "est_tokens"),
		    (long long)max, eta);
		for (i = 0; i < (int64_t)json_object_array_length(jget(reply, "lanes")); i++) {
			json_object *l = json_object_array_get_idx(jget(reply, "lanes"), (size_t)i);

			printf("  lane %s: %lld requests, ~%lld tokens (models: %s)\n",
			       jtext(l, "lane"), (long long)jint(l, "jobs"),
			       (long long)jint(l, "est_tokens"),
			       json_object_to_json_string_ext(jget(l, "models"),
			                                      JSON_C_TO_STRING_PLAIN));
		}
		if (jstr(reply, "would_refuse") && submit_never(reply))
			printf("would be refused, now and later: %s\nnothing was stored\n",
			       jtext(reply, "would_refuse"));
		else if (jstr(reply, "would_refuse"))
			printf("would be refused now: %s\nretry after %llds; nothing was stored\n",
			       jtext(reply, "would_refuse"), (long long)jint(reply, "retry_after"));
		else
			printf("would be accepted (nothing was submitted)\n");
	} else {
		if (json_object_get_boolean(jget(reply, "duplicate")))
			fprintf(stderr,
			        "llmq: already stored as %s with this idempotency key; not stored "
			        "again\n",
			        jtext(reply, "id"));
		printf("%s\n", jtext(reply, "id"));
	}
	r = EX_OK_;
	/* A dry run ends as the submit would: refused for now, or never. */
	if (o->dry_run && jstr(reply, "would_refuse"))
		r = submit_never(reply) ? EX_DATAERR_ : EX_TEMPFAIL_;
out:
	json_object_put(reply);
	free(pathcopy);
	free(buf);
	return r;
}

static int submit_opt_window(struct opts *o, const char *arg, char *why, size_t len)
{
	int64_t ms;

	if (time_parse_duration(arg, &ms) < 0 || ms <= 0) {
		snprintf(why, len, "--window: '%s' is not a duration such as 24h, 90m or 3600s",
		         arg);
		return -EINVAL;
	}
	o->window = arg;
	return 0;
}

static int submit_opt_priority(struct opts *o, const char *arg, char *why, size_t len)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end || v < -LLMQ_MAX_PRIORITY || v > LLMQ_MAX_PRIORITY) {
		snprintf(why, len, "--priority: '%s' is not a whole number in -%d..%d", arg,
		         LLMQ_MAX_PRIORITY, LLMQ_MAX_PRIORITY);
		return -EINVAL;
	}
	o->priority = (int)v;
	o->priority_set = 1;
	return 0;
}

static int submit_opt_name(struct opts *o, const char *arg, char *why, size_t len)
{
	if (strlen(arg) > LLMQ_MAX_NAME) {
		snprintf(why, len, "--name: %zu bytes; a batch's name is at most %d", strlen(arg),
		         LLMQ_MAX_NAME);
		return -EINVAL;
	}
	o->name = arg;
	return 0;
}

static int submit_opt_dry_run(struct opts *o, const char *arg, char *why, size_t len)
{
	(void)arg, (void)why, (void)len;
	o->dry_run = 1;
	return 0;
}

static int submit_opt_retry(struct opts *o, const char *arg, char *why, size_t len)
{
	(void)arg, (void)why, (void)len;
	o->retry = 1;
	return 0;
}

static int submit_opt_key(struct opts *o, const char *arg, char *why, size_t len)
{
	if (!proto_valid_idempotency_key(arg)) {
		snprintf(why, len,
		         "--idempotency-key: '%.64s' is not 1 to %d letters, digits, '-', '_', "
		         "'.' or ':'",
		         arg, LLMQ_MAX_IDEMPOTENCY_KEY);
		return -EINVAL;
	}
	o->idempotency_key = arg;
	return 0;
}

static const struct cli_option submit_options[] = {
    {"window", 0, "DURATION", "its completion window (default 24h)", submit_opt_window},
    {"priority", 0, "N", "-1000..1000, default 0: higher runs first", submit_opt_priority},
    {"name", 0, "NAME", "its name in llmq list (default: the file's)", submit_opt_name},
    {"dry-run", 0, NULL, "the cost and finish it would have; store nothing", submit_opt_dry_run},
    {"retry", 0, NULL, "wait out a BATCH_RATE_LIMITED refusal, try again", submit_opt_retry},
    {"idempotency-key", 0, "KEY", "a repeat with the same KEY is not stored twice", submit_opt_key},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_command cli_submit = {
    .name = "submit",
    .args = "FILE",
    .min_args = 1,
    .max_args = 1,
    .about = "send a batch (Batch API JSONL, - for stdin); print its id",
    .options = submit_options,
    .notes = "A dry run exits as the submit would: 0 accepted, 75 refused for now, 65\n"
             "never (a request costs more than the lane's budget). KEY: 1 to 64 of\n"
             "A-Z a-z 0-9 . _ : - (without one, each submit draws its own).\n",
    .run = submit_run,
};
