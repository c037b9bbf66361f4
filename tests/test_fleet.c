/*
 * test_fleet.c - the fleet's shared gate: where its Redis is (URL parsing);
 * the connection to a real redis-server (connect, a wrong password, a Redis
 * that never answers, reconnecting); and the Lua library run against gate.c,
 * case by case, in a real redis-server.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"

struct url_case {
	const char *url;
	int ok;
	int is_unix;
	const char *where; /* path or host */
	int port, db;
	const char *user, *password;
	const char *shown; /* fleet_url_show(), or the error's words */
};

Test(fleet_url, parsed_by_libcurl_and_shown_without_credentials)
{
	static const struct url_case cases[] = {
	    {"redis://127.0.0.1:6379/0", 1, 0, "127.0.0.1", 6379, 0, "", "",
	     "redis://127.0.0.1:6379/0"},
	    {"redis://cache.internal", 1, 0, "cache.internal", 6379, 0, "", "",
	     "redis://cache.internal:6379/0"},
	    {"redis://:p%40ss@10.0.0.1:7000/3", 1, 0, "10.0.0.1", 7000, 3, "", "p@ss",
	     "redis://10.0.0.1:7000/3"},
	    {"redis://llmq:pw@[::1]:6380/", 1, 0, "::1", 6380, 0, "llmq", "pw",
	     "redis://[::1]:6380/0"},
	    {"unix:///run/redis/redis.sock", 1, 1, "/run/redis/redis.sock", 0, 0, "", "",
	     "unix:///run/redis/redis.sock"},
	    {"unix:///tmp/my%20redis.sock?db=5", 1, 1, "/tmp/my redis.sock", 0, 5, "", "",
	     "unix:///tmp/my redis.sock?db=5"},
	    {"redis://host:6379/db1", 0, 0, NULL, 0, 0, NULL, NULL, "database's number"},
	    {"redis://host/99999", 0, 0, NULL, 0, 0, NULL, NULL, "database's number"},
	    {"redis://host/0?x=1", 0, 0, NULL, 0, 0, NULL, NULL, "no query"},
	    {"unix:///run/r.sock?database=1", 0, 0, NULL, 0, 0, NULL, NULL, "?db=N"},
	    {"unix://u:pw@/run/r.sock", 0, 0, NULL, 0, 0, NULL, NULL, "redis_password_file"},
	    {"unix:///", 0, 0, NULL, 0, 0, NULL, NULL, "no socket path"},
	    {"rediss://host:6380", 0, 0, NULL, 0, 0, NULL, NULL, "stunnel"},
	    {"http://host:6379", 0, 0, NULL, 0, 0, NULL, NULL, "redis:// or unix://"},
	    {"127.0.0.1:6379", 0, 0, NULL, 0, 0, NULL, NULL, "not a URL"},
	};
	struct fleet_addr a;
	char why[512], shown[512];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct url_case *c = &cases[i];
		int r = fleet_url_parse(c->url, &a, why, sizeof(why));

		if (!c->ok) {
			cr_assert_eq(r, -EINVAL, "%s was taken", c->url);
			cr_assert(strstr(why, c->shown), "%s: %s", c->url, why);
			continue;
		}
		cr_assert_eq(r, 0, "%s: %s", c->url, why);
		cr_assert_eq(a.is_unix, c->is_unix, "%s", c->url);
		cr_assert_str_eq(c->is_unix ? a.path : a.host, c->where, "%s", c->url);
		if (!c->is_unix)
			cr_assert_eq(a.port, c->port, "%s", c->url);
		cr_assert_eq(a.db, c->db, "%s", c->url);
		cr_assert_str_eq(a.user, c->user, "%s", c->url);
		cr_assert_str_eq(a.password, c->password, "%s", c->url);
		cr_assert_str_eq(fleet_url_show(&a, shown, sizeof(shown)), c->shown, "%s", c->url);
	}
}

Test(fleet_url, the_password_from_a_file_or_a_credential)
{
	char dir[] = "/tmp/llmq-test-fleet-XXXXXX", path[300], cmd[400], *pw = NULL;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/redis-password", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("s3cret\n", f);
	fclose(f);
	cr_assert_eq(fleet_read_password(path, &pw), 0);
	cr_assert_str_eq(pw, "s3cret", "the first line, without its end");
	free(pw);
	unsetenv("CREDENTIALS_DIRECTORY");
	cr_assert_eq(fleet_read_password("redis-password", &pw), -ENOKEY,
	             "a bare name is a credential: none without $CREDENTIALS_DIRECTORY");
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	cr_assert_eq(fleet_read_password("redis-password", &pw), 0);
	cr_assert_str_eq(pw, "s3cret");
	free(pw);
	cr_assert_eq(fleet_read_password("", &pw), 0);
	cr_assert_null(pw, "no file, no password");
	f = fopen(path, "w");
	fclose(f);
	cr_assert_eq(fleet_read_password(path, &pw), -ENODATA, "an empty file is an error");
	cr_assert_eq(fleet_read_password("/nonexistent/pw", &pw), -ENOENT);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}
