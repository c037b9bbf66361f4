/*
 * fuzz_protocol.c - the wire protocol's parsing and validation
 * (common/protocol.c), fed lines as a client sends them over the socket:
 * each line as a request (proto_parse_object, proto_check_request) and as a
 * Batch API input line (proto_parse_input, then the estimate of its body,
 * as ingest.c takes it), and its strings as batch ids and idempotency keys.
 *
 * Beyond not crashing: what is accepted is JSON as RFC 8259 has it (as
 * jsontext.c reads it: no comments, trailing commas or NaN that json-c
 * lets through, and the upstream would read otherwise); an accepted input line holds what the
 * validation promises (a custom_id of 1..512 bytes without NUL, "POST", a known url, a non-empty
 * model, an estimate within 1..ESTIMATE_MAX); and written out again by json-c it is accepted again,
 * the same line to llmq (same custom_id, url, model and estimate), as the request it was.
 */
#include "fuzz.h"

#include "estimate.h"
#include "jsontext.h"
#include "protocol.h"

#include <errno.h>

static void check_strings(json_object *o)
{
	const char *s;

	json_object_object_foreach(o, key, v)
	{
		(void)key;
		if (!json_object_is_type(v, json_type_string))
			continue;
		s = json_object_get_string(v);
		if (proto_valid_batch_id(s))
			FUZZ_ASSERT(strlen(s) == 18 && s[0] == 'b' && s[1] == '_', "batch id %s",
			            s);
		if (proto_valid_idempotency_key(s))
			FUZZ_ASSERT(strlen(s) >= 1 && strlen(s) <= LLMQ_MAX_IDEMPOTENCY_KEY,
			            "key %s", s);
	}
}

/* The line as a request on the socket. */
static void request(const char *line, size_t len)
{
	json_object *req = NULL, *reply;
	const char *op = NULL;
	char err[256] = "";
	int r;

	r = proto_parse_object(line, len, &req, err, sizeof(err));
	FUZZ_ASSERT(r == 0 || r == -EINVAL || r == -ENOMEM, "parse %d", r);
	if (r < 0) {
		FUZZ_ASSERT(r == -ENOMEM || err[0], "refused without a reason");
		return;
	}
	FUZZ_ASSERT(json_object_is_type(req, json_type_object), "not an object");
	FUZZ_ASSERT(jsontext_valid(line, len), "accepted, but not JSON: %.*s", (int)len, line);
	reply = proto_check_request(req, &op);
	FUZZ_ASSERT(!reply == !!op, "a reply and an op");
	json_object_put(reply);
	check_strings(req);
	json_object_put(req);
}

/* The line as a Batch API input line; the estimate when accepted, else -1. */
static int64_t input(const char *line, size_t len, struct proto_input *in)
{
	char err[256] = "";
	int64_t est;
	int r;

	memset(in, 0, sizeof(*in));
	r = proto_parse_input(line, len, in, err, sizeof(err));
	FUZZ_ASSERT(r == 0 || r == -EINVAL || r == -ENOMEM, "parse input %d", r);
	if (r < 0) {
		FUZZ_ASSERT(r == -ENOMEM || err[0], "refused without a reason");
		return -1;
	}
	FUZZ_ASSERT(in->custom_id && *in->custom_id && strlen(in->custom_id) <= LLMQ_MAX_CUSTOM_ID,
	            "custom_id");
	FUZZ_ASSERT(in->model && *in->model, "model");
	FUZZ_ASSERT(proto_known_url(in->url), "url %s", in->url);
	FUZZ_ASSERT(json_object_is_type(in->body, json_type_object), "body");
	est = estimate_tokens(in->body, in->url, 7000);
	FUZZ_ASSERT(est >= 1 && est <= ESTIMATE_MAX, "estimate %lld", (long long)est);
	return est;
}

static void one_line(const char *line, size_t len)
{
	struct proto_input in, again;
	const char *text;
	size_t tlen;
	int64_t est, est2;

	request(line, len);
	est = input(line, len, &in);
	if (est < 0)
		return;
	text = json_object_to_json_string_length(in.root, JSON_C_TO_STRING_PLAIN, &tlen);
	FUZZ_ASSERT(text, "json-c cannot write the line");
	est2 = input(text, tlen, &again);
	FUZZ_ASSERT(est2 >= 0, "accepted, then refused once written out: %s", text);
	FUZZ_ASSERT(strcmp(in.custom_id, again.custom_id) == 0 && strcmp(in.url, again.url) == 0 &&
	                strcmp(in.model, again.model) == 0,
	            "another line once written out: %s", text);
	FUZZ_ASSERT(est == est2, "estimate %lld, then %lld", (long long)est, (long long)est2);
	request(text, tlen);
	proto_input_clear(&again);
	proto_input_clear(&in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *nl;
	size_t left = size, n;

	while (left > 0) {
		nl = memchr(p, '\n', left);
		n = nl ? (size_t)(nl - p) : left;
		one_line(p, n);
		if (!nl)
			break;
		p = nl + 1;
		left -= n + 1;
	}
	return 0;
}
