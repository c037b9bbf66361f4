/*
 * test_writer.c - the store's writer thread, against real llmqd processes:
 * writes leave the loop for a thread of their own, an outcome the daemon
 * has reported survives a kill -9, the loop answers while the writer waits
 * for another program's lock, a stop writes what was queued, and a call
 * through the HTTP face never waits for the database's write lock.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char out[1 << 20];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether one of the daemon's threads is named name (/proc/PID/task/TID/comm). */
static int has_thread(const struct daemon_proc *d, const char *name)
{
	char path[384], comm[64];
	struct dirent *e;
	int found = 0;
	DIR *dir;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)d->pid);
	dir = opendir(path);
	cr_assert(dir, "cannot list %s", path);
	while (!found && (e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)d->pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f))
			found = strncmp(comm, name, strlen(name)) == 0;
		fclose(f);
	}
	closedir(dir);
	return found;
}

/* A ping on the socket: its round trip in ms (the answer must be ok). */
static int64_t ping_ms(const struct daemon_proc *d)
{
	char line[512];
	int64_t t0 = now_ms();
	int fd = h_raw_connect(d->sock);

	h_raw_send(fd, "{\"v\":1,\"op\":\"ping\"}\n");
	h_raw_line(fd, line, sizeof(line));
	close(fd);
	cr_assert(strstr(line, "\"ok\":true"), "ping answered \"%s\"", line);
	return now_ms() - t0;
}

/* How many of batch id's jobs `llmq status` reports succeeded. */
static int64_t reported_succeeded(const struct daemon_proc *d, const char *id)
{
	json_object *o;
	int64_t n;

	cr_assert_eq(h_llmq(d, out, sizeof(out), NULL, 0, "--json", "status", id, NULL), 0);
	o = json_tokener_parse(out);
	cr_assert(o, "status is JSON: %s", out);
	n = h_jint(o, "batch.counts.succeeded");
	json_object_put(o);
	return n;
}

Test(writer, outcomes_are_written_by_a_thread_of_their_own, .timeout = 60)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	cr_assert(has_thread(&d, "llmqd-writer"), "llmqd runs its writer thread");
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 20, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), 20);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(writer, an_outcome_reported_survives_a_kill_9, .timeout = 90)
{
	char dir[64], file[128], id[40], sql[256];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t seen = 0, t0;
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t stored = -1;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "5", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 2000, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	/* Under load: kill it the moment it has reported some outcomes. */
	t0 = now_ms();
	while ((seen = reported_succeeded(&d, id)) < 100 && now_ms() - t0 < 30000)
		usleep(2 * 1000);
	h_daemon_signal(&d, SIGKILL);
	cr_assert_geq(seen, 100, "the batch made progress: %lld; see %s", (long long)seen, d.log);
	cr_assert_lt(seen, 2000, "killed under load, not after the end");
	/* What the daemon reported is in the file, the WAL included. */
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM jobs WHERE batch_id = '%s' AND state = 'succeeded' AND "
	         "response IS NOT NULL",
	         id);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s",
	             sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		stored = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	cr_assert_geq(stored, seen, "%lld outcomes reported, %lld stored", (long long)seen,
	              (long long)stored);
	/* And a restart ends the batch with each job's answer once. */
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 60));
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), 2000);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(writer, the_loop_answers_while_the_writer_waits_for_a_lock, .timeout = 120)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t worst = 0, t, t0, before;
	sqlite3 *db;
	int n = 0;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 100, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	/* The first launches' record may be the writer's transaction just now:
	 * the other program waits for it, as sqlite3 with a timeout would. */
	cr_assert_eq(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	before = reported_succeeded(&d, id);
	/* The jobs in flight answer; their outcomes wait for the lock, the loop does not. */
	t0 = now_ms();
	while (now_ms() - t0 < 3000) {
		t = ping_ms(&d);
		worst = t > worst ? t : worst;
		n++;
		usleep(20 * 1000);
	}
	cr_assert(has_thread(&d, "llmqd-writer"));
	cr_assert_eq(reported_succeeded(&d, id), before, "nothing written under the lock");
	cr_assert_lt(worst, 500, "%d pings, the slowest %lld ms", n, (long long)worst);
	fprintf(stderr, "writer locked out: %d pings, the slowest %lld ms\n", n, (long long)worst);
	cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 60));
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), 100);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts"), 100, "no job sent twice");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(writer, a_stop_writes_what_the_writer_was_handed, .timeout = 90)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t t0;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "2", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 3000, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	t0 = now_ms();
	while (reported_succeeded(&d, id) < 200 && now_ms() - t0 < 30000)
		usleep(5 * 1000);
	/* Mid-drain: outcomes queued and in the writer's hands as it stops. */
	h_daemon_signal(&d, SIGTERM);
	/* Every try is closed: answered ones with their outcome, the rest interrupted. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'running'"), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE ended_at IS NULL"), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"),
	             h_sql_int(&d, "SELECT count(*) FROM attempts WHERE outcome = 'succeeded'"));
	h_mock_stop(&m);
}

Test(writer, the_loop_does_not_take_the_writer_for_another_program, .timeout = 120)
{
	static char log[8 << 20];
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	const char *first;
	sqlite3 *db;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=256", NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 20000, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	/* A backlog the writer then writes group after group, while the loop
	 * records launches between them: their locks meet, nobody else's. */
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK, "%s",
	             sqlite3_errmsg(db));
	usleep(3000 * 1000);
	cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	usleep(2500 * 1000);
	h_read_file(d.log, log, sizeof(log));
	cr_assert(strstr(log, "takes writes again"), "the outside lock was seen and let go: %s",
	          log);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 90));
	h_read_file(d.log, log, sizeof(log));
	/* Once: for the outside lock alone. */
	first = strstr(log, "locked by another program");
	cr_assert(first, "%s", log);
	cr_assert_null(strstr(first + 1, "locked by another program"),
	               "the writer taken for another program: %s", log);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), 20000);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * A call launches no batch job: its pump takes no write lock, so another
 * program's (or the writer's) transaction does not hold it back. Before,
 * each pump began a write transaction, and one that met the lock waited
 * ten 1 ms steps of the busy handler before going on without it.
 */
Test(writer, a_call_does_not_wait_for_the_write_lock, .timeout = 120)
{
	static const char call[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,"
	                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	char dir[64], body[4096];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int64_t t0, took[8];
	int i, quick = 0;
	sqlite3 *db;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	cr_assert_eq(h_http(d.http_port, "POST", "/v1/chat/completions", call, body), 200, "%s",
	             body);
	for (i = 0; i < 8; i++) {
		cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
		cr_assert_eq(sqlite3_busy_timeout(db, 5000), SQLITE_OK); /* llmqd may be writing */
		cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK, "%s",
		             sqlite3_errmsg(db));
		t0 = now_ms();
		cr_assert_eq(h_http(d.http_port, "POST", "/v1/chat/completions", call, body), 200,
		             "%s", body);
		took[i] = now_ms() - t0;
		quick += took[i] < 10;
		cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
		/* Its once-a-second tick writes again: the lock is forgotten. */
		usleep(1200 * 1000);
	}
	fprintf(stderr, "calls under an outside lock: %lld %lld %lld %lld %lld %lld %lld %lld ms\n",
	        (long long)took[0], (long long)took[1], (long long)took[2], (long long)took[3],
	        (long long)took[4], (long long)took[5], (long long)took[6], (long long)took[7]);
	/* Held back, none could be: each waited ten 1 ms steps. A loaded machine
	 * may slow a few of them for its own reasons: three of eight suffice. */
	cr_assert_gt(quick, 2, "%d of 8 calls answered in under 10 ms", quick);
	/* Their records wait for the lock, then all come in. */
	t0 = now_ms();
	while (h_sql_int(&d, "SELECT count(*) FROM calls") < 9 && now_ms() - t0 < 10000)
		usleep(100 * 1000);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls"), 9);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
