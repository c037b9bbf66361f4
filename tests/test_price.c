/*
 * Prices: reading a price line, finding a model's price, the cost of a
 * try's usage, the usage an answer reports. One table row per rule; each
 * expected figure worked out in its comment.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gate/price.h"

Test(price, a_line_is_read_exactly_or_refused)
{
	static const struct {
		const char *value;
		int r;
		int64_t input, cached, output; /* micro-dollars per 1M tokens */
		const char *what;
	} cases[] = {
	    {"0.15 0.075 0.60", 0, 150000, 75000, 600000, "three figures: input, cached, output"},
	    {"2.50 10", 0, 2500000, 2500000, 10000000, "two: cached input costs what input costs"},
	    {"  0.1\t0.4  ", 0, 100000, 100000, 400000, "blanks and tabs around the figures"},
	    {"0 0", 0, 0, 0, 0, "free"},
	    {"0.000001 1000000", 0, 1, 1, PRICE_MAX_MICRO_USD, "the finest and the dearest"},
	    {"0.0000001 1", -EINVAL, 0, 0, 0, "a seventh decimal"},
	    {"1000001 1", -EINVAL, 0, 0, 0, "dearer than a million dollars"},
	    {"-1 2", -EINVAL, 0, 0, 0, "a sign"},
	    {"1e-3 2", -EINVAL, 0, 0, 0, "an exponent"},
	    {"$0.15 0.60", -EINVAL, 0, 0, 0, "a unit"},
	    {".5 1", -EINVAL, 0, 0, 0, "no digit before the point"},
	    {"5. 1", -EINVAL, 0, 0, 0, "no digit after the point"},
	    {"0.15", -EINVAL, 0, 0, 0, "one figure"},
	    {"1 2 3 4", -EINVAL, 0, 0, 0, "four figures"},
	    {"", -EINVAL, 0, 0, 0, "none"},
	    {"0,15 0,60", -EINVAL, 0, 0, 0, "a decimal comma"},
	};
	struct price_table t;
	char why[256];
	size_t i;
	int r;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&t, 0, sizeof(t));
		why[0] = '\0';
		r = price_table_add(&t, "m", cases[i].value, why, sizeof(why));
		cr_assert_eq(r, cases[i].r, "%s: \"%s\" gave %d (%s)", cases[i].what,
		             cases[i].value, r, why);
		if (r < 0) {
			cr_assert_eq(t.n, 0, "%s: nothing added", cases[i].what);
			cr_assert(why[0], "%s: the refusal says why", cases[i].what);
			continue;
		}
		cr_assert_eq(t.n, 1);
		cr_assert_eq(t.p[0].input, cases[i].input, "%s", cases[i].what);
		cr_assert_eq(t.p[0].cached, cases[i].cached, "%s", cases[i].what);
		cr_assert_eq(t.p[0].output, cases[i].output, "%s", cases[i].what);
	}
}

Test(price, a_pattern_twice_or_one_too_many_is_refused)
{
	static struct price_table t;
	char why[256], pat[16];
	int i;

	cr_assert_eq(price_table_add(&t, "gpt-4o", "1 2", why, sizeof(why)), 0);
	cr_assert_eq(price_table_add(&t, "gpt-4o", "1 3", why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "gpt-4o") && strstr(why, "once"), "%s", why);
	for (i = 1; i < PRICE_MAX; i++) {
		snprintf(pat, sizeof(pat), "m%d", i);
		cr_assert_eq(price_table_add(&t, pat, "1 2", why, sizeof(why)), 0, "%s", why);
	}
	cr_assert_eq(price_table_add(&t, "one-more", "1 2", why, sizeof(why)), -E2BIG);
	cr_assert(strstr(why, "patterns"), "%s", why);
	cr_assert_eq(t.n, PRICE_MAX);
}

Test(price, a_model_finds_its_own_name_then_the_most_literal_pattern)
{
	static const char *const table[][2] = {
	    {"gpt-4o*", "2.5 1.25 10"},     {"gpt-4o-mini*", "0.15 0.075 0.6"},
	    {"gpt-4o", "5 2.5 15"},         {"gpt-?o-x*", "9 9"},
	    {"gpt-4o-x*", "8 8"},           {"text-embedding-3-small", "0.02 0"},
	    {"ft?gpt-4o-mini*", "0.3 1.2"},
	};
	static const struct {
		const char *model;
		const char *want; /* the pattern found; NULL: none */
		const char *what;
	} cases[] = {
	    {"gpt-4o", "gpt-4o", "its own name before the patterns that match it"},
	    {"gpt-4o-2024-08-06", "gpt-4o*", "a dated snapshot by its family's pattern"},
	    {"gpt-4o-mini", "gpt-4o-mini*", "the longer of two matching patterns"},
	    {"gpt-4o-mini-2024-07-18", "gpt-4o-mini*", "the same for its snapshot"},
	    {"gpt-4o-xl", "gpt-4o-x*", "more literal characters win over a wildcard"},
	    {"ft:gpt-4o-mini:acme::abc", "ft?gpt-4o-mini*", "a fine-tune's colons by ?"},
	    {"text-embedding-3-small", "text-embedding-3-small", "an exact name"},
	    {"text-embedding-3-large", NULL, "an exact name matches nothing else"},
	    {"o3", NULL, "no price: nothing matches"},
	    {"", NULL, "a call that named no model"},
	};
	struct price_table t = {0};
	const struct price *p;
	char why[128];
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		cr_assert_eq(price_table_add(&t, table[i][0], table[i][1], why, sizeof(why)), 0,
		             "%s", why);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p = price_find(&t, cases[i].model);
		if (!cases[i].want)
			cr_assert_null(p, "%s: %s found %s", cases[i].what, cases[i].model,
			               p ? p->pattern : "");
		else
			cr_assert(p && strcmp(p->pattern, cases[i].want) == 0, "%s: %s found %s",
			          cases[i].what, cases[i].model, p ? p->pattern : "nothing");
	}
	cr_assert_null(price_find(&t, NULL));
}

Test(price, a_patterns_tie_goes_to_the_first_listed)
{
	struct price_table t = {0};
	char why[128];

	/* gpt-?o* and gpt-4* have five literal characters each. */
	cr_assert_eq(price_table_add(&t, "gpt-?o*", "1 1", why, sizeof(why)), 0);
	cr_assert_eq(price_table_add(&t, "gpt-4*", "2 2", why, sizeof(why)), 0);
	cr_assert_str_eq(price_find(&t, "gpt-4o-mini")->pattern, "gpt-?o*");
}

Test(price, the_cost_of_a_try_in_nano_dollars)
{
	/* gpt-4o-mini's: 0.15 input, 0.075 cached, 0.60 output: pico-dollars per token. */
	static const struct price mini = {"gpt-4o-mini", 150000, 75000, 600000};
	static const struct price fine = {"fine", 1, 1, 1}; /* 0.000001 USD per 1M: 1 pico */
	static const struct {
		const struct price *p;
		struct price_usage u;
		int64_t nusd;
		const char *what;
	} cases[] = {
	    /* 1000 x 150000 + 500 x 600000 = 450,000,000 pico */
	    {&mini, {1000, -1, 500, 1500}, 450000, "input and output"},
	    /* 600 x 150000 + 400 x 75000 + 500 x 600000 = 420,000,000 pico */
	    {&mini, {1000, 400, 500, 1500}, 420000, "cached input at its own price"},
	    /* 1000 x 0 cached of 1000: all at 75000 = 75,000,000 pico */
	    {&mini, {1000, 1000, 0, 1000}, 75000, "all of the prompt cached"},
	    /* cached 20 of a prompt of 10: the 10 at 75000 = 750,000 pico */
	    {&mini, {10, 20, 0, 10}, 750, "more cached than prompted is the prompt"},
	    /* an embedding: 8 x 150000 = 1,200,000 pico */
	    {&mini, {8, -1, -1, 8}, 1200, "no output"},
	    /* a total alone is input: 100 x 150000 = 15,000,000 pico */
	    {&mini, {-1, -1, -1, 100}, 15000, "a report of the total alone"},
	    {&mini, PRICE_USAGE_NONE, 0, "no usage: nothing spent that anyone reported"},
	    /* one rounding per try, half up: 499 pico is 0, 500 is 1 nano */
	    {&fine, {499, -1, 0, 499}, 0, "under half a nano-dollar"},
	    {&fine, {500, -1, 0, 500}, 1, "half a nano-dollar rounds up"},
	    {&fine, {1499, -1, 0, 1499}, 1, "1.499 nano"},
	    {&mini, {INT64_MAX / 2, -1, INT64_MAX / 2, -1}, INT64_MAX, "saturates, never wraps"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(price_cost(cases[i].p, &cases[i].u), cases[i].nusd, "%s: %lld",
		             cases[i].what, (long long)price_cost(cases[i].p, &cases[i].u));
}

/*
 * Why integers: ten million one-token tries at 0.15 USD per 1M cost 150
 * nano-dollars each, and their sum is exactly 1.5 dollars; the same sum in
 * doubles of dollars is not.
 */
Test(price, sums_of_costs_do_not_drift)
{
	static const struct price mini = {"gpt-4o-mini", 150000, 75000, 600000};
	struct price_usage one = {1, 0, 0, 1};
	int64_t sum = 0, i;
	double dsum = 0;
	char buf[32];

	for (i = 0; i < 10000000; i++) {
		sum += price_cost(&mini, &one);
		dsum += 0.15 / 1e6;
	}
	cr_assert_eq(sum, 1500000000);
	price_format_usd(sum, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.5");
	cr_assert_neq(dsum, 1.5, "doubles drift (%.17g); that is why costs are integers", dsum);
}

Test(price, the_usage_an_answer_reports)
{
	static const struct {
		const char *json;
		struct price_usage want;
		const char *what;
	} cases[] = {
	    {"{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"
	     "\"prompt_tokens_details\":{\"cached_tokens\":4}}",
	     {10, 4, 5, 15},
	     "chat, with cached tokens"},
	    {"{\"input_tokens\":10,\"output_tokens\":5,\"total_tokens\":15,"
	     "\"input_tokens_details\":{\"cached_tokens\":3}}",
	     {10, 3, 5, 15},
	     "responses"},
	    {"{\"prompt_tokens\":8,\"total_tokens\":8}", {8, -1, -1, 8}, "embeddings"},
	    {"{\"prompt_tokens\":3,\"completion_tokens\":2}", {3, -1, 2, 5}, "no total"},
	    {"{\"prompt_tokens\":3,\"prompt_tokens_details\":null}",
	     {3, -1, -1, 3},
	     "details null"},
	    {"{\"total_tokens\":\"7\"}", {-1, -1, -1, -1}, "a figure as a string"},
	    {"[]", {-1, -1, -1, -1}, "not an object"},
	};
	struct price_usage u;
	json_object *o;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		o = json_tokener_parse(cases[i].json);
		cr_assert_not_null(o, "%s", cases[i].json);
		price_usage_read(o, &u);
		cr_assert(u.prompt == cases[i].want.prompt && u.cached == cases[i].want.cached &&
		              u.completion == cases[i].want.completion &&
		              u.total == cases[i].want.total,
		          "%s: %lld %lld %lld %lld", cases[i].what, (long long)u.prompt,
		          (long long)u.cached, (long long)u.completion, (long long)u.total);
		json_object_put(o);
	}
	price_usage_read(NULL, &u);
	cr_assert_eq(u.total, -1);
}

Test(price, dollars_as_text)
{
	static const struct {
		int64_t nusd;
		const char *text;
	} cases[] = {
	    {0, "0"},
	    {1, "0.000000001"},
	    {12300000, "0.0123"},
	    {1500000000, "1.5"},
	    {42000000000, "42"},
	    {-5, "0"},
	};
	char buf[32];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		price_format_usd(cases[i].nusd, buf, sizeof(buf));
		cr_assert_str_eq(buf, cases[i].text);
	}
}
