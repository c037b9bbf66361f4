/*
 * fuzz_jsontext.c - the JSON text scanner (common/jsontext.c), fed any
 * bytes as an upstream's answer body.
 *
 * Beyond not crashing, checked against json-c: text jsontext calls valid
 * that json-c also parses compacts to text that json-c parses to the same
 * value; the compaction is valid, on one line, no longer, and compacting it
 * again changes nothing; text it calls invalid is left untouched; and the
 * member found from the end ("usage", "response") is an object member
 * json-c sees: found whenever json-c sees one, an object where it points;
 * and the bytes found for an object's member ("body") are, parsed, the
 * value json-c keeps for it, found whenever json-c keeps one (unless a
 * name is written with an escape).
 */
#include "fuzz.h"

#include "jsontext.h"

#include <errno.h>
#include <json-c/json.h>

/*
 * json-c's value of the JSON text at s, else NULL: len bytes, or len + 1
 * when s[len] is the NUL that tells json-c a number at the end is whole.
 */
static json_object *jsonc_parse(const char *s, size_t len, size_t *ret_used)
{
	struct json_tokener *tok = json_tokener_new_ex(1024);
	json_object *o;

	FUZZ_ASSERT(tok, "out of memory");
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	if (ret_used)
		*ret_used = (size_t)tok->char_offset;
	json_tokener_free(tok);
	return o;
}

/* Whether some member named key, at any depth of o, is an object. */
static int has_object_member(json_object *o, const char *key)
{
	size_t i, n;

	if (json_object_is_type(o, json_type_array)) {
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			if (has_object_member(json_object_array_get_idx(o, i), key))
				return 1;
		return 0;
	}
	if (!json_object_is_type(o, json_type_object))
		return 0;
	json_object_object_foreach(o, k, v)
	{
		if (strcmp(k, key) == 0 && json_object_is_type(v, json_type_object))
			return 1;
		if (has_object_member(v, key))
			return 1;
	}
	return 0;
}

static void last_object(const char *s, size_t len, int valid, json_object *value, const char *key)
{
	const char *p = jsontext_last_object(s, len, key);
	json_object *o;
	size_t used;

	if (!p) {
		FUZZ_ASSERT(!value || !has_object_member(value, key),
		            "json-c sees an object \"%s\" that jsontext does not", key);
		return;
	}
	FUZZ_ASSERT(p >= s && p < s + len && *p == '{', "not an object's start");
	if (!valid)
		return;
	o = jsonc_parse(p, (size_t)(s + len - p), &used);
	if (!o) /* more text follows the object: parse only the object's bytes */
		o = jsonc_parse(p, used, NULL);
	FUZZ_ASSERT(o && json_object_is_type(o, json_type_object),
	            "\"%s\" found at byte %zu, not on an object", key, (size_t)(p - s));
	FUZZ_ASSERT(jsontext_valid(p, used), "the object found is not valid alone");
	json_object_put(o);
}

static void member(const char *s, size_t len, json_object *value, const char *key)
{
	size_t off = 0, vlen = 0;
	json_object *want = NULL, *got;
	char *copy;
	int r = jsontext_member(s, len, key, &off, &vlen);

	if (!json_object_is_type(value, json_type_object)) {
		FUZZ_ASSERT(r == -EINVAL, "a member found in no object: %d", r);
		return;
	}
	if (r == -EINVAL) {
		FUZZ_ASSERT(memchr(s, '\\', len), "an object refused, no name escaped");
		return;
	}
	json_object_object_get_ex(value, key, &want);
	if (r == -ENOENT) {
		FUZZ_ASSERT(!json_object_object_get_ex(value, key, NULL),
		            "json-c keeps a \"%s\" that jsontext does not find", key);
		return;
	}
	FUZZ_ASSERT(r == 0 && off + vlen <= len, "%d, %zu + %zu past %zu", r, off, vlen, len);
	FUZZ_ASSERT(jsontext_valid(s + off, vlen), "the bytes found are not a value");
	copy = malloc(vlen + 1);
	FUZZ_ASSERT(copy, "out of memory");
	memcpy(copy, s + off, vlen);
	copy[vlen] = '\0';
	got = jsonc_parse(copy, vlen + 1, NULL);
	FUZZ_ASSERT(got && json_object_equal(got, want),
	            "\"%s\" found as %.*s, not the value json-c keeps", key, (int)vlen, copy);
	json_object_put(got);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *c = malloc(size + 1);
	json_object *value = NULL, *again;
	size_t clen = size, c2len;
	int valid, r;

	FUZZ_ASSERT(s && c, "out of memory");
	memcpy(s, data, size);
	memcpy(c, data, size);
	valid = jsontext_valid(s, size);
	s[size] = '\0'; /* valid text holds no NUL */
	if (valid)
		value = jsonc_parse(s, size + 1, NULL);
	r = jsontext_compact(c, &clen);
	if (!valid) {
		FUZZ_ASSERT(r == -EINVAL, "invalid text compacted");
		FUZZ_ASSERT(clen == size && memcmp(c, s, size) == 0, "invalid text changed");
	} else {
		FUZZ_ASSERT(r == 0, "valid text not compacted: %d", r);
		FUZZ_ASSERT(clen <= size, "compaction grew %zu -> %zu", size, clen);
		FUZZ_ASSERT(!memchr(c, '\n', clen) && !memchr(c, '\r', clen), "not one line");
		FUZZ_ASSERT(jsontext_valid(c, clen), "the compaction is not valid");
		c2len = clen;
		memcpy(s, c, clen);
		FUZZ_ASSERT(jsontext_compact(s, &c2len) == 0 && c2len == clen &&
		                memcmp(s, c, clen) == 0,
		            "compacting twice changed it");
		memcpy(s, data, size);
		if (value) {
			c[clen] = '\0';
			again = jsonc_parse(c, clen + 1, NULL);
			FUZZ_ASSERT(again && json_object_equal(value, again),
			            "the compaction is another value: %.*s", (int)clen, c);
			json_object_put(again);
		}
	}
	last_object(s, size, valid, value, "usage");
	last_object(s, size, valid, value, "response");
	if (valid && value)
		member(s, size, value, "body");
	json_object_put(value);
	free(s);
	free(c);
	return 0;
}
