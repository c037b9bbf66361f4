/*
 * estimate.c - the token estimator. Counts the text a provider would count:
 * chat "messages" contents (strings or arrays of text parts), "prompt",
 * "input" (strings, arrays of strings, token arrays, or message lists for the
 * Responses API), "instructions" and "system".
 */
#include "estimate.h"

#include <string.h>

static int64_t utf8_chars(const char *s)
{
	int64_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Adds the countable text of v to *chars and tokens given as integers to *toks. */
static void count_value(json_object *v, int64_t *chars, int64_t *toks, int *found)
{
	json_object *t;
	size_t i, n;

	switch (json_object_get_type(v)) {
	case json_type_string:
		*chars += utf8_chars(json_object_get_string(v));
		*found = 1;
		break;
	case json_type_int:
		/* An element of a pre-tokenised prompt. */
		(*toks)++;
		*found = 1;
		break;
	case json_type_array:
		n = json_object_array_length(v);
		for (i = 0; i < n; i++)
			count_value(json_object_array_get_idx(v, i), chars, toks, found);
		break;
	case json_type_object:
		/* A message ({"role","content"}) or a content part ({"type","text"}). */
		if (json_object_object_get_ex(v, "content", &t))
			count_value(t, chars, toks, found);
		if (json_object_object_get_ex(v, "text", &t) &&
		    json_object_is_type(t, json_type_string))
			count_value(t, chars, toks, found);
		if (json_object_object_get_ex(v, "name", &t) &&
		    json_object_is_type(t, json_type_string))
			count_value(t, chars, toks, found);
		break;
	default:
		break;
	}
}

static int64_t prompt_units(json_object *body, int64_t *ret_toks, int *found)
{
	static const char *const keys[] = {"messages",     "prompt", "input",
	                                   "instructions", "system", NULL};
	int64_t chars = 0;
	json_object *v;
	int i;

	*ret_toks = 0;
	*found = 0;
	for (i = 0; keys[i]; i++)
		if (json_object_object_get_ex(body, keys[i], &v))
			count_value(v, &chars, ret_toks, found);
	return chars;
}

int64_t estimate_prompt_chars(json_object *body)
{
	int64_t toks;
	int found;
	int64_t chars = prompt_units(body, &toks, &found);

	return found ? chars : -1;
}

static int64_t get_pos_int(json_object *body, const char *key)
{
	json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(body, key, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	n = json_object_get_int64(v);
	return n > 0 ? n : 0;
}

int64_t estimate_tokens(json_object *body, const char *url, int64_t per_run)
{
	int64_t chars, toks, prompt, out, n;
	int found, embeddings;

	if (per_run < 1)
		per_run = 1;
	if (!body || !json_object_is_type(body, json_type_object))
		return per_run;
	embeddings = url && strstr(url, "/embeddings") != NULL;
	chars = prompt_units(body, &toks, &found);
	prompt = (chars + 3) / 4 + toks;

	out = get_pos_int(body, "max_completion_tokens");
	if (!out)
		out = get_pos_int(body, "max_tokens");
	if (!out)
		out = get_pos_int(body, "max_output_tokens");
	n = get_pos_int(body, "n");
	if (n < 1)
		n = 1;

	if (!found && !out)
		return per_run;
	if (embeddings)
		return prompt > 0 ? (prompt < ESTIMATE_MAX ? prompt : ESTIMATE_MAX) : 1;
	if (!out)
		out = per_run;
	/* Saturate: a body's numbers are the user's, and must not wrap. */
	if (prompt >= ESTIMATE_MAX || out > (ESTIMATE_MAX - prompt) / n)
		return ESTIMATE_MAX;
	return prompt + out * n;
}
