/*
 * estimate.c - the token estimator. Counts the text a provider would count:
 * every string of the body and the names of its members (tools and their
 * JSON schemas, response_format, messages of every role, the Responses
 * API's input), but the members that carry no text (model, sampling
 * settings, metadata...), the shape of messages ("role", "type") and
 * images, audio and files; integers in arrays are a pre-tokenised prompt's
 * tokens. A list of the keys that hold text would miss the next one a
 * provider adds: a 4 MB "tools" array was charged 6 tokens.
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

static int estimate_in_list(const char *const *list, const char *key)
{
	for (; *list; list++)
		if (strcmp(*list, key) == 0)
			return 1;
	return 0;
}

/* Top-level members that carry no text for the model: numbers, switches, ids. */
static const char *const not_text[] = {
    "model",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "stream_options",
    "seed",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "store",
    "metadata",
    "service_tier",
    "parallel_tool_calls",
    "encoding_format",
    "dimensions",
    "reasoning_effort",
    "reasoning",
    "modalities",
    "previous_response_id",
    "truncation",
    "include",
    "background",
    "prompt_cache_key",
    "safety_identifier",
    "max_tool_calls",
    "verbosity",
    NULL,
};
/* Members whose value is not read as text (images, audio, files: the provider
 * counts them otherwise, and a data: URL's characters are not its tokens). */
static const char *const not_read[] = {
    "image_url", "input_image", "image", "input_audio", "audio", "file_data", "file_id", NULL,
};
/* The shape of messages and parts: names not counted, values of the first two
 * neither ("role": "user", "type": "text"). */
static const char *const shape_keys[] = {"role", "type", "content", "text", "name", NULL};

/*
 * Adds the text of v to *chars: every string, and every member's name but
 * those of a message's shape; integers in arrays are the tokens of a
 * pre-tokenised prompt.
 */
static void count_value(json_object *v, int64_t *chars, int64_t *toks, int *found)
{
	size_t i, n;

	switch (json_object_get_type(v)) {
	case json_type_string:
		*chars += utf8_chars(json_object_get_string(v));
		*found = 1;
		break;
	case json_type_array:
		n = json_object_array_length(v);
		for (i = 0; i < n; i++) {
			json_object *e = json_object_array_get_idx(v, i);

			if (json_object_is_type(e, json_type_int)) {
				(*toks)++;
				*found = 1;
			} else {
				count_value(e, chars, toks, found);
			}
		}
		break;
	case json_type_object: {
		json_object_object_foreach(v, key, val)
		{
			if (estimate_in_list(not_read, key))
				continue;
			if (!estimate_in_list(shape_keys, key)) {
				*chars += utf8_chars(key);
				*found = 1;
			}
			if ((strcmp(key, "role") == 0 || strcmp(key, "type") == 0) &&
			    json_object_is_type(val, json_type_string))
				continue;
			count_value(val, chars, toks, found);
		}
		break;
	}
	default:
		break;
	}
}

/*
 * Every text the request carries - messages of every role, tools and their
 * schemas, response_format, instructions, input - not a list of known
 * keys: all but the members that carry no text.
 */
static int64_t prompt_units(json_object *body, int64_t *ret_toks, int *found)
{
	int64_t chars = 0;

	*ret_toks = 0;
	*found = 0;
	json_object_object_foreach(body, key, val)
	{
		if (estimate_in_list(not_text, key) || estimate_in_list(not_read, key))
			continue;
		count_value(val, &chars, ret_toks, found);
	}
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
