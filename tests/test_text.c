/*
 * Caller-given text made safe (common/text.c): what is stored is cleaned,
 * what is logged or printed is escaped, and text without control
 * characters goes through both unchanged.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "text.h"

#include <stdlib.h>
#include <unistd.h>

/* Arrays, not pointers: each case runs in a process of its own, where the
 * parent's addresses of string literals mean nothing. */
struct text_case {
	char what[64], in[32], clean[32], escaped[64];
};

ParameterizedTestParameters(text, table)
{
	static struct text_case cases[] = {
	    {"plain text is left alone", "batch-7.jsonl", "batch-7.jsonl", "batch-7.jsonl"},
	    {"UTF-8 and a tab are text", "caf\xc3\xa9\t\xe2\x82\xac \xf0\x9f\x98\x80",
	     "caf\xc3\xa9\t\xe2\x82\xac \xf0\x9f\x98\x80",
	     "caf\xc3\xa9\t\xe2\x82\xac \xf0\x9f\x98\x80"},
	    {"a terminal's title and clear screen", "ev\x1b]0;PWNED\x07\x1b[2J", "ev?]0;PWNED??[2J",
	     "ev\\x1b]0;PWNED\\x07\\x1b[2J"},
	    {"an LF cannot forge a log line", "a\nllmqd[info]: forged", "a?llmqd[info]: forged",
	     "a\\x0allmqd[info]: forged"},
	    {"CR and DEL", "a\rb\x7f", "a?b?", "a\\x0db\\x7f"},
	    {"a C1 control (CSI) is one character",
	     "x\xc2\x9b"
	     "31m",
	     "x?31m", "x\\xc2\\x9b31m"},
	    {"a stray byte is not UTF-8",
	     "x\xff"
	     "y",
	     "x?y", "x\\xffy"},
	    {"an overlong slash", "\xc0\xaf", "??", "\\xc0\\xaf"},
	    {"a surrogate", "\xed\xa0\x80", "???", "\\xed\\xa0\\x80"},
	    {"a character cut at the end", "ab\xe2\x82", "ab??", "ab\\xe2\\x82"},
	    {"a backslash is escaped when printed", "a\\x1b", "a\\x1b", "a\\\\x1b"},
	};

	return cr_make_param_array(struct text_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct text_case *c, text, table)
{
	char buf[256], out[256];

	snprintf(buf, sizeof(buf), "%s", c->in);
	cr_assert_eq(text_clean(buf), strlen(c->clean), "%s", c->what);
	cr_assert_str_eq(buf, c->clean, "%s", c->what);
	cr_assert_not(text_has_control(buf), "%s: clean", c->what);
	cr_assert_str_eq(text_escape(c->in, out, sizeof(out)), c->escaped, "%s", c->what);
	cr_assert_eq(text_has_control(c->in), strcmp(c->in, c->clean) != 0, "%s", c->what);
}

Test(text, an_escape_that_does_not_fit_is_cut_on_a_character)
{
	char out[8];

	cr_assert_str_eq(text_escape("ab\x1b"
	                             "cdef",
	                             out, sizeof(out)),
	                 "ab\\x1bc");
	cr_assert_str_eq(text_escape("abcde\xc3\xa9", out, 7), "abcde");
	cr_assert_str_eq(text_escape("\x1b\x1b", out, 5), "\\x1b");
}

/* The log's formatter is the last line of defence: one entry, one line. */
Test(text, a_log_entry_is_one_line_whatever_its_arguments)
{
	char path[] = "/tmp/llmq-test-log-XXXXXX", line[512];
	int fd = mkstemp(path), lines = 0;
	FILE *f;

	cr_assert_geq(fd, 0);
	cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
	log_init("llmqd");
	log_info("file %s from uid 1000", "x\nllmqd[info]: FORGED\x1b[2J");
	fflush(stderr);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		lines++;
		cr_assert(strstr(line, "x\\x0allmqd[info]: FORGED\\x1b[2J from uid 1000"), "%s",
		          line);
	}
	fclose(f);
	close(fd);
	unlink(path);
	cr_assert_eq(lines, 1);
}
