/*
 * lane.c - lane keys and URLs. Keys are read once at start and never logged;
 * URLs are parsed, joined and redacted by libcurl's URL API, never by hand.
 */
#include "gate/lane.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
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

static int lane_url_join(const char *base_url, const char *path, char *buf, size_t len)
{
	CURLU *u = curl_url();
	char *base = NULL, *url = NULL, joined[2048];
	size_t blen;
	int r = -EINVAL;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, base_url, 0) != CURLUE_OK ||
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

/*
 * The joins asked for last, each thread its own: a lane asks for the same
 * few URLs over and over (one an endpoint), and libcurl's URL API costs a
 * parse and a build each time.
 */
#define LANE_URL_MEMO 8

struct lane_url_memo {
	char base_url[512], path[256], url[1024];
};

static _Thread_local struct lane_url_memo lane_memo[LANE_URL_MEMO];
static _Thread_local unsigned lane_memo_next;

int lane_url(const struct lane_config *l, const char *path, char *buf, size_t len)
{
	struct lane_url_memo *m;
	size_t i;
	int r;

	for (i = 0; i < LANE_URL_MEMO; i++) {
		m = &lane_memo[i];
		if (m->url[0] && strcmp(m->path, path) == 0 &&
		    strcmp(m->base_url, l->base_url) == 0) {
			if ((size_t)snprintf(buf, len, "%s", m->url) >= len)
				return -ENAMETOOLONG;
			return 0;
		}
	}
	r = lane_url_join(l->base_url, path, buf, len);
	if (r < 0 || strlen(l->base_url) >= sizeof(m->base_url) ||
	    strlen(path) >= sizeof(m->path) || strlen(buf) >= sizeof(m->url))
		return r; /* too long to keep: joined afresh each time */
	m = &lane_memo[lane_memo_next++ % LANE_URL_MEMO];
	strcpy(m->base_url, l->base_url);
	strcpy(m->path, path);
	strcpy(m->url, buf);
	return 0;
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

/* The addresses host stands for, without asking DNS: a literal, or localhost. */
static int lane_host_addrs(const char *host, struct sockaddr_storage *ret, int max)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ret[0];
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ret[0];
	char lit[64];
	size_t n = strlen(host);

	memset(ret, 0, sizeof(*ret) * (size_t)max);
	if (strcasecmp(host, "localhost") == 0 && max >= 2) {
		a4->sin_family = AF_INET;
		a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a6 = (struct sockaddr_in6 *)&ret[1];
		a6->sin6_family = AF_INET6;
		a6->sin6_addr = in6addr_loopback;
		return 2;
	}
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		snprintf(lit, sizeof(lit), "%.*s", (int)(n - 2), host + 1);
		a6->sin6_family = AF_INET6;
		return inet_pton(AF_INET6, lit, &a6->sin6_addr) == 1;
	}
	a4->sin_family = AF_INET;
	return inet_pton(AF_INET, host, &a4->sin_addr) == 1;
}

static int lane_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	              &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Whether addr is one of this host's: loopback, or an interface's address. */
static int lane_addr_local(const struct sockaddr_storage *addr)
{
	struct ifaddrs *ifs = NULL, *i;
	struct sockaddr_storage ss;
	int found = 0;

	if ((addr->ss_family == AF_INET &&
	     (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127) ||
	    (addr->ss_family == AF_INET6 &&
	     IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)addr)->sin6_addr)))
		return 1;
	if (getifaddrs(&ifs) < 0)
		return 0;
	for (i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, i->ifa_addr,
		       i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
		                                         : sizeof(struct sockaddr_in6));
		found = lane_addr_equal(&ss, addr);
	}
	freeifaddrs(ifs);
	return found;
}

static int lane_addr_wildcard(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

int lane_url_is(const char *base_url, const struct sockaddr_storage *listener)
{
	struct sockaddr_storage cand[2];
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;
	int n, i, found = 0, lport;

	if (!u || curl_url_set(u, CURLUPART_URL, base_url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	lport = ntohs(listener->ss_family == AF_INET
	                  ? ((const struct sockaddr_in *)listener)->sin_port
	                  : ((const struct sockaddr_in6 *)listener)->sin6_port);
	if (atoi(port) != lport)
		goto out;
	n = lane_host_addrs(host, cand, 2);
	for (i = 0; i < n && !found; i++)
		found = lane_addr_equal(&cand[i], listener) ||
		        (lane_addr_wildcard(listener) && lane_addr_local(&cand[i]));
out:
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return found;
}
