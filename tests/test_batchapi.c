/*
 * The Batch API's files and batches against a real llmqd, spoken to in raw
 * HTTP: kill -9 during an upload and during a run, an upload that stops
 * coming, the per-user cap on HTTP connections, a pipelined and an
 * Expect: 100-continue request on the HTTP face's own server, a batch
 * whose bodies are read again from its file.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sqlite3.h>

#include "harness.h"

#define BOUNDARY "llmqTestForm42"

static int tcp_connect(int port)
{
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* Everything until the peer closes, or timeout_ms of silence. */
static size_t read_all(int fd, char *buf, size_t len, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	size_t got = 0;
	ssize_t n;

	while (got + 1 < len && poll(&p, 1, timeout_ms) == 1) {
		n = recv(fd, buf + got, len - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return got;
}

/*
 * One request on its own connection (Connection: close); the status, the
 * answer in buf: its head too when keep_head, else its body alone.
 */
/* An Authorization header's value http_ex() sends when set (a token of the tokens file). */
static const char *auth;

/* Waits up to wait_ms for the whole answer (an answer that waits for a lock takes longer). */
static int http_ex(int port, const char *method, const char *path, const char *ctype,
                   const char *body, size_t blen, char *buf, size_t len, int keep_head, int wait_ms)
{
	char head[1024];
	int fd = tcp_connect(port), status = 0;
	char *b;

	snprintf(head, sizeof(head),
	         "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: %s\r\n"
	         "Content-Length: %zu\r\n%s%s%s\r\n",
	         method, path, ctype ? ctype : "application/json", blen,
	         auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
	send_all(fd, head, strlen(head));
	if (blen)
		send_all(fd, body, blen);
	read_all(fd, buf, len, wait_ms);
	close(fd);
	sscanf(buf, "HTTP/1.1 %d", &status);
	b = strstr(buf, "\r\n\r\n");
	if (b && !keep_head)
		memmove(buf, b + 4, strlen(b + 4) + 1);
	return status;
}

static int http(int port, const char *method, const char *path, const char *ctype, const char *body,
                size_t blen, char *buf, size_t len)
{
	return http_ex(port, method, path, ctype, body, blen, buf, len, 0, 10000);
}

/* The multipart form of an upload of n request lines, each question pad
 * bytes longer ('p's): its bytes into *ret. */
static size_t form_padded(int n, int max_tokens, size_t pad, char **ret)
{
	size_t cap = (size_t)n * (256 + pad) + 1024, len = 0;
	char *p = malloc(cap), *padding = malloc(pad + 1);
	int i;

	cr_assert_not_null(p);
	len += (size_t)snprintf(p + len, cap - len,
	                        "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"purpose\""
	                        "\r\n\r\nbatch\r\n--" BOUNDARY "\r\nContent-Disposition: form-data;"
	                        " name=\"file\"; filename=\"in.jsonl\"\r\n"
	                        "Content-Type: application/jsonl\r\n\r\n");
	cr_assert_not_null(padding);
	memset(padding, 'p', pad);
	padding[pad] = '\0';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(
		    p + len, cap - len,
		    "{\"custom_id\":\"r%d\",\"method\":\"POST\",\"url\":\"/v1/chat/"
		    "completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"messages\":"
		    "[{\"role\":\"user\",\"content\":\"q%d%s\"}],\"max_tokens\":%d}}\n",
		    i, i, padding, max_tokens);
	len += (size_t)snprintf(p + len, cap - len, "\r\n--" BOUNDARY "--\r\n");
	free(padding);
	*ret = p;
	return len;
}

static size_t form(int n, int max_tokens, char **ret)
{
	return form_padded(n, max_tokens, 0, ret);
}

static const char *form_type = "multipart/form-data; boundary=" BOUNDARY;

/* Entries of the uploaded files' directory (not . and ..). */
static int files_in(const struct daemon_proc *d, int *temps)
{
	char path[400];
	struct dirent *e;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "%s-files", d->db);
	*temps = 0;
	dir = opendir(path);
	if (!dir)
		return 0;
	while ((e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			n++;
			*temps += strncmp(e->d_name, ".upload-", 8) == 0;
		}
	closedir(dir);
	return n;
}

static void upload_padded(const struct daemon_proc *d, int n, int max_tokens, size_t pad, char *id,
                          size_t idlen)
{
	static char buf[1 << 16];
	json_object *o;
	char *body;
	size_t len = form_padded(n, max_tokens, pad, &body);

	cr_assert_eq(
	    http(d->http_port, "POST", "/v1/files", form_type, body, len, buf, sizeof(buf)), 200,
	    "%s", buf);
	free(body);
	o = json_tokener_parse(buf);
	cr_assert_not_null(o);
	snprintf(id, idlen, "%s", h_jstr(o, "id"));
	json_object_put(o);
}

static void upload_lines(const struct daemon_proc *d, int n, int max_tokens, char *id, size_t idlen)
{
	upload_padded(d, n, max_tokens, 0, id, idlen);
}

static void upload(const struct daemon_proc *d, int n, char *id, size_t idlen)
{
	upload_lines(d, n, 10, id, idlen);
}

static void create(const struct daemon_proc *d, const char *file, char *id, size_t idlen)
{
	static char buf[1 << 16];
	char req[256];
	json_object *o;

	snprintf(req, sizeof(req),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\"}",
	         file);
	cr_assert_eq(
	    http(d->http_port, "POST", "/v1/batches", NULL, req, strlen(req), buf, sizeof(buf)),
	    200, "%s", buf);
	o = json_tokener_parse(buf);
	cr_assert_not_null(o);
	cr_assert_str_eq(h_jstr(o, "status"), "in_progress");
	snprintf(id, idlen, "%s", h_jstr(o, "id"));
	json_object_put(o);
}

Test(batchapi, kill_9_during_an_upload_leaves_no_file_and_no_batch)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], head[256], *body;
	size_t len = form(2000, 10, &body);
	int fd, temps = 0, tries;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	fd = tcp_connect(d.http_port);
	snprintf(
	    head, sizeof(head),
	    "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
	    form_type, len);
	send_all(fd, head, strlen(head));
	send_all(fd, body, len / 2);
	for (tries = 0; tries < 100 && files_in(&d, &temps) == 0; tries++)
		usleep(20000);
	cr_assert_eq(temps, 1, "the upload is being written to a temporary file");
	h_daemon_signal(&d, SIGKILL);
	close(fd);
	h_daemon_start(&d, dir, &m, NULL);
	cr_assert_eq(files_in(&d, &temps), 0, "the interrupted upload left nothing on disk");
	cr_assert_eq(http(d.http_port, "GET", "/v1/files", NULL, "", 0, buf, sizeof(buf)), 200);
	cr_assert(strstr(buf, "\"data\":[]"), "%s", buf);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM files"), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0);
	free(body);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * Keeping an upload (its fsync and its row) waits for the disk and for the
 * database: off the loop, on the writer, whose connection waits out a lock
 * another program holds for a moment. On the loop it was refused with a 503
 * after the loop's 10 ms.
 */
/* Another program takes the database's write lock and holds it for ms. */
static pid_t hold_database(const struct daemon_proc *d, int ms)
{
	int ready[2];
	pid_t holder;
	char c;

	cr_assert_eq(pipe(ready), 0);
	holder = fork();
	cr_assert_geq(holder, 0);
	if (holder == 0) {
		sqlite3 *db;

		if (sqlite3_open(d->db, &db) != SQLITE_OK ||
		    sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
		    sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		usleep((useconds_t)ms * 1000);
		_exit(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : 1);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the other program holds the database");
	close(ready[0]);
	return holder;
}

static void let_go(pid_t holder)
{
	int status;

	cr_assert_eq(waitpid(holder, &status, 0), holder);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other program let go");
}

Test(batchapi, an_upload_is_kept_while_another_program_holds_the_database, .timeout = 60)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], *body;
	size_t len = form(200, 10, &body);
	int temps = 0;
	pid_t holder;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	holder = hold_database(&d, 400);
	cr_assert_eq(http(d.http_port, "POST", "/v1/files", form_type, body, len, buf, sizeof(buf)),
	             200, "%s", buf);
	let_go(holder);
	cr_assert(strstr(buf, "\"object\":\"file\""), "%s", buf);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM files"), 1);
	cr_assert_eq(files_in(&d, &temps), 1);
	cr_assert_eq(temps, 0, "kept under its name, no temporary file left");
	free(body);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* So is a deletion: its row goes before the answer, not a second later. */
Test(batchapi, a_file_is_deleted_while_another_program_holds_the_database, .timeout = 60)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], id[64], path[128];
	int temps = 0;
	pid_t holder;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	upload(&d, 3, id, sizeof(id));
	holder = hold_database(&d, 400);
	snprintf(path, sizeof(path), "/v1/files/%s", id);
	cr_assert_eq(http(d.http_port, "DELETE", path, NULL, "", 0, buf, sizeof(buf)), 200, "%s",
	             buf);
	cr_assert(strstr(buf, "\"deleted\":true"), "%s", buf);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM files"), 0, "the row went with it");
	let_go(holder);
	cr_assert_eq(files_in(&d, &temps), 0, "nor bytes nor tombstone left");
	cr_assert_eq(http(d.http_port, "GET", path, NULL, "", 0, buf, sizeof(buf)), 404, "%s", buf);
	cr_assert_null(strstr(h_read_file(d.log, buf, sizeof(buf)), "its record goes once"), "%s",
	               buf);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* A caller that leaves while its upload is being kept is not answered; what
 * was kept stays kept, and nothing of the request outlives it. */
Test(batchapi, a_caller_that_leaves_while_its_upload_is_kept, .timeout = 60)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], head[256], *body;
	size_t len = form(200, 10, &body);
	int fd, temps = 0, tries;
	pid_t holder;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	holder = hold_database(&d, 600);
	fd = tcp_connect(d.http_port);
	snprintf(
	    head, sizeof(head),
	    "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
	    form_type, len);
	send_all(fd, head, strlen(head));
	send_all(fd, body, len);
	usleep(200 * 1000); /* the whole form is in: it is being kept */
	/* Gone, not half-closed (a FIN after a whole request still waits for its
	 * answer): a reset. */
	cr_assert_eq(
	    setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0}, sizeof(struct linger)),
	    0);
	close(fd);
	let_go(holder);
	for (tries = 0; tries < 100 && h_sql_int(&d, "SELECT count(*) FROM files") == 0; tries++)
		usleep(20000);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM files"), 1);
	cr_assert_eq(files_in(&d, &temps), 1);
	cr_assert_eq(temps, 0);
	cr_assert_eq(http(d.http_port, "GET", "/v1/files", NULL, "", 0, buf, sizeof(buf)), 200);
	cr_assert(strstr(buf, "\"filename\":\"in.jsonl\""), "%s", buf);
	cr_assert(strstr(h_read_file(d.log, buf, sizeof(buf)), "left while its file was kept"),
	          "the caller's leaving was seen: %s", buf);
	free(body);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(batchapi, kill_9_during_a_run_resumes_and_answers_every_request_once)
{
	struct mock_proc m;
	struct daemon_proc d;
	char dir[256], file[64], batch[64];
	static char out[1 << 22], err[4096];
	json_object *b;
	int i, n = 300;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "20", NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_MAX_CONCURRENCY=4", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_STAGGER_SECONDS=0", NULL);
	upload(&d, n, file, sizeof(file));
	create(&d, file, batch, sizeof(batch));
	for (i = 0;
	     i < 200 && h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") < 50;
	     i++)
		usleep(20000);
	h_daemon_signal(&d, SIGKILL);
	cr_assert_lt(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), n,
	             "killed mid-run");
	h_daemon_start(&d, dir, &m, "OPENAI_MAX_CONCURRENCY=4", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_STAGGER_SECONDS=0", NULL);
	b = h_wait_for(&d, batch, h_batch_completed, 60000);
	cr_assert_eq(h_jint(b, "counts.succeeded"), n);
	json_object_put(b);
	/* Over HTTP: completed, and its output file holds each request once. */
	{
		char path[128];

		snprintf(path, sizeof(path), "/v1/batches/%s", batch);
		cr_assert_eq(http(d.http_port, "GET", path, NULL, "", 0, out, sizeof(out)), 200);
		cr_assert(strstr(out, "\"status\":\"completed\""), "%s", out);
		snprintf(path, sizeof(path), "/v1/files/file-output-%s/content", batch);
		cr_assert_eq(http(d.http_port, "GET", path, NULL, "", 0, out, sizeof(out)), 200);
	}
	{
		int lines = 0, seen[300] = {0}, k;
		char *p = out, *q;

		/* The body came chunked: take the lines by their custom_id. */
		while ((q = strstr(p, "\"custom_id\":\"r"))) {
			k = atoi(q + 14);
			cr_assert(k >= 0 && k < n);
			seen[k]++;
			lines++;
			p = q + 14;
		}
		cr_assert_eq(lines, n);
		for (k = 0; k < n; k++)
			cr_assert_eq(seen[k], 1, "r%d answered %d times", k, seen[k]);
	}
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "results", batch, NULL), 0);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(batchapi, an_upload_that_stops_coming_is_cut_and_nothing_kept)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], head[256], *body;
	size_t len = form(100, 10, &body);
	int fd, temps = 0;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, "LLMQ_CLIENT_TIMEOUT=2s", NULL);
	fd = tcp_connect(d.http_port);
	snprintf(
	    head, sizeof(head),
	    "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
	    form_type, len);
	send_all(fd, head, strlen(head));
	send_all(fd, body, len / 2);
	read_all(fd, buf, sizeof(buf), 5000);
	cr_assert(strncmp(buf, "HTTP/1.1 408", 12) == 0, "%s", buf);
	cr_assert(strstr(buf, "nothing was kept"), "%s", buf);
	close(fd);
	cr_assert_eq(files_in(&d, &temps), 0);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM files"), 0);
	free(body);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = {0};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static const char healthz[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

Test(batchapi, one_user_cannot_hold_every_http_connection)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], env[320], path[300];
	int fds[4], fd, i;

	h_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/http.sock", dir);
	snprintf(env, sizeof(env), "LLMQ_HTTP_SOCKET=%s", path);
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, env, "LLMQ_HTTP_MAX_CONNECTIONS_PER_USER=3", NULL);
	for (i = 0; i < 3; i++)
		fds[i] = unix_connect(path);
	/* The fourth of this uid is told why, and closed. */
	fd = unix_connect(path);
	read_all(fd, buf, sizeof(buf), 3000);
	cr_assert(strncmp(buf, "HTTP/1.1 503", 12) == 0, "%s", buf);
	cr_assert(strstr(buf, "too many connections from uid") && strstr(buf, "Retry-After: 1"),
	          "%s", buf);
	close(fd);
	/* The held ones still work; TCP (anonymous here) is not this user's. */
	send_all(fds[0], healthz, strlen(healthz));
	read_all(fds[0], buf, sizeof(buf), 3000);
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	cr_assert_eq(http(d.http_port, "GET", "/healthz", NULL, "", 0, buf, sizeof(buf)), 200);
	/* One closed: room for one more. */
	close(fds[0]);
	usleep(100000);
	fd = unix_connect(path);
	send_all(fd, healthz, strlen(healthz));
	read_all(fd, buf, sizeof(buf), 3000);
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	close(fd);
	for (i = 1; i < 3; i++)
		close(fds[i]);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(batchapi, pipelined_requests_and_expect_continue)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], head[256], *body, *p;
	size_t len = form(3, 10, &body);
	int fd, n = 0;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL);
	/* Three requests in one write: three answers, in order. */
	fd = tcp_connect(d.http_port);
	{
		static const char three[] =
		    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
		    "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
		    "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

		send_all(fd, three, strlen(three));
	}
	read_all(fd, buf, sizeof(buf), 5000);
	close(fd);
	for (p = buf; (p = strstr(p, "HTTP/1.1 ")); p++)
		n++;
	cr_assert_eq(n, 3, "%s", buf);
	p = strstr(buf, "HTTP/1.1 200");
	cr_assert(p && strstr(p + 1, "HTTP/1.1 200") && strstr(buf, "HTTP/1.1 404"), "%s", buf);
	cr_assert(strstr(buf, "\"ok\"") < strstr(buf, "\"list\""), "in order");

	/* Expect: 100-continue: the server asks for the body, then answers. */
	fd = tcp_connect(d.http_port);
	snprintf(head, sizeof(head),
	         "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	         "Expect: 100-continue\r\nConnection: close\r\n\r\n",
	         form_type, len);
	send_all(fd, head, strlen(head));
	read_all(fd, buf, 26, 3000);
	cr_assert(strncmp(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0, "%s", buf);
	send_all(fd, body, len);
	read_all(fd, buf, sizeof(buf), 5000);
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	cr_assert(strstr(buf, "\"purpose\":\"batch\""), "%s", buf);
	close(fd);
	free(body);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* A request on the HTTP face's Unix socket: the caller is this process's uid. */
static int http_unix(const char *sock, const char *method, const char *path, char *buf, size_t len)
{
	char head[256];
	int fd = unix_connect(sock), status = 0;
	char *b;

	snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	         method, path);
	send_all(fd, head, strlen(head));
	read_all(fd, buf, len, 10000);
	close(fd);
	sscanf(buf, "HTTP/1.1 %d", &status);
	b = strstr(buf, "\r\n\r\n");
	if (b)
		memmove(buf, b + 4, strlen(b + 4) + 1);
	return status;
}

Test(batchapi, a_batch_from_llmq_submit_is_seen_over_http_by_its_owner_only)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 18];
	char dir[256], env[320], sock[300], in[300], id[64], path[128];
	json_object *b;

	h_tmpdir(dir, sizeof(dir));
	snprintf(sock, sizeof(sock), "%s/http.sock", dir);
	snprintf(env, sizeof(env), "LLMQ_HTTP_SOCKET=%s", sock);
	snprintf(in, sizeof(in), "%s/in.jsonl", dir);
	h_write_batch(in, 5, "gpt-4o-mini", 10);
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, env, NULL);
	h_submit(&d, in, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 30000);
	json_object_put(b);
	/* Its submitter, over the HTTP face's Unix socket: the same batch, the same lines. */
	snprintf(path, sizeof(path), "/v1/batches/%s", id);
	cr_assert_eq(http_unix(sock, "GET", path, buf, sizeof(buf)), 200, "%s", buf);
	cr_assert(strstr(buf, "\"status\":\"completed\"") && strstr(buf, "\"total\":5"), "%s", buf);
	cr_assert(strstr(buf, "\"output_file_id\":\"file-output-"), "%s", buf);
	cr_assert_eq(http_unix(sock, "GET", "/v1/batches", buf, sizeof(buf)), 200);
	cr_assert(strstr(buf, id), "listed: %s", buf);
	snprintf(path, sizeof(path), "/v1/files/file-output-%s/content", id);
	cr_assert_eq(http_unix(sock, "GET", path, buf, sizeof(buf)), 200);
	{
		int lines = 0;
		char *p;

		for (p = buf; (p = strstr(p, "\"custom_id\"")); p++)
			lines++;
		cr_assert_eq(lines, 5, "%s", buf);
	}
	/* Root over loopback TCP is root: an admin, who sees it. */
	snprintf(path, sizeof(path), "/v1/batches/%s", id);
	cr_assert_eq(http(d.http_port, "GET", path, NULL, "", 0, buf, sizeof(buf)), 200, "%s", buf);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* A file that does not validate makes a failed batch: the log says it was stored so. */
Test(batchapi, a_failed_batch_is_logged_as_stored, .timeout = 60)
{
	static char buf[1 << 16], log[1 << 16];
	struct daemon_proc d = {0};
	struct mock_proc m = {0};
	char dir[64], file[64], req[256];
	int status;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	upload_lines(&d, 3, 20000000, file, sizeof(file)); /* max_tokens past any provider's */
	snprintf(req, sizeof(req),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\"}",
	         file);
	status = http(d.http_port, "POST", "/v1/batches", NULL, req, strlen(req), buf, sizeof(buf));
	cr_assert_eq(status, 200, "%d: %s", status, buf);
	cr_assert(strstr(buf, "\"status\":\"failed\""), "%s", buf);
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log, sizeof(log));
	cr_assert(strstr(log, "failed validation (3 bad lines; first: line 1:") &&
	              strstr(log, "stored as failed"),
	          "%s", log);
	cr_assert_null(strstr(log, "Nothing was stored"), "%s", log);
	h_mock_stop(&m);
}

/*
 * Of a batch made from a file, at most 32 MiB of bodies not yet stored are
 * kept in memory; the others are read again from the file when their slice
 * is stored, by the writer thread. With another program's lock holding the
 * writer back until the whole 40 MB file is read, most bodies are read
 * again: each job gets its own, and the batch is made once the lock goes.
 */
Test(batchapi, bodies_read_again_from_the_file_are_each_jobs_own, .timeout = 120)
{
	static char buf[1 << 16], log[1 << 20];
	struct daemon_proc d = {0};
	struct mock_proc m = {0};
	char dir[64], file[64], req[256];
	int64_t t0;
	sqlite3 *db;
	int status;
	pid_t pid;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	upload_padded(&d, 10000, 5, 4000, file, sizeof(file));
	cr_assert_eq(sqlite3_open(d.db, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_busy_timeout(db, 5000), SQLITE_OK); /* llmqd may be writing */
	cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	snprintf(req, sizeof(req),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\"}",
	         file);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Answered once the lock goes: after the file's read, up to 30 s. */
		status = http_ex(d.http_port, "POST", "/v1/batches", NULL, req, strlen(req), buf,
		                 sizeof(buf), 0, 90000);
		_exit(status == 200 && strstr(buf, "\"status\":\"in_progress\"") ? 0 : 1);
	}
	/* The file read to its end while nothing could be stored. */
	t0 = time(NULL);
	while (!strstr(h_read_file(d.log, log, sizeof(log)), "read in") && time(NULL) - t0 < 30)
		usleep(50 * 1000);
	cr_assert(strstr(log, "read in"), "the file was read: %s", log);
	cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the batch was made");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 1);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM jobs WHERE length(body) > 4000 AND "
	                           "instr(body, '\"content\":\"q' || substr(custom_id, 2) || "
	                           "'p') > 0"),
	             10000);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* POST /v1/batches for file: the status, the whole answer (head and body) in buf. */
static int try_create(const struct daemon_proc *d, const char *file, char *buf, size_t len)
{
	char req[256];

	snprintf(req, sizeof(req),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\"}",
	         file);
	return http_ex(d->http_port, "POST", "/v1/batches", NULL, req, strlen(req), buf, len, 1,
	               10000);
}

Test(batchapi, a_batch_that_can_never_run_is_a_400_naming_the_line)
{
	static char buf[1 << 16];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[64];

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	/* 1,000 tokens a minute; each line asks for 2,000. */
	h_daemon_start(&d, dir, &m, "OPENAI_TPM_LIMIT=1000", "OPENAI_TPM_HEADROOM=0",
	               "OPENAI_STAGGER_SECONDS=0", NULL);
	upload_lines(&d, 3, 2000, file, sizeof(file));
	cr_assert_eq(try_create(&d, file, buf, sizeof(buf)), 400, "%s", buf);
	cr_assert(!strcasestr(buf, "\r\nRetry-After:"), "nothing to wait for: %s", buf);
	cr_assert(strstr(buf, "\"type\":\"invalid_request_error\"") &&
	              strstr(buf, "\"code\":\"batch_cannot_run\""),
	          "%s", buf);
	cr_assert(strstr(buf, "on line 1 ") && strstr(buf, "tpm_limit"),
	          "names the line and what to change: %s", buf);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM batches"), 0, "nothing stored");
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(batchapi, a_batch_refused_for_now_is_told_to_wait_at_least_a_second)
{
	static char buf[1 << 16];
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], first[64], second[64], id[64];
	int after = -1;
	char *ra;

	h_tmpdir(dir, sizeof(dir));
	/* The first batch's 3 jobs hold the lane's queue of 3 while the mock thinks. */
	h_mock_start(&m, dir, "--latency-ms", "5000", NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_TPM_LIMIT=0", "OPENAI_STAGGER_SECONDS=0",
	               "LLMQ_QUEUE_MAX_JOBS=3", NULL);
	upload(&d, 3, first, sizeof(first));
	create(&d, first, id, sizeof(id));
	upload(&d, 2, second, sizeof(second));
	/* No rate and no latency known: the lane's projection says 0 s. */
	cr_assert_eq(try_create(&d, second, buf, sizeof(buf)), 503, "%s", buf);
	cr_assert(strstr(buf, "\"code\":\"BATCH_RATE_LIMITED\""), "%s", buf);
	ra = strcasestr(buf, "\r\nRetry-After: ");
	cr_assert_not_null(ra, "%s", buf);
	cr_assert_eq(sscanf(ra + 15, "%d", &after), 1);
	cr_assert_geq(after, 1, "Retry-After: 0 has an SDK retry at once, for ever: %s", buf);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* How many objects a list answer's data holds. */
static int list_count(const char *body)
{
	json_object *o = json_tokener_parse(body), *data;
	int n;

	cr_assert_not_null(o, "%s", body);
	cr_assert(json_object_object_get_ex(o, "data", &data), "%s", body);
	n = (int)json_object_array_length(data);
	json_object_put(o);
	return n;
}

/*
 * ?after= with another user's id answered the rows before it (an unknown id:
 * none), which told that the id exists. Now both answer alike, for batches
 * and for files. Two users by their tokens.
 */
Test(batchapi, another_users_id_as_a_cursor_tells_nothing, .timeout = 90)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 18];
	char dir[256], env[320], tokens[300], file_b[64], file_a[64], batch_b[64], batch_a[64];
	char path[256];
	static const char tok_a[] = "Bearer token-of-user-daemon-0123456789";
	static const char tok_b[] = "Bearer token-of-user-nobody-0123456789";
	FILE *f;
	int foreign, unknown;

	h_tmpdir(dir, sizeof(dir));
	snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
	f = fopen(tokens, "w");
	cr_assert_not_null(f);
	fprintf(f, "daemon %s\nnobody %s\n", tok_a + 7, tok_b + 7);
	fclose(f);
	chmod(tokens, 0600);
	snprintf(env, sizeof(env), "LLMQ_HTTP_TOKENS=%s", tokens);
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, env, NULL);
	/* B's file and batch first, then A's: A's ids sort after B's. */
	auth = tok_b;
	upload(&d, 2, file_b, sizeof(file_b));
	create(&d, file_b, batch_b, sizeof(batch_b));
	usleep(20000);
	auth = tok_a;
	upload(&d, 2, file_a, sizeof(file_a));
	create(&d, file_a, batch_a, sizeof(batch_a));
	auth = tok_b;

	snprintf(path, sizeof(path), "/v1/batches?after=%s", batch_a);
	cr_assert_eq(http(d.http_port, "GET", path, NULL, "", 0, buf, sizeof(buf)), 200, "%s", buf);
	foreign = list_count(buf);
	cr_assert_eq(http(d.http_port, "GET", "/v1/batches?after=b_00000000deadbeef", NULL, "", 0,
	                  buf, sizeof(buf)),
	             200, "%s", buf);
	unknown = list_count(buf);
	cr_assert_eq(foreign, unknown, "another user's batch id answers %d rows, an unknown one %d",
	             foreign, unknown);

	snprintf(path, sizeof(path), "/v1/files?after=%s", file_a);
	cr_assert_eq(http(d.http_port, "GET", path, NULL, "", 0, buf, sizeof(buf)), 200, "%s", buf);
	foreign = list_count(buf);
	cr_assert_eq(http(d.http_port, "GET", "/v1/files?after=file-000000000000000000000000", NULL,
	                  "", 0, buf, sizeof(buf)),
	             200, "%s", buf);
	unknown = list_count(buf);
	cr_assert_eq(foreign, unknown, "another user's file id answers %d rows, an unknown one %d",
	             foreign, unknown);
	/* Their own cursor still pages. */
	cr_assert_eq(http(d.http_port, "GET", "/v1/files", NULL, "", 0, buf, sizeof(buf)), 200);
	cr_assert_eq(list_count(buf), 1, "%s", buf);
	auth = NULL;
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

static int try_create_with(const struct daemon_proc *d, const char *file, const char *metadata,
                           char *buf, size_t len)
{
	char req[8192];

	snprintf(req, sizeof(req),
	         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
	         "\"completion_window\":\"24h\",\"metadata\":%s}",
	         file, metadata);
	return http(d->http_port, "POST", "/v1/batches", NULL, req, strlen(req), buf, len);
}

/*
 * Metadata as the hosted API bounds it (16 pairs, keys of 64 characters,
 * values of 512: characters, not bytes), and its description - a batch's
 * name in llmq list and status, shown to root - without escape sequences.
 */
Test(batchapi, metadata_is_bounded_and_cleaned, .timeout = 60)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 18];
	char dir[256], file[64], meta[4096], id[64], path[128];
	size_t n;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, NULL);
	upload(&d, 2, file, sizeof(file));
	/* 17 pairs */
	n = (size_t)snprintf(meta, sizeof(meta), "{");
	for (i = 0; i < 17; i++)
		n += (size_t)snprintf(meta + n, sizeof(meta) - n, "%s\"k%d\":\"v\"", i ? "," : "",
		                      i);
	snprintf(meta + n, sizeof(meta) - n, "}");
	cr_assert_eq(try_create_with(&d, file, meta, buf, sizeof(buf)), 400, "%s", buf);
	cr_assert(strstr(buf, "16") && strstr(buf, "invalid_metadata"), "%s", buf);
	/* a key of 65 characters */
	n = (size_t)snprintf(meta, sizeof(meta), "{\"");
	memset(meta + n, 'k', 65);
	n += 65;
	snprintf(meta + n, sizeof(meta) - n, "\":\"v\"}");
	cr_assert_eq(try_create_with(&d, file, meta, buf, sizeof(buf)), 400, "%s", buf);
	/* a value of 513 characters */
	n = (size_t)snprintf(meta, sizeof(meta), "{\"k\":\"");
	memset(meta + n, 'v', 513);
	n += 513;
	snprintf(meta + n, sizeof(meta) - n, "\"}");
	cr_assert_eq(try_create_with(&d, file, meta, buf, sizeof(buf)), 400, "%s", buf);
	/* 512 characters of two bytes each is within the bound */
	n = (size_t)snprintf(meta, sizeof(meta), "{\"k\":\"");
	for (i = 0; i < 512; i++)
		n += (size_t)snprintf(meta + n, sizeof(meta) - n, "\xc3\xa9");
	snprintf(meta + n, sizeof(meta) - n,
	         "\",\"description\":\"ev\\u001b]0;PWNED\\u0007"
	         "\\u001b[2J\\u009b31m\"}");
	cr_assert_eq(try_create_with(&d, file, meta, buf, sizeof(buf)), 200, "%s", buf);
	{
		json_object *o = json_tokener_parse(buf);

		snprintf(id, sizeof(id), "%s", h_jstr(o, "id"));
		json_object_put(o);
	}
	snprintf(path, sizeof(path), "/v1/batches/%s", id);
	cr_assert_eq(http(d.http_port, "GET", path, NULL, "", 0, buf, sizeof(buf)), 200, "%s", buf);
	cr_assert(strstr(buf, "\"description\":\"ev?]0;PWNED??[2J?31m\""), "%s", buf);
	cr_assert_eq(h_llmq(&d, buf, sizeof(buf), NULL, 0, "list", NULL), 0);
	cr_assert(strstr(buf, "ev?]0;PWNED??[2J?31m") && !strchr(buf, '\x1b'), "%s", buf);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * What one user may keep: uploaded bytes (files_max_bytes_per_user) and
 * requests queued or running (queue_max_jobs_per_user). Each refusal says
 * the figures and what to do: over HTTP in OpenAI's shape (507 for the
 * files, 503 with Retry-After for the queue, 400 for a batch that alone
 * passes it), over the socket as QUOTA_EXCEEDED, which llmq exits 75 on
 * (65 when waiting cannot help).
 */
Test(batchapi, per_user_quotas_say_the_figures_and_what_to_do, .timeout = 90)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char buf[1 << 16];
	char dir[256], small[64], big[64], three[64], ten[64], batch[64], path[128], in[300];
	char err[4096];
	char *body;
	size_t len;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, "--latency-ms", "30000", NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "LLMQ_FILES_MAX_BYTES_PER_USER=8K",
	               "LLMQ_QUEUE_MAX_JOBS_PER_USER=5", NULL);
	upload(&d, 10, small, sizeof(small)); /* about 1.8 KiB */
	len = form(45, 10, &body);            /* about 7 KiB */
	cr_assert_eq(http(d.http_port, "POST", "/v1/files", form_type, body, len, buf, sizeof(buf)),
	             507, "%s", buf);
	cr_assert(strstr(buf, "quota_exceeded") && strstr(buf, "files_max_bytes_per_user") &&
	              strstr(buf, "8.0 KiB") && strstr(buf, "DELETE /v1/files"),
	          "%s", buf);
	snprintf(path, sizeof(path), "/v1/files/%s", small);
	cr_assert_eq(http(d.http_port, "DELETE", path, NULL, "", 0, buf, sizeof(buf)), 200);
	cr_assert_eq(http(d.http_port, "POST", "/v1/files", form_type, body, len, buf, sizeof(buf)),
	             200, "room again once a file is deleted: %s", buf);
	free(body);
	{
		json_object *o = json_tokener_parse(buf);

		snprintf(big, sizeof(big), "%s", h_jstr(o, "id"));
		json_object_put(o);
	}
	snprintf(path, sizeof(path), "/v1/files/%s", big);
	cr_assert_eq(http(d.http_port, "DELETE", path, NULL, "", 0, buf, sizeof(buf)), 200);

	upload(&d, 3, three, sizeof(three));
	upload(&d, 10, ten, sizeof(ten));
	create(&d, three, batch, sizeof(batch)); /* 3 of 5, held by the slow upstream */
	{
		char req[256];

		snprintf(req, sizeof(req),
		         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
		         "\"completion_window\":\"24h\"}",
		         three);
		cr_assert_eq(http_ex(d.http_port, "POST", "/v1/batches", NULL, req, strlen(req),
		                     buf, sizeof(buf), 1, 10000),
		             503, "%s", buf);
		cr_assert(strcasestr(buf, "Retry-After:"), "%s", buf);
		cr_assert(strstr(buf, "quota_exceeded") && strstr(buf, "queue_max_jobs_per_user") &&
		              strstr(buf, "3 requests queued or running"),
		          "%s", buf);
		snprintf(req, sizeof(req),
		         "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/chat/completions\","
		         "\"completion_window\":\"24h\"}",
		         ten);
		cr_assert_eq(http(d.http_port, "POST", "/v1/batches", NULL, req, strlen(req), buf,
		                  sizeof(buf)),
		             400, "a batch that alone passes the bound: %s", buf);
		cr_assert(strstr(buf, "split it"), "%s", buf);
	}
	/* The socket: a temporary refusal, or the input's fault. */
	snprintf(in, sizeof(in), "%s/three.jsonl", dir);
	h_write_batch(in, 3, "gpt-4o-mini", 10);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "submit", in, NULL), 75, "%s", err);
	cr_assert(strstr(err, "queue_max_jobs_per_user"), "%s", err);
	snprintf(in, sizeof(in), "%s/six.jsonl", dir);
	h_write_batch(in, 6, "gpt-4o-mini", 10);
	cr_assert_eq(h_llmq(&d, NULL, 0, err, sizeof(err), "submit", in, NULL), 65, "%s", err);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * GET path with a receive buffer so small that the answer waits on this
 * reader, read pause_us apart; during() runs once after the first bytes.
 * The body, de-chunked, into body (its length returned); *whole is 1 when
 * the chunked body ended with its last chunk, 0 when it was cut.
 */
static size_t slow_get(int port, const char *path, int pause_us, void (*during)(void *), void *ud,
                       char *body, size_t cap, int *whole)
{
	struct sockaddr_in sa = {0};
	static char raw[16 << 20];
	char req[256], *p, *end;
	size_t have = 0, out = 0, n;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096, called = 0;
	ssize_t k;

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	send_all(fd, req, strlen(req));
	while (have < sizeof(raw) - 1 && (k = recv(fd, raw + have, 2048, 0)) > 0) {
		have += (size_t)k;
		if (!called && during) {
			called = 1;
			during(ud);
		}
		usleep((useconds_t)pause_us);
	}
	close(fd);
	raw[have] = '\0';
	cr_assert(strstr(raw, "HTTP/1.1 200") == raw, "%.300s", raw);
	cr_assert(strcasestr(raw, "Transfer-Encoding: chunked"), "%.300s", raw);
	p = strstr(raw, "\r\n\r\n") + 4;
	end = raw + have;
	*whole = 0;
	while (p < end) {
		n = strtoul(p, &p, 16);
		p = strstr(p, "\r\n");
		if (!p)
			break;
		p += 2;
		if (n == 0) {
			*whole = strncmp(p, "\r\n", 2) == 0;
			break;
		}
		if (p + n > end)
			break; /* cut inside a chunk */
		cr_assert_lt(out + n, cap);
		memcpy(body + out, p, n);
		out += n;
		p += n + 2;
	}
	body[out] = '\0';
	return out;
}

static int count_lines(const char *s, size_t n)
{
	int lines = 0;
	size_t i;

	for (i = 0; i < n; i++)
		lines += s[i] == '\n';
	return lines;
}

struct deleter {
	int port;
	char path[128];
};

static void delete_now(void *ud)
{
	struct deleter *x = ud;
	char buf[1024];

	cr_assert_eq(http(x->port, "DELETE", x->path, NULL, "", 0, buf, sizeof(buf)), 200, "%s",
	             buf);
}

/*
 * Retention deleted a batch while its output was read: a clean 200 with
 * 18,688 of 50,000 lines. A batch being read is not deleted; and a download
 * whose source goes (an uploaded file deleted under it) is cut - no last
 * chunk - so that the caller sees an error, never a file that looks whole.
 */
Test(batchapi, a_download_is_whole_or_cut_never_short, .timeout = 120)
{
	struct mock_proc m;
	struct daemon_proc d;
	static char body[16 << 20];
	char dir[256], in[300], id[64], path[128], file[64];
	struct deleter del;
	json_object *b;
	size_t n;
	int whole, lines;

	h_tmpdir(dir, sizeof(dir));
	snprintf(in, sizeof(in), "%s/in.jsonl", dir);
	{
		/* Answers of about 900 bytes (the mock echoes 480 characters): some 11 MB,
		 * more than the sockets hold, so the download waits on its reader. */
		FILE *f = fopen(in, "w");
		char text[471];
		int i;

		cr_assert_not_null(f);
		memset(text, 'x', sizeof(text) - 1);
		text[sizeof(text) - 1] = '\0';
		for (i = 0; i < 12000; i++)
			fprintf(
			    f,
			    "{\"custom_id\":\"r%d\",\"method\":\"POST\",\"url\":\"/v1/chat/"
			    "completions\",\"body\":{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,"
			    "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}}\n",
			    i, text);
		fclose(f);
	}
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_MAX_CONCURRENCY=64", "LLMQ_RETENTION=1s", NULL);
	h_submit(&d, in, id, sizeof(id));
	b = h_wait_for(&d, id, h_batch_completed, 60);
	json_object_put(b);
	/* Read slowly for seconds: the batch passes its retention meanwhile. */
	snprintf(path, sizeof(path), "/v1/files/file-output-%s/content", id);
	n = slow_get(d.http_port, path, 1000, NULL, NULL, body, sizeof(body), &whole);
	lines = count_lines(body, n);
	cr_assert(whole, "the output ended with its last chunk (%d lines)", lines);
	cr_assert_eq(lines, 12000, "every line of the output, not those retention left");
	usleep(1500000);
	cr_assert_eq(h_llmq(&d, NULL, 0, NULL, 0, "status", id, NULL), 65,
	             "retention deletes the batch once nobody reads it");

	/* An uploaded file deleted while it is read: cut. */
	upload(&d, 45000, file, sizeof(file)); /* past what the sockets buffer */
	del.port = d.http_port;
	snprintf(del.path, sizeof(del.path), "/v1/files/%s", file);
	snprintf(path, sizeof(path), "/v1/files/%s/content", file);
	n = slow_get(d.http_port, path, 200, delete_now, &del, body, sizeof(body), &whole);
	cr_assert_not(whole, "a download whose file went is cut, not ended (%zu bytes)", n);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
