/*
 * paths.c - default locations of the socket and the database.
 */
#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* buf = the first alen bytes of a, then suffix. */
static int put(char *buf, size_t len, const char *a, size_t alen, const char *suffix)
{
	int n = snprintf(buf, len, "%.*s%s", (int)alen, a, suffix);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* systemd's *_DIRECTORY variables may hold a colon-separated list: take the first. */
static size_t first_len(const char *list)
{
	const char *c = strchr(list, ':');

	return c ? (size_t)(c - list) : strlen(list);
}

int paths_socket(char *buf, size_t len)
{
	const char *v;
	char tmp[64];

	if ((v = env("LLMQ_SOCKET")))
		return put(buf, len, v, strlen(v), "");
	if ((v = env("RUNTIME_DIRECTORY")))
		return put(buf, len, v, first_len(v), "/llmq.sock");
	if (geteuid() == 0)
		return put(buf, len, LLMQ_SYSTEM_SOCKET, strlen(LLMQ_SYSTEM_SOCKET), "");
	if ((v = env("XDG_RUNTIME_DIR")))
		return put(buf, len, v, strlen(v), "/llmq/llmq.sock");
	snprintf(tmp, sizeof(tmp), "/tmp/llmq-%u", (unsigned)geteuid());
	return put(buf, len, tmp, strlen(tmp), "/llmq.sock");
}

int paths_db(char *buf, size_t len)
{
	const char *v;

	if ((v = env("LLMQ_DB")))
		return put(buf, len, v, strlen(v), "");
	if ((v = env("STATE_DIRECTORY")))
		return put(buf, len, v, first_len(v), "/llmq.db");
	if (geteuid() == 0)
		return put(buf, len, "/var/lib/llmq/llmq.db", 21, "");
	if ((v = env("XDG_STATE_HOME")))
		return put(buf, len, v, strlen(v), "/llmq/llmq.db");
	if ((v = env("HOME")))
		return put(buf, len, v, strlen(v), "/.local/state/llmq/llmq.db");
	return -ENOENT;
}

int paths_mkparent(const char *path)
{
	char tmp[4096];
	size_t n = strlen(path);
	char *p;

	if (n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	p = strrchr(tmp, '/');
	if (!p || p == tmp)
		return 0;
	*p = '\0';
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int owned_by(uid_t uid, const uid_t *owners, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (owners[i] == uid)
			return 1;
	return 0;
}

int paths_check_parent(const char *path, const uid_t *owners, int n, char *why, size_t len)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	size_t dlen;
	struct stat st;

	if (!slash) {
		dir[0] = '.';
		dir[1] = '\0';
	} else {
		dlen = slash == path ? 1 : (size_t)(slash - path);
		if (dlen >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, dlen);
		dir[dlen] = '\0';
	}
	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, len, "%s is not a directory (a symlink?)", dir);
		return -EPERM;
	}
	if (!owned_by(st.st_uid, owners, n)) {
		snprintf(why, len,
		         "%s belongs to uid %u, so its owner could put another socket there", dir,
		         (unsigned)st.st_uid);
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, len,
		         "%s (mode %04o) is writable by other users, who could put another socket "
		         "there",
		         dir, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}
