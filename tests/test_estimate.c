/* The token estimator: prompt characters / 4 plus the completion budget. */
#include <criterion/criterion.h>

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
