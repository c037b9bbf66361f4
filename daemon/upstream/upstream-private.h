/*
 * upstream-private.h - what the two ways of sending a transfer share: the
 * curl glue (upstream.c, for https, names to resolve and proxies) and
 * llmqd's own HTTP/1.1 client (upstream-h1.c, for plain http to an address
 * over kept-alive connections, which upstream-h1-conn.c keeps). Not for use outside them.
 */
#ifndef LLMQ_UPSTREAM_PRIVATE_H
#define LLMQ_UPSTREAM_PRIVATE_H

#include "upstream/h1resp.h"
#include "upstream/hop.h"
#include "upstream/upstream.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#define UP_MAX_BODY (64u << 20) /* an answer larger than this fails the transfer */

struct upstream {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	int in_flight;
	char id[HOP_ID_LEN + 1];
	CURL *spare[64]; /* finished transfers' handles, reset, for reuse */
	int n_spare;
	int builtin;               /* plain http to an address goes by upstream-h1.c */
	struct h1_target *targets; /* the addresses spoken to, each with its idle connections */
	int n_idle;
	struct h1_conn *dead; /* closed connections, freed at the next loop turn */
	struct event *reap;
	struct event *sweep; /* closes idle connections past idle_max_ms */
	int64_t idle_max_ms;
	uint64_t connects[2]; /* new connections: by curl [0], by the own client [1] */
};

struct up_transfer {
	struct upstream *up;
	CURL *easy; /* NULL on the builtin client */
	struct curl_slist *headers;
	char *body;
	size_t len, cap;
	int too_big;
	up_done_fn done;
	const struct up_stream *stream;
	int relaying;   /* -1: not decided yet; 1: body goes to stream->data */
	int want_pause; /* data() asked to pause after the chunk it took */
	int paused;
	int sends;
	int status; /* the answer's, once its head came */
	struct up_headers hdr;
	int64_t started;
	void *userdata;
	char errbuf[CURL_ERROR_SIZE];
	/* The builtin client's: */
	struct h1_target *target;
	struct h1_conn *conn;
	char *head; /* the request's head, with its key: wiped when freed */
	size_t head_len;
	const char *out; /* the request's body */
	size_t out_len;
	size_t sent; /* of head and body */
	int64_t connect_ms, timeout_ms;
	struct event *clock;
	size_t got; /* answer bytes read */
	int in_cb;  /* inside the answer's callbacks: an abort waits for them */
	int aborted;
};

/* A body's bytes kept whole (not relayed), up to UP_MAX_BODY: 0, or -1
 * (t->too_big set, or no memory). */
int upstream_keep(struct up_transfer *t, const char *data, size_t n);

/* Tells done() of t, then frees t: the end of every transfer that ran. */
void upstream_finish(struct up_transfer *t, int code, const char *error);

void upstream_transfer_free(struct up_transfer *t);

/* The builtin client's address, with its idle connections. */
struct h1_target {
	struct h1_target *next;
	char authority[256]; /* host[:port] as the URL has it: the Host header */
	char name[INET6_ADDRSTRLEN];
	int port;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct h1_conn *idle; /* the last one back first */
	int n;
};

struct h1_conn {
	struct upstream *up;
	struct h1_target *tg;
	struct h1_conn *next; /* in its address's idle list, or in the dead list */
	int fd;
	struct event *rd; /* answers, and a close while idle */
	struct event *wr; /* the connect, and a request that did not go out at once */
	struct up_transfer *t;
	int connecting;
	int connect_err;
	int64_t opened; /* when its connect began: the connect limit counts from it */
	int uses;       /* answers read on it before this one */
	int paused;
	int64_t idle_since;
	struct h1resp rp;
	char *in;
	size_t in_len, in_cap;
};

/*
 * The builtin client. h1_target_for(): 1 when url is plain http to an
 * address llmqd may speak to itself (*ret_target, *ret_path set), 0 when
 * curl must take it, -errno.
 */
int h1_target_for(struct upstream *up, const char *url, struct h1_target **ret_target,
                  const char **ret_path);
int h1_start(struct upstream *up, struct up_transfer *t, const struct up_request *req,
             const char *hop, struct h1_target *tg, const char *path);
void h1_abort(struct up_transfer *t);
void h1_resume(struct up_transfer *t);
int h1_init(struct upstream *up);
void h1_free_all(struct upstream *up);

/* upstream-h1-conn.c: a connection closed (freed at the next loop turn);
 * taken from its address's idle list, put back, dropped from it. */
void h1_conn_close(struct h1_conn *c);
struct h1_conn *h1_idle_take(struct h1_target *tg);
void h1_idle_put(struct h1_conn *c);
void h1_idle_drop(struct h1_conn *c);

#endif
