/*
 * http.c - listeners, routing, limits and errors of the HTTP face; the routes
 * /v1/models, /healthz (liveness), /readyz (can a lane send) and /metrics.
 */
#include "http/caller.h"
#include "http/http.h"
#include "http/reply.h"
#include "fleet/fleet.h"
#include "view/health.h"
#include "log.h"
#include "view/metrics.h"
#include "service/peer.h"
#include "service/access.h"
#include "timeutil.h"
#include "engine/models.h"
#include "protocol.h"
#include "engine/scheduler.h"
#include "store/store.h"
#include "timeutil.h"
#include "sock/unixsock.h"

#include <errno.h>
#include <pwd.h>
#include <strings.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>
#include <netdb.h>
#include <event2/buffer.h>

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

static void on_models(void *ud, json_object *list)
{
	struct hreq *req = ud;

	hreq_on_gone(req, NULL, NULL);
	if (!list) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	http_json(req, 200, list);
}

static void on_models_gone(void *ud)
{
	models_cancel(ud);
}

/* What the lanes route (models.c); it may wait for an upstream's first answer. */
static void route_models(struct llmqd *d, struct hreq *req)
{
	struct models_wait *w = models_get(d->models, on_models, req);

	if (w)
		hreq_on_gone(req, on_models_gone, w);
}

/*
 * Liveness: 200 while the store takes writes and the loop turns (it does: it
 * answers), whatever the upstreams do (that is /readyz).
 */
static void route_healthz(struct llmqd *d, struct hreq *req)
{
	json_object *o = json_object_new_object();
	char why[512];
	int refuse, ok = !health_db(d, why, sizeof(why), &refuse);

	if (o) {
		json_object_object_add(o, "status", json_object_new_string(ok ? "ok" : "degraded"));
		json_object_object_add(o, "store", json_object_new_string(ok ? "writable" : why));
		json_object_object_add(o, "in_flight",
		                       json_object_new_int(sched_in_flight(d->sched)));
	}
	http_json(req, ok ? 200 : 503, o);
}

/* Wall ms as "2025-01-31T12:00:00Z". */
static json_object *http_time(int64_t wall_ms)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;
	char buf[32];

	if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return NULL;
	return json_object_new_string(buf);
}

/*
 * What keeps a lane from sending now, into o: "ok" (returns 1), or
 * "unreachable" since when (its circuit breaker is open), "out_of_credit"
 * since when (insufficient_quota), "paused" until when (a 429), with the
 * gate's reason, or since when an operator paused it (llmq pause).
 */
static int http_lane_ready(const struct lane_snapshot *l, int64_t now, int64_t wall, json_object *o)
{
	const struct gate *g = &l->gate;
	int paused = g->paused_until > now;
	const char *state = l->paused_at         ? "paused"
	                    : l->unreachable     ? "unreachable"
	                    : l->no_credit_since ? "out_of_credit"
	                    : paused             ? "paused"
	                                         : "ok";

	json_object_object_add(o, "name", json_object_new_string(l->cfg->name));
	json_object_object_add(o, "state", json_object_new_string(state));
	if (l->fleet_mode)
		json_object_object_add(o, "fleet", json_object_new_string(l->fleet_mode));
	if (l->paused_at) {
		/* By an operator: until they resume it, whatever the upstream does. */
		json_object_object_add(o, "paused_since", http_time(l->paused_at));
		json_object_object_add(o, "reason",
		                       json_object_new_string("paused by an operator"));
		return 0;
	}
	if (l->unreachable)
		json_object_object_add(o, "unreachable_since", http_time(l->unreachable_since));
	if (l->no_credit_since)
		json_object_object_add(o, "out_of_credit_since", http_time(l->no_credit_since));
	if (paused) {
		json_object_object_add(o, "paused_until", http_time(wall + g->paused_until - now));
		json_object_object_add(o, "reason", json_object_new_string(g->pause_reason));
	}
	return strcmp(state, "ok") == 0;
}

/* 200 while at least one lane can send; each lane's state either way. */
static void route_readyz(struct llmqd *d, struct hreq *req)
{
	json_object *o = json_object_new_object(), *lanes = json_object_new_array(), *l, *disk, *f;
	int64_t now = time_mono_ms(), wall = time_wall_ms();
	struct lane_snapshot snap;
	struct fleet_stats fs;
	char why[512];
	int i, ready = 0, low;

	if (!o || !lanes)
		goto fail;
	for (i = 0; sched_lane_snapshot(d->sched, i, now, &snap) == 0; i++) {
		l = json_object_new_object();
		if (!l || json_object_array_add(lanes, l) < 0) {
			json_object_put(l);
			goto fail;
		}
		ready |= http_lane_ready(&snap, now, wall, l);
	}
	/* Below the free-space floor new uploads and batches are refused. */
	disk = json_object_new_object();
	if (!disk)
		goto fail;
	low = health_disk(d, why, sizeof(why));
	json_object_object_add(disk, "state", json_object_new_string(low ? "low" : "ok"));
	if (d->disk_free >= 0)
		json_object_object_add(disk, "free_bytes", json_object_new_int64(d->disk_free));
	json_object_object_add(disk, "min_free_bytes",
	                       json_object_new_int64(d->cfg->disk_min_free_bytes));
	if (low) {
		ready = 0;
		json_object_object_add(disk, "reason", json_object_new_string(why));
	}
	json_object_object_add(o, "disk", disk);
	json_object_object_add(o, "status", json_object_new_string(ready ? "ready" : "not_ready"));
	json_object_object_add(o, "lanes", lanes);
	/* Without its Redis a lane still sends (alone, with its share): it is said, not failed. */
	if (sched_fleet_stats(d->sched, &fs) == 0 && (f = json_object_new_object())) {
		json_object_object_add(f, "redis", json_object_new_string(fs.up ? "up" : "down"));
		if (!fs.up)
			json_object_object_add(f, "error", json_object_new_string(fs.error));
		json_object_object_add(o, "fleet", f);
	}
	http_json(req, ready ? 200 : 503, o);
	return;
fail:
	json_object_put(o);
	json_object_put(lanes);
	http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
}

static void route_metrics(struct llmqd *d, struct hreq *req)
{
	struct evbuffer *buf = evbuffer_new();
	int r = buf ? metrics_render(d, buf) : -ENOMEM;

	if (r < 0) {
		if (buf)
			evbuffer_free(buf);
		http_error(req, 500, "server_error", NULL, "cannot render the metrics: %s",
		           strerror(-r));
		return;
	}
	hreq_add_header(req, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	hreq_reply_buf(req, 200, buf);
	evbuffer_free(buf);
}

static void on_proxy_body(void *ud, struct hreq *req, struct evbuffer *body)
{
	struct http *h = ud;

	http_proxy_handle(h->d, req, hreq_path(req), body);
}

static void route(void *ud, struct hreq *req)
{
	struct http *h = ud;
	const char *path = hreq_path(req), *m = hreq_method(req);
	int get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;

	if (post && proto_known_url(path)) {
		hreq_read_body(req, LLMQ_MAX_LINE, on_proxy_body, h);
		return;
	}
	if (http_files_route(h->d, req, path) || http_batches_route(h->d, req, path) ||
	    http_page_route(h->d, req, path))
		return;
	if (get && strcmp(path, "/v1/models") == 0) {
		route_models(h->d, req);
		return;
	}
	if (get && strcmp(path, "/metrics") == 0) {
		route_metrics(h->d, req);
		return;
	}
	if (get && strcmp(path, "/healthz") == 0) {
		route_healthz(h->d, req);
		return;
	}
	if (get && strcmp(path, "/readyz") == 0) {
		route_readyz(h->d, req);
		return;
	}
	if (proto_known_url(path) || !strcmp(path, "/v1/models") || !strcmp(path, "/metrics") ||
	    !strcmp(path, "/healthz") || !strcmp(path, "/readyz")) {
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
