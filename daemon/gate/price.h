/*
 * price.h - what a try cost: the price table (USD per 1M tokens of input,
 * cached input and output, per model pattern), the usage an answer reports,
 * and the cost of that usage. Pure: no I/O, no logging.
 *
 * Money is integers, never binary fractions. A price is read from its text
 * exactly as micro-dollars per 1M tokens (six decimals of the figure: 0.15
 * is 150000), which is pico-dollars per token; a try's cost, tokens times
 * that, is exact in pico-dollars and rounded once (half up) to the
 * nano-dollars that are recorded. Sums of nano-dollars are exact whatever
 * their order or number (a double's would drift with both), so the store's
 * totals, the metrics and `llmq usage` always agree to the last digit; a
 * try loses at most half a nano-dollar to its one rounding.
 */
#ifndef LLMQ_PRICE_H
#define LLMQ_PRICE_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define PRICE_MAX 256         /* patterns in a table */
#define PRICE_PATTERN_LEN 128 /* a pattern's bytes, with its NUL */
/* The dearest price read: a million dollars per 1M tokens. */
#define PRICE_MAX_MICRO_USD (1000000LL * 1000000LL)

/* One pattern's prices, in micro-dollars per 1M tokens. */
struct price {
	char pattern[PRICE_PATTERN_LEN]; /* an fnmatch(3) glob, or a model's name */
	int64_t input;
	int64_t cached; /* input the provider served from its cache */
	int64_t output;
};

struct price_table {
	struct price p[PRICE_MAX];
	int n;
};

/* The usage an answer reports; -1 where it says nothing. */
struct price_usage {
	int64_t prompt;     /* input tokens, cached ones included */
	int64_t cached;     /* of those, served from the provider's cache */
	int64_t completion; /* output tokens */
	int64_t total;
};

#define PRICE_USAGE_NONE ((struct price_usage){-1, -1, -1, -1})

/*
 * Add pattern = value to t: value is "INPUT CACHED OUTPUT" or "INPUT
 * OUTPUT" (cached input then costs what input costs), USD per 1M tokens,
 * up to six decimals. -EINVAL (a bad figure, a pattern listed twice or too
 * long) or -E2BIG (the table is full), with why naming what to change.
 */
int price_table_add(struct price_table *t, const char *pattern, const char *value, char *why,
                    size_t len);

/*
 * The price of model: the entry whose pattern is model itself, else the
 * matching pattern with the most characters that are not wildcards (the
 * first listed of equals); NULL when none matches (the try costs nothing,
 * and is counted as unpriced).
 */
const struct price *price_find(const struct price_table *t, const char *model);

/*
 * What usage cost at price p, in nano-dollars (saturating at INT64_MAX).
 * Tokens a report leaves out count as none; a report of a total alone is
 * taken as input. Cached tokens are at most the prompt's.
 */
int64_t price_cost(const struct price *p, const struct price_usage *u);

/* An answer's "usage" object (chat, completions, embeddings, responses). */
void price_usage_read(json_object *usage, struct price_usage *ret);

/* nano-dollars as a decimal of dollars, without trailing zeros ("0.0123"). */
void price_format_usd(int64_t nusd, char *buf, size_t len);

#endif
