/*
 * access.c - the admin and users' group checks, with a small cache in front of
 * the name service.
 */
#include "service/access.h"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCESS_CACHE 64
#define ACCESS_TTL_MS 60000

/* Whether a uid is in a group, remembered for ACCESS_TTL_MS per uid. */
struct access_memo {
	uid_t uid;
	int yes;
	int64_t at;
};

static struct access_memo admins[ACCESS_CACHE], users[ACCESS_CACHE];

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

/* root and llmqd's own user always; others when in group (asked once a TTL). */
static int access_member(struct access_memo *memo, const char *group, uid_t uid, int64_t now)
{
	struct access_memo *m = &memo[(unsigned)uid % ACCESS_CACHE];

	if (uid == 0 || uid == geteuid())
		return 1;
	if (!group[0])
		return 0;
	if (m->at && m->uid == uid && now - m->at < ACCESS_TTL_MS)
		return m->yes;
	m->uid = uid;
	m->yes = in_group(uid, group);
	m->at = now ? now : 1;
	return m->yes;
}

int access_may_connect(const struct config *cfg, uid_t uid, int64_t now_ms)
{
	return access_member(users, cfg->socket_group, uid, now_ms);
}

int64_t access_scope(const struct config *cfg, uid_t uid, int64_t now_ms)
{
	if (uid == (uid_t)-1)
		return ACCESS_NONE;
	return access_member(admins, cfg->admin_group, uid, now_ms) ? ACCESS_ALL : (int64_t)uid;
}

int access_may_see(int64_t scope, int64_t owner)
{
	return scope == ACCESS_ALL || (scope >= 0 && scope == owner);
}
