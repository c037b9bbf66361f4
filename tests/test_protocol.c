/* Protocol: validation of Batch API input lines, requests and batch ids. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "params.h"
#include "protocol.h"

struct bad_case {
	const char *line;
	const char *want; /* substring of the reason */
};

static void dup_bad(void *p)
{
	struct bad_case *c = p;

	c->line = params_strdup(c->line);
	c->want = params_strdup(c->want);
}

ParameterizedTestParameters(protocol, bad_lines)
{
	static struct bad_case cases[] = {
	    {"{\"custom_id\": \"a\",", "malformed JSON"},
	    {"not json", "malformed JSON"},
	    {"{} {}", "trailing data"},
	    {"[1,2]", "not a JSON object"},
	    {"{\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{\"model\":\"m\"}}",
	     "custom_id"},
	    {"{\"custom_id\":\"\",\"method\":\"POST\",\"url\":\"/v1/"
	     "embeddings\",\"body\":{\"model\":\"m\"}}",
	     "custom_id"},
	    {"{\"custom_id\":7,\"method\":\"POST\",\"url\":\"/v1/"
	     "embeddings\",\"body\":{\"model\":\"m\"}}",
	     "custom_id"},
	    {"{\"custom_id\":\"a\",\"method\":\"GET\",\"url\":\"/v1/"
	     "embeddings\",\"body\":{\"model\":\"m\"}}",
	     "\"method\" must be \"POST\""},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"body\":{\"model\":\"m\"}}",
	     "missing \"url\""},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/"
	     "files\",\"body\":{\"model\":\"m\"}}",
	     "\"url\" must be one of"},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\"}",
	     "missing \"body\""},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":\"x\"}",
	     "missing \"body\""},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{}}",
	     "\"model\" is missing"},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	     "\"body\":{\"model\":\"m\",\"stream\":true}}",
	     "stream"},
	    /* Numbers no provider takes, which would wrap an estimate. */
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	     "\"body\":{\"model\":\"m\",\"max_tokens\":9223372036854775807}}",
	     "\"max_tokens\": 9223372036854775807 is more than any provider accepts"},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	     "\"body\":{\"model\":\"m\",\"n\":100000}}",
	     "\"n\": 100000"},
	    /* Text that is not what it claims. */
	    {"{\"custom_id\":\"a\\u0000b\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	     "\"body\":{\"model\":\"m\"}}",
	     "NUL character"},
	    {"{\"custom_id\":\"a\xff\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	     "\"body\":{\"model\":\"m\"}}",
	     "not valid UTF-8 (byte 16)"},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	     "\"body\":{\"model\":\"m\",\"input\":\"\xc0\xaf\"}}",
	     "not valid UTF-8"},
	    /* What json-c lets through but is not JSON (found by fuzz_protocol): the
	     * upstream would read it otherwise, or not at all. */
	    {"{\"custom_id\":\"\x16\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	     "\"body\":{\"model\":\"m\"}}",
	     "not JSON (RFC 8259)"},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	     "\"body\":{\"model\":\"m\",}}",
	     "not JSON (RFC 8259)"},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	     "\"body\":{\"model\":'m'}}",
	     "not JSON (RFC 8259)"},
	    {"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	     "\"body\":{\"model\":\"m\" /* c */,\"n\":01,\"x\":[NaN]}}",
	     "not JSON (RFC 8259)"},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);

	return cr_make_param_array(struct bad_case,
	                           params_copy(cases, n, sizeof(cases[0]), dup_bad), n);
}

ParameterizedTest(struct bad_case *c, protocol, bad_lines)
{
	struct proto_input in = {0};
	char err[256] = "";

	cr_assert_eq(proto_parse_input(c->line, strlen(c->line), &in, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, c->want), "reason \"%s\" lacks \"%s\"", err, c->want);
	cr_assert_null(in.root);
}

Test(protocol, good_line)
{
	const char *line =
	    "{\"custom_id\":\"r-1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
	    "\"body\":{\"model\":\"gpt-4o\",\"messages\":[]}}";
	struct proto_input in = {0};
	char err[256];

	cr_assert_eq(proto_parse_input(line, strlen(line), &in, err, sizeof(err)), 0);
	cr_assert_str_eq(in.custom_id, "r-1");
	cr_assert_str_eq(in.url, "/v1/chat/completions");
	cr_assert_str_eq(in.model, "gpt-4o");
	cr_assert_not_null(in.body);
	proto_input_clear(&in);
}

Test(protocol, custom_id_too_long)
{
	char line[2048], id[600];
	struct proto_input in = {0};
	char err[256];

	memset(id, 'x', 513);
	id[513] = '\0';
	snprintf(line, sizeof(line),
	         "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
	         "\"body\":{\"model\":\"m\"}}",
	         id);
	cr_assert_eq(proto_parse_input(line, strlen(line), &in, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "512"));
}

Test(protocol, request_version_checked)
{
	json_object *req = json_tokener_parse("{\"v\":2,\"op\":\"ping\"}"), *err, *e, *code;
	const char *op = NULL;

	err = proto_check_request(req, &op);
	cr_assert_not_null(err);
	json_object_object_get_ex(err, "error", &e);
	json_object_object_get_ex(e, "code", &code);
	cr_assert_str_eq(json_object_get_string(code), ERR_VERSION);
	json_object_put(err);
	json_object_put(req);

	req = proto_request("ping");
	cr_assert_null(proto_check_request(req, &op));
	cr_assert_str_eq(op, "ping");
	json_object_put(req);

	req = json_tokener_parse("{\"op\":\"ping\"}");
	err = proto_check_request(req, &op);
	cr_assert_not_null(err);
	json_object_put(err);
	json_object_put(req);
}

Test(protocol, batch_ids)
{
	cr_assert(proto_valid_batch_id("b_0123456789abcdef"));
	cr_assert_not(proto_valid_batch_id("b_0123456789abcde"));
	cr_assert_not(proto_valid_batch_id("x_0123456789abcdef"));
	cr_assert_not(proto_valid_batch_id("b_0123456789abcdeg"));
	cr_assert_not(proto_valid_batch_id("b_0123456789abcdef'; drop table jobs"));
	cr_assert_not(proto_valid_batch_id(NULL));
}
