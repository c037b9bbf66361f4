/*
 * Who may see what, with real users: a root llmqd whose socket belongs to a
 * users' group, two submitters and an admin, each a real uid acting through
 * the real llmq. Creating users needs root; CI runs as root.
 */
#include <criterion/criterion.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char out[1 << 16], err[1 << 16], out2[1 << 16], err2[1 << 16];

#define USERS_GROUP "llmqt-users"
#define ADMIN_GROUP "llmqt-admin"

static void sh(const char *cmd)
{
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void make_users(void)
{
	sh("getent group " USERS_GROUP " >/dev/null || groupadd " USERS_GROUP);
	sh("getent group " ADMIN_GROUP " >/dev/null || groupadd " ADMIN_GROUP);
	sh("id llmqt-alice >/dev/null 2>&1 || useradd -M -N -G " USERS_GROUP " llmqt-alice");
	sh("id llmqt-bob >/dev/null 2>&1 || useradd -M -N -G " USERS_GROUP " llmqt-bob");
	sh("id llmqt-carol >/dev/null 2>&1 || useradd -M -N -G " USERS_GROUP "," ADMIN_GROUP
	   " llmqt-carol");
	/* Not in the users' group: may not even connect. */
	sh("id llmqt-mallory >/dev/null 2>&1 || useradd -M -N llmqt-mallory");
}

Test(access, batches_belong_to_their_submitter, .timeout = 120)
{
	struct mock_proc m = {0};
	struct daemon_proc d = {0};
	char dir[64], file[128], id[40];
	struct stat st;
	struct group *gr;
	int rc;

	if (geteuid() != 0)
		cr_skip_test("needs root to create the test's users (CI runs as root)");
	make_users();
	h_tmpdir(dir, sizeof(dir));
	cr_assert_eq(chmod(dir, 0711), 0, "the users reach the socket, not the database");
	h_mock_start(&m, dir, "--latency-ms", "50", NULL);
	h_daemon_start(&d, dir, &m, "OPENAI_STAGGER_SECONDS=0", "OPENAI_TPM_LIMIT=0",
	               "OPENAI_API_KEY=sk-secret-key-never-written-anywhere",
	               "LLMQ_SOCKET_GROUP=" USERS_GROUP, "LLMQ_ADMIN_GROUP=" ADMIN_GROUP, NULL);

	/* Files: the socket 0660 with the users' group, the database 0600. */
	gr = getgrnam(USERS_GROUP);
	cr_assert_eq(stat(d.sock, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0660, "socket mode %o", st.st_mode & 0777);
	cr_assert_eq(st.st_gid, gr->gr_gid);
	cr_assert_eq(stat(d.db, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "database mode %o", st.st_mode & 0777);

	snprintf(file, sizeof(file), "%s/batch.jsonl", dir);
	h_write_batch(file, 20, "gpt-4o-mini", 10);
	cr_assert_eq(chmod(file, 0644), 0);
	cr_assert_eq(
	    h_llmq_as("llmqt-alice", &d, out, sizeof(out), err, sizeof(err), "submit", file, NULL),
	    0, "%s", err);
	snprintf(id, sizeof(id), "%.*s", (int)strcspn(out, "\n"), out);

	/* Bob: Alice's batch answers exactly as an unknown one. */
	rc = h_llmq_as("llmqt-bob", &d, out, sizeof(out), err, sizeof(err), "status", id, NULL);
	cr_assert_eq(rc, 65, "%s", err);
	cr_assert_eq(h_llmq_as("llmqt-bob", &d, out2, sizeof(out2), err2, sizeof(err2), "status",
	                       "b_0000000000000000", NULL),
	             65);
	cr_assert_str_eq(err, err2, "no existence leak");
	cr_assert_eq(
	    h_llmq_as("llmqt-bob", &d, out, sizeof(out), err, sizeof(err), "cancel", id, NULL), 65);
	cr_assert_eq(
	    h_llmq_as("llmqt-bob", &d, out, sizeof(out), err, sizeof(err), "results", id, NULL),
	    65);
	cr_assert_eq(
	    h_llmq_as("llmqt-bob", &d, out, sizeof(out), err, sizeof(err), "wait", id, NULL), 65);
	cr_assert_eq(h_llmq_as("llmqt-bob", &d, out, sizeof(out), err, sizeof(err), "list", NULL),
	             0);
	cr_assert_null(strstr(out, id), "bob's list: %s", out);

	/* Alice sees, waits on and exports her own. */
	cr_assert_eq(h_llmq_as("llmqt-alice", &d, out, sizeof(out), err, sizeof(err), "list", NULL),
	             0);
	cr_assert(strstr(out, id), "alice's list: %s", out);
	cr_assert_eq(
	    h_llmq_as("llmqt-alice", &d, out, sizeof(out), err, sizeof(err), "wait", id, NULL), 0,
	    "%s", err);
	cr_assert_eq(
	    h_llmq_as("llmqt-alice", &d, out, sizeof(out), err, sizeof(err), "results", id, NULL),
	    0, "%s", err);
	cr_assert(strstr(out, "\"custom_id\":\"req-20\""), "%s", out);

	/* Carol, an admin, and root see all. */
	cr_assert_eq(
	    h_llmq_as("llmqt-carol", &d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0,
	    "%s", err);
	cr_assert_eq(h_llmq_as("llmqt-carol", &d, out, sizeof(out), err, sizeof(err), "list", NULL),
	             0);
	cr_assert(strstr(out, id), "%s", out);
	cr_assert_eq(h_llmq(&d, out, sizeof(out), err, sizeof(err), "status", id, NULL), 0);

	/* Outside the group: the socket itself is closed to them. */
	rc = h_llmq_as("llmqt-mallory", &d, out, sizeof(out), err, sizeof(err), "list", NULL);
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
