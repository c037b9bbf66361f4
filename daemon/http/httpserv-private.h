/*
 * httpserv-private.h - what the HTTP server's three files share: the
 * connection, the request and the server themselves, and the calls between
 * httpserv.c (connections, their limits and deadlines), httpserv-request.c
 * (the request as a route sees it, read by httpreq) and httpserv-answer.c
 * (the answer's writer). Never included outside them.
 */
#ifndef LLMQ_HTTPSERV_PRIVATE_H
#define LLMQ_HTTPSERV_PRIVATE_H

#include <stdint.h>

#include "http/httpreq.h"
#include "http/httpserv.h"

#define HSERV_MAX_LISTENERS 4
/* Pipelined bytes kept while a request is being answered; past it, reading pauses. */
#define HSERV_IN_HIGH (64 * 1024)
/* Answers queued for a connection before it reads its next request. */
#define HSERV_OUT_HIGH (1024 * 1024)

struct hconn;

struct hreq {
	struct hconn *c;
	struct httpreq_head head;
	char *path;
	const char *query;
	int64_t uid;
	/* the body */
	int body_mode; /* 0: not asked for, 1: whole, 2: streamed */
	struct evbuffer *body;
	size_t max;
	hreq_body_cb done;
	const struct hreq_sink *sink;
	void *body_ud;
	int body_done;
	/* the answer */
	void (*gone)(void *ud);
	void *gone_ud;
	void (*drain)(void *ud);
	void *drain_ud;
	struct evbuffer *hdrs;
	int started, chunked;
	int answered;
	int head_only; /* HEAD: routed as GET, answered with its headers alone */
};

struct hconn {
	struct hserv *s;
	struct hconn *prev, *next;
	struct bufferevent *bev;
	struct event *timer, *kick;
	int64_t uid;      /* counted against the per-user cap under this uid; -1 none */
	int64_t peer_uid; /* TCP: the owner of the other end (peer()); -1 not known */
	int unidentified; /* counted against max_unidentified */
	int is_unix;
	int in_feed;
	int closing;      /* close once the output is out; read no more */
	int next_request; /* the reader starts on a new request */
	struct httpreq *rd;
	struct hreq *req;
};

struct uid_count {
	int64_t uid;
	int n;
};

struct hserv {
	struct event_base *base;
	struct hserv_limits lim;
	const struct hserv_routes *routes;
	void *ud;
	struct evconnlistener *ls[HSERV_MAX_LISTENERS];
	int n_ls;
	struct event *resume;
	struct evbuffer *scratch; /* an answer on its way straight to its socket */
	struct hconn *conns;
	int n_conns;
	int n_unidentified;
	struct uid_count *users;
	int n_users, cap_users;
};

/* httpserv.c */
/* (Re)arm c's deadline, ms from now. */
void hserv_arm(struct hconn *c, int64_t ms);
/* Count c under uid: 0, or -EUSERS when uid is at its cap (not counted). */
int hserv_user_add(struct hconn *c, int64_t uid);
/* Free c, its request told that its caller is gone if not answered. */
void hserv_conn_free(struct hconn *c);

/* httpserv-request.c: the reader's callbacks (their ud: the connection). */
extern const struct httpreq_cb hreq_reader_cb;

/* httpserv-answer.c */
void hreq_free(struct hreq *r);
/* The answer is complete: the connection goes on to its next request. */
void hreq_finish(struct hreq *r);
/* An answer of the server's own, in OpenAI's error shape. */
void hreq_reply_error(struct hreq *r, int status, const char *code, const char *msg);

#endif
