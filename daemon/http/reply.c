/*
 * reply.c - see reply.h: the answers every route gives in the same shape.
 */
#include "http/reply.h"
#include "llmqd.h"
#include "log.h"
#include "store/store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void http_json(struct hreq *req, int status, json_object *o)
{
	const char *s;
	size_t len;

	if (!o) {
		http_error(req, 503, "server_error", NULL, "llmqd ran out of memory; try again");
		return;
	}
	s = json_object_to_json_string_length(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	hreq_add_header(req, "Content-Type", "application/json");
	hreq_reply(req, status, s, len);
	json_object_put(o);
}

void http_error(struct hreq *req, int status, const char *type, const char *code, const char *fmt,
                ...)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!o || !e) {
		json_object_put(o);
		json_object_put(e);
		hreq_reply(req, status, NULL, 0);
		return;
	}
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(e, "type", json_object_new_string(type));
	json_object_object_add(e, "param", NULL);
	json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
	json_object_object_add(o, "error", e);
	http_json(req, status, o);
}

void http_store_error(struct llmqd *d, struct hreq *req, const char *what, int r)
{
	if (r == -EBUSY) {
		hreq_add_header(req, "Retry-After", "1");
		http_error(req, 503, "server_error", "database_locked",
		           "llmq's database is locked by another program; %s: try again", what);
		return;
	}
	log_err("HTTP: %s: %s", what, store_errmsg(d->store));
	http_error(req, 500, "server_error", NULL, "llmqd cannot %s: %s", what, strerror(-r));
}
