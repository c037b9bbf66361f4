/*
 * The service contract as a new user meets it: llmqd started by systemd's
 * socket activation with both named sockets (llmqd.socket's "llmq",
 * llmqd-http.socket's "http"), driven by systemd-socket-activate, the tool
 * that passes sockets exactly as systemd does.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char out[1 << 16], err[1 << 16];

/* A port nobody listens on now. */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/*
 * llmqd under systemd-socket-activate: the llmq socket at d->sock and the HTTP
 * face on 127.0.0.1:port, named as the units name them. llmqd itself starts at
 * the first connection (in place of the activator: same pid).
 */
static void start_activated(struct daemon_proc *d, const char *dir, const struct mock_proc *m,
                            int port)
{
	char listen_http[64], base[96];
	int fd;

	snprintf(d->sock, sizeof(d->sock), "%s/llmq.sock", dir);
	snprintf(d->db, sizeof(d->db), "%s/llmq.db", dir);
	snprintf(d->log, sizeof(d->log), "%s/llmqd.log", dir);
	snprintf(listen_http, sizeof(listen_http), "127.0.0.1:%d", port);
	snprintf(base, sizeof(base), "OPENAI_BASE_URL=http://127.0.0.1:%d/v1", m->port);
	d->pid = fork();
	cr_assert_geq(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("systemd-socket-activate", "systemd-socket-activate", "-l", d->sock, "-l",
		       listen_http, "--fdname=llmq:http", "-E", base, "-E", "LLMQ_CONFIG=", "-E",
		       "OPENAI_STAGGER_SECONDS=0", "-E", "OPENAI_TPM_LIMIT=0", LLMQD_BIN, "--db",
		       d->db, "-v", (char *)NULL);
		_exit(127);
	}
	d->http_port = port;
}

Test(service, both_named_sockets_serve_and_the_queue_drains, .timeout = 90)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40], body[4096], want[64], log[1 << 14];
	json_object *b;
	int port, i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	/* A batch queued while the upstream could not be reached, then llmqd stopped. */
	{
		struct mock_proc none = {.port = 9};

		h_daemon_start(&d, dir, &none, "OPENAI_STAGGER_SECONDS=0", NULL);
		snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
		h_write_batch(file, 5, "gpt-4o-mini", 5);
		h_submit(&d, file, id, sizeof(id));
		h_daemon_signal(&d, SIGTERM);
	}

	port = free_port();
	start_activated(&d, dir, &m, port);
	/* The first caller is on the HTTP face: it starts llmqd, and is answered. */
	for (i = 0; i < 100 && h_http(port, "GET", "/healthz", NULL, body) != 200; i++)
		usleep(50 * 1000);
	cr_assert_eq(h_http(port, "GET", "/healthz", NULL, body), 200, "%s", body);
	/* llmqd uses the passed sockets for both faces, not its defaults. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "ping", "--json", NULL), 0,
	             "%s", err);
	snprintf(want, sizeof(want), "127.0.0.1:%d", port);
	b = json_tokener_parse(out);
	cr_assert_str_eq(h_jstr(b, "http"), want, "ping: %s", out);
	json_object_put(b);
	h_read_file(d.log, log, sizeof(log));
	cr_assert(strstr(log, "the socket systemd passed"), "%s", log);
	/* And what was queued before drains, with no llmq command asking for it. */
	b = h_wait_for(&d, id, h_batch_completed, 30);
	cr_assert_eq(h_jint(b, "counts.succeeded"), 5);
	json_object_put(b);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

Test(service, a_socket_it_cannot_use_is_named, .timeout = 30)
{
	struct daemon_proc d = {0};
	char dir[64], listen_http[64], log[8192], body[4096];
	int port, status, fd;

	h_tmpdir(dir, sizeof(dir));
	port = free_port();
	snprintf(d.log, sizeof(d.log), "%s/llmqd.log", dir);
	snprintf(d.db, sizeof(d.db), "%s/llmq.db", dir);
	snprintf(listen_http, sizeof(listen_http), "127.0.0.1:%d", port);
	/* A TCP socket named as if it were the llmq socket. */
	d.pid = fork();
	cr_assert_geq(d.pid, 0);
	if (d.pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(d.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("systemd-socket-activate", "systemd-socket-activate", "-l", listen_http,
		       "--fdname=llmq", "-E", "LLMQ_CONFIG=", "-E",
		       "OPENAI_BASE_URL=http://127.0.0.1:9/v1", LLMQD_BIN, "--db", d.db,
		       (char *)NULL);
		_exit(127);
	}
	usleep(300 * 1000);
	h_http(port, "GET", "/healthz", NULL, body); /* starts llmqd, which refuses the socket */
	cr_assert_eq(waitpid(d.pid, &status, 0), d.pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "status 0x%x", status);
	h_read_file(d.log, log, sizeof(log));
	cr_assert(strstr(log, "FileDescriptorName=llmq") && strstr(log, "one Unix stream socket"),
	          "%s", log);
}

/* llmqd run by hand with the command line and environment given (a shell
 * command's words); its exit status, its output in log. */
static int run_llmqd(const char *dir, const char *env, char *log, size_t len)
{
	char cmd[1024], path[128];
	int status;

	snprintf(path, sizeof(path), "%s/llmqd.log", dir);
	snprintf(cmd, sizeof(cmd),
	         "env -i PATH=/usr/bin:/bin LLMQ_CONFIG= %s timeout 10 %s --socket %s/s.sock --db "
	         "%s/llmq.db >%s 2>&1",
	         env, LLMQD_BIN, dir, dir, path);
	status = system(cmd);
	h_read_file(path, log, len);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* An app's OPENAI_BASE_URL exported in the shell that starts llmqd. */
Test(service, an_upstream_that_is_llmqd_itself_is_refused, .timeout = 60)
{
	char dir[64], env[256], log[8192];
	const char *hosts[] = {"127.0.0.1", "localhost", "LOCALHOST", NULL};
	int port = free_port(), i;

	h_tmpdir(dir, sizeof(dir));
	for (i = 0; hosts[i]; i++) {
		char url[64];

		snprintf(url, sizeof(url), "%s:%d%s", hosts[i], port, i == 2 ? "" : "/v1");
		snprintf(env, sizeof(env), "LLMQ_HTTP_ADDR=127.0.0.1:%d OPENAI_BASE_URL=http://%s",
		         port, url);
		cr_assert_neq(run_llmqd(dir, env, log, sizeof(log)), 0, "%s: %s", url, log);
		cr_assert(strstr(log, "is llmqd's own HTTP address") &&
		              strstr(log, "OPENAI_BASE_URL"),
		          "%s", log);
	}
	/* Listening on every address: any of this host's is llmqd itself. */
	snprintf(env, sizeof(env), "LLMQ_HTTP_ADDR=0.0.0.0:%d OPENAI_BASE_URL=http://127.0.0.1:%d",
	         port, port);
	cr_assert_neq(run_llmqd(dir, env, log, sizeof(log)), 0, "%s", log);
	cr_assert(strstr(log, "is llmqd's own HTTP address"), "%s", log);
}

/* The same through a reload: refused, the running lanes kept. */
Test(service, a_reload_that_points_a_lane_at_llmqd_is_refused, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], conf[128], env[160], text[256], log[1 << 15];
	int port = free_port(), i;
	FILE *f;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	snprintf(conf, sizeof(conf), "%s/llmqd.conf", dir);
	f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f, "[lane a]\nbase_url = http://127.0.0.1:%d/v1\nstagger_seconds = 0\n", m.port);
	fclose(f);
	snprintf(env, sizeof(env), "LLMQ_CONFIG=%s", conf);
	snprintf(text, sizeof(text), "LLMQ_HTTP_ADDR=127.0.0.1:%d", port);
	h_daemon_start(&d, dir, &m, env, text, NULL);
	cr_assert_eq(d.http_port, port);
	f = fopen(conf, "w");
	cr_assert_not_null(f);
	fprintf(f, "[lane a]\nbase_url = http://127.0.0.1:%d/v1\nstagger_seconds = 0\n", port);
	fclose(f);
	h_daemon_signal_only(&d, SIGHUP);
	for (i = 0; i < 100; i++) {
		h_read_file(d.log, log, sizeof(log));
		if (strstr(log, "reload: lane a: base_url"))
			break;
		usleep(50 * 1000);
	}
	cr_assert(strstr(log, "is llmqd's own HTTP address") &&
	              strstr(log, "keeping the running configuration"),
	          "%s", log);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", "--json", NULL), 0);
	snprintf(text, sizeof(text), "127.0.0.1:%d", m.port);
	cr_assert(strstr(out, text), "the lane still goes to the mock: %s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/* The embedded lane keeps the prototype's 15 s stagger for batch jobs; an app
 * pointed at llmqd is not held 15 s between its calls. */
Test(service, callers_do_not_wait_for_the_batch_stagger, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], body[4096];
	struct timespec t0, t1;
	int i;

	h_tmpdir(dir, sizeof(dir));
	h_mock_start(&m, dir, NULL);
	h_daemon_start(&d, dir, &m, NULL); /* the defaults: stagger 15 s */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 5; i++)
		cr_assert_eq(h_http(d.http_port, "POST", "/v1/chat/completions",
		                    "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,"
		                    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		                    body),
		             200, "%s", body);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 5, "5 calls took %ld s", (long)(t1.tv_sec - t0.tv_sec));
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
