/*
 * httpserv-answer.c - the answer's writer: the status line and headers
 * (keep-alive or close, Content-Length or chunked), a whole body or chunks
 * with the caller's back-pressure, an aborted answer, the server's own
 * errors; and the end of an answer, which starts the connection's next
 * request. Reading requests is httpserv-request.c's; connections are
 * httpserv.c's.
 */
#include "http/httpserv-private.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <json-c/json.h>

static const char *reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 508:
		return "Loop Detected";
	default:
		return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

void hreq_free(struct hreq *r)
{
	if (!r)
		return;
	if (r->body)
		evbuffer_free(r->body);
	if (r->hdrs)
		evbuffer_free(r->hdrs);
	free(r->path);
	free(r);
}

/* The answer is complete: the connection goes on to its next request. */
void hreq_finish(struct hreq *r)
{
	struct hconn *c = r->c;

	r->answered = 1;
	if (c->in_feed)
		return; /* conn_process finishes it when the reader returns */
	if (!r->body_done)
		c->closing = 1; /* the rest of its body would be read as a request */
	c->req = NULL;
	c->next_request = 1;
	hreq_free(r);
	if (c->closing) {
		bufferevent_disable(c->bev, EV_READ);
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			hserv_conn_free(c);
		return;
	}
	hserv_arm(c, c->s->lim.timeout_ms);
	event_active(c->kick, EV_TIMEOUT, 0);
}

static int keep_alive(const struct hreq *r)
{
	return !r->c->closing && !r->head.close;
}

static void write_head(struct hreq *r, int status, int64_t length, struct evbuffer *out)
{
	if (!keep_alive(r))
		r->c->closing = 1;
	evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\n", r->head.minor ? 1 : 0, status,
	                    reason(status));
	if (r->hdrs)
		evbuffer_add_buffer(out, r->hdrs);
	if (length >= 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", (long long)length);
	else if (r->head.minor >= 1)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	else
		r->c->closing = 1; /* HTTP/1.0: the end of the connection ends the body */
	if (r->c->closing)
		evbuffer_add_printf(out, "Connection: close\r\n");
	else if (r->head.minor == 0)
		evbuffer_add_printf(out, "Connection: keep-alive\r\n");
	evbuffer_add(out, "\r\n", 2);
}

void hreq_add_header(struct hreq *r, const char *name, const char *value)
{
	if (!r->hdrs)
		r->hdrs = evbuffer_new();
	if (r->hdrs && !strpbrk(value, "\r\n") && !strpbrk(name, "\r\n:"))
		evbuffer_add_printf(r->hdrs, "%s: %s\r\n", name, value);
}

/*
 * Where a whole answer is put together: the output itself when something
 * waits there already, or else the server's scratch buffer, which
 * send_whole() writes straight to the socket. That spares the write event
 * a bufferevent arms for every answer (an epoll_ctl to arm it, one to
 * disarm it, and a loop turn in between).
 */
static struct evbuffer *whole_begin(struct hreq *r)
{
	struct evbuffer *out = bufferevent_get_output(r->c->bev);

	return evbuffer_get_length(out) > 0 ? out : r->c->s->scratch;
}

/* What the socket does not take now waits in the output, as any answer's
 * rest does; so does everything when the write fails (the bufferevent
 * meets the error itself and closes the connection). */
static void send_whole(struct hreq *r, struct evbuffer *msg)
{
	if (msg == bufferevent_get_output(r->c->bev))
		return;
	if (evbuffer_write(msg, bufferevent_getfd(r->c->bev)) < 0 && errno != EAGAIN &&
	    errno != EINTR)
		log_debug("HTTP: writing an answer: %s; the connection ends", strerror(errno));
	/* Never left in the scratch buffer, where it would go before the next
	 * answer (to another connection). */
	if (evbuffer_get_length(msg) > 0 && bufferevent_write_buffer(r->c->bev, msg) < 0)
		evbuffer_drain(msg, evbuffer_get_length(msg));
}

void hreq_reply(struct hreq *r, int status, const void *body, size_t len)
{
	struct evbuffer *msg = whole_begin(r);

	write_head(r, status, (int64_t)len, msg);
	if (len && !r->head_only)
		evbuffer_add(msg, body, len);
	send_whole(r, msg);
	hreq_finish(r);
}

void hreq_reply_buf(struct hreq *r, int status, struct evbuffer *body)
{
	struct evbuffer *msg = whole_begin(r);

	write_head(r, status, (int64_t)evbuffer_get_length(body), msg);
	if (r->head_only)
		evbuffer_drain(body, evbuffer_get_length(body));
	else
		evbuffer_add_buffer(msg, body);
	send_whole(r, msg);
	hreq_finish(r);
}

void hreq_start(struct hreq *r, int status)
{
	r->started = 1;
	r->chunked = r->head.minor >= 1;
	write_head(r, status, -1, bufferevent_get_output(r->c->bev));
}

size_t hreq_chunk(struct hreq *r, const void *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(r->c->bev);

	if (len && !r->head_only) {
		if (r->chunked)
			evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add(out, data, len);
		if (r->chunked)
			evbuffer_add(out, "\r\n", 2);
	}
	return evbuffer_get_length(out);
}

void hreq_end(struct hreq *r)
{
	if (r->chunked && !r->head_only)
		bufferevent_write(r->c->bev, "0\r\n\r\n", 5);
	hreq_finish(r);
}

void hreq_abort(struct hreq *r)
{
	struct linger lg = {1, 0};

	r->c->closing = 1;
	if (!r->chunked) /* the close alone would end the body as if whole: reset */
		setsockopt(bufferevent_getfd(r->c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	hreq_finish(r);
}

void hreq_on_gone(struct hreq *r, void (*gone)(void *ud), void *ud)
{
	r->gone = gone;
	r->gone_ud = ud;
}

void hreq_on_drain(struct hreq *r, void (*drain)(void *ud), void *ud)
{
	r->drain = drain;
	r->drain_ud = ud;
}

/* An answer of the server's own, in OpenAI's error shape. */
void hreq_reply_error(struct hreq *r, int status, const char *code, const char *msg)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	const char *s = NULL;
	size_t len = 0;

	if (o && e) {
		json_object_object_add(e, "message", json_object_new_string(msg));
		json_object_object_add(e, "type",
		                       json_object_new_string(status >= 500
		                                                  ? "server_error"
		                                                  : "invalid_request_error"));
		json_object_object_add(e, "param", NULL);
		json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
		json_object_object_add(o, "error", e);
		e = NULL;
		s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	}
	hreq_add_header(r, "Content-Type", "application/json");
	hreq_reply(r, status, s ? s : "", s ? len : 0);
	json_object_put(o);
	json_object_put(e);
}
