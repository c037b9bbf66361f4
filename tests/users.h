/*
 * users.h - the real users and groups a test of ownership runs as, made once
 * per runner by tests/users.sh and named after the runner's pid (each test
 * runs in a child of the runner), so that runs side by side never share one,
 * and removed when the run ends; a run killed before that is swept by the
 * next one and by ctest's cleanup fixture. Include it in one test file, and
 * call users_run_start()
 * and users_run_end() from its PRE_ALL and POST_ALL report hooks. Needs USERS_SH defined.
 */
#ifndef LLMQ_TEST_USERS_H
#define LLMQ_TEST_USERS_H

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* llmqt-RUNNER-ROLE: alice, bob, carol (admin), mallory (outside the users' group). */
static inline const char *user(const char *role)
{
	static char names[8][48];
	static pid_t runner;
	static int next;
	char *n = names[next++ % 8];

	if (!runner) /* first asked in the test's own process, before any fork */
		runner = getppid();
	snprintf(n, sizeof(names[0]), "llmqt-%d-%s", (int)runner, role);
	return n;
}

static inline void need_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to create the test's users (CI runs as root)");
	cr_assert_not_null(getpwnam(user("mallory")), "the runner did not make the test's users");
}

static inline int users_sh(const char *what)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "sh %s %s %d", USERS_SH, what, (int)getpid());
	return system(cmd);
}

/* From the runner's PRE_ALL hook: an earlier run's users swept, this run's made. */
static inline void users_run_start(const char *test)
{
	if (geteuid() != 0)
		return;
	if (users_sh("sweep") != 0)
		fprintf(stderr, "%s: cannot remove the users of an earlier run\n", test);
	if (users_sh("create") != 0)
		fprintf(stderr, "%s: cannot create the test's users\n", test);
}

/* From the runner's POST_ALL hook: this run's users removed. */
static inline void users_run_end(const char *test)
{
	if (geteuid() == 0 && users_sh("remove") != 0)
		fprintf(stderr, "%s: cannot remove the test's users\n", test);
}

#endif
