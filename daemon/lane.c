/*
 * lane.c - lane keys and URLs. Keys are read once at start and never logged.
 */
#include "lane.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_credential(const char *dir, const char *name, char **ret)
{
	char path[4096], buf[4096];
	ssize_t n;
	int fd;

	if (strchr(name, '/'))
		return -EINVAL;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	*ret = n > 0 ? strdup(buf) : NULL;
	explicit_bzero(buf, sizeof(buf));
	return n > 0 && !*ret ? -ENOMEM : 0;
}

int lane_load_key(const struct lane_config *l, char **ret)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY"), *v;
	char *key = NULL;
	int r;

	if (dir && *dir && l->key_credential[0]) {
		r = read_credential(dir, l->key_credential, &key);
		if (r < 0)
			return r;
	}
	if (!key && l->key_env[0] && (v = getenv(l->key_env)) && *v) {
		key = strdup(v);
		if (!key)
			return -ENOMEM;
	}
	*ret = key;
	return 0;
}

int lane_url(const struct lane_config *l, const char *path, char *buf, size_t len)
{
	size_t blen = strlen(l->base_url);
	int n;

	while (blen > 0 && l->base_url[blen - 1] == '/')
		blen--;
	if (blen >= 3 && strncmp(l->base_url + blen - 3, "/v1", 3) == 0 &&
	    strncmp(path, "/v1/", 4) == 0)
		path += 3;
	n = snprintf(buf, len, "%.*s%s", (int)blen, l->base_url, path);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

const char *lane_redact_url(const char *url, char *buf, size_t len)
{
	const char *host = strstr(url, "://"), *end, *at;

	if (len == 0)
		return buf;
	host = host ? host + 3 : url;
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(end - host));
	/* The last '@' of the authority ends its userinfo. */
	while (at && memchr(at + 1, '@', (size_t)(end - at - 1)))
		at = memchr(at + 1, '@', (size_t)(end - at - 1));
	if (at)
		snprintf(buf, len, "%.*s***%s", (int)(host - url), url, at);
	else
		snprintf(buf, len, "%s", url);
	return buf;
}
