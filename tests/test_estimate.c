/* The token estimator: prompt characters / 4 plus the completion budget. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estimate.h"

static int64_t est(const char *body, const char *url, int64_t per_run)
{
	json_object *o = json_tokener_parse(body);
	int64_t n;

	cr_assert_not_null(o, "bad test JSON: %s", body);
	n = estimate_tokens(o, url, per_run);
	json_object_put(o);
	return n;
}

Test(estimate, chat_string_contents)
{
	/* 16 + 8 characters -> 6 tokens, plus max_tokens 100. */
	cr_assert_eq(est("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":"
	                 "\"0123456789abcdef\"},"
	                 "{\"role\":\"user\",\"content\":\"01234567\"}],\"max_tokens\":100}",
	                 "/v1/chat/completions", 7000),
	             106);
}

Test(estimate, array_of_parts_and_n)
{
	/* 8 characters of text parts -> 2 tokens; 50 x n=3. */
	cr_assert_eq(
	    est("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
	        "\"text\":\"abcd\"},{\"type\":\"text\",\"text\":\"efgh\"}]}],"
	        "\"max_completion_tokens\":50,\"n\":3}",
	        "/v1/chat/completions", 7000),
	    152);
}

Test(estimate, rounds_up_and_counts_code_points)
{
	/* "héllo" is 5 characters (6 bytes) -> 2 tokens. */
	cr_assert_eq(
	    est("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9llo\"}],"
	        "\"max_tokens\":1}",
	        "/v1/chat/completions", 7000),
	    3);
}

Test(estimate, no_output_limit_uses_per_run)
{
	cr_assert_eq(
	    est("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"abcd\"}]}",
	        "/v1/chat/completions", 7000),
	    7001);
}

Test(estimate, nothing_to_count_is_per_run)
{
	cr_assert_eq(est("{\"model\":\"m\"}", "/v1/chat/completions", 7000), 7000);
}

Test(estimate, embeddings_have_no_completion)
{
	cr_assert_eq(
	    est("{\"model\":\"m\",\"input\":[\"abcd\",\"abcdefgh\"]}", "/v1/embeddings", 7000), 3);
	/* Pre-tokenised input counts one per token. */
	cr_assert_eq(est("{\"model\":\"m\",\"input\":[1,2,3,4,5]}", "/v1/embeddings", 7000), 5);
}

Test(estimate, responses_api)
{
	cr_assert_eq(est("{\"model\":\"m\",\"instructions\":\"abcd\",\"input\":[{\"role\":\"user\","
	                 "\"content\":[{\"type\":\"input_text\",\"text\":\"abcdabcd\"}]}],"
	                 "\"max_output_tokens\":10}",
	                 "/v1/responses", 7000),
	             13);
}

Test(estimate, completions_prompt)
{
	cr_assert_eq(est("{\"model\":\"m\",\"prompt\":\"abcdabcd\",\"max_tokens\":4}",
	                 "/v1/completions", 7000),
	             6);
}

Test(estimate, saturates_instead_of_wrapping)
{
	json_object *b = json_tokener_parse(
	    "{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":9223372036854775807,\"n\":1000}");

	cr_assert_eq(estimate_tokens(b, "/v1/completions", 16), ESTIMATE_MAX);
	json_object_put(b);
	b = json_tokener_parse("{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":1000000,"
	                       "\"n\":100}");
	cr_assert_eq(estimate_tokens(b, "/v1/completions", 16), 100000001, "exact below the cap");
	json_object_put(b);
}

/*
 * Every text the request carries, not a list of known keys. Arrays, not
 * pointers: each case runs in a process of its own.
 */
struct est_case {
	char what[64];
	char body[640];
	char url[32];
	int64_t want;
};

ParameterizedTestParameters(estimate, every_text_of_the_request)
{
	static struct est_case cases[] = {
	    /* "abcd" 4; tool: function 8, get_weather 11, description 11 + 17, parameters 10,
	     * properties 10, city 4, description 11 + 8, required 8 + city 4 = 106 -> 27. */
	    {"tools and their schemas",
	     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"abcd\"}],\"tools\":"
	     "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":"
	     "\"Weather of a city\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":"
	     "{\"type\":\"string\",\"description\":\"the city\"}},\"required\":[\"city\"]}}}],"
	     "\"max_tokens\":10}",
	     "/v1/chat/completions", 37},
	    /* ab 2; json_schema 11, x 1, schema 6, properties 10, answer 6 = 36 -> 9. */
	    {"response_format",
	     "{\"model\":\"m\",\"prompt\":\"ab\",\"response_format\":{\"type\":\"json_schema\","
	     "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":"
	     "{\"answer\":{\"type\":\"string\"}}}}},\"max_tokens\":1}",
	     "/v1/completions", 10},
	    {"a developer message",
	     "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"abcdefgh\"}],"
	     "\"max_tokens\":1}",
	     "/v1/chat/completions", 3},
	    {"an image's data URL is not its tokens",
	     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
	     "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAAAAAAAAAAAAAAAAAA"
	     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}},"
	     "{\"type\":\"text\",\"text\":\"abcd\"}]}],\"max_tokens\":1}",
	     "/v1/chat/completions", 2},
	    /* abcd 4, stop "\n" 1 -> 2; model, temperature, user, metadata carry no text. */
	    {"members without text are not counted",
	     "{\"model\":\"a-very-long-model-name\",\"temperature\":0.5,\"user\":\"someone-long\","
	     "\"metadata\":{\"k\":\"vvvvvvvvvvvvvvvv\"},\"prompt\":\"abcd\",\"stop\":[\"\\n\"],"
	     "\"max_tokens\":1}",
	     "/v1/completions", 3},
	    {"the Responses API's input and its tools",
	     "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"abcd\"}],\"tools\":"
	     "[{\"type\":\"web_search\"}],\"max_output_tokens\":2}",
	     "/v1/responses", 3},
	    /* A key the estimator never heard of still counts: its name 8, its text 8. */
	    {"a member nobody listed",
	     "{\"model\":\"m\",\"messages\":[],\"new_text\":{\"guidance\":\"abcdefgh\"},"
	     "\"max_tokens\":1}",
	     "/v1/chat/completions", 5},
	};

	return cr_make_param_array(struct est_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct est_case *c, estimate, every_text_of_the_request)
{
	cr_assert_eq(est(c->body, c->url, 7000), c->want, "%s: %lld", c->what,
	             (long long)est(c->body, c->url, 7000));
}

/* A 4.1 MB tools array was charged 6 tokens: now its characters / 4. */
Test(estimate, a_large_tools_array_is_charged)
{
	size_t n = 4100000, len;
	char *body = malloc(n + 512);

	cr_assert_not_null(body);
	len = (size_t)sprintf(body, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
	                            "\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":"
	                            "{\"name\":\"f\",\"description\":\"");
	memset(body + len, 'd', n);
	len += n;
	sprintf(body + len, "\"}}],\"max_tokens\":10}");
	cr_assert_geq(est(body, "/v1/chat/completions", 7000), 1025000);
	free(body);
}
