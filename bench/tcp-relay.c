/*
 * tcp-relay.c - the least any relay on a host can cost: each connection it
 * accepts gets its own connection to the upstream, and bytes are passed
 * both ways as they come, with no HTTP read at all. What a load through it
 * adds over the upstream alone is the floor of what llmqd can add on the
 * same machine (two more TCP hops, two more wake-ups a request); the
 * benchmarks put llmqd's figures beside it.
 *   tcp-relay UPSTREAM_PORT   (prints the port it listens on, then serves)
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pair {
	struct bufferevent *a, *b;
};

static struct sockaddr_in upstream;

static void pair_free(struct pair *p)
{
	bufferevent_free(p->a);
	bufferevent_free(p->b);
	free(p);
}

static void on_read(struct bufferevent *from, void *arg)
{
	struct pair *p = arg;

	bufferevent_write_buffer(from == p->a ? p->b : p->a, bufferevent_get_input(from));
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	int one = 1;

	if (what & BEV_EVENT_CONNECTED) {
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		pair_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
	struct event_base *base = evconnlistener_get_base(l);
	struct pair *p = calloc(1, sizeof(*p));
	int one = 1;

	if (!p) {
		evutil_closesocket(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	p->a = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	p->b = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!p->a || !p->b ||
	    bufferevent_socket_connect(p->b, (struct sockaddr *)&upstream, sizeof(upstream)) < 0) {
		fprintf(stderr, "tcp-relay: cannot reach the upstream\n");
		if (!p->a)
			evutil_closesocket(fd);
		if (p->a)
			bufferevent_free(p->a);
		if (p->b)
			bufferevent_free(p->b);
		free(p);
		return;
	}
	bufferevent_setcb(p->a, on_read, NULL, on_event, p);
	bufferevent_setcb(p->b, on_read, NULL, on_event, p);
	bufferevent_enable(p->a, EV_READ | EV_WRITE);
	bufferevent_enable(p->b, EV_READ | EV_WRITE);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	struct evconnlistener *l;
	struct event_base *base;
	int port = argc == 2 ? atoi(argv[1]) : 0;

	if (port <= 0 || port > 65535) {
		fprintf(stderr, "usage: tcp-relay UPSTREAM_PORT (on 127.0.0.1)\n");
		return 64;
	}
	signal(SIGPIPE, SIG_IGN);
	upstream = (struct sockaddr_in){.sin_family = AF_INET,
	                                .sin_port = htons((uint16_t)port),
	                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	base = event_base_new();
	l = base ? evconnlistener_new_bind(base, on_accept, NULL,
	                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
	                                   (struct sockaddr *)&sin, sizeof(sin))
	         : NULL;
	if (!l || getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len) < 0) {
		fprintf(stderr, "tcp-relay: cannot listen on 127.0.0.1\n");
		return 1;
	}
	printf("%d\n", ntohs(sin.sin_port));
	fflush(stdout);
	event_base_dispatch(base);
	evconnlistener_free(l);
	event_base_free(base);
	return 0;
}
