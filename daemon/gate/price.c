/*
 * price.c - see price.h.
 */
#include "gate/price.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define PRICE_DECIMALS 6

/* "0.15" as micro-units (150000): digits, then up to six decimals. */
static int price_parse_figure(const char *s, size_t n, int64_t *ret)
{
	int64_t whole = 0, frac = 0;
	size_t i = 0, k;
	int digits = 0, decimals = 0;

	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		whole = whole * 10 + (s[i] - '0');
		if (whole > PRICE_MAX_MICRO_USD / 1000000)
			return -ERANGE;
	}
	if (i < n && s[i] == '.') {
		for (k = i + 1; k < n && s[k] >= '0' && s[k] <= '9'; k++, decimals++) {
			if (decimals == PRICE_DECIMALS)
				return -ERANGE;
			frac = frac * 10 + (s[k] - '0');
		}
		if (decimals == 0)
			return -EINVAL;
		i = k;
	}
	if (i != n || digits == 0)
		return -EINVAL;
	for (; decimals < PRICE_DECIMALS; decimals++)
		frac *= 10;
	*ret = whole * 1000000 + frac;
	return *ret > PRICE_MAX_MICRO_USD ? -ERANGE : 0;
}

int price_table_add(struct price_table *t, const char *pattern, const char *value, char *why,
                    size_t len)
{
	int64_t fig[3];
	const char *p = value, *end;
	int n = 0, i, r;

	if (!*pattern || strlen(pattern) >= PRICE_PATTERN_LEN) {
		snprintf(why, len, "a model pattern is 1 to %d characters", PRICE_PATTERN_LEN - 1);
		return -EINVAL;
	}
	for (i = 0; i < t->n; i++) {
		if (strcmp(t->p[i].pattern, pattern) == 0) {
			snprintf(why, len, "%s has a price already; list each pattern once",
			         pattern);
			return -EINVAL;
		}
	}
	if (t->n == PRICE_MAX) {
		snprintf(why, len, "more than %d prices; use patterns (gpt-4o-mini*) for families",
		         PRICE_MAX);
		return -E2BIG;
	}
	for (;;) {
		p += strspn(p, " \t");
		if (!*p)
			break;
		end = p + strcspn(p, " \t");
		if (n == 3) {
			n = 4;
			break;
		}
		r = price_parse_figure(p, (size_t)(end - p), &fig[n]);
		if (r < 0) {
			snprintf(why, len,
			         "\"%.*s\" is not a price: write USD per 1M tokens as a decimal of "
			         "at most %d places (0.15), no sign or unit",
			         (int)(end - p), p, PRICE_DECIMALS);
			return -EINVAL;
		}
		n++;
		p = end;
	}
	if (n != 2 && n != 3) {
		snprintf(why, len,
		         "expected INPUT [CACHED_INPUT] OUTPUT, USD per 1M tokens (gpt-4o-mini = "
		         "0.15 0.075 0.60)");
		return -EINVAL;
	}
	snprintf(t->p[t->n].pattern, PRICE_PATTERN_LEN, "%s", pattern);
	t->p[t->n].input = fig[0];
	t->p[t->n].cached = n == 3 ? fig[1] : fig[0];
	t->p[t->n].output = fig[n - 1];
	t->n++;
	return 0;
}

/* How much of a pattern is literal: its characters other than * and ?. */
static size_t price_literal_len(const char *pattern)
{
	size_t n = 0;

	for (; *pattern; pattern++)
		n += *pattern != '*' && *pattern != '?';
	return n;
}

const struct price *price_find(const struct price_table *t, const char *model)
{
	const struct price *best = NULL;
	size_t best_len = 0, l;
	int i;

	if (!model)
		return NULL;
	for (i = 0; i < t->n; i++)
		if (strcmp(t->p[i].pattern, model) == 0)
			return &t->p[i];
	for (i = 0; i < t->n; i++) {
		if (fnmatch(t->p[i].pattern, model, 0) != 0)
			continue;
		l = price_literal_len(t->p[i].pattern);
		if (!best || l > best_len) {
			best = &t->p[i];
			best_len = l;
		}
	}
	return best;
}

/* acc += tokens x pico-dollars per token, saturating. */
static void price_add(int64_t *acc, int64_t tokens, int64_t pico)
{
	int64_t v;

	if (tokens <= 0 || pico <= 0)
		return;
	if (__builtin_mul_overflow(tokens, pico, &v) || __builtin_add_overflow(*acc, v, acc))
		*acc = INT64_MAX;
}

int64_t price_cost(const struct price *p, const struct price_usage *u)
{
	int64_t prompt = u->prompt, cached = u->cached > 0 ? u->cached : 0;
	int64_t completion = u->completion > 0 ? u->completion : 0, pico = 0;

	if (prompt < 0)
		prompt = u->completion < 0 && u->total > 0 ? u->total : 0;
	if (cached > prompt)
		cached = prompt;
	price_add(&pico, prompt - cached, p->input);
	price_add(&pico, cached, p->cached);
	price_add(&pico, completion, p->output);
	if (pico == INT64_MAX)
		return INT64_MAX;
	return pico / 1000 + (pico % 1000 >= 500);
}

static int64_t price_get(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_int)
	           ? json_object_get_int64(v)
	           : -1;
}

static json_object *price_member(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_object)
	           ? v
	           : NULL;
}

void price_usage_read(json_object *usage, struct price_usage *ret)
{
	json_object *details;

	*ret = PRICE_USAGE_NONE;
	if (!usage || !json_object_is_type(usage, json_type_object))
		return;
	/* Chat and completions name them prompt and completion; responses, input and output. */
	ret->prompt = price_get(usage, "prompt_tokens");
	details = price_member(usage, "prompt_tokens_details");
	if (ret->prompt < 0) {
		ret->prompt = price_get(usage, "input_tokens");
		details = price_member(usage, "input_tokens_details");
	}
	ret->cached = price_get(details, "cached_tokens");
	ret->completion = price_get(usage, "completion_tokens");
	if (ret->completion < 0)
		ret->completion = price_get(usage, "output_tokens");
	ret->total = price_get(usage, "total_tokens");
	if (ret->total < 0 && ret->prompt >= 0)
		ret->total = ret->prompt + (ret->completion > 0 ? ret->completion : 0);
}

void price_format_usd(int64_t nusd, char *buf, size_t len)
{
	int64_t a = nusd > 0 ? nusd : 0; /* costs are never below nothing */
	int n;

	n = snprintf(buf, len, "%" PRId64 ".%09" PRId64, a / 1000000000, a % 1000000000);
	if (n <= 0 || (size_t)n >= len)
		return;
	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
}
