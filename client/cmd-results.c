/*
 * cmd-results.c - "llmq results BATCH [-o FILE] [--errors]": writes the
 * batch's output lines (Batch API output format), page by page, to FILE or
 * stdout. --errors writes the failed and cancelled requests instead. FILE
 * is written under a temporary name and renamed once whole, so an unknown
 * batch or a failure never truncates what FILE held. A reader that stops
 * early (results | head) ends the command quietly.
 */
#include "llmq.h"
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

static int results_run(const struct opts *o)
{
	json_object *req, *reply = NULL;
	int64_t after = 0, total = 0, i, count;
	const char *line, *state = "";
	struct conn c;
	FILE *out = stdout;
	char *tmp = NULL;
	ssize_t n;
	int r, done = 0, fd;

	r = conn_open(o, &c);
	if (r)
		return r;
	if (o->output) {
		if (asprintf(&tmp, "%s.partial-XXXXXX", o->output) < 0) {
			tmp = NULL;
			r = EX_SOFTWARE_;
			goto out;
		}
		fd = mkostemp(tmp, O_CLOEXEC);
		if (fd >= 0) {
			/* The mode a plain create would give (mkostemp makes 0600). */
			mode_t mask = umask(0);

			umask(mask);
			if (fchmod(fd, 0666 & ~mask) < 0) {
				/* keep 0600: stricter, still the user's */
			}
		}
		out = fd < 0 ? NULL : fdopen(fd, "w");
		if (!out) {
			fprintf(stderr, "llmq: cannot write next to %s: %s\n", o->output,
			        strerror(errno));
			if (fd >= 0)
				close(fd);
			free(tmp);
			tmp = NULL;
			out = stdout;
			r = EX_CANTCREAT_;
			goto out;
		}
	}
	while (!done) {
		req = proto_request(OP_RESULTS);
		json_object_object_add(req, "batch", json_object_new_string(o->argv[0]));
		json_object_object_add(req, "after", json_object_new_int64(after));
		json_object_object_add(req, "errors", json_object_new_boolean(o->errors));
		r = conn_call(&c, o, req, &reply);
		if (r)
			goto out;
		count = jint(reply, "count");
		after = jint(reply, "next");
		done = json_object_get_boolean(jget(reply, "done"));
		state = jstr(reply, "state") ? jstr(reply, "state") : "";
		for (i = 0; i < count; i++) {
			n = conn_read_line(&c, &line);
			if (n < 0) {
				fprintf(stderr, "llmq: llmqd closed the connection mid-page\n");
				r = EX_UNAVAILABLE_;
				goto out;
			}
			if (fwrite(line, 1, (size_t)n, out) != (size_t)n || fputc('\n', out) == EOF)
				break;
		}
		if (ferror(out))
			break;
		total += count;
		if (!done) {
			json_object_put(reply);
			reply = NULL;
		}
	}
	if (fflush(out) != 0 || ferror(out)) {
		if (errno == EPIPE && !o->output) {
			r = EX_OK_; /* the reader has what it wanted */
			goto out;
		}
		fprintf(stderr, "llmq: writing the results failed: %s\n", strerror(errno));
		r = EX_IOERR_;
		goto out;
	}
	if (tmp) {
		if (fclose(out) != 0 || rename(tmp, o->output) < 0) {
			out = stdout;
			fprintf(stderr, "llmq: cannot write %s: %s\n", o->output, strerror(errno));
			r = EX_CANTCREAT_;
			goto out;
		}
		out = stdout;
		free(tmp);
		tmp = NULL;
	}
	if (!o->output && strcmp(state, "completed") && strcmp(state, "cancelled"))
		fprintf(stderr,
		        "llmq: %lld results so far; the batch is still running: more will "
		        "come\n",
		        (long long)total);
	if (o->output)
		fprintf(stderr, "llmq: %lld %s written to %s%s\n", (long long)total,
		        o->errors ? "failed requests" : "results", o->output,
		        strcmp(state, "completed") && strcmp(state, "cancelled")
		            ? " (the batch is still running: more will come)"
		            : "");
	r = EX_OK_;
out:
	json_object_put(reply);
	if (out != stdout)
		fclose(out);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	conn_close(&c);
	return r;
}

static int results_opt_output(struct opts *o, const char *arg, char *why, size_t len)
{
	if (!*arg) {
		snprintf(why, len, "--output: the file name is empty");
		return -EINVAL;
	}
	o->output = arg;
	return 0;
}

static int results_opt_errors(struct opts *o, const char *arg, char *why, size_t len)
{
	(void)arg, (void)why, (void)len;
	o->errors = 1;
	return 0;
}

static const struct cli_option results_options[] = {
    {"output", 'o', "FILE", "write them to FILE (whole, or not at all)", results_opt_output},
    {"errors", 0, NULL, "the failed and cancelled requests instead", results_opt_errors},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_command cli_results = {
    .name = "results",
    .args = "BATCH",
    .min_args = 1,
    .max_args = 1,
    .about = "the batch's answers as Batch API output lines",
    .options = results_options,
    .run = results_run,
};
