/*
 * llmq.h - the client's shared pieces: options, the connection to llmqd,
 * output helpers, and one function per subcommand.
 */
#ifndef LLMQ_CLIENT_H
#define LLMQ_CLIENT_H

#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>
#include <json-c/json.h>

/* sysexits(3) */
#define EX_OK_ 0
#define EX_USAGE_ 64
#define EX_DATAERR_ 65
#define EX_UNAVAILABLE_ 69
#define EX_SOFTWARE_ 70
#define EX_IOERR_ 74
#define EX_TEMPFAIL_ 75
#define EX_NOPERM_ 77

struct opts {
	char socket[4096];
	int json;
	const char *output;
	int errors;
	const char *window;
	const char *name;
	const char *idempotency_key;
	int dry_run;
	int retry;
	int limit;
	double interval;
	int priority;
	int priority_set;
	int argc; /* arguments after the subcommand's name */
	char **argv;
};

struct conn {
	int fd;
	FILE *in;
	char *line;
	size_t cap;
};

/* Connect to llmqd; on failure prints how to start it and returns EX_UNAVAILABLE_. */
int conn_open(const struct opts *o, struct conn *c);
void conn_close(struct conn *c);
/* 1: conn_open and conn_call say nothing when llmqd is absent or goes away. */
void conn_set_quiet(int q);
/* Write all of buf; returns 0 or -errno. */
int conn_write(struct conn *c, const char *buf, size_t len);
/* Send req (freed) and read one answer line into *ret (NULL on EOF). */
int conn_send(struct conn *c, json_object *req);
int conn_read(struct conn *c, json_object **ret);
/* Read one raw line (without its newline); returns its length or -1 at EOF. */
ssize_t conn_read_line(struct conn *c, const char **ret);
/* Request and answer in one; returns 0 or an exit code after printing the error. */
int conn_call(struct conn *c, const struct opts *o, json_object *req, json_object **ret);
/* Connect, call, close: for a command that asks one thing. */
int conn_request(const struct opts *o, json_object *req, json_object **ret);
/* Print an {"ok":false} answer (as JSON with --json) and map its code to an exit code. */
int report_error(const struct opts *o, json_object *reply);

/* Output helpers (output.c). */
void print_json(json_object *o);
const char *jstr(json_object *o, const char *key);
/* The same for printing: "-" where the key is absent. */
const char *jtext(json_object *o, const char *key);
int64_t jint(json_object *o, const char *key);
json_object *jget(json_object *o, const char *key);
void fmt_age(int64_t ms, char *buf, size_t len);
void fmt_count(int64_t n, char *buf, size_t len);
void print_progress(FILE *f, json_object *batch, int tty);
void print_batch_table(json_object *batches);
void print_batch_detail(json_object *batch);
void print_lanes(json_object *lanes);

/* Subcommands. */
int cmd_submit(const struct opts *o);
int cmd_status(const struct opts *o);
int cmd_list(const struct opts *o);
int cmd_wait(const struct opts *o);
int cmd_results(const struct opts *o);
int cmd_cancel(const struct opts *o);
int cmd_ping(const struct opts *o);
int cmd_metrics(const struct opts *o);

#endif
