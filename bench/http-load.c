/*
 * http-load.c - a small closed-loop HTTP load generator for the benchmarks:
 * C keep-alive connections, each sending one chat request after the other
 * (or one every --interval-ms), for --seconds. Prints requests/s and the
 * latency percentiles of the answered requests. Runs on libevent's evhttp
 * client, one thread, so it costs little of the machine it measures.
 *
 *   http-load --url http://127.0.0.1:PORT/v1/chat/completions
 *             [--connections 1] [--seconds 10] [--interval-ms 0] [--stream]
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

struct load;

struct client {
	struct load *l;
	struct evhttp_connection *conn;
	struct event *timer;
	double sent;
	int n;
};

struct load {
	struct event_base *base;
	const char *host, *path;
	int port, interval_ms, stream;
	double end;
	int active;  /* clients still sending */
	double *lat; /* seconds */
	size_t n_lat, cap_lat;
	long errors, non200;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void send_one(struct client *c);

static void next(struct client *c)
{
	struct load *l = c->l;
	double at;
	struct timeval tv;

	if (now_s() >= l->end) {
		/* Idle keep-alive connections would hold the loop: stop it. */
		if (--l->active == 0)
			event_base_loopbreak(l->base);
		return;
	}
	if (l->interval_ms <= 0) {
		send_one(c);
		return;
	}
	at = c->sent + l->interval_ms / 1000.0 - now_s();
	if (at < 0)
		at = 0;
	tv.tv_sec = (time_t)at;
	tv.tv_usec = (suseconds_t)((at - (double)tv.tv_sec) * 1e6);
	evtimer_add(c->timer, &tv);
}

static void on_answer(struct evhttp_request *req, void *arg)
{
	struct client *c = arg;
	struct load *l = c->l;
	double d = now_s() - c->sent;

	if (!req || evhttp_request_get_response_code(req) == 0) {
		l->errors++;
	} else if (evhttp_request_get_response_code(req) != 200) {
		l->non200++;
	} else {
		if (l->n_lat == l->cap_lat) {
			l->cap_lat = l->cap_lat ? l->cap_lat * 2 : 65536;
			l->lat = realloc(l->lat, l->cap_lat * sizeof(double));
			if (!l->lat) {
				perror("http-load");
				exit(1);
			}
		}
		l->lat[l->n_lat++] = d;
	}
	next(c);
}

static void send_one(struct client *c)
{
	struct load *l = c->l;
	struct evhttp_request *req = evhttp_request_new(on_answer, c);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evbuffer_add_printf(
	    out,
	    "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":"
	    "\"question %d\"}],\"max_tokens\":16%s}",
	    c->n++, l->stream ? ",\"stream\":true" : "");
	evhttp_add_header(h, "Host", l->host);
	evhttp_add_header(h, "Content-Type", "application/json");
	c->sent = now_s();
	if (evhttp_make_request(c->conn, req, EVHTTP_REQ_POST, l->path) < 0) {
		l->errors++;
		next(c);
	}
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	send_one(arg);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double pct(const struct load *l, double p)
{
	size_t i;

	if (!l->n_lat)
		return NAN;
	i = (size_t)ceil(p / 100.0 * (double)l->n_lat);
	return l->lat[i ? i - 1 : 0];
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"url", 1, 0, 'u'},         {"connections", 1, 0, 'c'}, {"seconds", 1, 0, 's'},
	    {"interval-ms", 1, 0, 'i'}, {"stream", 0, 0, 'S'},      {0, 0, 0, 0},
	};
	struct load l = {0};
	struct evhttp_uri *uri = NULL;
	struct client *cs;
	double t0, secs = 10;
	int o, n = 1, i;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'u':
			uri = evhttp_uri_parse(optarg);
			break;
		case 'c':
			n = atoi(optarg);
			break;
		case 's':
			secs = atof(optarg);
			break;
		case 'i':
			l.interval_ms = atoi(optarg);
			break;
		case 'S':
			l.stream = 1;
			break;
		default:
			return 64;
		}
	}
	if (!uri || !evhttp_uri_get_host(uri) || n < 1) {
		fprintf(stderr, "usage: http-load --url http://HOST:PORT/PATH [--connections N] "
		                "[--seconds S] [--interval-ms MS] [--stream]\n");
		return 64;
	}
	l.host = evhttp_uri_get_host(uri);
	l.port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
	l.path = evhttp_uri_get_path(uri);
	l.base = event_base_new();
	cs = calloc((size_t)n, sizeof(*cs));
	t0 = now_s();
	l.end = t0 + secs;
	l.active = n;
	for (i = 0; i < n; i++) {
		cs[i].l = &l;
		cs[i].conn = evhttp_connection_base_new(l.base, NULL, l.host, (ev_uint16_t)l.port);
		evhttp_connection_set_timeout(cs[i].conn, 120);
		cs[i].timer = evtimer_new(l.base, timer_cb, &cs[i]);
		send_one(&cs[i]);
	}
	event_base_dispatch(l.base);
	secs = now_s() - t0;
	qsort(l.lat, l.n_lat, sizeof(double), cmp);
	printf("connections %d: %zu answered in %.1f s = %.0f req/s; errors %ld, non-200 %ld; "
	       "latency p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
	       n, l.n_lat, secs, (double)l.n_lat / secs, l.errors, l.non200, pct(&l, 50) * 1e3,
	       pct(&l, 99) * 1e3, l.n_lat ? l.lat[l.n_lat - 1] * 1e3 : NAN);
	for (i = 0; i < n; i++) {
		evhttp_connection_free(cs[i].conn);
		event_free(cs[i].timer);
	}
	free(cs);
	free(l.lat);
	evhttp_uri_free(uri);
	event_base_free(l.base);
	return 0;
}
