/* Durations and HTTP dates as llmq reads them. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>

#include "params.h"
#include "timeutil.h"

struct dur_case {
	const char *s;
	int64_t ms;
};

static void dup_dur(void *p)
{
	struct dur_case *c = p;

	c->s = params_strdup(c->s);
}

ParameterizedTestParameters(timeutil, durations)
{
	static struct dur_case cases[] = {
	    {"6m0s", 360000},  {"1s", 1000},   {"20ms", 20},       {"1h30m", 5400000},
	    {"24h", 86400000}, {"1.5s", 1500}, {"30", 30000},      {"0.5", 500},
	    {"2d", 172800000}, {"0s", 0},      {"1m30.5s", 90500}, {"7m12s", 432000},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);

	return cr_make_param_array(struct dur_case,
	                           params_copy(cases, n, sizeof(cases[0]), dup_dur), n);
}

ParameterizedTest(struct dur_case *c, timeutil, durations)
{
	int64_t ms = -1;

	cr_assert_eq(time_parse_duration(c->s, &ms), 0, "%s", c->s);
	cr_assert_eq(ms, c->ms, "%s: %lld", c->s, (long long)ms);
}

Test(timeutil, bad_durations)
{
	static const char *const bad[] = {"",  "abc",   "5x",  "-1s", "1s5",
	                                  "m", "1..2s", " 1s", "1s "};
	int64_t ms;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_lt(time_parse_duration(bad[i], &ms), 0, "\"%s\" accepted", bad[i]);
}

Test(timeutil, http_date)
{
	int64_t ms;

	cr_assert_eq(time_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &ms), 0);
	cr_assert_eq(ms, 784111777000LL);
	cr_assert_lt(time_parse_http_date("yesterday", &ms), 0);
	cr_assert_lt(time_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT trailing", &ms), 0);
}

Test(timeutil, format)
{
	char b[32];

	time_format_duration(850, b, sizeof(b));
	cr_assert_str_eq(b, "850ms");
	time_format_duration(185000, b, sizeof(b));
	cr_assert_str_eq(b, "3m05s");
	time_format_duration(7440000, b, sizeof(b));
	cr_assert_str_eq(b, "2h04m");
}
