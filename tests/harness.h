/*
 * harness.h - real processes for the integration tests: the mock upstream,
 * llmqd, and the llmq client, each in a temporary directory of the test's.
 */
#ifndef LLMQ_HARNESS_H
#define LLMQ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>

struct mock_proc {
	pid_t pid;
	int port;
	char log[300];
};

struct daemon_proc {
	pid_t pid;
	int http_port; /* the OpenAI-compatible face, on 127.0.0.1 */
	char sock[300];
	char db[300];
	char log[300];
};

struct redis_proc {
	pid_t pid;
	char sock[300]; /* its Unix socket, in the test's directory */
	char url[320];  /* unix://... for LLMQ_REDIS_URL */
};

/*
 * Start a real redis-server on dir/redis.sock, persistence off (no TCP
 * port), with requirepass when password is not NULL; waits until it
 * answers. Stopped by pid; it dies with the test.
 */
void h_redis_start(struct redis_proc *r, const char *dir, const char *password);
void h_redis_stop(struct redis_proc *r);

/* A fresh temporary directory for one test. */
void h_tmpdir(char *buf, size_t len);

/* Start the mock with extra options (NULL-terminated); logs arrivals to dir/mock.log. */
void h_mock_start(struct mock_proc *m, const char *dir, ...);
void h_mock_stop(struct mock_proc *m);
/* method http://127.0.0.1:port/path with body (NULL: none; JSON): the status
 * (0 when no answer came), the answer's first 4095 bytes into ret. */
long h_http(int port, const char *method, const char *path, const char *body, char *ret);

/* GET /stats from the mock, as a JSON object (caller puts it). */
json_object *h_mock_stats(const struct mock_proc *m);
/* Give the mock's key credit again (after --quota-after ran out). */
void h_mock_topup(const struct mock_proc *m);

/* Start llmqd on dir/llmq.sock and dir/llmq.db (or the test's LLMQ_DB=) against
 * the mock, with extra environment assignments "NAME=value" (NULL-terminated);
 * waits for its socket. */
void h_daemon_start(struct daemon_proc *d, const char *dir, const struct mock_proc *m, ...);
void h_daemon_signal(struct daemon_proc *d, int sig);
/* Send sig and go on (the daemon keeps running). */
void h_daemon_signal_only(const struct daemon_proc *d, int sig);

/* Run llmq with the daemon's socket and args (NULL-terminated); returns its
 * exit status, with stdout in out and stderr in err (either may be NULL). */
int h_llmq(const struct daemon_proc *d, char *out, size_t outlen, char *err, size_t errlen, ...);

/* The same, as the user called user (the test must run as root). */
int h_llmq_as(const char *user, const struct daemon_proc *d, char *out, size_t outlen, char *err,
              size_t errlen, ...);

/* The file at path in buf (empty when absent), NUL-terminated; returns buf. */
const char *h_read_file(const char *path, char *buf, size_t len);

/* Submit file through llmq (asserting success); the batch id into id. */
void h_submit(const struct daemon_proc *d, const char *file, char *id, size_t idlen);

/* Write n Batch API chat lines to path: custom_id "req-<i>", content "question <i>". */
void h_write_batch(const char *path, int n, const char *model, int max_tokens);

/* The environment of a lane that wastes no test time: no stagger, no token
 * limit, backoff of 50 ms up to 0.5 s. */
#define H_FAST                                                                                     \
	"OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=100000000",                                  \
	    "OPENAI_BACKOFF_BASE_SECONDS=0.05", "OPENAI_BACKOFF_CAP_SECONDS=0.5"

/* h_wait_for predicates: the batch completed; it completed or was cancelled. */
int h_batch_completed(json_object *batch);
int h_batch_finished(json_object *batch);

/* Poll "llmq status BATCH --json" until pred(batch) or timeout_s; returns the batch. */
json_object *h_wait_for(const struct daemon_proc *d, const char *batch,
                        int (*pred)(json_object *batch), int timeout_s);

int64_t h_jint(json_object *o, const char *path); /* "counts.succeeded" */
const char *h_jstr(json_object *o, const char *key);

/* A raw connection to a Unix socket (asserting success), a write of s, and
 * a read of one answer line that must contain want (the line into got when
 * not NULL). */
int h_raw_connect(const char *path);
void h_raw_send(int fd, const char *s);
void h_raw_expect(int fd, const char *want);
void h_raw_line(int fd, char *got, size_t len);

/* The daemon's resident set now and at its peak (VmRSS, VmHWM), in KiB. */
long h_rss_kib(const struct daemon_proc *d, long *ret_peak_kib);

/* An IPv4 address of this host other than loopback (a caller llmqd cannot
 * identify by the kernel connects from it): 0, or -1 when there is none. */
int h_host_addr(char *buf, size_t len);

/* Run a query on the daemon's database; returns the first column of the first row. */
int64_t h_sql_int(const struct daemon_proc *d, const char *sql);

#endif
