/*
 * lane.c - lane keys and URLs. Keys are read once at start and never logged;
 * URLs are parsed, joined and redacted by libcurl's URL API, never by hand.
 */
#include "lane.h"

#include <curl/curl.h>
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
	CURLU *u = curl_url();
	char *base = NULL, *url = NULL, joined[2048];
	size_t blen;
	int r = -EINVAL;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, l->base_url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &base, 0) != CURLUE_OK)
		goto out;
	blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	/* One "/v1": base_url may end with it, and the job's url begins with it. */
	if (blen >= 3 && strncmp(base + blen - 3, "/v1", 3) == 0 && strncmp(path, "/v1/", 4) == 0)
		path += 3;
	r = -ENAMETOOLONG;
	if ((size_t)snprintf(joined, sizeof(joined), "%.*s%s", (int)blen, base, path) >=
	    sizeof(joined))
		goto out;
	r = -EINVAL;
	if (curl_url_set(u, CURLUPART_PATH, joined, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
		goto out;
	r = -ENAMETOOLONG;
	if ((size_t)snprintf(buf, len, "%s", url) >= len)
		goto out;
	r = 0;
out:
	curl_free(base);
	curl_free(url);
	curl_url_cleanup(u);
	return r;
}

const char *lane_redact_url(const char *url, char *buf, size_t len)
{
	CURLU *u = curl_url();
	char *user = NULL, *password = NULL, *shown = NULL;

	if (len == 0)
		goto out;
	/* What cannot be parsed is not shown: it may hold a password all the same. */
	snprintf(buf, len, "(a base_url that is not a URL)");
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
		if (curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
		    curl_url_set(u, CURLUPART_USER, "***", 0) != CURLUE_OK)
			goto out;
	}
	if (curl_url_get(u, CURLUPART_URL, &shown, 0) == CURLUE_OK)
		snprintf(buf, len, "%s", shown);
out:
	curl_free(user);
	curl_free(password);
	curl_free(shown);
	curl_url_cleanup(u);
	return buf;
}
