/*
 * jsontext: compacting JSON text in place, finding a member near its end,
 * and the bytes of an object's member.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "jsontext.h"

static const char *compact(char *buf, int *ret)
{
	size_t len = strlen(buf);

	*ret = jsontext_compact(buf, &len);
	buf[len] = '\0';
	return buf;
}

Test(jsontext, compact_keeps_strings_and_drops_the_rest)
{
	char a[] = "{\n  \"id\": \"x y\",\n  \"n\" : [1, 2 ,\t3],\r\n  \"s\": \"a\\\" b\\n\"\n}\n";
	char b[] = "[ ]";
	int r;

	cr_assert_str_eq(compact(a, &r), "{\"id\":\"x y\",\"n\":[1,2,3],\"s\":\"a\\\" b\\n\"}");
	cr_assert_eq(r, 0);
	cr_assert_str_eq(compact(b, &r), "[]");
}

Test(jsontext, what_is_not_json_shaped_is_left_alone)
{
	const char *bad[] = {
	    "<html> 502 Bad Gateway </html>",
	    "{\"a\": \"open",
	    "{\"a\": [1, 2}",
	    "{} }",
	    "{\"a\": \"raw\nnewline\"}",
	    "",
	    "  ",
	};
	char buf[64];
	size_t i;
	int r;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", bad[i]);
		cr_assert_str_eq(compact(buf, &r), bad[i]);
		cr_assert_eq(r, -EINVAL, "%s", bad[i]);
	}
}

Test(jsontext, the_last_member_not_one_inside_a_string)
{
	const char *s = "{\"choices\":[{\"message\":{\"content\":\"say \\\"usage\\\": {1}\"}}],"
	                "\"usage\" : {\"total_tokens\": 7}}";
	const char *p = jsontext_last_object(s, strlen(s), "usage");

	cr_assert_not_null(p);
	cr_assert_eq(strncmp(p, "{\"total_tokens\": 7}", 19), 0, "%s", p);
	cr_assert_null(jsontext_last_object(s, strlen(s), "error"));
	cr_assert_null(jsontext_last_object("{\"usage\": 3}", 12, "usage"), "not an object");
	cr_assert_null(jsontext_last_object("\"usage\"", 7, "usage"));
	cr_assert_null(jsontext_last_object("", 0, "usage"));
}

Test(jsontext, valid_is_rfc_8259)
{
	const char *good[] = {
	    "{}",
	    " [ ] ",
	    "0",
	    "-0.5e+10",
	    "\"\\u00e9\\n\"",
	    "true",
	    "null",
	    "{\"a\":[1,{\"b\":false},\"x\"],\"c\":-12.0E3}",
	};
	const char *bad[] = {
	    "",    "{",       "{\"a\"}",   "{\"a\":1,}", "[1,]",  "01",    "1.",  "-",   "+1",
	    "tru", "\"\\x\"", "\"\\u12\"", "{\"a\":1}}", "[1 2]", "{1:2}", "nul", "\"a",
	};
	char deep[2048];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert(jsontext_valid(good[i], strlen(good[i])), "%s", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(jsontext_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
	/* Nesting is bounded: no stack to exhaust. */
	memset(deep, '[', 1000);
	memset(deep + 1000, ']', 1000);
	cr_assert_not(jsontext_valid(deep, 2000));
	cr_assert(jsontext_valid(deep + 600, 800), "400 deep is fine");
}

/* The bytes of a member's value, as a batch line's body is kept. */
static const char *member(const char *s, const char *key, char *buf, size_t len, int *ret)
{
	size_t off = 0, vlen = 0;

	*ret = jsontext_member(s, strlen(s), key, &off, &vlen);
	snprintf(buf, len, "%.*s", *ret == 0 ? (int)vlen : 0, s + off);
	return buf;
}

Test(jsontext, a_members_value_as_its_bytes)
{
	char buf[256];
	int r;

	cr_assert_str_eq(member("{\"custom_id\":\"a\",\"body\":{\"model\":\"m\"}}", "body", buf,
	                        sizeof(buf), &r),
	                 "{\"model\":\"m\"}");
	cr_assert_eq(r, 0);
	/* As written, spaces inside it too. */
	cr_assert_str_eq(member(" { \"body\" : { \"a\" : [1, 2] } , \"x\" : 2 }\r", "body", buf,
	                        sizeof(buf), &r),
	                 "{ \"a\" : [1, 2] }");
	/* The last of a name, as json-c keeps it; a name inside a string is no member. */
	cr_assert_str_eq(member("{\"body\":{\"a\":1},\"x\":\"\\\"body\\\":{}\",\"body\":[1]}",
	                        "body", buf, sizeof(buf), &r),
	                 "[1]");
	cr_assert_str_eq(member("{\"body\":\"s\\\"}\"}", "body", buf, sizeof(buf), &r),
	                 "\"s\\\"}\"");
	/* Only the object's own members. */
	member("{\"x\":{\"body\":1}}", "body", buf, sizeof(buf), &r);
	cr_assert_eq(r, -ENOENT);
	member("{}", "body", buf, sizeof(buf), &r);
	cr_assert_eq(r, -ENOENT);
	/* A name written with an escape might be it: cannot tell. */
	member("{\"b\\u006fdy\":{},\"body\":{}}", "body", buf, sizeof(buf), &r);
	cr_assert_eq(r, -EINVAL);
	/* Not one valid object. */
	member("[{\"body\":1}]", "body", buf, sizeof(buf), &r);
	cr_assert_eq(r, -EINVAL);
	member("{\"body\":1} x", "body", buf, sizeof(buf), &r);
	cr_assert_eq(r, -EINVAL);
	member("{\"body\":01}", "body", buf, sizeof(buf), &r);
	cr_assert_eq(r, -EINVAL);
	member("{\"body\":{}", "body", buf, sizeof(buf), &r);
	cr_assert_eq(r, -EINVAL);
}
