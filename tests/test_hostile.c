/*
 * A hostile or unlucky host, against a real llmqd: clients that hold
 * connections, trickle, or never read; another program locking or deleting
 * the database; a connection dropped after a batch was sent; answers past
 * the size cap; credentials in a base URL. Each asserts what the daemon
 * does (others still served, memory bounded, nothing lost or doubled), not
 * how fast.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char out[1 << 20], err[1 << 16];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A read on fd gives up after ms instead of blocking the test for good. */
static void read_timeout(int fd, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* A ping on a fresh connection, answered within 5 s: its round trip in ms. */
static int64_t ping_ms(const struct daemon_proc *d)
{
	char line[512];
	int64_t t0 = now_ms();
	int fd = h_raw_connect(d->sock);

	read_timeout(fd, 5000);
	h_raw_send(fd, "{\"v\":1,\"op\":\"ping\"}\n");
	h_raw_line(fd, line, sizeof(line));
	close(fd);
	cr_assert(strstr(line, "\"ok\":true"), "ping answered \"%s\"", line);
	return now_ms() - t0;
}

/* GET path (or POST json when not NULL) on the daemon's HTTP face: the
 * status, and the body into body. */
static int http_req(const struct daemon_proc *d, const char *path, const char *json, char *body,
                    size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)d->http_port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static char buf[1 << 17];
	char req[1024];
	size_t have = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
	const char *b;

	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	read_timeout(fd, 5000);
	if (json)
		snprintf(req, sizeof(req),
		         "POST %s HTTP/1.0\r\nContent-Type: application/json\r\n"
		         "Content-Length: %zu\r\n\r\n%s",
		         path, strlen(json), json);
	else
		snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	h_raw_send(fd, req);
	while (have < sizeof(buf) - 1 && (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	close(fd);
	sscanf(buf, "HTTP/1.%*d %d", &status);
	b = strstr(buf, "\r\n\r\n");
	snprintf(body, len, "%s", b ? b + 4 : "");
	return status;
}

static int http_get(const struct daemon_proc *d, const char *path, char *body, size_t len)
{
	return http_req(d, path, NULL, body, len);
}

/* len raw bytes (NULs included) to the HTTP face: the status of the answer, 0 for none. */
static int http_raw(const struct daemon_proc *d, const char *bytes, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)d->http_port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char buf[4096];
	size_t have = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;

	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	read_timeout(fd, 5000);
	cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
	while (have < sizeof(buf) - 1 && (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	close(fd);
	sscanf(buf, "HTTP/1.%*d %d", &status);
	return status;
}

Test(hostile, a_nul_or_a_control_byte_in_a_request_head_is_a_400, .timeout = 60)
{
	/* Each with its length: the NULs are part of the request. */
#define RAW(s)                                                                                     \
	{                                                                                          \
		s, sizeof(s) - 1                                                                   \
	}
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
	    RAW("GET / HTTP/1.1\0\r\nHost: a\r\n\r\n"),
	    RAW("GET /healthz HTTP/1.1\r\nHost: a\0b\r\n\r\n"),
	    RAW("GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: \0\r\n\r\n"),
	    RAW("GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
	    RAW("GET /healthz HTTP/1.1\r\nHost: a\x01\r\n\r\n"),
	    RAW("GET /healthz HTTP/1.1\r\nHost: a\nX-B: smuggled\r\n\r\n"),
	};
#undef RAW
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], body[4096];
	size_t i;
	int status;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(http_raw(&d, bad[i].bytes, bad[i].len), 400, "request %zu", i);
		cr_assert_eq(waitpid(d.pid, &status, WNOHANG), 0,
		             "llmqd ended after request %zu (status 0x%x); see %s", i, status,
		             d.log);
	}
	/* The others are served as before. */
	cr_assert_eq(http_get(&d, "/healthz", body, sizeof(body)), 200, "%s", body);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "ping", NULL), 0, "%s", err);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(hostile, a_socket_directory_others_can_write_is_refused, .timeout = 30)
{
	char dir[64], cmd[1024], open_dir[128], log[160];
	static char text[8192];

	h_tmpdir(dir, sizeof(dir));
	snprintf(open_dir, sizeof(open_dir), "%s/open", dir);
	cr_assert_eq(mkdir(open_dir, 0700), 0);
	cr_assert_eq(chmod(open_dir, 0777), 0, "as a squatter leaves it");
	snprintf(log, sizeof(log), "%s/llmqd.log", dir);
	snprintf(cmd, sizeof(cmd),
	         "env -i PATH=/usr/bin:/bin LLMQ_HTTP_ADDR=off OPENAI_BASE_URL=http://127.0.0.1:9 "
	         "%s --socket %s/llmq.sock --db %s/llmq.db >%s 2>&1",
	         LLMQD_BIN, open_dir, dir, log);
	cr_assert_neq(system(cmd), 0, "llmqd must not listen where others can swap the socket");
	h_read_file(log, text, sizeof(text));
	cr_assert(strstr(text, "refusing to listen") && strstr(text, "writable by other users"),
	          "%s", text);
	cr_assert_eq(access(log, F_OK), 0);
	snprintf(cmd, sizeof(cmd), "%s/llmq.sock", open_dir);
	cr_assert_neq(access(cmd, F_OK), 0, "no socket was left there");
}

Test(hostile, one_user_cannot_hold_every_connection, .timeout = 60)
{
	char dir[64], line[512];
	struct daemon_proc d = {0};
	int fds[16], fd, i;

	h_tmpdir(dir, sizeof(dir));
	h_daemon_start(&d, dir, NULL, "LLMQ_CLIENT_TIMEOUT=2s", NULL);
	/* Sixteen connections, each served once and then held idle. */
	for (i = 0; i < 16; i++) {
		fds[i] = h_raw_connect(d.sock);
		h_raw_send(fds[i], "{\"v\":1,\"op\":\"ping\"}\n");
		h_raw_expect(fds[i], "\"ok\":true");
	}
	fd = h_raw_connect(d.sock);
	read_timeout(fd, 5000);
	h_raw_line(fd, line, sizeof(line));
	close(fd);
	cr_assert(strstr(line, "BUSY") && strstr(line, "the most one user may hold"), "%s", line);
	/* The deadline: an idle connection is closed, however patient its owner. */
	read_timeout(fds[0], 10000);
	cr_assert_eq(read(fds[0], line, sizeof(line)), 0, "closed by its deadline");
	for (i = 0; i < 16; i++)
		close(fds[i]);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "ping", NULL), 0);
	h_daemon_signal(&d, SIGTERM);
}

Test(hostile, a_trickling_submit_is_cut_at_its_deadline, .timeout = 60)
{
	char dir[64], file[128], line[512];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	int fd, a, b, c, i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, "LLMQ_CLIENT_TIMEOUT=2s", NULL);
	fd = h_raw_connect(d.sock);
	read_timeout(fd, 10000);
	h_raw_send(fd, "{\"v\":1,\"op\":\"submit\",\"lines\":50}\n");
	/* One line every 0.7 s: each read is quick, the whole is too slow. */
	for (i = 0; i < 4; i++) {
		static const char l[] = "{\"custom_id\":\"t\",\"method\":\"POST\",\"url\":"
		                        "\"/v1/embeddings\",\"body\":{\"model\":\"m\",\"input\":"
		                        "\"x\"}}\n";

		if (send(fd, l, sizeof(l) - 1, MSG_NOSIGNAL) < 0)
			break; /* already cut */
		usleep(700 * 1000);
	}
	h_raw_line(fd, line, sizeof(line));
	cr_assert(strstr(line, "TIMEOUT") && strstr(line, "nothing was stored"), "%s", line);
	cr_assert_eq(read(fd, line, sizeof(line)), 0, "and the connection is closed");
	close(fd);

	/* Submits at once per user: two may be in; the third is told, the others' share kept. */
	a = h_raw_connect(d.sock);
	b = h_raw_connect(d.sock);
	c = h_raw_connect(d.sock);
	read_timeout(c, 5000);
	h_raw_send(a, "{\"v\":1,\"op\":\"submit\",\"lines\":5}\n");
	h_raw_send(b, "{\"v\":1,\"op\":\"submit\",\"lines\":5}\n");
	usleep(300 * 1000); /* both headers taken */
	h_raw_send(c, "{\"v\":1,\"op\":\"submit\",\"lines\":5}\n");
	h_raw_line(c, line, sizeof(line));
	cr_assert(strstr(line, "BUSY") && strstr(line, "already sending 2"), "%s", line);
	close(a);
	close(b);
	close(c);
	snprintf(file, sizeof(file), "%s/ok.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 5);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 0, "%s",
	             err);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 1, "only the whole one");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(hostile, unread_answers_do_not_grow_memory, .timeout = 120)
{
	char dir[64], file[128], id[40], req[128];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	long before, after, peak = 0;
	size_t sent = 0, len;
	int fd, i, stuck = 0;
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0",
	               "LLMQ_CLIENT_TIMEOUT=3s", NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 256, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 60);
	json_object_put(b);
	before = h_rss_kib(&d, NULL);

	/* Each request asks for a page of ~100 KB; 20,000 of them, never read. */
	fd = h_raw_connect(d.sock);
	cr_assert_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	len = (size_t)snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"results\",\"batch\":\"%s\"}\n",
	                       id);
	for (i = 0; i < 20000 && stuck < 100; i++) {
		ssize_t n = send(fd, req, len, MSG_NOSIGNAL);

		if (n == (ssize_t)len) {
			sent++;
			stuck = 0;
			continue;
		}
		cr_assert(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s",
		          strerror(errno));
		i--;
		stuck++;
		usleep(20 * 1000);
	}
	/* Others are served all the while. */
	ping_ms(&d);
	after = h_rss_kib(&d, &peak);
	fprintf(stderr,
	        "unread answers: %zu of 20000 requests taken, daemon RSS %ld KiB before, %ld "
	        "after, peak %ld\n",
	        sent, before, after, peak);
	cr_assert_lt(sent, 20000, "llmqd stopped reading a client that reads nothing");
	cr_assert_lt(after - before, 64 * 1024, "memory bounded: %ld KiB more", after - before);
	/* And the stuck client is dropped once its output stops moving. */
	cr_assert_eq(fcntl(fd, F_SETFL, 0), 0);
	for (i = 0; i < 100; i++) {
		if (send(fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
			break;
		usleep(100 * 1000);
	}
	cr_assert_lt(i, 100, "the connection was closed");
	close(fd);
	ping_ms(&d);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* A submit through llmq in a child, for the parent to wait on later. */
static pid_t submit_in_child(const struct daemon_proc *d, const char *file)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int rc = h_llmq(d, NULL, 0, NULL, 0, "submit", file, NULL);

		_exit(rc);
	}
	return pid;
}

Test(hostile, an_outside_lock_does_not_freeze_the_loop, .timeout = 120)
{
	char dir[64], file[128], file2[128], body[4096], id[40];
	static char big[1 << 16];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	sqlite3 *db;
	int64_t worst = 0, t, t0;
	int status, n = 0;
	json_object *o;
	pid_t child;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0", NULL);
	snprintf(file, sizeof(file), "%s/a.jsonl", dir);
	h_write_batch(file, 200, "gpt-4o-mini", 5);
	snprintf(file2, sizeof(file2), "%s/b.jsonl", dir);
	h_write_batch(file2, 20, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));

	/* As a person would: sqlite3 on the live database (its .timeout set: llmqd
	 * may be writing), a transaction left open. */
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	child = submit_in_child(&d, file2);
	t0 = now_ms();
	while (now_ms() - t0 < 4000) {
		t = ping_ms(&d);
		worst = t > worst ? t : worst;
		n++;
		usleep(50 * 1000);
	}
	cr_assert_eq(http_get(&d, "/healthz", body, sizeof(body)), 503, "%s", body);
	cr_assert(strstr(body, "locked by another program"), "%s", body);
	cr_assert_eq(http_get(&d, "/metrics", big, sizeof(big)), 200);
	cr_assert(strstr(big, "\nllmq_database_locked 1\n"), "%s", big);
	/* Interactive calls go on: their records wait with the outcomes. */
	cr_assert_eq(http_req(&d, "/v1/chat/completions",
	                      "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[{\"role\":"
	                      "\"user\",\"content\":\"during the lock\"}]}",
	                      body, sizeof(body)),
	             200, "%s", body);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "--json", "status", NULL), 0,
	             "status answers from a locked database: %s", err);
	o = json_tokener_parse(out);
	cr_assert_eq(h_jint(o, "database.ok"), 0, "%s", out);
	json_object_put(o);
	cr_assert_eq(waitpid(child, &status, WNOHANG), 0, "the submit waits for the lock");
	fprintf(stderr, "outside lock: %d pings, the slowest %lld ms\n", n, (long long)worst);
	cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the waiting submit got in");
	json_object_put(h_wait_for(&d, id, h_batch_completed, 60));
	/* Nothing lost, nothing repeated: one batch each, one answer per job. */
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 2);
	t0 = now_ms();
	while (h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") < 220 &&
	       now_ms() - t0 < 30000)
		usleep(100 * 1000);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), 220);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts"), 220, "no job sent twice");
	t0 = now_ms();
	while (h_sql_int(&d, "SELECT count(*) FROM calls") < 1 && now_ms() - t0 < 5000)
		usleep(100 * 1000);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls"), 1, "the call's record, once");
	cr_assert_eq(http_get(&d, "/healthz", body, sizeof(body)), 200, "%s", body);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(hostile, a_deleted_database_refuses_new_batches, .timeout = 60)
{
	char dir[64], file[128], path[1024];
	static char log[1 << 16];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *o;
	int i, ok = 1;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 5);
	snprintf(path, sizeof(path), "rm -f %s %s-wal %s-shm", d.db, d.db, d.db);
	cr_assert_eq(system(path), 0);
	for (i = 0; i < 50 && ok; i++) {
		usleep(100 * 1000);
		cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "--json", "status", NULL), 0);
		o = json_tokener_parse(out);
		ok = (int)h_jint(o, "database.ok");
		json_object_put(o);
	}
	cr_assert_eq(ok, 0, "status says the database is gone: %s", out);
	cr_assert(strstr(out, "deleted"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), NULL, 0, "status", NULL), 0);
	cr_assert(strstr(out, "database: the database file"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 75);
	cr_assert(strstr(err, "deleted") && strstr(err, "restart llmqd"), "%s", err);
	h_read_file(d.log, log, sizeof(log));
	cr_assert(strstr(log, "was deleted while llmqd ran"), "%s", log);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(hostile, a_repeated_submit_is_answered_with_the_stored_batch, .timeout = 60)
{
	char dir[64], file[128], id[40], id2[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 5, "gpt-4o-mini", 5);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", "--idempotency-key",
	                    "nightly-2026-11-29", file, NULL),
	             0, "%s", err);
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(out, "\n"), out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", "--idempotency-key",
	                    "nightly-2026-11-29", file, NULL),
	             0, "%s", err);
	snprintf(id2, sizeof(id2), "%.*s", (int)strcspn(out, "\n"), out);
	cr_assert_str_eq(id, id2, "the repeat answers with the stored batch");
	cr_assert(strstr(err, "already stored"), "%s", err);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 1);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs"), 5);
	/* Without a key, each submit is its own batch (a fresh key each time). */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 0);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 3);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", "--idempotency-key",
	                    "no spaces", file, NULL),
	             64);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* Reads a submit to its last line, then hangs up without an answer. */
static void swallow_and_hang_up(int lfd, int lines)
{
	char buf[4096];
	int fd = accept(lfd, NULL, NULL), seen = 0, i;
	ssize_t n;

	while (fd >= 0 && seen < lines + 1 && (n = read(fd, buf, sizeof(buf))) > 0)
		for (i = 0; i < n; i++)
			seen += buf[i] == '\n';
	_exit(fd >= 0 && seen == lines + 1 ? 0 : 1);
}

Test(hostile, a_connection_dropped_after_the_batch_is_unknown_not_lost, .timeout = 30)
{
	char dir[64], file[128];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct daemon_proc fake = {0};
	int lfd, status;
	pid_t pid;

	h_tmpdir(dir, sizeof(dir));
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 7, "gpt-4o-mini", 5);
	snprintf(fake.sock, sizeof(fake.sock), "%s/llmq.sock", dir);
	cr_assert_lt(strlen(fake.sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, fake.sock, strlen(fake.sock) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		swallow_and_hang_up(lfd, 7);
	close(lfd);
	cr_assert_eq(h_llmq(&fake, out, sizeof(out), err, sizeof(err), "submit", file, NULL), 75,
	             "%s", err);
	cr_assert(strstr(err, "unknown whether it was stored") && strstr(err, "llmq list") &&
	              strstr(err, "--idempotency-key"),
	          "%s", err);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the whole batch was sent");
}

Test(hostile, an_answer_past_the_cap_fails_once, .timeout = 90)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	json_object *s;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 1, "huge", 5);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 60));
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'failed' AND "
	                           "error_code = 'response_too_large'"),
	             1);
	s = h_mock_stats(&m);
	cr_assert_eq(h_jint(s, "requests"), 1, "sent (and billed) once, not retried");
	json_object_put(s);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(hostile, credentials_in_a_base_url_are_never_shown, .timeout = 60)
{
	char dir[64], file[128], id[40], url[128];
	static char log[1 << 16];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	snprintf(url, sizeof(url), "OPENAI_BASE_URL=http://llmq:pa55w0rd-x@127.0.0.1:%d/v1",
	         m.port);
	h_daemon_start(&d, dir, &m, url, NULL);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 2, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "--json", "status", NULL), 0);
	cr_assert_null(strstr(out, "pa55w0rd"), "%s", out);
	cr_assert(strstr(out, "http://***@127.0.0.1"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", NULL), 0);
	cr_assert_null(strstr(out, "pa55w0rd"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log, sizeof(log));
	cr_assert_null(strstr(log, "pa55w0rd"), "%s", log);
	h_mock_stop(&m);
}

Test(hostile, an_outcome_the_database_refuses_for_good_holds_back_no_other, .timeout = 60)
{
	char dir[64], file[128], id[40];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	sqlite3 *db;
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", NULL);
	/* Someone's trigger refuses one job's answer, for good. */
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db,
	                          "CREATE TRIGGER refuse_one BEFORE UPDATE OF response ON jobs "
	                          "WHEN NEW.custom_id = 'req-3' AND NEW.response IS NOT NULL "
	                          "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END",
	                          NULL, NULL, NULL),
	             SQLITE_OK);
	sqlite3_close(db);
	snprintf(file, sizeof(file), "%s/in.jsonl", dir);
	h_write_batch(file, 10, "gpt-4o-mini", 5);
	h_submit(&d, file, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 9, "the others were not held back");
	cr_assert_eq(h_jint(b, "counts.failed"), 1);
	json_object_put(b);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE custom_id = 'req-3' AND "
	                           "error_code = 'internal_error'"),
	             1);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* The file's lines holding no byte the test looks for: 1 when none has it. */
static int no_line_starts_with(const char *path, const char *prefix)
{
	char line[4096];
	FILE *f = fopen(path, "r");
	int ok = 1;

	cr_assert_not_null(f, "%s", path);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			ok = 0;
	fclose(f);
	return ok;
}

/*
 * A name is a caller's text shown to others - root's llmq status and list,
 * the log: a file named "ev\e]0;PWNED\a\e[2J" retitled and cleared root's
 * terminal, and a name with an LF forged a whole log line. Names are
 * cleaned when stored, the log escapes every line, and the client escapes
 * what it prints, even from rows stored before.
 */
Test(hostile, a_name_cannot_reach_a_terminal_or_forge_a_log_line, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], in[128], id[64], req[2048], body[1024];
	static const char evil[] = "ev\x1b]0;PWNED\x07\x1b[2J\xc2\x9b"
	                           "31m";
	sqlite3 *db;
	int n;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	snprintf(in, sizeof(in), "%s/in.jsonl", dir);
	h_write_batch(in, 2, "gpt-4o-mini", 10);
	/* Over the socket, as --name. */
	cr_assert_eq(
	    h_llmq(&d, id, sizeof(id), err, sizeof(err), "submit", "--name", evil, in, NULL), 0,
	    "%s", err);
	/* Over HTTP, as an uploaded file's name, with an LF that would start a log line. */
	n = snprintf(body, sizeof(body),
	             "--B0undary\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
	             "batch\r\n--B0undary\r\nContent-Disposition: form-data; name=\"file\"; "
	             "filename=\"x\nFORGED llmqd[info]: root logged in%s\"\r\n\r\n"
	             "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	             "\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":[]}}\n\r\n--B0undary--\r\n",
	             evil);
	snprintf(req, sizeof(req),
	         "POST /v1/files HTTP/1.0\r\nContent-Type: multipart/form-data; boundary=B0undary"
	         "\r\nContent-Length: %d\r\n\r\n%s",
	         n, body);
	cr_assert_eq(http_raw(&d, req, strlen(req)), 200);
	cr_assert(no_line_starts_with(d.log, "FORGED"), "a line of the log was forged: %s", d.log);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches WHERE instr(input_name, "
	                           "char(27)) OR instr(input_name, char(10))"),
	             0, "names are stored clean");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM files WHERE instr(filename, char(27)) "
	                           "OR instr(filename, char(10))"),
	             0, "file names are stored clean");
	/* A row written before names were cleaned: the client escapes what it prints. */
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db,
	                          "UPDATE batches SET input_name = 'old' || char(27) || "
	                          "']0;PWNED' || char(7)",
	                          NULL, NULL, NULL),
	             SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
	id[strcspn(id, "\n")] = '\0';
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "list", NULL), 0, "%s", err);
	cr_assert(strstr(out, "old\\x1b]0;PWNED\\x07"), "%s", out);
	cr_assert(!strchr(out, '\x1b') && !strchr(out, '\x07'), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", NULL), 0, "%s", err);
	cr_assert(!strchr(out, '\x1b') && !strchr(out, '\x07'), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0, "%s",
	             err);
	cr_assert(!strchr(out, '\x1b') && !strchr(out, '\x07'), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* ---- a full disk ---- */

/* The small filesystem the database lives on, and the llmqd using it: undone by fini. */
static char disk_dir[256];
static pid_t disk_daemon;

static void disk_fini(void)
{
	int status;

	if (disk_daemon > 0) {
		kill(disk_daemon, SIGKILL);
		waitpid(disk_daemon, &status, 0);
		disk_daemon = 0;
	}
	if (!disk_dir[0])
		return;
	if (umount(disk_dir) < 0 && errno != EINVAL)
		umount2(disk_dir, MNT_DETACH);
	rmdir(disk_dir);
	disk_dir[0] = '\0';
}

/* Raw bytes to the HTTP face: the status; the answer's body into body. */
static int http_send(const struct daemon_proc *d, const char *bytes, size_t len, char *body,
                     size_t blen)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)d->http_port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static char buf[1 << 17];
	size_t have = 0, off = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
	const char *b;

	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	read_timeout(fd, 10000);
	while (off < len) {
		n = send(fd, bytes + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break; /* refused at the head: the answer is there to read */
		off += (size_t)n;
	}
	while (have < sizeof(buf) - 1 && (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	close(fd);
	sscanf(buf, "HTTP/1.%*d %d", &status);
	b = strstr(buf, "\r\n\r\n");
	snprintf(body, blen, "%s", b ? b + 4 : "");
	return status;
}

/* Upload lines copies of a chat request, padded to about pad bytes each: the status, the id. */
static int disk_upload(const struct daemon_proc *d, int lines, int pad, char *id, size_t idlen)
{
	size_t cap = (size_t)lines * ((size_t)pad + 256) + 1024, n = 0, head;
	char *form = malloc(cap), *req = malloc(cap + 512), body[4096];
	json_object *o;
	int i, status;

	cr_assert(form && req);
	n += (size_t)snprintf(
	    form + n, cap - n,
	    "--B0undary\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
	    "batch\r\n--B0undary\r\nContent-Disposition: form-data; "
	    "name=\"file\"; filename=\"in.jsonl\"\r\n\r\n");
	for (i = 0; i < lines; i++) {
		n += (size_t)snprintf(
		    form + n, cap - n,
		    "{\"custom_id\":\"r%d\",\"method\":\"POST\",\"url\":\"/v1/chat/"
		    "completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"max_tokens\":"
		    "5,\"messages\":[{\"role\":\"user\",\"content\":\"",
		    i);
		memset(form + n, 'p', (size_t)pad);
		n += (size_t)pad;
		n += (size_t)snprintf(form + n, cap - n, "\"}]}}\n");
	}
	n += (size_t)snprintf(form + n, cap - n, "\r\n--B0undary--\r\n");
	head = (size_t)snprintf(req, 512,
	                        "POST /v1/files HTTP/1.0\r\nContent-Type: multipart/form-data; "
	                        "boundary=B0undary\r\nContent-Length: %zu\r\n\r\n",
	                        n);
	memcpy(req + head, form, n);
	status = http_send(d, req, head + n, body, sizeof(body));
	if (id) {
		id[0] = '\0';
		o = json_tokener_parse(body);
		if (o && h_jstr(o, "id"))
			snprintf(id, idlen, "%s", h_jstr(o, "id"));
		json_object_put(o);
	}
	if (status != 200 && id) { /* the answer, for the assertion's message */
		size_t k = strlen(body) < idlen - 1 ? strlen(body) : idlen - 1;

		memcpy(id, body, k);
		id[k] = '\0';
	}
	free(form);
	free(req);
	return status;
}

/* Write to path until the filesystem is full; the bytes written. */
static long fill(const char *path)
{
	static char block[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	long total = 0;
	ssize_t n;

	cr_assert_geq(fd, 0);
	memset(block, 'f', sizeof(block));
	while ((n = write(fd, block, sizeof(block))) > 0)
		total += n;
	while ((n = write(fd, block, 512)) > 0) /* the last pages */
		total += n;
	cr_assert(n < 0 && errno == ENOSPC, "%s", strerror(errno));
	close(fd);
	return total;
}

/* Poll /readyz until its disk state is want (2 s of health checks at most). */
static void wait_disk_state(const struct daemon_proc *d, const char *want, char *body, size_t len)
{
	char needle[64];
	int i;

	snprintf(needle, sizeof(needle), "\"disk\":{\"state\":\"%s\"", want);
	for (i = 0; i < 40; i++) {
		http_get(d, "/readyz", body, len);
		if (strstr(body, needle) && strstr(body, "min_free_bytes"))
			return;
		usleep(100000);
	}
	cr_assert_fail("/readyz never said the disk is %s: %s", want, body);
}

/*
 * On a 4 MiB filesystem filled to the last byte: new uploads and batches
 * are refused (507, the socket's STORAGE, exit 75) and /readyz and status
 * say why; reads go on; a file is deleted (its row went first and failed);
 * llmqd starts again on the full disk (it refused to open the database) and
 * serves reads and deletes, also when the WAL's index file is gone; and
 * once there is room, uploads are taken again.
 */
Test(hostile, a_full_disk_refuses_new_work_and_keeps_reads_and_deletes, .timeout = 180,
     .fini = disk_fini)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], db[320], env_db[340], in[128], filler[320], shm[340];
	char keep[64], doomed[64], batch[64], body[8192], req[512], path[128];
	static char big[1 << 17];
	int status;

	h_tmpdir(dir, sizeof(dir));
	snprintf(disk_dir, sizeof(disk_dir), "%s/disk", dir);
	cr_assert_eq(mkdir(disk_dir, 0700), 0);
	if (mount("tmpfs", disk_dir, "tmpfs", 0, "size=4m,mode=0700") < 0) {
		int e = errno;

		rmdir(disk_dir);
		disk_dir[0] = '\0';
		cr_skip_test("cannot mount a 4 MiB tmpfs to fill (%s): this test needs root with "
		             "CAP_SYS_ADMIN, as in CI",
		             strerror(e));
	}
	snprintf(db, sizeof(db), "%s/llmq.db", disk_dir);
	snprintf(env_db, sizeof(env_db), "LLMQ_DB=%s", db);
	snprintf(filler, sizeof(filler), "%s/filler", disk_dir);
	snprintf(shm, sizeof(shm), "%s-shm", db);
	snprintf(in, sizeof(in), "%s/in.jsonl", dir);
	h_write_batch(in, 2, "gpt-4o-mini", 5);
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, env_db, "LLMQ_DISK_MIN_FREE_MB=1", NULL);
	disk_daemon = d.pid;
	cr_assert_eq(disk_upload(&d, 4, 100, keep, sizeof(keep)), 200, "%s", keep);
	cr_assert_eq(disk_upload(&d, 8, 60000, doomed, sizeof(doomed)), 200, "%s", doomed);
	snprintf(req, sizeof(req),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\"}",
	         keep);
	cr_assert_eq(http_req(&d, "/v1/batches", req, body, sizeof(body)), 200, "%s", body);
	{
		json_object *o = json_tokener_parse(body);

		snprintf(batch, sizeof(batch), "%s", h_jstr(o, "id"));
		json_object_put(o);
	}
	json_object_put(h_wait_for(&d, batch, h_batch_completed, 30));
	wait_disk_state(&d, "ok", body, sizeof(body));

	/* Full. */
	fill(filler);
	wait_disk_state(&d, "low", body, sizeof(body));
	cr_assert(strstr(body, "\"status\":\"not_ready\"") && strstr(body, "disk_min_free_mb"),
	          "/readyz says why: %s", body);
	status = disk_upload(&d, 2, 10, big, sizeof(big));
	cr_assert_eq(status, 507, "%s", big);
	cr_assert(strstr(big, "insufficient_storage") && strstr(big, "disk_min_free_mb"), "%s",
	          big);
	cr_assert_eq(http_req(&d, "/v1/batches", req, body, sizeof(body)), 507, "%s", body);
	cr_assert(strstr(body, "insufficient_storage"), "%s", body);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "submit", in, NULL), 75,
	             "a temporary refusal: %s", err);
	cr_assert(strstr(err, "disk_min_free_mb"), "%s", err);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", NULL), 0, "%s", err);
	cr_assert(strstr(out, "disk_min_free_mb"), "llmq status says why: %s", out);
	/* Reads go on. */
	cr_assert_eq(http_get(&d, "/v1/files", big, sizeof(big)), 200, "%s", big);
	cr_assert(strstr(big, keep) && strstr(big, doomed), "%s", big);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "results", batch, NULL), 0,
	             "%s", err);
	cr_assert(strstr(out, "\"custom_id\":\"r3\""), "%s", out);
	/* A delete works, and frees the file's room. */
	snprintf(req, sizeof(req), "DELETE /v1/files/%s HTTP/1.0\r\n\r\n", doomed);
	cr_assert_eq(http_send(&d, req, strlen(req), body, sizeof(body)), 200, "%s", body);
	cr_assert(strstr(body, "\"deleted\":true"), "%s", body);
	snprintf(path, sizeof(path), "/v1/files/%s", doomed);
	cr_assert_eq(http_get(&d, path, body, sizeof(body)), 404, "%s", body);
	fill(filler); /* full again, to the last byte */

	/* A restart on the full disk: reads and deletes are served. */
	h_daemon_signal(&d, SIGTERM);
	disk_daemon = 0;
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM files"), 1, "the deleted file's row went");
	fill(filler);
	h_daemon_start(&d, dir, &m, H_FAST, env_db, "LLMQ_DISK_MIN_FREE_MB=1", NULL);
	disk_daemon = d.pid;
	cr_assert_eq(http_get(&d, "/v1/files", big, sizeof(big)), 200, "%s", big);
	cr_assert(strstr(big, keep), "%s", big);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", batch, NULL), 0, "%s",
	             err);
	h_daemon_signal(&d, SIGTERM);
	disk_daemon = 0;
	/* Again without the WAL's index file, which needs room to be made. */
	unlink(shm);
	fill(filler);
	h_daemon_start(&d, dir, &m, H_FAST, env_db, "LLMQ_DISK_MIN_FREE_MB=1", NULL);
	disk_daemon = d.pid;
	cr_assert_eq(http_get(&d, "/v1/files", big, sizeof(big)), 200, "%s", big);
	cr_assert(strstr(big, keep), "%s", big);
	snprintf(req, sizeof(req), "DELETE /v1/files/%s HTTP/1.0\r\n\r\n", keep);
	cr_assert_eq(http_send(&d, req, strlen(req), body, sizeof(body)), 200, "%s", body);
	cr_assert_eq(http_get(&d, "/v1/files", big, sizeof(big)), 200, "%s", big);
	cr_assert(!strstr(big, keep), "%s", big);
	/* Room again: taken again. */
	cr_assert_eq(unlink(filler), 0);
	wait_disk_state(&d, "ok", body, sizeof(body));
	cr_assert_eq(disk_upload(&d, 2, 10, keep, sizeof(keep)), 200, "%s", keep);
	h_daemon_signal(&d, SIGTERM);
	disk_daemon = 0;
	h_mock_stop(&m);
	disk_fini(); /* before the test's folder is removed; fini does it when a test fails */
}
