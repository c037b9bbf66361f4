/*
 * fleet-url.c - where the fleet's Redis is: redis://[user:password@]host:port/db
 * or unix:///path/to/redis.sock[?db=N], parsed by libcurl's URL API (never by
 * hand), and the URL as it may be shown (never with its user or password).
 * Also reads the password from a file or a systemd credential. Pure but for
 * that file; does not log.
 */
#include "fleet/fleet.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FLEET_URL_EXAMPLE "redis://127.0.0.1:6379/0 or unix:///run/redis/redis.sock"

/* A database number: 0..FLEET_MAX_DB, all digits. */
static int fleet_url_db(const char *s, int *ret)
{
	char *end;
	long v;

	if (!*s || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || v > FLEET_MAX_DB)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

/* Copy a part curl handed out into a fixed field; -ENAMETOOLONG past it. */
static int fleet_url_copy(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return -ENAMETOOLONG;
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

/*
 * unix:///path: curl's parser takes the first path segment of a URL of a
 * scheme it does not know for a host ("unix:///run/x" has host "run"); its
 * file: parser reads the same shape as a path. The scheme told, the rest is
 * parsed as a file: URL.
 */
static int fleet_url_unix(const char *url, struct fleet_addr *a, char *why, size_t whylen)
{
	CURLU *u = curl_url();
	char *file = NULL, *path = NULL, *query = NULL;
	CURLUcode uc;
	int r = -EINVAL;

	if (!u || asprintf(&file, "file%s", url + strlen("unix")) < 0) {
		file = NULL;
		snprintf(why, whylen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	uc = curl_url_set(u, CURLUPART_URL, file, 0);
	if (uc != CURLUE_OK) {
		snprintf(why, whylen,
		         "a unix:// URL is unix:///path/to/redis.sock[?db=N], with no host and no "
		         "password (%s); the password goes in redis_password_file",
		         curl_url_strerror(uc));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) != CURLUE_OK ||
	    strlen(path) < 2) {
		snprintf(why, whylen, "no socket path; expected e.g. unix:///run/redis/redis.sock");
		goto out;
	}
	if (fleet_url_copy(a->path, sizeof(a->path), path) < 0) {
		snprintf(why, whylen, "the socket path is longer than %zu bytes",
		         sizeof(a->path) - 1);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK &&
	    (strncmp(query, "db=", 3) != 0 || fleet_url_db(query + 3, &a->db) < 0)) {
		snprintf(why, whylen,
		         "the only query a unix:// URL takes is ?db=N, N from 0 to %d (e.g. "
		         "unix:///run/redis/redis.sock?db=2)",
		         FLEET_MAX_DB);
		goto out;
	}
	a->is_unix = 1;
	r = 0;
out:
	free(file);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return r;
}

static int fleet_url_tcp(CURLU *u, struct fleet_addr *a, char *why, size_t whylen)
{
	char *host = NULL, *port = NULL, *path = NULL, *user = NULL, *password = NULL, *q = NULL;
	size_t n;
	int r = -EINVAL;

	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
		snprintf(why, whylen, "no host; expected e.g. " FLEET_URL_EXAMPLE);
		goto out;
	}
	/* An IPv6 literal comes in brackets, which hiredis does not want. */
	n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	if (fleet_url_copy(a->host, sizeof(a->host), host) < 0) {
		snprintf(why, whylen, "the host name is too long");
		goto out;
	}
	a->port = FLEET_DEFAULT_PORT;
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
		a->port = atoi(port);
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && strcmp(path, "/") != 0 &&
	    fleet_url_db(path + 1, &a->db) < 0) {
		snprintf(why, whylen,
		         "the path is the database's number, from 0 to %d (e.g. "
		         "redis://127.0.0.1:6379/2)",
		         FLEET_MAX_DB);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &q, 0) == CURLUE_OK) {
		snprintf(why, whylen, "a redis:// URL takes no query or fragment");
		goto out;
	}
	if ((curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) == CURLUE_OK &&
	     fleet_url_copy(a->user, sizeof(a->user), user) < 0) ||
	    (curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE) == CURLUE_OK &&
	     fleet_url_copy(a->password, sizeof(a->password), password) < 0)) {
		snprintf(why, whylen, "the user or the password is too long");
		goto out;
	}
	r = 0;
out:
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(q);
	curl_free(user);
	if (password) {
		explicit_bzero(password, strlen(password));
		curl_free(password);
	}
	return r;
}

int fleet_url_parse(const char *url, struct fleet_addr *ret, char *why, size_t whylen)
{
	struct fleet_addr a = {0};
	CURLU *u = curl_url();
	char *scheme = NULL;
	CURLUcode uc;
	int r = -EINVAL;

	if (!u) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	/* unix:/// has no authority: parsed again only to tell its scheme. */
	if (uc == CURLUE_NO_HOST &&
	    curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME | CURLU_NO_AUTHORITY) ==
	        CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    strcasecmp(scheme, "unix") == 0)
		uc = CURLUE_OK;
	if (uc == CURLUE_NO_HOST) {
		snprintf(why, whylen,
		         "no host; expected e.g. " FLEET_URL_EXAMPLE
		         " (a unix:// URL takes no password: it goes in redis_password_file)");
		goto out;
	}
	if (uc != CURLUE_OK) {
		snprintf(why, whylen, "not a URL (%s); expected e.g. " FLEET_URL_EXAMPLE,
		         curl_url_strerror(uc));
		goto out;
	}
	if (!scheme && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
		goto out;
	if (strcasecmp(scheme, "unix") == 0)
		r = fleet_url_unix(url, &a, why, whylen);
	else if (strcasecmp(scheme, "redis") == 0)
		r = fleet_url_tcp(u, &a, why, whylen);
	else if (strcasecmp(scheme, "rediss") == 0)
		snprintf(
		    why, whylen,
		    "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; reach a remote "
		    "Redis through a Unix socket, a private network or a TLS tunnel such as "
		    "stunnel, and name its local end here");
	else
		snprintf(why, whylen, "the scheme must be redis:// or unix:// (e.g. %s)",
		         FLEET_URL_EXAMPLE);
	if (r == 0)
		*ret = a;
out:
	explicit_bzero(&a, sizeof(a));
	curl_free(scheme);
	curl_url_cleanup(u);
	return r;
}

const char *fleet_url_show(const struct fleet_addr *a, char *buf, size_t len)
{
	int v6 = !a->is_unix && strchr(a->host, ':');

	if (a->is_unix)
		snprintf(buf, len, "unix://%s%s", a->path, a->db ? "?db=" : "");
	else
		snprintf(buf, len, "redis://%s%s%s:%d/%d", v6 ? "[" : "", a->host, v6 ? "]" : "",
		         a->port, a->db);
	if (a->is_unix && a->db) {
		size_t n = strlen(buf);

		snprintf(buf + n, len > n ? len - n : 0, "%d", a->db);
	}
	return buf;
}

/* The first line of the file at fd, without its line end, into *ret. */
static int fleet_read_secret_fd(int fd, char **ret)
{
	char buf[1024];
	ssize_t n;
	int r = 0;

	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!buf[0])
		r = -ENODATA;
	else if ((size_t)n == sizeof(buf) - 1)
		r = -E2BIG;
	else if (!(*ret = strdup(buf)))
		r = -ENOMEM;
	explicit_bzero(buf, sizeof(buf));
	return r;
}

int fleet_read_password(const char *file, char **ret)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4096];
	int fd, r;

	*ret = NULL;
	if (!file[0])
		return 0;
	/* A bare name is a systemd credential (LoadCredential=NAME:PATH). */
	if (!strchr(file, '/')) {
		if (!dir || !*dir)
			return -ENOKEY;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
			return -ENAMETOOLONG;
		file = path;
	}
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	r = fleet_read_secret_fd(fd, ret);
	close(fd);
	return r;
}
