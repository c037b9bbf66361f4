/*
 * protocol.c - request/answer helpers and the validation of one Batch API
 * input line. Owns no state; does no I/O. JSON is read by json-c, and only
 * what jsontext.c finds to be JSON (RFC 8259) is taken.
 */
#include "protocol.h"
#include "text.h"
#include "jsontext.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

const char *const proto_batch_urls[] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", NULL,
};

const char *const proto_batch_states[] = {
    "validating", "in_progress", "cancelling", "completed", "cancelled", "failed", NULL,
};

static int parse_object(const char *text, size_t len, json_object **ret, char *err, size_t errlen);

static int fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -EINVAL;
}

static const char *get_string(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Offset of the first byte that is not well-formed UTF-8, or -1. */
static ssize_t utf8_invalid_at(const unsigned char *s, size_t len)
{
	size_t i = 0, k, n;
	uint32_t cp;

	while (i < len) {
		unsigned char c = s[i];

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return (ssize_t)i;
		}
		for (k = 1; k <= n; k++) {
			if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
				return (ssize_t)i;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		/* Overlong forms, surrogates, past U+10FFFF. */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return (ssize_t)i;
		i += n + 1;
	}
	return -1;
}

int proto_parse_object(const char *text, size_t len, json_object **ret, char *err, size_t errlen)
{
	ssize_t bad = utf8_invalid_at((const unsigned char *)text, len);

	if (bad >= 0) {
		snprintf(err, errlen,
		         "not valid UTF-8 (byte %zd); save the file as UTF-8 and try again",
		         bad + 1);
		return -EINVAL;
	}
	return parse_object(text, len, ret, err, errlen);
}

static int parse_object(const char *text, size_t len, json_object **ret, char *err, size_t errlen)
{
	struct json_tokener *tok;
	json_object *root;
	enum json_tokener_error je;

	if (len > INT32_MAX)
		return fail(err, errlen, "longer than the JSON parser takes");
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, text, (int)len);
	je = json_tokener_get_error(tok);
	if (!root || je != json_tokener_success || tok->char_offset != (int)len) {
		if (root && je == json_tokener_success)
			snprintf(err, errlen, "malformed JSON: trailing data after the object");
		else
			snprintf(err, errlen, "malformed JSON: %s",
			         je == json_tokener_continue ? "unexpected end of input"
			                                     : json_tokener_error_desc(je));
		json_object_put(root);
		json_tokener_free(tok);
		return -EINVAL;
	}
	json_tokener_free(tok);
	/* json-c also takes what is not JSON, which the upstream would refuse or read
	 * otherwise: only RFC 8259's JSON goes through. */
	if (!jsontext_valid(text, len)) {
		json_object_put(root);
		return fail(err, errlen,
		            "malformed JSON: not JSON (RFC 8259): a comment, single quotes, a "
		            "trailing comma, NaN, a number such as 01, or a control character "
		            "in a string; write it as plain JSON");
	}
	if (!json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return fail(err, errlen, "not a JSON object");
	}
	*ret = root;
	return 0;
}

int proto_known_url(const char *url)
{
	int i;

	for (i = 0; url && proto_batch_urls[i]; i++)
		if (strcmp(url, proto_batch_urls[i]) == 0)
			return 1;
	return 0;
}

int proto_batch_state_index(const char *state)
{
	int i;

	for (i = 0; state && proto_batch_states[i]; i++)
		if (strcmp(state, proto_batch_states[i]) == 0)
			return i;
	return -EINVAL;
}

int proto_check_body(json_object *body, int stream_ok, const char **ret_model, char *err,
                     size_t errlen)
{
	static const struct {
		const char *key;
		int64_t max;
	} limits[] = {
	    {"max_tokens", 10000000},
	    {"max_completion_tokens", 10000000},
	    {"max_output_tokens", 10000000},
	    {"n", 128},
	    {NULL, 0},
	};
	const char *model = get_string(body, "model");
	json_object *v;
	int i;

	if (!model || !*model)
		return fail(err, errlen, "\"model\" is missing (a non-empty string)");
	if (strlen(model) > LLMQ_MAX_MODEL) {
		snprintf(err, errlen,
		         "\"model\" is %zu bytes long; no provider names a model in more than %d",
		         strlen(model), LLMQ_MAX_MODEL);
		return -EINVAL;
	}
	if (text_has_control(model) || (json_object_object_get_ex(body, "model", &v) &&
	                                (size_t)json_object_get_string_len(v) != strlen(model)))
		return fail(err, errlen,
		            "\"model\" holds a control character or a byte that is not UTF-8");
	for (i = 0; limits[i].key; i++) {
		if (json_object_object_get_ex(body, limits[i].key, &v) &&
		    json_object_is_type(v, json_type_int) &&
		    (json_object_get_int64(v) > limits[i].max || json_object_get_int64(v) < 0)) {
			snprintf(err, errlen,
			         "\"%s\": %lld is more than any provider accepts (0..%lld)",
			         limits[i].key, (long long)json_object_get_int64(v),
			         (long long)limits[i].max);
			return -EINVAL;
		}
	}
	if (!stream_ok && json_object_object_get_ex(body, "stream", &v) &&
	    json_object_get_boolean(v))
		return fail(err, errlen, "\"stream\": true is not supported in a batch");
	*ret_model = model;
	return 0;
}

int proto_parse_input(const char *line, size_t len, struct proto_input *ret, char *err,
                      size_t errlen)
{
	json_object *root = NULL, *body;
	const char *custom_id, *method, *url, *model;
	char why[200];
	int r;

	if (len > LLMQ_MAX_LINE)
		return fail(err, errlen, "line longer than the 8 MiB limit");
	r = proto_parse_object(line, len, &root, err, errlen);
	if (r == -EINVAL && strstr(err, "end of input"))
		snprintf(err, errlen, "malformed JSON: unexpected end of line");
	if (r < 0)
		return r;
	custom_id = get_string(root, "custom_id");
	if (!custom_id || !*custom_id) {
		r = fail(err, errlen, "missing \"custom_id\" (a non-empty string)");
		goto out;
	}
	{
		json_object *cv;

		json_object_object_get_ex(root, "custom_id", &cv);
		if ((size_t)json_object_get_string_len(cv) != strlen(custom_id)) {
			r = fail(err, errlen, "\"custom_id\" contains a NUL character (\\u0000)");
			goto out;
		}
	}
	if (strlen(custom_id) > LLMQ_MAX_CUSTOM_ID) {
		r = fail(err, errlen, "\"custom_id\" longer than 512 characters");
		goto out;
	}
	method = get_string(root, "method");
	if (!method || strcmp(method, "POST") != 0) {
		r = fail(err, errlen, "\"method\" must be \"POST\"");
		goto out;
	}
	url = get_string(root, "url");
	if (!url) {
		r = fail(err, errlen, "missing \"url\"");
		goto out;
	}
	if (!proto_known_url(url)) {
		r = fail(err, errlen,
		         "\"url\" must be one of /v1/chat/completions, /v1/completions, "
		         "/v1/embeddings, /v1/responses");
		goto out;
	}
	if (!json_object_object_get_ex(root, "body", &body) ||
	    !json_object_is_type(body, json_type_object)) {
		r = fail(err, errlen, "missing \"body\" (a JSON object)");
		goto out;
	}
	r = proto_check_body(body, 0, &model, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "\"body\": %s", why);
		goto out;
	}
	ret->root = root;
	ret->custom_id = custom_id;
	ret->url = url;
	ret->model = model;
	ret->body = body;
	root = NULL;
out:
	json_object_put(root);
	return r;
}

void proto_input_clear(struct proto_input *in)
{
	if (!in)
		return;
	json_object_put(in->root);
	memset(in, 0, sizeof(*in));
}

json_object *proto_request(const char *op)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "v", json_object_new_int(LLMQ_PROTO_VERSION));
	json_object_object_add(o, "op", json_object_new_string(op));
	return o;
}

json_object *proto_error(const char *code, const char *message)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();

	if (!o || !e) {
		json_object_put(o);
		json_object_put(e);
		return NULL;
	}
	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_object_new_string(message));
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", e);
	return o;
}

json_object *proto_ok(void)
{
	json_object *o = json_object_new_object();

	if (o)
		json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}

json_object *proto_check_request(json_object *req, const char **ret_op)
{
	json_object *v;
	char msg[160];
	const char *op;

	if (!json_object_is_type(req, json_type_object))
		return proto_error(ERR_BAD_REQUEST, "a request must be a JSON object");
	if (!json_object_object_get_ex(req, "v", &v) || !json_object_is_type(v, json_type_int))
		return proto_error(ERR_VERSION, "request has no protocol version \"v\"; "
		                                "use an llmq client of the same release as llmqd");
	if (json_object_get_int(v) != LLMQ_PROTO_VERSION) {
		snprintf(msg, sizeof(msg),
		         "protocol version %d is not supported; llmqd speaks version %d: "
		         "use an llmq client of the same release",
		         json_object_get_int(v), LLMQ_PROTO_VERSION);
		return proto_error(ERR_VERSION, msg);
	}
	op = get_string(req, "op");
	if (!op)
		return proto_error(ERR_BAD_REQUEST, "request has no \"op\"");
	*ret_op = op;
	return NULL;
}

int proto_valid_batch_id(const char *id)
{
	size_t i;

	if (!id || strncmp(id, "b_", 2) != 0 || strlen(id) != 18)
		return 0;
	for (i = 2; i < 18; i++)
		if (!isxdigit((unsigned char)id[i]))
			return 0;
	return 1;
}

int proto_valid_idempotency_key(const char *key)
{
	size_t n = key ? strlen(key) : 0;

	if (n == 0 || n > LLMQ_MAX_IDEMPOTENCY_KEY)
		return 0;
	return strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") ==
	       n;
}
