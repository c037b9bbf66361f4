/* The hop header: which chains pass, which are loops, and what is sent on. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <string.h>

#include "upstream/hop.h"
#include "params.h"

struct hop_case {
	const char *via;
	int want; /* hop_check's return */
	int hops; /* ids counted */
	const char *what;
};

static void dup_hop(void *p)
{
	struct hop_case *c = p;

	c->via = params_strdup(c->via);
	c->what = params_strdup(c->what);
}

#define SELF "00112233aabbccdd"

ParameterizedTestParameters(hop, check)
{
	static struct hop_case cases[] = {
	    {NULL, 0, 0, "a request from a caller, not an llmqd"},
	    {"", 0, 0, "an empty header"},
	    {"1111222233334444", 0, 1, "one other llmqd: a chain"},
	    {"1111222233334444, 5555666677778888", 0, 2, "two others"},
	    {SELF, -ELOOP, 1, "our own request, back"},
	    {"1111222233334444, " SELF ", 5555666677778888", -ELOOP, 3, "ours, in the middle"},
	    {" ," SELF ",", -ELOOP, 1, "odd spacing still names us"},
	    {SELF "9", 0, 1, "a longer id is another llmqd's"},
	    {"00112233aabbccd", 0, 1, "so is a shorter one"},
	    {"1, 2, 3, 4, 5, 6, 7", 0, 7, "7 llmqds passed: the 8th may send on"},
	    {"1, 2, 3, 4, 5, 6, 7, 8", -EMLINK, 8, "8 passed: taken for a loop"},
	    {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	     -EMLINK, 1, "longer than any chain of ids"},
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);

	return cr_make_param_array(struct hop_case,
	                           params_copy(cases, n, sizeof(cases[0]), dup_hop), n);
}

ParameterizedTest(struct hop_case *c, hop, check)
{
	int hops = -1;

	cr_assert_eq(hop_check(c->via, SELF, &hops), c->want, "%s: %s", c->what,
	             c->via ? c->via : "(none)");
	cr_assert_eq(hops, c->hops, "%s", c->what);
}

Test(hop, append_names_us_last)
{
	char buf[HOP_BUF_LEN], tiny[8];

	cr_assert_eq(hop_append(NULL, SELF, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, SELF);
	cr_assert_eq(hop_append("", SELF, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, SELF);
	cr_assert_eq(hop_append("1111222233334444", SELF, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "1111222233334444, " SELF);
	cr_assert_eq(hop_append("1111222233334444", SELF, tiny, sizeof(tiny)), -E2BIG);
}

Test(hop, what_passes_the_check_fits_the_buffer)
{
	char via[HOP_VIA_MAX + 1], buf[HOP_BUF_LEN];

	/* The longest value hop_check() lets through, then our id on it. */
	memset(via, 'x', HOP_VIA_MAX);
	via[HOP_VIA_MAX] = '\0';
	cr_assert_eq(hop_check(via, SELF, NULL), 0);
	cr_assert_eq(hop_append(via, SELF, buf, sizeof(buf)), 0);
}

Test(hop, ids_are_fresh_hex)
{
	char a[HOP_ID_LEN + 1], b[HOP_ID_LEN + 1];

	cr_assert_eq(hop_new_id(a), 0);
	cr_assert_eq(hop_new_id(b), 0);
	cr_assert_eq(strlen(a), HOP_ID_LEN);
	cr_assert_eq(strspn(a, "0123456789abcdef"), HOP_ID_LEN);
	cr_assert_str_neq(a, b);
}
