/*
 * access.c - the admin check, with a small cache in front of the name service.
 */
#include "access.h"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCESS_CACHE 64
#define ACCESS_TTL_MS 60000

static struct {
	uid_t uid;
	int admin;
	int64_t at;
} cache[ACCESS_CACHE];

static int in_group(uid_t uid, const char *group)
{
	struct passwd *pw;
	struct group *gr;
	gid_t groups[256];
	int n = 256, i;

	if (!group || !*group || !(gr = getgrnam(group)) || !(pw = getpwuid(uid)))
		return 0;
	if (pw->pw_gid == gr->gr_gid)
		return 1;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		return 0;
	for (i = 0; i < n; i++)
		if (groups[i] == gr->gr_gid)
			return 1;
	return 0;
}

static int is_admin(const struct config *cfg, uid_t uid, int64_t now)
{
	unsigned slot = (unsigned)uid % ACCESS_CACHE;

	if (uid == 0 || uid == geteuid())
		return 1;
	if (cache[slot].at && cache[slot].uid == uid && now - cache[slot].at < ACCESS_TTL_MS)
		return cache[slot].admin;
	cache[slot].uid = uid;
	cache[slot].admin = in_group(uid, cfg->admin_group);
	cache[slot].at = now ? now : 1;
	return cache[slot].admin;
}

int access_may_connect(const struct config *cfg, uid_t uid, int64_t now_ms)
{
	static struct {
		uid_t uid;
		int ok;
		int64_t at;
	} seen[ACCESS_CACHE];
	unsigned slot = (unsigned)uid % ACCESS_CACHE;

	if (uid == 0 || uid == geteuid())
		return 1;
	if (!cfg->socket_group[0])
		return 0;
	if (seen[slot].at && seen[slot].uid == uid && now_ms - seen[slot].at < ACCESS_TTL_MS)
		return seen[slot].ok;
	seen[slot].uid = uid;
	seen[slot].ok = in_group(uid, cfg->socket_group);
	seen[slot].at = now_ms ? now_ms : 1;
	return seen[slot].ok;
}

int64_t access_scope(const struct config *cfg, uid_t uid, int64_t now_ms)
{
	if (uid == (uid_t)-1)
		return ACCESS_NONE;
	return is_admin(cfg, uid, now_ms) ? ACCESS_ALL : (int64_t)uid;
}

int access_may_see(int64_t scope, int64_t owner)
{
	return scope == ACCESS_ALL || (scope >= 0 && scope == owner);
}
