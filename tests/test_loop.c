/*
 * test_loop.c - the event loop's share of the database, against real llmqd
 * processes: batch jobs' launches are recorded by the writer thread before
 * they go (the loop writes no launch record during a drain; no job is
 * launched twice, in a drain or through a cancel during its launches; a
 * kill -9 while launches wait for their records leaves no request sent
 * without its attempt row), retention's steps are the writer's too, and a
 * lane with nothing queued is not read for every call.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define KILL_JOBS 2000

static char out[1 << 20];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Bytes the daemon's loop thread (its main thread) has written by write(2)
 * and its kin: /proc/PID/task/PID/io's wchar. */
static int64_t loop_wchar(const struct daemon_proc *d)
{
	char path[128], buf[1024];
	const char *w;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/io", (int)d->pid, (int)d->pid);
	h_read_file(path, buf, sizeof(buf));
	w = strstr(buf, "wchar: ");
	cr_assert(w, "no wchar in %s: \"%s\"", path, buf);
	return strtoll(w + 7, NULL, 10);
}

/* llmq_queue_reads_total of the first lane, from `llmq metrics`. */
static int64_t queue_reads(const struct daemon_proc *d)
{
	const char *p, *v;

	cr_assert_eq(h_llmq(d, out, sizeof(out), NULL, 0, "metrics", NULL), 0);
	p = strstr(out, "\nllmq_queue_reads_total{");
	cr_assert(p, "no llmq_queue_reads_total in the metrics: %.2000s", out);
	v = strchr(p, '}');
	cr_assert(v);
	return strtoll(v + 1, NULL, 10);
}

static void submit_n(const struct daemon_proc *d, const char *dir, const char *name, int n,
                     char *id, size_t idlen)
{
	char file[160];

	snprintf(file, sizeof(file), "%s/%s.jsonl", dir, name);
	h_write_batch(file, n, "gpt-4o-mini", 5);
	h_submit(d, file, id, idlen);
}

/*
 * Before, each pump's launches were a write transaction of the loop's own:
 * a 2,000-job drain had the loop write about 30 MB (WAL frames, 15,000
 * write calls), and meet the writer's transactions on the way. Now the
 * writer thread records them: the loop writes what it sends and answers.
 */
Test(loop, a_drain_writes_no_launch_record_on_the_loop, .timeout = 120)
{
	char dir[64], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t before, wrote;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=256", NULL);
	submit_n(&d, dir, "in", 2000, id, sizeof(id));
	before = loop_wchar(&d);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 90));
	wrote = loop_wchar(&d) - before;
	fprintf(stderr, "the loop wrote %lld bytes during a 2,000-job drain\n", (long long)wrote);
	cr_assert_lt(wrote, 2000 * 1024, "the loop wrote %lld bytes during the drain",
	             (long long)wrote);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), 2000);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * Two batches drained side by side, their launches picked while earlier
 * ones are still being recorded (queued in the database meanwhile): each
 * job is sent and recorded once, and the picks of one pump are as many
 * distinct jobs.
 */
Test(loop, each_job_of_a_drain_is_launched_once, .timeout = 120)
{
	char dir[64], a[40], b[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *st;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=256", NULL);
	submit_n(&d, dir, "a", 1000, a, sizeof(a));
	submit_n(&d, dir, "b", 1000, b, sizeof(b));
	json_object_put(h_wait_for(&d, a, h_batch_completed, 90));
	json_object_put(h_wait_for(&d, b, h_batch_completed, 90));
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), 2000);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE attempts != 1"), 0,
	             "a job launched twice");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts"), 2000);
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "requests"), 2000, "the upstream saw each job once");
	/* And a pump's picks were distinct jobs, not the same one again until
	 * the writer refused it: the slots filled. */
	cr_assert_geq(h_jint(st, "max_in_flight"), 128, "at most %lld in flight",
	              (long long)h_jint(st, "max_in_flight"));
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* A cancel while launches are on their way to the writer: those recorded
 * first run to their end, the others are cancelled, none goes twice. */
Test(loop, a_cancel_during_launches_sends_no_job_twice, .timeout = 120)
{
	char dir[64], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *o, *st;
	int64_t t0, done = 0;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "2", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=64", NULL);
	submit_n(&d, dir, "in", 3000, id, sizeof(id));
	t0 = now_ms();
	while (done < 300 && now_ms() - t0 < 30000) {
		cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "--json", "status", id, NULL),
		             0);
		o = json_tokener_parse(out);
		cr_assert(o, "%s", out);
		done = h_jint(o, "batch.counts.succeeded");
		json_object_put(o);
	}
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "cancel", id, NULL), 0, "%s", out);
	json_object_put(h_wait_for(&d, id, h_batch_finished, 60));
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state IN ('queued', "
	                           "'running')"),
	             0);
	cr_assert_gt(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'cancelled'"), 0,
	             "cancelled after its end: see %s", d.log);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE attempts > 1"), 0,
	             "a job launched twice");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE ended_at IS NULL"), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"),
	             h_sql_int(&d, "SELECT count(*) FROM attempts"));
	st = h_mock_stats(&m);
	cr_assert_eq(h_jint(st, "requests"), h_sql_int(&d, "SELECT count(*) FROM attempts"),
	             "each request the upstream saw has its attempt, once");
	json_object_put(st);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* How many requests the mock saw for each job, from its --record file
 * ("question <i>" is job req-<i>'s text). */
static void requests_seen(const char *record, int *ret, int n)
{
	char line[256];
	FILE *f = fopen(record, "r");
	int i;

	cr_assert(f, "cannot read %s", record);
	memset(ret, 0, sizeof(*ret) * (size_t)n);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "question %d", &i) == 1 && i >= 0 && i < n)
			ret[i]++;
	fclose(f);
}

/* The attempt rows of each job, from the database file. */
static void attempts_recorded(const char *db, int *ret, int n)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	const char *cid;
	int i;

	memset(ret, 0, sizeof(*ret) * (size_t)n);
	cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	cr_assert_eq(sqlite3_prepare_v2(h,
	                                "SELECT j.custom_id, count(a.id) FROM jobs j "
	                                "LEFT JOIN attempts a ON a.job_id = j.id GROUP BY j.id",
	                                -1, &st, NULL),
	             SQLITE_OK, "%s", sqlite3_errmsg(h));
	while (sqlite3_step(st) == SQLITE_ROW) {
		cid = (const char *)sqlite3_column_text(st, 0);
		if (cid && sscanf(cid, "req-%d", &i) == 1 && i >= 0 && i < n)
			ret[i] = sqlite3_column_int(st, 1);
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
}

static void each_request_has_its_attempt(const char *record, const char *db, const char *when)
{
	static int seen[KILL_JOBS], rows[KILL_JOBS];
	int i, sent = 0;

	requests_seen(record, seen, KILL_JOBS);
	attempts_recorded(db, rows, KILL_JOBS);
	for (i = 0; i < KILL_JOBS; i++) {
		sent += seen[i];
		cr_assert_geq(rows[i], seen[i],
		              "%s: job req-%d was sent %d times, with %d attempt rows", when, i,
		              seen[i], rows[i]);
	}
	cr_assert_gt(sent, 0, "%s: nothing was sent", when);
}

/*
 * Killed while its launches wait for their records: its first launches went
 * out, then another program took the database's lock, the answers came and
 * the lane launched again; those launches' records cannot be written, so
 * they are not sent. Every request the upstream saw has its attempt row (a
 * launch is recorded before it goes), and after a restart still.
 */
Test(loop, a_kill_9_during_launches_leaves_no_request_without_its_attempt, .timeout = 120)
{
	char dir[64], id[40], record[128];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *st;
	int64_t t0, n = 0;
	sqlite3 *db;

	h_tmpdir(dir, sizeof(dir));
	snprintf(record, sizeof(record), "%s/requests.txt", dir);
	h_mock_start(&m, dir, "--latency-ms", "50", "--record", record, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=128", NULL);
	submit_n(&d, dir, "in", KILL_JOBS, id, sizeof(id));
	t0 = now_ms();
	while (n == 0 && now_ms() - t0 < 20000) {
		st = h_mock_stats(&m);
		n = h_jint(st, "requests");
		json_object_put(st);
	}
	cr_assert_gt(n, 0, "nothing was launched: see %s", d.log);
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK, "%s",
	             sqlite3_errmsg(db));
	/* The first launches answer; the lane launches again, unrecorded. */
	usleep(1500 * 1000);
	h_daemon_signal(&d, SIGKILL);
	/* What was on its way reaches the mock, or never will. */
	usleep(300 * 1000);
	cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	each_request_has_its_attempt(record, d.db, "after the kill");
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=128", NULL);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 90));
	h_daemon_signal(&d, SIGTERM);
	each_request_has_its_attempt(record, d.db, "after the restart");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"),
	             KILL_JOBS);
	h_mock_stop(&m);
}

/*
 * Each interactive call runs the pump twice; before, each pump read the
 * lane's queue of batch jobs (a few SQL statements), however empty. A lane
 * whose queue was found empty is read again only when jobs may have come:
 * a batch stored after the calls is seen at once.
 */
Test(loop, a_lane_with_nothing_queued_is_not_read_for_each_call, .timeout = 90)
{
	static const char call[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,"
	                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	char dir[64], id[40], body[4096];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t before, after, t0;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	submit_n(&d, dir, "first", 5, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	/* The drain's last look, which finds the queue empty, may come after. */
	t0 = now_ms();
	do {
		before = queue_reads(&d);
		usleep(100 * 1000);
	} while (queue_reads(&d) != before && now_ms() - t0 < 5000);
	for (i = 0; i < 100; i++)
		cr_assert_eq(h_http(d.http_port, "POST", "/v1/chat/completions", call, body), 200,
		             "%s", body);
	after = queue_reads(&d);
	cr_assert_leq(after - before, 1, "100 calls read the empty queue %lld times",
	              (long long)(after - before));
	submit_n(&d, dir, "second", 5, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	cr_assert_gt(queue_reads(&d), after, "the batch stored after the calls was read");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * Before, each retention step (a thousand rows deleted, pages given back)
 * was a write transaction of the loop's: forgetting a 2,000-job batch had
 * the loop write its pages into the WAL. Now the writer thread does.
 */
Test(loop, retention_deletes_on_the_writer_thread, .timeout = 90)
{
	char dir[64], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t before, wrote, t0;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=256", "LLMQ_RETENTION=3s",
	               NULL);
	submit_n(&d, dir, "in", 2000, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 60));
	before = loop_wchar(&d);
	t0 = now_ms();
	while (h_sql_int(&d, "SELECT count(*) FROM batches") > 0 && now_ms() - t0 < 30000)
		usleep(100 * 1000);
	wrote = loop_wchar(&d) - before;
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs"), 0, "retention deleted the jobs");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0);
	fprintf(stderr, "the loop wrote %lld bytes while retention deleted 2,000 jobs\n",
	        (long long)wrote);
	cr_assert_lt(wrote, 256 * 1024, "the loop wrote %lld bytes while retention deleted",
	             (long long)wrote);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* /healthz every 100 ms for up to ms: whether it came to say want (its status). */
static int healthz_says(const struct daemon_proc *d, long want, const char *text, int ms)
{
	char body[4096];
	int64_t t0 = now_ms();

	do {
		if (h_http(d->http_port, "GET", "/healthz", NULL, body) == want &&
		    (!text || strstr(body, text)))
			return 1;
		usleep(100 * 1000);
	} while (now_ms() - t0 < ms);
	return 0;
}

/*
 * The once-a-second expiry is a write transaction: the writer's, so the
 * loop of an idle llmqd never waits for another program's lock; and it is
 * what notices one, which /healthz says, and says gone once let go.
 */
Test(loop, an_idle_llmqd_notices_another_programs_lock_off_the_loop, .timeout = 60)
{
	char dir[64];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	sqlite3 *db;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	cr_assert(healthz_says(&d, 200, NULL, 5000));
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	cr_assert(healthz_says(&d, 503, "locked by another program", 6000),
	          "an idle llmqd notices the lock");
	cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	cr_assert(healthz_says(&d, 200, NULL, 6000), "and its end");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
