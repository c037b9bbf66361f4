/*
 * llmq.h - the client's shared pieces: options, the command and option
 * tables, the connection to llmqd, output helpers, and one command entry
 * per subcommand.
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
#define EX_NOINPUT_ 66
#define EX_CANTCREAT_ 73

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
	unsigned states;   /* list --state: bit i for proto_batch_states[i]; 0: any */
	int64_t since_ms;  /* list --since: wall ms; 0: any time */
	int quiet;         /* list -q: ids only */
	const char *since; /* usage --since, as given (read once --utc is known) */
	const char *until; /* usage --until */
	const char *by;    /* usage --by: the keys, comma-separated */
	int utc;           /* usage: times and days in UTC */
	int csv;           /* usage: comma-separated values */
	int failed;        /* retry --failed */
	int help;
	int argc; /* arguments after the subcommand's name */
	char **argv;
};

/*
 * One option of a command. A command's table is the one place its options
 * are named: main.c parses the command line with it (getopt_long) and
 * prints the command's --help from it, so the two cannot disagree.
 */
struct cli_option {
	const char *name; /* the long name, without "--" */
	char letter;      /* its short form, or 0 */
	const char *arg;  /* what its value is ("DURATION"); NULL for a flag */
	const char *help; /* one line */
	/* Take the option (arg NULL for a flag); on a bad value, -EINVAL and why. */
	int (*set)(struct opts *o, const char *arg, char *why, size_t len);
};

struct cli_command {
	const char *name;
	const char *args;                 /* its arguments, for the usage line ("FILE"), or "" */
	int min_args, max_args;           /* how many arguments it takes */
	const char *about;                /* one line, for llmq --help */
	const struct cli_option *options; /* ends with an entry whose name is NULL */
	const char *notes;                /* what the help says after the options, or NULL */
	int (*run)(const struct opts *o);
};

extern const struct cli_command cli_submit;
extern const struct cli_command cli_status;
extern const struct cli_command cli_list;
extern const struct cli_command cli_wait;
extern const struct cli_command cli_results;
extern const struct cli_command cli_cancel;
extern const struct cli_command cli_ping;
extern const struct cli_command cli_metrics;
extern const struct cli_command cli_usage;
extern const struct cli_command cli_pause;
extern const struct cli_command cli_resume;
extern const struct cli_command cli_retry;
extern const struct cli_command cli_set;

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
/* 1: answers are for people: every string in them has its control characters
 * escaped (a file named with an escape sequence is shown, not obeyed). */
void conn_set_plain(int p);
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
void print_batch_detail(json_object *batch);
void print_lanes(json_object *lanes);
/* The fleet's Redis, when llmqd has one: up, or down and why. */
void print_fleet(json_object *fleet);
/* Users' budgets (status's "budgets"): used, held, allowed, when each resets. */
void print_budgets(json_object *budgets);
/* The batches as a table (empty: the line printed when there are none). */
void print_batch_table(json_object *batches, const char *empty);

#endif
