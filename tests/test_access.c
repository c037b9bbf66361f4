/*
 * Who may see what, with real users: a root llmqd whose socket belongs to a
 * users' group, two submitters and an admin, each a real uid acting through
 * the real llmq. Creating users needs root; CI runs as root.
 */
#include <criterion/criterion.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "users.h"

static char out[1 << 16], err[1 << 16], out2[1 << 16], err2[1 << 16], big[1 << 12];

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	users_run_start("test_access");
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	users_run_end("test_access");
}

static void sh(const char *cmd)
{
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(access, batches_belong_to_their_submitter, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40], group_env[96], admin_env[96];
	struct stat st;
	struct group *gr;
	int rc;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0, "the users reach the socket, not the database");
	h_mock_start(&m, dir, "--latency-ms", "50", NULL);
	snprintf(group_env, sizeof(group_env), "LLMQ_SOCKET_GROUP=%s", user("users"));
	snprintf(admin_env, sizeof(admin_env), "LLMQ_ADMIN_GROUP=%s", user("admin"));
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_API_KEY=sk-secret-key-never-written-anywhere", group_env, admin_env,
	               NULL);

	/* Files: the socket 0660 with the users' group, the database 0600. */
	gr = getgrnam(user("users"));
	cr_assert_not_null(gr);
	cr_assert_eq(stat(d.sock, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0660, "socket mode %o", st.st_mode & 0777);
	cr_assert_eq(st.st_gid, gr->gr_gid);
	cr_assert_eq(stat(d.db, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "database mode %o", st.st_mode & 0777);

	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 20, "gpt-4o-mini", 10);
	cr_assert_eq(chmod(file, 0644), 0);
	cr_assert_eq(
	    h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "submit", file, NULL),
	    0, "%s", err);
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(out, "\n"), out);

	/* Bob: Alice's batch answers exactly as an unknown one. */
	rc = h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "status", id, NULL);
	cr_assert_eq(rc, 65, "%s", err);
	cr_assert_eq(h_llmq_as(user("bob"), &d, out2, sizeof(out2), err2, sizeof(err2), "status",
	                       "b_0000000000000000", NULL),
	             65);
	cr_assert_str_eq(err, err2, "no existence leak");
	cr_assert_eq(
	    h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "cancel", id, NULL), 65);
	cr_assert_eq(
	    h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "results", id, NULL),
	    65);
	cr_assert_eq(
	    h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "wait", id, NULL), 65);
	cr_assert_eq(h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "list", NULL),
	             0);
	cr_assert_null(strstr(out, id), "bob's list: %s", out);

	/* Alice sees, waits on and exports her own. */
	cr_assert_eq(h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "list", NULL),
	             0);
	cr_assert(strstr(out, id), "alice's list: %s", out);
	cr_assert_eq(
	    h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "wait", id, NULL), 0,
	    "%s", err);
	cr_assert_eq(
	    h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "results", id, NULL),
	    0, "%s", err);
	cr_assert(strstr(out, "\"custom_id\":\"req-20\""), "%s", out);

	/* Carol, an admin, and root see all. */
	cr_assert_eq(
	    h_llmq_as(user("carol"), &d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0,
	    "%s", err);
	cr_assert_eq(h_llmq_as(user("carol"), &d, out, sizeof(out), err, sizeof(err), "list", NULL),
	             0);
	cr_assert(strstr(out, id), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0);

	/* Outside the group: the socket itself is closed to them. */
	rc = h_llmq_as(user("mallory"), &d, out, sizeof(out), err, sizeof(err), "list", NULL);
	cr_assert_eq(rc, 69, "%s", err);

	/* The key is nowhere: database, log, status, metrics, results. */
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "--json", "status", NULL), 0);
	cr_assert_null(strstr(out, "sk-secret"), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "metrics", NULL), 0);
	cr_assert_null(strstr(out, "sk-secret"));
	h_daemon_signal(&d, SIGTERM);
	snprintf(out, sizeof(out), "! grep -rqa sk-secret-key %s", dir);
	sh(out);
	h_mock_stop(&m);
}

/* In a forked child: become user for good. */
static void become(const char *user)
{
	struct passwd *pw = getpwnam(user);

	if (!pw || initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		_exit(99);
	/* Set after the change of user, which clears it: a child must never
	 * outlive a test that failed (it would hold ctest's pipe open). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
		_exit(99);
}

/* Mallory's fake llmqd: listens at path, tells the parent how many bytes came. */
static void impostor(const char *path, int ready, int report)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	long got = 0;
	char buf[4096];
	ssize_t n;
	int lfd, fd;

	become(user("mallory"));
	alarm(20);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0777) < 0 ||
	    listen(lfd, 4) < 0)
		_exit(98);
	(void)!write(ready, "r", 1);
	fd = accept(lfd, NULL, NULL);
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		got += n;
	(void)!write(report, &got, sizeof(got));
	_exit(0);
}

Test(access, an_impostor_socket_gets_not_a_byte, .timeout = 60)
{
	struct daemon_proc fake = {0};
	char dir[64], squat[128], file[160], cmd[1024], log[160];
	static char text[8192];
	int ready[2], report[2], status;
	struct passwd *pw;
	long got = -1;
	char c;
	pid_t pid;

	need_root();
	pw = getpwnam(user("mallory"));
	cr_assert_not_null(pw);
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	/* Mallory got there first: her directory, open to all, her socket in it. */
	snprintf(squat, sizeof(squat), "%s/squat", dir);
	cr_assert_eq(mkdir(squat, 0777), 0);
	cr_assert_eq(chown(squat, pw->pw_uid, pw->pw_gid), 0);
	cr_assert_eq(chmod(squat, 0777), 0);
	snprintf(fake.sock, sizeof(fake.sock), "%s/llmq.sock", squat);
	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(report), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		impostor(fake.sock, ready[1], report[1]);
	close(ready[1]);
	close(report[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the impostor listens");

	/* Alice's client: refuses before sending a byte, and says why. */
	snprintf(file, sizeof(file), "%s/secret.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 5);
	cr_assert_eq(chmod(file, 0644), 0);
	cr_assert_eq(h_llmq_as(user("alice"), &fake, out, sizeof(out), err, sizeof(err), "submit",
	                       file, NULL),
	             77, "%s", err);
	cr_assert(strstr(err, "refusing to talk") && strstr(err, "Nothing was sent"), "%s", err);
	cr_assert_eq(out[0], '\0', "no batch id printed: %s", out);
	cr_assert_eq(read(report[0], &got, sizeof(got)), (ssize_t)sizeof(got));
	cr_assert_eq(got, 0, "the impostor received %ld bytes", got);
	cr_assert_eq(waitpid(pid, &status, 0), pid);

	/* And llmqd itself will not listen in a directory Mallory owns. */
	snprintf(log, sizeof(log), "%s/llmqd.log", dir);
	snprintf(cmd, sizeof(cmd),
	         "env -i PATH=/usr/bin:/bin LLMQ_HTTP_ADDR=off OPENAI_BASE_URL=http://127.0.0.1:9 "
	         "%s --socket %s/other.sock --db %s/llmq.db >%s 2>&1",
	         LLMQD_BIN, squat, dir, log);
	cr_assert_neq(system(cmd), 0);
	h_read_file(log, text, sizeof(text));
	cr_assert(strstr(text, "refusing to listen") && strstr(text, "belongs to uid"), "%s", text);
	close(ready[0]);
	close(report[0]);
}

Test(access, one_user_cannot_lock_out_the_others, .timeout = 60)
{
	struct daemon_proc d = {0};
	char dir[64], line[512], group_env[96], c;
	int ready[2], fds[16], i, status;
	pid_t pid;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	snprintf(group_env, sizeof(group_env), "LLMQ_SOCKET_GROUP=%s", user("users"));
	h_daemon_start(&d, dir, NULL, group_env, NULL);
	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Alice holds all the connections one user may, and sits on them. */
		become(user("alice"));
		for (i = 0; i < 16; i++) {
			fds[i] = h_raw_connect(d.sock);
			h_raw_send(fds[i], "{\"v\":1,\"op\":\"ping\"}\n");
			h_raw_line(fds[i], line, sizeof(line));
			if (!strstr(line, "\"ok\":true"))
				_exit(1);
		}
		(void)!write(ready[1], "r", 1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "alice holds 16 connections");
	cr_assert_eq(h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "ping", NULL),
	             75, "%s", err);
	cr_assert(strstr(err, "the most one user may hold"), "%s", err);
	cr_assert_eq(h_llmq_as(user("bob"), &d, out, sizeof(out), err, sizeof(err), "ping", NULL),
	             0, "bob is still served: %s", err);
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	close(ready[0]);
	h_daemon_signal(&d, SIGTERM);
}

/* curl as user, with args (NULL-terminated): its exit status; the body into out. */
static int curl_as(const char *user, char *buf, size_t len, ...)
{
	char *argv[32] = {"curl", "-s", "-m", "20"};
	int po[2], status, i = 4;
	size_t have = 0;
	ssize_t n;
	va_list ap;
	pid_t pid;

	va_start(ap, len);
	while (i < 31 && (argv[i] = va_arg(ap, char *)))
		i++;
	va_end(ap);
	argv[i] = NULL;
	cr_assert_eq(pipe(po), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(po[1], 1);
		close(po[0]);
		become(user);
		execvp("curl", argv);
		_exit(127);
	}
	close(po[1]);
	while (have + 1 < len && (n = read(po[0], buf + have, len - 1 - have)) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	close(po[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * Over loopback TCP the kernel says who the caller is: two real users'
 * files stay theirs, and a user outside the sockets' group is refused, as
 * the socket's mode refuses them.
 */
Test(access, tcp_callers_are_their_users, .timeout = 60)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], url[128], group_env[96], id[64] = "";
	json_object *o;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, NULL);
	snprintf(group_env, sizeof(group_env), "LLMQ_SOCKET_GROUP=%s", user("users"));
	h_daemon_start(&d, dir, &m, H_FAST, group_env, NULL);
	snprintf(file, sizeof(file), "%s/secret.jsonl", dir);
	h_write_batch(file, 2, "SECRET-OF-ALICE", 5);
	cr_assert_eq(chmod(file, 0644), 0);

	/* Alice uploads over TCP: the file is hers. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/files", d.http_port);
	snprintf(big, sizeof(big), "file=@%s", file);
	cr_assert_eq(
	    curl_as(user("alice"), out, sizeof(out), "-F", "purpose=batch", "-F", big, url, NULL),
	    0);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	snprintf(id, sizeof(id), "%s", h_jstr(o, "id") ? h_jstr(o, "id") : "");
	json_object_put(o);
	cr_assert(id[0], "%s", out);

	/* Bob, over TCP too, neither lists, reads nor deletes it. */
	cr_assert_eq(curl_as(user("bob"), out, sizeof(out), url, NULL), 0);
	cr_assert_null(strstr(out, id), "bob's list: %s", out);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/files/%s/content", d.http_port, id);
	cr_assert_eq(curl_as(user("bob"), out, sizeof(out), url, NULL), 0);
	cr_assert_null(strstr(out, "SECRET-OF-ALICE"), "%s", out);
	cr_assert(strstr(out, "\"error\""), "%s", out);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/files/%s", d.http_port, id);
	cr_assert_eq(curl_as(user("bob"), out, sizeof(out), "-X", "DELETE", url, NULL), 0);
	cr_assert(strstr(out, "\"error\""), "%s", out);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/files/%s/content", d.http_port, id);
	cr_assert_eq(curl_as(user("alice"), out, sizeof(out), url, NULL), 0);
	cr_assert(strstr(out, "SECRET-OF-ALICE"), "alice still reads hers: %s", out);

	/* Mallory is outside the users' group: refused, and told why. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", d.http_port);
	cr_assert_eq(curl_as(user("mallory"), out, sizeof(out), "-H",
	                     "Content-Type: application/json", "-d",
	                     "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
	                     "\"content\":\"spend the key\"}]}",
	                     url, NULL),
	             0);
	cr_assert(strstr(out, "permission_denied") && strstr(out, "socket_group"), "%s", out);
	h_daemon_signal(&d, SIGTERM);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM calls WHERE outcome != 'refused'"), 0,
	             "nothing of mallory's went upstream");
	h_mock_stop(&m);
}

/* Who the live page shows: the ids of batches and the uids of errors and usage in o. */
static int live_has_batch(json_object *o, const char *id)
{
	json_object *a = NULL, *b;
	size_t i;

	cr_assert(json_object_object_get_ex(o, "batches", &a), "%s", json_object_to_json_string(o));
	for (i = 0; i < json_object_array_length(a); i++) {
		b = json_object_array_get_idx(a, i);
		if (h_jstr(b, "id") && strcmp(h_jstr(b, "id"), id) == 0)
			return 1;
	}
	return 0;
}

/* Every error and usage row of o is uid's (or o has none). */
static void live_all_of(json_object *o, const char *what, int64_t uid)
{
	json_object *a = NULL, *u = NULL;
	size_t i;

	if (strcmp(what, "usage") == 0) {
		cr_assert(json_object_object_get_ex(o, "usage", &u));
		cr_assert(json_object_object_get_ex(u, "users", &a));
	} else {
		cr_assert(json_object_object_get_ex(o, what, &a));
	}
	for (i = 0; i < json_object_array_length(a); i++)
		cr_assert_eq(h_jint(json_object_array_get_idx(a, i), "uid"), uid, "%s: %s", what,
		             json_object_to_json_string(a));
}

static size_t live_count(json_object *o, const char *what)
{
	json_object *a = NULL, *u = NULL;

	if (strcmp(what, "usage") == 0) {
		cr_assert(json_object_object_get_ex(o, "usage", &u));
		cr_assert(json_object_object_get_ex(u, "users", &a));
	} else {
		cr_assert(json_object_object_get_ex(o, what, &a));
	}
	return json_object_array_length(a);
}

/* GET /v1/llmq/live as user, over loopback TCP. */
static json_object *live_as(const char *user, const struct daemon_proc *d)
{
	char url[128];
	json_object *o;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/llmq/live", d->http_port);
	cr_assert_eq(curl_as(user, out, sizeof(out), url, NULL), 0);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	return o;
}

/*
 * The live page shows each user their own batches, errors and usage, an
 * admin everyone's, and a user outside the users' group the lanes alone;
 * the lanes' figures are everyone's.
 */
Test(access, the_live_page_shows_each_user_their_own, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], a[40], b[40], group_env[96], admin_env[96];
	const char *who[] = {"alice", "bob"};
	const char *ids[] = {a, b};
	json_object *o, *lane, *h, *v;
	int64_t uid[2];
	int i;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, "--fail-every", "3", NULL);
	snprintf(group_env, sizeof(group_env), "LLMQ_SOCKET_GROUP=%s", user("users"));
	snprintf(admin_env, sizeof(admin_env), "LLMQ_ADMIN_GROUP=%s", user("admin"));
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_RETRY_MAX_ATTEMPTS=1", group_env, admin_env,
	               NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 3, "gpt-4o-mini", 5);
	cr_assert_eq(chmod(file, 0644), 0);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(h_llmq_as(user(who[i]), &d, out, sizeof(out), err, sizeof(err),
		                       "submit", file, NULL),
		             0, "%s", err);
		snprintf((char *)ids[i], 40, "%.*s", (int)strcspn(out, "\n"), out);
		json_object_put(h_wait_for(&d, ids[i], h_batch_finished, 30));
		uid[i] = (int64_t)getpwnam(user(who[i]))->pw_uid;
	}
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts WHERE error_code IS NOT NULL"), 2,
	             "a failure in each batch");

	for (i = 0; i < 2; i++) {
		o = live_as(user(who[i]), &d);
		cr_assert(live_has_batch(o, ids[i]), "%s sees hers", who[i]);
		cr_assert(!live_has_batch(o, ids[1 - i]), "%s does not see the other's", who[i]);
		live_all_of(o, "errors", uid[i]);
		live_all_of(o, "usage", uid[i]);
		cr_assert_eq(live_count(o, "errors"), 1);
		cr_assert_eq(live_count(o, "usage"), 1);
		cr_assert_str_eq(h_jstr(json_object_object_get(o, "viewer"), "sees"), "own");
		cr_assert_str_eq(h_jstr(json_object_object_get(o, "viewer"), "user"), user(who[i]));
		/* The lane's figures are everyone's: both batches' requests. */
		lane = json_object_array_get_idx(json_object_object_get(o, "lanes"), 0);
		h = json_object_object_get(json_object_object_get(lane, "history"), "totals");
		cr_assert_eq(h_jint(h, "requests"), 6, "%s", json_object_to_json_string(h));
		json_object_put(o);
	}

	/* Carol, an admin: everyone's, with their names. */
	o = live_as(user("carol"), &d);
	cr_assert(live_has_batch(o, a) && live_has_batch(o, b));
	cr_assert_eq(live_count(o, "errors"), 2);
	cr_assert_eq(live_count(o, "usage"), 2);
	cr_assert_str_eq(h_jstr(json_object_object_get(o, "viewer"), "sees"), "all");
	v = json_object_array_get_idx(json_object_object_get(o, "batches"), 0);
	cr_assert(strcmp(h_jstr(v, "user"), user("alice")) == 0 ||
	              strcmp(h_jstr(v, "user"), user("bob")) == 0,
	          "the owner by name: %s", json_object_to_json_string(v));
	json_object_put(o);

	/* Mallory, outside the users' group: the lanes, nothing of anyone's. */
	o = live_as(user("mallory"), &d);
	cr_assert_eq(live_count(o, "batches"), 0);
	cr_assert_eq(live_count(o, "errors"), 0);
	cr_assert_eq(live_count(o, "usage"), 0);
	cr_assert_str_eq(h_jstr(json_object_object_get(o, "viewer"), "sees"), "lanes");
	cr_assert_eq(json_object_array_length(json_object_object_get(o, "lanes")), 1);
	json_object_put(o);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}

/*
 * Steering is for root and the admin group: Alice, a user, gets the
 * permission error (exit 77) for each, and nothing changes; Carol, an
 * admin, pauses, resumes, retries and sets, and the log names her.
 */
Test(access, steering_is_for_the_admins, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40], group_env[96], admin_env[96], want[160];
	static const char *const verbs[][4] = {
	    {"pause", "openai", NULL, NULL},
	    {"resume", "openai", NULL, NULL},
	    {"set", "openai", "tpm_limit=1000", NULL},
	};
	static char log[1 << 20];
	int i, rc;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, "--fail-every", "2", NULL);
	snprintf(group_env, sizeof(group_env), "LLMQ_SOCKET_GROUP=%s", user("users"));
	snprintf(admin_env, sizeof(admin_env), "LLMQ_ADMIN_GROUP=%s", user("admin"));
	h_daemon_start(&d, dir, &m, H_FAST, "OPENAI_RETRY_MAX_ATTEMPTS=1", group_env, admin_env,
	               NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 2, "gpt-4o-mini", 5);
	cr_assert_eq(chmod(file, 0644), 0);
	cr_assert_eq(
	    h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "submit", file, NULL),
	    0, "%s", err);
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(out, "\n"), out);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));

	/* Alice, even of her own batch: refused, told who may. */
	for (i = 0; i < 3; i++) {
		rc = h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), verbs[i][0],
		               verbs[i][1], verbs[i][2], NULL);
		cr_assert_eq(rc, 77, "%s: %s", verbs[i][0], err);
		snprintf(want, sizeof(want), "%s is for root and the members of the group %s",
		         verbs[i][0], user("admin"));
		cr_assert(strstr(err, want), "%s", err);
	}
	cr_assert_eq(
	    h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "pause", id, NULL), 77,
	    "%s", err);
	cr_assert_eq(h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "retry", id,
	                       "--failed", NULL),
	             77, "%s", err);
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM attempts"), 2, "nothing was retried");
	cr_assert_eq(h_sql_int(&d, "SELECT count(*) FROM lane_paused"), 0, "nor paused");

	/* Carol, an admin. */
	cr_assert_eq(h_llmq_as(user("carol"), &d, out, sizeof(out), err, sizeof(err), "pause",
	                       "openai", NULL),
	             0, "%s", err);
	cr_assert_eq(h_llmq_as(user("carol"), &d, out, sizeof(out), err, sizeof(err), "resume",
	                       "openai", NULL),
	             0, "%s", err);
	cr_assert_eq(h_llmq_as(user("carol"), &d, out, sizeof(out), err, sizeof(err), "set",
	                       "openai", "tpm_limit=1000000", NULL),
	             0, "%s", err);
	cr_assert_eq(h_llmq_as(user("carol"), &d, out, sizeof(out), err, sizeof(err), "retry", id,
	                       "--failed", NULL),
	             0, "%s", err);
	json_object_put(h_wait_for(&d, id, h_batch_completed, 30));
	h_daemon_signal(&d, SIGTERM);
	h_read_file(d.log, log, sizeof(log));
	snprintf(want, sizeof(want), "lane openai: paused by %s (uid %u)", user("carol"),
	         (unsigned)getpwnam(user("carol"))->pw_uid);
	cr_assert(strstr(log, want), "%s", log);
	snprintf(want, sizeof(want), "queued again by %s", user("carol"));
	cr_assert(strstr(log, want), "%s", log);
	snprintf(want, sizeof(want), "limits set by %s", user("carol"));
	cr_assert(strstr(log, want), "%s", log);
	h_mock_stop(&m);
}

/* llmq usage: a user sees their own, by name; an admin everyone's. */
Test(access, usage_shows_each_user_their_own, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], group_env[96], admin_env[96];
	const char *who[] = {"alice", "bob"};
	json_object *o, *rows;
	int i;

	need_root();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0);
	h_mock_start(&m, dir, NULL);
	snprintf(group_env, sizeof(group_env), "LLMQ_SOCKET_GROUP=%s", user("users"));
	snprintf(admin_env, sizeof(admin_env), "LLMQ_ADMIN_GROUP=%s", user("admin"));
	h_daemon_start(&d, dir, &m, H_FAST, group_env, admin_env, NULL);
	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	for (i = 0; i < 2; i++) {
		h_write_batch(file, i + 1, "gpt-4o-mini", 5);
		cr_assert_eq(chmod(file, 0644), 0);
		cr_assert_eq(h_llmq_as(user(who[i]), &d, out, sizeof(out), err, sizeof(err),
		                       "submit", file, NULL),
		             0, "%s", err);
		snprintf(big, sizeof(big), "%.*s", (int)strcspn(out, "\n"), out);
		json_object_put(h_wait_for(&d, big, h_batch_completed, 30));
	}
	for (i = 0; i < 2; i++) {
		cr_assert_eq(h_llmq_as(user(who[i]), &d, out, sizeof(out), err, sizeof(err),
		                       "usage", "--json", NULL),
		             0, "%s", err);
		o = json_tokener_parse(out);
		cr_assert_not_null(o, "%s", out);
		rows = json_object_object_get(o, "rows");
		cr_assert_eq(json_object_array_length(rows), 1, "%s: %s", who[i], out);
		cr_assert_str_eq(h_jstr(json_object_array_get_idx(rows, 0), "user"), user(who[i]));
		cr_assert_eq(h_jint(json_object_array_get_idx(rows, 0), "requests"), i + 1);
		cr_assert_str_eq(h_jstr(o, "sees"), "own");
		json_object_put(o);
	}
	cr_assert_eq(h_llmq_as(user("carol"), &d, out, sizeof(out), err, sizeof(err), "usage",
	                       "--json", NULL),
	             0, "%s", err);
	o = json_tokener_parse(out);
	cr_assert_not_null(o, "%s", out);
	cr_assert_eq(json_object_array_length(json_object_object_get(o, "rows")), 2, "%s", out);
	cr_assert_eq(h_jint(json_object_object_get(o, "total"), "requests"), 3);
	cr_assert_str_eq(h_jstr(o, "sees"), "all");
	json_object_put(o);
	cr_assert_eq(
	    h_llmq_as(user("alice"), &d, out, sizeof(out), err, sizeof(err), "usage", NULL), 0,
	    "%s", err);
	cr_assert(strstr(out, ", yours") && strstr(out, user("alice")) && !strstr(out, user("bob")),
	          "%s", out);
	h_daemon_signal(&d, SIGTERM);
	h_mock_stop(&m);
}
