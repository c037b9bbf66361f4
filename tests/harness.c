/*
 * harness.c - process plumbing for the integration tests.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/*
 * A test's directory is named after the test and the runner, so that the
 * runner, told the test passed, removes it; a failed test's stays behind to
 * be read.
 */
static void test_dir(const struct criterion_test *t, pid_t runner, char *buf, size_t len)
{
	uint32_t h = 2166136261u;
	const char *p;

	for (p = t->category; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (p = t->name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	snprintf(buf, len, "/tmp/llmq-e2e-%d-%08x", (int)runner, (unsigned)h);
}

void h_tmpdir(char *buf, size_t len)
{
	test_dir(criterion_current_test, getppid(), buf, len);
	cr_assert_eq(mkdir(buf, 0700), 0, "cannot create %s: %s", buf, strerror(errno));
}

ReportHook(POST_TEST)(struct criterion_test_stats *stats)
{
	char dir[128], cmd[200];

	if (stats->test_status != CR_STATUS_PASSED)
		return;
	test_dir(stats->test, getpid(), dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (access(dir, F_OK) == 0 && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

void h_mock_start(struct mock_proc *m, const char *dir, ...)
{
	char *argv[32] = {MOCK_BIN, "--log", m->log};
	int pfd[2], i = 3;
	char buf[32] = "";
	ssize_t n;
	va_list ap;

	snprintf(m->log, sizeof(m->log), "%s/mock.log", dir);
	va_start(ap, dir);
	while (i < 31 && (argv[i] = va_arg(ap, char *)))
		i++;
	va_end(ap);
	argv[i] = NULL;
	cr_assert_eq(pipe(pfd), 0);
	m->pid = fork();
	cr_assert_geq(m->pid, 0);
	if (m->pid == 0) {
		/* A test that fails mid-way must not leave its servers behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execv(MOCK_BIN, argv);
		_exit(127);
	}
	close(pfd[1]);
	n = read(pfd[0], buf, sizeof(buf) - 1);
	close(pfd[0]);
	cr_assert_gt(n, 0, "mock upstream did not start");
	m->port = atoi(buf);
	cr_assert_gt(m->port, 0);
}

void h_mock_stop(struct mock_proc *m)
{
	if (m->pid > 0) {
		kill(m->pid, SIGTERM);
		waitpid(m->pid, NULL, 0);
		m->pid = 0;
	}
}

static int can_connect(const char *path);

void h_redis_start(struct redis_proc *r, const char *dir, const char *password)
{
	char log[300], *argv[24] = {"redis-server",
	                            "--save",
	                            "",
	                            "--appendonly",
	                            "no",
	                            "--port",
	                            "0",
	                            "--unixsocket",
	                            r->sock,
	                            "--unixsocketperm",
	                            "700",
	                            "--dir",
	                            (char *)dir,
	                            "--logfile",
	                            log,
	                            "--daemonize",
	                            "no"};
	int i = 17, tries;

	snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", dir);
	snprintf(r->url, sizeof(r->url), "unix://%s", r->sock);
	snprintf(log, sizeof(log), "%s/redis.log", dir);
	if (password) {
		argv[i++] = "--requirepass";
		argv[i++] = (char *)password;
	}
	argv[i] = NULL;
	r->pid = fork();
	cr_assert_geq(r->pid, 0);
	if (r->pid == 0) {
		/* A test that fails mid-way must not leave its servers behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execvp("redis-server", argv);
		_exit(127);
	}
	for (tries = 0; tries < 200 && !can_connect(r->sock); tries++)
		msleep(25);
	cr_assert(can_connect(r->sock), "redis-server did not start; see %s", log);
}

void h_redis_stop(struct redis_proc *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
		r->pid = 0;
	}
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
	char *buf = ud;
	size_t have = strlen(buf), add = s * n;

	if (have + add >= 4096)
		add = 4095 - have;
	memcpy(buf + have, p, add);
	buf[have + add] = '\0';
	return s * n;
}

long h_http(int port, const char *method, const char *path, const char *body, char *ret)
{
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	char url[256];
	long status = 0;
	CURL *c = curl_easy_init();

	cr_assert_not_null(c);
	ret[0] = '\0';
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, ret);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdr);
	return status;
}

/* GET (or POST, empty) path on the mock: its JSON answer. */
static json_object *mock_call(const struct mock_proc *m, const char *path, int post)
{
	char buf[4096];

	cr_assert_eq(h_http(m->port, post ? "POST" : "GET", path, post ? "" : NULL, buf), 200,
	             "%s: %s", path, buf);
	return json_tokener_parse(buf);
}

json_object *h_mock_stats(const struct mock_proc *m)
{
	return mock_call(m, "/stats", 0);
}

void h_mock_topup(const struct mock_proc *m)
{
	json_object_put(mock_call(m, "/topup", 1));
}

static int can_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ok;

	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static int daemon_http_port(const struct daemon_proc *d);

void h_daemon_start(struct daemon_proc *d, const char *dir, const struct mock_proc *m, ...)
{
	char url[128];
	char *env[32];
	int i = 0, k, tries, fd;
	va_list ap;

	snprintf(d->sock, sizeof(d->sock), "%s/llmq.sock", dir);
	snprintf(d->db, sizeof(d->db), "%s/llmq.db", dir);
	snprintf(d->log, sizeof(d->log), "%s/llmqd.log", dir);
	snprintf(url, sizeof(url), "OPENAI_BASE_URL=http://127.0.0.1:%d/v1", m ? m->port : 9);
	/* The test's assignments first: getenv() takes the first of a name. */
	va_start(ap, m);
	while (i < 28 && (env[i] = va_arg(ap, char *)))
		i++;
	va_end(ap);
	/* A test that puts the database elsewhere (on a small filesystem of its own). */
	for (k = 0; k < i; k++)
		if (strncmp(env[k], "LLMQ_DB=", 8) == 0 && env[k][8])
			snprintf(d->db, sizeof(d->db), "%s", env[k] + 8);
	/* A test that brings a config file names its upstreams there: the
	 * implicit lane's variable would be refused next to it. */
	for (k = 0; k < i; k++)
		if (strncmp(env[k], "LLMQ_CONFIG=", 12) == 0 && env[k][12])
			break;
	if (k == i)
		env[i++] = url;
	env[i++] = "LLMQ_HTTP_ADDR=127.0.0.1:0"; /* tests run side by side */
	env[i++] = "LLMQ_CONFIG=";
	env[i++] = "PATH=/usr/bin:/bin";
	env[i] = NULL;
	d->pid = fork();
	cr_assert_geq(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 2);
		dup2(fd, 1);
		execle(LLMQD_BIN, LLMQD_BIN, "--socket", d->sock, "--db", d->db, "-v", (char *)NULL,
		       env);
		_exit(127);
	}
	for (tries = 0; tries < 200 && !can_connect(d->sock); tries++)
		msleep(25);
	cr_assert(can_connect(d->sock), "llmqd did not start; see %s", d->log);
	d->http_port = daemon_http_port(d);
}

void h_daemon_signal_only(const struct daemon_proc *d, int sig)
{
	cr_assert_eq(kill(d->pid, sig), 0);
}

void h_daemon_signal(struct daemon_proc *d, int sig)
{
	int status;

	if (d->pid <= 0)
		return;
	kill(d->pid, sig);
	cr_assert_eq(waitpid(d->pid, &status, 0), d->pid);
	d->pid = 0;
	/* A clean stop exits 0 - and under LeakSanitizer, only without leaks. */
	if (sig == SIGTERM)
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		          "llmqd did not stop cleanly (status 0x%x); see %s", status, d->log);
}

static void slurp(int fd, char *buf, size_t len)
{
	size_t have = 0, k;
	char tmp[4096];
	ssize_t n;

	while ((n = read(fd, tmp, sizeof(tmp))) > 0) {
		if (!buf || have + 1 >= len)
			continue;
		k = (size_t)n < len - 1 - have ? (size_t)n : len - 1 - have;
		memcpy(buf + have, tmp, k);
		have += k;
	}
	if (buf && len)
		buf[have] = '\0';
}

static int run_llmq(const char *user, const struct daemon_proc *d, char *out, size_t outlen,
                    char *err, size_t errlen, va_list ap)
{
	char *argv[32] = {LLMQ_BIN, "--socket", (char *)d->sock};
	int po[2], pe[2], status, i = 3;
	struct passwd *pw = NULL;
	char errpath[64];
	pid_t pid;

	while (i < 31 && (argv[i] = va_arg(ap, char *)))
		i++;
	argv[i] = NULL;
	if (user) {
		pw = getpwnam(user);
		cr_assert_not_null(pw, "no user %s", user);
	}
	cr_assert_eq(pipe(po), 0);
	/* stderr goes to a file so a full pipe can never stall the child. */
	snprintf(errpath, sizeof(errpath), "/tmp/llmq-e2e-err-%d", (int)getpid());
	pe[1] = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		if (pw && (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
		           setuid(pw->pw_uid) < 0))
			_exit(126);
		/* After the change of user, which clears it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(LLMQ_BIN, argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	slurp(po[0], out, outlen);
	close(po[0]);
	waitpid(pid, &status, 0);
	pe[0] = open(errpath, O_RDONLY);
	slurp(pe[0], err, errlen);
	close(pe[0]);
	unlink(errpath);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int h_llmq(const struct daemon_proc *d, char *out, size_t outlen, char *err, size_t errlen, ...)
{
	va_list ap;
	int r;

	va_start(ap, errlen);
	r = run_llmq(NULL, d, out, outlen, err, errlen, ap);
	va_end(ap);
	return r;
}

int h_llmq_as(const char *user, const struct daemon_proc *d, char *out, size_t outlen, char *err,
              size_t errlen, ...)
{
	va_list ap;
	int r;

	va_start(ap, errlen);
	r = run_llmq(user, d, out, outlen, err, errlen, ap);
	va_end(ap);
	return r;
}

void h_write_batch(const char *path, int n, const char *model, int max_tokens)
{
	FILE *f = fopen(path, "w");
	int i;

	cr_assert_not_null(f);
	for (i = 1; i <= n; i++)
		fprintf(f,
		        "{\"custom_id\":\"req-%d\",\"method\":\"POST\",\"url\":\"/v1/chat/"
		        "completions\","
		        "\"body\":{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":"
		        "\"question %d\"}],\"max_tokens\":%d}}\n",
		        i, model, i, max_tokens);
	fclose(f);
}

int64_t h_jint(json_object *o, const char *path)
{
	char key[64];
	const char *dot;
	json_object *v;

	while ((dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		if (!json_object_object_get_ex(o, key, &o))
			return -1;
		path = dot + 1;
	}
	return json_object_object_get_ex(o, path, &v) ? json_object_get_int64(v) : -1;
}

const char *h_jstr(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

json_object *h_wait_for(const struct daemon_proc *d, const char *batch,
                        int (*pred)(json_object *batch), int timeout_s)
{
	static char out[1 << 16];
	json_object *reply, *b;
	int i;

	for (i = 0; i < timeout_s * 20; i++) {
		cr_assert_eq(h_llmq(d, out, sizeof(out), NULL, 0, "status", batch, "--json", NULL),
		             0);
		reply = json_tokener_parse(out);
		cr_assert_not_null(reply, "%s", out);
		json_object_object_get_ex(reply, "batch", &b);
		if (pred(b)) {
			json_object_get(b);
			json_object_put(reply);
			return b;
		}
		json_object_put(reply);
		msleep(50);
	}
	cr_assert_fail("batch %s did not get there within %ds", batch, timeout_s);
	return NULL;
}

int64_t h_sql_int(const struct daemon_proc *d, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v = -1;

	cr_assert_eq(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s",
	             sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* The port llmqd's HTTP face bound (ping says), 0 when off. */
static int daemon_http_port(const struct daemon_proc *d)
{
	char out[4096];
	json_object *o;
	const char *a, *colon;
	int port = 0;

	if (h_llmq(d, out, sizeof(out), NULL, 0, "ping", "--json", NULL) != 0)
		return 0;
	o = json_tokener_parse(out);
	a = o ? h_jstr(o, "http") : NULL;
	colon = a ? strrchr(a, ':') : NULL;
	if (colon)
		port = atoi(colon + 1);
	json_object_put(o);
	return port;
}

void h_submit(const struct daemon_proc *d, const char *file, char *id, size_t idlen)
{
	static char out[1 << 16], err[1 << 16];
	json_object *o;

	cr_assert_eq(h_llmq(d, out, sizeof(out), err, sizeof(err), "submit", file, "--json", NULL),
	             0, "submit failed: %s", err);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	snprintf(id, idlen, "%s", h_jstr(o, "id"));
	json_object_put(o);
}

const char *h_read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, len - 1, f) : 0;

	buf[n] = '\0';
	if (f)
		fclose(f);
	return buf;
}

int h_raw_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s: %s", path,
	             strerror(errno));
	return fd;
}

void h_raw_send(int fd, const char *s)
{
	cr_assert_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

void h_raw_line(int fd, char *got, size_t len)
{
	size_t have = 0;
	ssize_t n;

	while (have < len - 1 && (n = read(fd, got + have, 1)) == 1 && got[have] != '\n')
		have++;
	got[have] = '\0';
}

void h_raw_expect(int fd, const char *want)
{
	char buf[4096];

	h_raw_line(fd, buf, sizeof(buf));
	cr_assert(strstr(buf, want), "got \"%s\", wanted \"%s\"", buf, want);
}

long h_rss_kib(const struct daemon_proc *d, long *ret_peak_kib)
{
	char path[64], line[256];
	long rss = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			rss = atol(line + 6);
		else if (ret_peak_kib && strncmp(line, "VmHWM:", 6) == 0)
			*ret_peak_kib = atol(line + 6);
	}
	fclose(f);
	return rss;
}

int h_batch_completed(json_object *batch)
{
	const char *s = h_jstr(batch, "state");

	return s && strcmp(s, "completed") == 0;
}

int h_batch_finished(json_object *batch)
{
	const char *s = h_jstr(batch, "state");

	return s && (strcmp(s, "completed") == 0 || strcmp(s, "cancelled") == 0);
}

int h_host_addr(char *buf, size_t len)
{
	struct ifaddrs *ifs = NULL, *i;
	int r = -1;

	if (getifaddrs(&ifs) < 0)
		return -1;
	for (i = ifs; i && r < 0; i = i->ifa_next) {
		struct sockaddr_in *a = (struct sockaddr_in *)i->ifa_addr;

		if (!a || a->sin_family != AF_INET || (ntohl(a->sin_addr.s_addr) >> 24) == 127)
			continue;
		if (inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)len))
			r = 0;
	}
	freeifaddrs(ifs);
	return r;
}
