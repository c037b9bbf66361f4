/*
 * http.c - the HTTP face's listeners (loopback TCP, a Unix socket, or the
 * ones systemd passed), its limits, who a TCP caller is (the kernel's word,
 * or a token of the tokens file), and the router: it walks the route
 * files' tables (route.h) and answers 405 and 404 for what none serves.
 */
#include "http/http.h"
#include "http/reply.h"
#include "http/route.h"
#include "log.h"
#include "service/access.h"
#include "service/peer.h"
#include "service/unixsock.h"
#include "timeutil.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netdb.h>
#include <unistd.h>

#define HTTP_MAX_TOKENS 1024
/* Connections whose caller is not known at accept: at most this many, and
 * this long for their first request's head. */
#define HTTP_MAX_UNIDENTIFIED 64
#define HTTP_UNIDENTIFIED_TIMEOUT_MS 10000

/* A caller on TCP proves who they are with a token of the tokens file. */
struct http_token {
	int64_t uid;
	char token[128];
};

struct http {
	struct llmqd *d;
	struct hserv *srv;
	struct http_token *tokens;
	int n_tokens; /* 0: no tokens file, TCP callers are anonymous */
	char bound[128];
	struct sockaddr_storage tcp_addr; /* the TCP listener's address; family 0: none */
	char unix_path[PATH_MAX];
};

const char *http_bound_addr(const struct http *h)
{
	return h ? h->bound : "";
}

const struct sockaddr_storage *http_tcp_listener(const struct http *h)
{
	return h && h->tcp_addr.ss_family ? &h->tcp_addr : NULL;
}

/* Equal without telling, by its time, how much of a guess was right. */
static int token_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* hserv's peer(): the owner of a loopback TCP caller's socket, as the kernel says. */
static int64_t http_peer(void *ud, int fd)
{
	uid_t uid;
	int r = peer_tcp_uid(fd, &uid);

	if (r == 0)
		return (int64_t)uid;
	if (r != -EADDRNOTAVAIL)
		log_debug("HTTP: cannot tell who is at the other end of a connection: %s",
		          strerror(-r));
	return -1;
}

/*
 * hserv's identify(): who sends a TCP request. A token of the tokens file
 * names its user; else a caller on this host is who the kernel says (as on
 * the Unix socket, with the sockets' group rule), whatever key its SDK sends;
 * else it is anonymous, or refused when tokens are expected.
 */
static int64_t identify(void *ud, struct hreq *req)
{
	struct http *h = ud;
	int64_t peer = hreq_peer_uid(req);
	const char *auth = hreq_header(req, "Authorization");
	int i, found = -1;

	if (h->n_tokens > 0 && auth && strncasecmp(auth, "Bearer ", 7) == 0) {
		for (i = 0; i < h->n_tokens; i++)
			if (token_equal(auth + 7, h->tokens[i].token))
				found = i;
		if (found >= 0)
			return h->tokens[found].uid;
	}
	if (peer >= 0)
		return access_may_connect(h->d->cfg, (uid_t)peer, time_mono_ms()) ? peer
		                                                                  : HSERV_FORBIDDEN;
	return h->n_tokens > 0 ? -EACCES : -1;
}

/*
 * The tokens file: one "USER TOKEN" a line, # comments. It must not be
 * readable by others. A user name that does not exist is an error.
 */
static int load_tokens(struct http *h, const char *path)
{
	char line[512], user[128], token[160];
	struct passwd *pw;
	struct stat st;
	FILE *f;
	int r = 0, n = 0;

	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0 || (st.st_mode & 0007) != 0) {
		log_err("%s: tokens must not be readable by others (chmod 0640)", path);
		fclose(f);
		return -EPERM;
	}
	h->tokens = calloc(HTTP_MAX_TOKENS, sizeof(*h->tokens));
	if (!h->tokens) {
		fclose(f);
		return -ENOMEM;
	}
	while (fgets(line, sizeof(line), f)) {
		n++;
		if (line[strspn(line, " \t")] == '#' || line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (sscanf(line, "%127s %159s", user, token) != 2 || strlen(token) < 16 ||
		    strlen(token) >= sizeof(h->tokens[0].token)) {
			log_err("%s: line %d: expected USER TOKEN, the token 16..127 characters",
			        path, n);
			r = -EINVAL;
			break;
		}
		pw = getpwnam(user);
		if (!pw) {
			log_err("%s: line %d: no user %s", path, n, user);
			r = -EINVAL;
			break;
		}
		if (h->n_tokens == HTTP_MAX_TOKENS) {
			log_err("%s: more than %d tokens", path, HTTP_MAX_TOKENS);
			r = -E2BIG;
			break;
		}
		h->tokens[h->n_tokens].uid = (int64_t)pw->pw_uid;
		memcpy(h->tokens[h->n_tokens].token, token, strlen(token) + 1); /* length checked */
		h->n_tokens++;
	}
	explicit_bzero(line, sizeof(line));
	explicit_bzero(token, sizeof(token));
	fclose(f);
	if (r == 0 && h->n_tokens == 0) {
		log_err("%s: no tokens", path);
		r = -EINVAL;
	}
	return r;
}

/* The route files' tables, in the order they are matched. */
static const struct http_route *const http_tables[] = {
    route_proxy, route_files, route_batches, route_page, route_status,
};

static int http_route_matches(const struct http_route *rt, const char *path)
{
	size_t n;

	if (rt->match)
		return rt->match(path);
	n = strlen(rt->path);
	return strncmp(path, rt->path, n) == 0 && (path[n] == '\0' || (rt->tree && path[n] == '/'));
}

static void route(void *ud, struct hreq *req)
{
	struct http *h = ud;
	const char *path = hreq_path(req), *m = hreq_method(req);
	const struct http_route *rt;
	int known = 0;
	size_t i;

	for (i = 0; i < sizeof(http_tables) / sizeof(http_tables[0]); i++)
		for (rt = http_tables[i]; rt->handle; rt++) {
			if (!http_route_matches(rt, path))
				continue;
			if (!rt->method || strcmp(rt->method, m) == 0) {
				rt->handle(h->d, req, path);
				return;
			}
			known = 1;
		}
	if (known) {
		http_error(req, 405, "invalid_request_error", NULL,
		           "method not allowed on %.200s (POST for the model endpoints, GET for "
		           "/v1/models, /metrics, /healthz and /readyz)",
		           path);
		return;
	}
	http_error(req, 404, "invalid_request_error", "unknown_url",
	           "unknown URL %.200s; llmqd serves /v1/chat/completions, /v1/completions, "
	           "/v1/embeddings, /v1/responses, /v1/models, /v1/files, /v1/batches, "
	           "/metrics, /healthz, /readyz, and the live page at / (its figures at "
	           "/v1/llmq/live)",
	           path);
}

static const struct hserv_routes routes = {
    .peer = http_peer,
    .identify = identify,
    .request = route,
};

static int listen_unix(struct http *h, const char *path)
{
	int fd, r;

	r = unixsock_listen(path, h->d->socket_gid == (gid_t)-1 ? 0600 : 0660, h->d->socket_gid,
	                    &fd);
	if (r < 0)
		return r;
	r = hserv_listen(h->srv, fd);
	if (r < 0) {
		unlink(path);
		return r;
	}
	snprintf(h->unix_path, sizeof(h->unix_path), "%s", path);
	return 0;
}

/* Serve on the TCP listener fd (taken), its address as the kernel has it in h->bound. */
static int serve_tcp(struct http *h, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char shown[64];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		h->tcp_addr = ss;
		if (ss.ss_family == AF_INET &&
		    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, shown,
		              sizeof(shown)))
			snprintf(h->bound, sizeof(h->bound), "%s:%d", shown,
			         ntohs(((struct sockaddr_in *)&ss)->sin_port));
		else if (ss.ss_family == AF_INET6 &&
		         inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, shown,
		                   sizeof(shown)))
			snprintf(h->bound, sizeof(h->bound), "[%s]:%d", shown,
			         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	}
	return hserv_listen(h->srv, fd);
}

static int listen_tcp(struct http *h, const char *addr)
{
	struct addrinfo hints = {0}, *ai = NULL, *p;
	char host[128], port[16];
	int fd = -1, on = 1, r, n;

	if (config_parse_http_addr(addr, host, sizeof(host), &n) < 0)
		return -EINVAL;
	snprintf(port, sizeof(port), "%d", n);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	r = getaddrinfo(host, port, &hints, &ai);
	if (r != 0) {
		log_err("HTTP: cannot resolve %s: %s", host, gai_strerror(r));
		return -EINVAL;
	}
	r = -EADDRNOTAVAIL;
	for (p = ai; p && fd < 0; p = p->ai_next) {
		fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
		    bind(fd, p->ai_addr, p->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
			r = -errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return r;
	snprintf(h->bound, sizeof(h->bound), "%s", addr);
	return serve_tcp(h, fd);
}

int http_new(struct llmqd *d, const struct sd_sockets *passed, struct http **ret)
{
	const struct config *cfg = d->cfg;
	struct hserv_limits lim = {
	    .max_conns = cfg->http_max_connections,
	    .max_per_uid = cfg->http_max_connections_per_user,
	    .timeout_ms = cfg->client_timeout_ms,
	    .max_unidentified = HTTP_MAX_UNIDENTIFIED,
	    .unidentified_timeout_ms = cfg->client_timeout_ms < HTTP_UNIDENTIFIED_TIMEOUT_MS
	                                   ? cfg->client_timeout_ms
	                                   : HTTP_UNIDENTIFIED_TIMEOUT_MS,
	};
	struct http *h;
	int r;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->d = d;
	r = hserv_new(d->base, &lim, &routes, h, &h->srv);
	if (r < 0)
		goto fail;
	if (cfg->http_tokens[0]) {
		r = load_tokens(h, cfg->http_tokens);
		if (r < 0)
			goto fail;
	}
	/* Sockets systemd passed (llmqd-http.socket) stand for the configured ones. */
	if (passed->http_tcp >= 0)
		r = serve_tcp(h, passed->http_tcp);
	else if (strcmp(cfg->http_addr, "off") != 0)
		r = listen_tcp(h, cfg->http_addr);
	if (r < 0)
		goto fail;
	if (passed->http_unix >= 0)
		r = hserv_listen(h->srv, passed->http_unix);
	else if (cfg->http_socket[0])
		r = listen_unix(h, cfg->http_socket);
	if (r < 0)
		goto fail;
	*ret = h;
	return 0;
fail:
	http_free(h);
	return r;
}

int http_connections(const struct http *h)
{
	return h ? hserv_connections(h->srv) : 0;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	hserv_free(h->srv);
	if (h->unix_path[0])
		unlink(h->unix_path);
	if (h->tokens) {
		explicit_bzero(h->tokens, HTTP_MAX_TOKENS * sizeof(*h->tokens));
		free(h->tokens);
	}
	free(h);
}
